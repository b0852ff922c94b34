// What a datastore is: one job, delivering a consistent view of the cluster's objects and its
// changes. Two implementations feed the same consumer (view.ts): the Kubernetes API server
// (kubernetes/datastore.ts) and a directory of YAML (files.ts). Modelled on @kubernetes/client-node's
// `Informer<T>` (on/off with string-literal verbs, start/stop), with two differences the policy
// compiler needs: changes come in batches (a relist or a rescan is one batch, so nothing is compiled
// from half of it), and nothing is delivered before every source has been read once (`synced`).
import type { KubeObject } from './objects.js';

/** An object the datastore refused: it stays out of the view (its last valid version, if any, stays
 * in). `problems` are "field: reason" lines, kubectl-style paths. */
export interface RejectedObject {
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
  /** where it came from: "pods" (an API resource) or a file path */
  readonly source: string;
  readonly problems: readonly string[];
}

export interface DatastoreBatch {
  /** created or changed objects, whole (replace, as ClusterState.apply does) */
  readonly upserts: readonly KubeObject[];
  /** objects gone from the view (their last delivered version) */
  readonly deletes: readonly KubeObject[];
  readonly rejected: readonly RejectedObject[];
  /** true for the first batch after sync: `upserts` is then the whole view */
  readonly initial: boolean;
}

/** Per source (an API resource such as "networkpolicies.networking.k8s.io", or "files"). */
export interface SourceHealth {
  /** listed (or scanned) at least once */
  readonly synced: boolean;
  /** connected to its source now (a watch is open, or the directory is readable) */
  readonly connected: boolean;
  /** the last error, e.g. `cannot watch pods at cluster scope: forbidden`; cleared on recovery */
  readonly lastError?: string;
  /** full re-reads after the first (watch expiry, 410 Gone, rescans that found changes) */
  readonly relists: number;
  /** connections made after the first (dropped watches, restarts of the API server) */
  readonly reconnects: number;
  /** objects refused so far (malformed, unknown version, invalid) */
  readonly rejected: number;
  /** periodic re-reads compared with the view; the differences they repaired (missed events); failed ones */
  readonly resyncs?: number;
  readonly resyncRepairs?: number;
  readonly resyncFailures?: number;
}

export interface DatastoreHealth {
  readonly synced: boolean;
  readonly sources: Readonly<Record<string, SourceHealth>>;
}

export type DatastoreVerb = 'change' | 'error';
export type ChangeCallback = (batch: DatastoreBatch) => void;
export type ErrorCallback = (err: Error) => void;

export interface Datastore {
  /** Starts reading; resolves once started (not once synced: see whenSynced). */
  start(): Promise<void>;
  /** Stops reading and releases connections and timers. Idempotent. */
  stop(): Promise<void>;
  /** Every source has been read once, and the first batch (the whole view) was delivered. */
  readonly synced: boolean;
  /** Resolves when synced; rejects if stopped first. */
  whenSynced(): Promise<void>;
  /** The current view (the last valid version of every object). Empty before sync. */
  objects(): KubeObject[];
  /** `change`: a batch (never before sync; the first is the whole view). `error`: a source failed
   * (it retries by itself; the view stays as it was). */
  on(verb: 'change', cb: ChangeCallback): void;
  on(verb: 'error', cb: ErrorCallback): void;
  off(verb: 'change', cb: ChangeCallback): void;
  off(verb: 'error', cb: ErrorCallback): void;
  health(): DatastoreHealth;
}

/** Where a datastore writes what it logs (a line naming the object or the source). */
export type DatastoreLog = (level: 'info' | 'warn' | 'error', message: string) => void;

export const defaultLog: DatastoreLog = (level, message) => {
  process.stderr.write(`weir datastore ${level}: ${message}\n`);
};

/** Timers, injectable so tests control backoff and debounce. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** Keeps the callbacks of both verbs; implementations call emit*. */
export class DatastoreEmitter {
  private readonly change: ChangeCallback[] = [];
  private readonly error: ErrorCallback[] = [];

  on(verb: DatastoreVerb, cb: ChangeCallback | ErrorCallback): void {
    if (verb === 'change') this.change.push(cb as ChangeCallback);
    else if (verb === 'error') this.error.push(cb as ErrorCallback);
    else throw new Error(`unknown verb: ${String(verb)}; a datastore has "change" and "error"`);
  }

  off(verb: DatastoreVerb, cb: ChangeCallback | ErrorCallback): void {
    const list: unknown[] = verb === 'change' ? this.change : this.error;
    const i = list.indexOf(cb);
    if (i >= 0) list.splice(i, 1);
  }

  emitChange(batch: DatastoreBatch): void {
    for (const cb of [...this.change]) cb(batch);
  }

  emitError(err: Error): void {
    for (const cb of [...this.error]) cb(err);
  }
}

/** A promise settled once: whenSynced() of both implementations. */
export class SyncLatch {
  readonly promise: Promise<void>;
  done = false;
  private resolveFn!: () => void;
  private rejectFn!: (err: Error) => void;

  constructor() {
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    this.promise.catch(() => undefined); // nobody waiting is not an unhandled rejection
  }

  resolve(): void {
    if (this.done) return;
    this.done = true;
    this.resolveFn();
  }

  reject(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.rejectFn(err);
  }
}
