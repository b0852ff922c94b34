// Telling the object's owner why Weir skipped it: a Warning Event on the object itself (what
// `kubectl describe networkpolicy x` shows), as controllers do. Created through the library's
// CoreV1Api. A failure to record is logged and counted, never thrown: a missing `create events`
// permission must not stop enforcement.
import { CoreV1Api, type CoreV1Event, type KubeConfig } from '@kubernetes/client-node';
import type { ObjectRef } from './convert.js';
import type { DatastoreLog } from '../datastore.js';
import { defaultLog } from '../datastore.js';
import { apiError } from './api.js';

/** Reasons Weir's Events carry (one word each, as Kubernetes reasons are). */
export type EventReason = 'InvalidPolicy' | 'InvalidObject';

export interface EventRecorder {
  /** Records a Warning on `ref`. Resolves even when recording failed (it logs why). */
  warn(ref: ObjectRef, reason: EventReason, message: string): Promise<void>;
}

export interface KubeEventRecorderOptions {
  /** source.component / reportingComponent */
  readonly component?: string;
  /** source.host / reportingInstance: the node the agent runs on */
  readonly host?: string;
  readonly now?: () => number;
  readonly log?: DatastoreLog;
}

/** Remembered (object version, message) pairs: a relist re-delivers every rejected object, and
 * one Event per version of an object is enough. Bounded so it cannot grow without end. */
const SEEN_MAX = 4096;

export class KubeEventRecorder implements EventRecorder {
  private readonly api: CoreV1Api;
  private readonly seen = new Set<string>();
  private readonly component: string;
  private readonly host: string | undefined;
  private readonly now: () => number;
  private readonly log: DatastoreLog;
  private serial = 0;
  /** Events created, and attempts that failed */
  created = 0;
  failed = 0;

  constructor(kc: KubeConfig, opts: KubeEventRecorderOptions = {}) {
    this.api = kc.makeApiClient(CoreV1Api);
    this.component = opts.component ?? 'weir-agent';
    this.host = opts.host;
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? defaultLog;
  }

  async warn(ref: ObjectRef, reason: EventReason, message: string): Promise<void> {
    const key = `${ref.kind}|${ref.namespace ?? ''}|${ref.name}|${ref.uid ?? ''}|${ref.resourceVersion ?? ''}|${message}`;
    if (this.seen.has(key)) return;
    if (this.seen.size >= SEEN_MAX) this.seen.delete(this.seen.values().next().value!);
    this.seen.add(key);
    const at = new Date(this.now());
    // Events of cluster-scoped objects live in "default", as kubectl and client-go put them.
    const namespace = ref.namespace ?? 'default';
    // client-go's naming: the object's name and a unique hex suffix
    const suffix = (BigInt(at.getTime()) * 1_000_000n + BigInt(this.serial++ % 1_000_000)).toString(16);
    const body: CoreV1Event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${ref.name}.${suffix}`, namespace },
      involvedObject: {
        apiVersion: ref.apiVersion, kind: ref.kind, name: ref.name,
        ...(ref.namespace ? { namespace: ref.namespace } : {}),
        ...(ref.uid ? { uid: ref.uid } : {}),
        ...(ref.resourceVersion ? { resourceVersion: ref.resourceVersion } : {}),
      },
      reason,
      message,
      type: 'Warning',
      count: 1,
      firstTimestamp: at,
      lastTimestamp: at,
      source: { component: this.component, ...(this.host ? { host: this.host } : {}) },
      reportingComponent: this.component,
      ...(this.host ? { reportingInstance: this.host } : {}),
    };
    try {
      await this.api.createNamespacedEvent({ namespace, body });
      this.created++;
    } catch (err) {
      this.failed++;
      this.seen.delete(key); // try again when the object comes by again
      const code = (err as { code?: unknown }).code;
      const why = typeof code === 'number' ? apiError('create', 'events', code).message : (err as Error).message;
      this.log('warn', `could not record Event ${reason} on ${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}: ${why}`);
    }
  }
}
