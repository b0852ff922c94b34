// The Kubernetes datastore: one @kubernetes/client-node ListWatch per watched resource
// (resources.ts), validated into the typed objects ClusterState takes, delivered as batches once
// every resource has listed.
//
// What the library's ListWatch (2.0.1, cache.js) does and what is added here:
// - 410 Gone (an ERROR event with code 410, or HTTP 410 on the watch): it relists by itself;
//   objects gone meanwhile come out as deletes. The relist is synchronous after the list arrives,
//   so it is one batch here.
// - A watch the server closes cleanly (timeout, restart): it re-watches from the last
//   resourceVersion, with its own backoff (1 s doubling to 30 s, reset by any event); its delay
//   function is ours, so it obeys the injected timers and stop().
// - Any other error (connection refused or reset, 403, 500, a failed list): it calls the error
//   callbacks and stops for good. Here it is restarted with exponential backoff (INITIAL_BACKOFF_MS
//   doubling to MAX_BACKOFF_MS), from the last resourceVersion (so a restarted API server that kept
//   its history resumes, and one that lost it answers 410 and is relisted).
// - It never asks for bookmarks and swallows exceptions of event callbacks; the Watch subclass
//   below asks for them (they keep the resourceVersion fresh, so reconnects rarely need a relist)
//   and refuses malformed events before they reach the cache, so they are logged, not dropped.
// - stop() during a list or a backoff delay could start a new watch afterwards; stopping is made
//   final by aborting every open request and clearing our retry timer.
// - It trusts the watch forever: an event lost on the way (a proxy dropping a line, a bug) would
//   leave the view wrong for good. Every resyncMs each resource is listed again and compared with
//   what was handled (by resourceVersion); differences go through the event path as one batch,
//   as Calico's and client-go's periodic resyncs do.
import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { KubeObject } from '../objects.js';
import { describeObject } from '../objects.js';
import {
  DatastoreEmitter, SyncLatch, defaultLog, realTimers,
  type ChangeCallback, type Datastore, type DatastoreBatch, type DatastoreHealth, type DatastoreLog, type ErrorCallback,
  type RejectedObject, type SourceHealth, type Timers,
} from '../datastore.js';
import { WATCHED_RESOURCES, type WatchedResource } from './resources.js';
import { KubeApiError, apiError, listResource, resourceName, resourcePath, type RawList } from './api.js';
import { convertApiObject, refOf, type ObjectRef } from './convert.js';
import { KubeEventRecorder, type EventReason, type EventRecorder } from './events.js';

/** First retry after an error, then doubling. */
export const INITIAL_BACKOFF_MS = 1_000;
/** Retries never wait longer than this (the library's own cap for clean closes). */
export const MAX_BACKOFF_MS = 30_000;
/** How often each resource is listed again and compared with the view (client-go's and Calico's
 * resyncs are minutes apart too): a lost watch event is repaired within this time. */
export const DEFAULT_RESYNC_MS = 10 * 60_000;
/** Event messages longer than this are cut (the API server refuses over 1 KiB). */
const EVENT_MESSAGE_MAX = 1000;

export interface KubernetesDatastoreOptions {
  readonly kubeConfig: KubeConfig;
  /** default: WATCHED_RESOURCES */
  readonly resources?: readonly WatchedResource[];
  /** where rejections are recorded as Events; default: a KubeEventRecorder; null: none */
  readonly events?: EventRecorder | null;
  readonly log?: DatastoreLog;
  readonly timers?: Timers;
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** period of the resync (list again, repair what the watch missed); default DEFAULT_RESYNC_MS;
   * 0: never */
  readonly resyncMs?: number;
}

type Pending = { op: 'upsert' | 'delete'; object: KubeObject };

const wellFormed = (obj: unknown): obj is KubernetesObject => {
  const meta = (obj as { metadata?: unknown } | null)?.metadata;
  return !!meta && typeof meta === 'object' && typeof (meta as { name?: unknown }).name === 'string';
};

/** The library's Watch, asking for bookmarks, keeping its requests to abort them on stop, and
 * handing malformed events to `malformed` instead of the cache. */
class DatastoreWatch extends Watch {
  private readonly open = new Set<AbortController>();
  closed = false;

  /** the last watch ended by the library's inactivity timeout (30 s without data): a quiet
   * resource, not a failure; its re-watch is not counted as a reconnect */
  quietTimeout = false;

  constructor(kc: KubeConfig, private readonly malformed: (type: string, obj: unknown) => void, private readonly opened: () => void) {
    super(kc);
  }

  override async watch(path: string, queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: any, watchObj?: any) => void, done: (err: any) => void): Promise<AbortController> {
    let ended = false; // done() can run before super.watch() returns (an HTTP error status)
    let controller: AbortController | undefined;
    controller = await super.watch(path, { ...queryParams, allowWatchBookmarks: true }, (phase, obj, raw) => {
      if ((phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') && !wellFormed(obj)) {
        this.malformed(phase, obj);
        return;
      }
      callback(phase, obj, raw);
    }, (err) => {
      ended = true;
      this.quietTimeout = (err as { name?: unknown } | null)?.name === 'TimeoutError';
      if (controller) this.open.delete(controller);
      done(err);
    });
    if (this.closed) controller.abort();
    else if (!ended) {
      this.open.add(controller); // the API server answered 200: the watch is open
      this.opened();
    }
    return controller;
  }

  close(): void {
    this.closed = true;
    for (const c of this.open) c.abort();
    this.open.clear();
  }
}

/** One watched resource: its ListWatch, its view (last valid version per object) and health. */
class ResourceWatch {
  readonly name: string;
  readonly informer: ListWatch<KubernetesObject>;
  private readonly watch: DatastoreWatch;
  /** "namespace/name" or "name" -> last valid version */
  readonly view = new Map<string, KubeObject>();
  synced = false;
  connected = false;
  lastError?: string;
  lists = 0;
  connects = 0;
  rejected = 0;
  resyncs = 0;
  resyncRepairs = 0;
  resyncFailures = 0;
  private failures = 0;
  private retry: unknown;
  private stopped = false;
  /** key -> resourceVersion of the last object handled, valid or rejected: what a resync compares
   * a list with (the view alone would make every rejected object look missing) */
  private readonly seen = new Map<string, string | undefined>();
  /** keys the watch changed while a resync's list was in flight: the list may predate them */
  private touched: Set<string> | null = null;
  private resyncTimer: unknown;

  constructor(readonly r: WatchedResource, private readonly ds: KubernetesDatastore, private readonly kc: KubeConfig) {
    this.name = resourceName(r);
    this.watch = new DatastoreWatch(kc, (type, obj) => this.guard(() => this.reject(obj, [`${type} event without metadata.name: not a Kubernetes object`])), () => {
      this.connected = true;
      this.lastError = undefined;
    });
    // on a clean close (the server ends a watch after its timeout) the library watches again at
    // once from the last resourceVersion; on 410 Gone it relists; errors come to failed()
    this.informer = new ListWatch<KubernetesObject>(resourcePath(r), this.watch, () => this.list(kc), false);
    this.informer.on('add', (o) => this.guard(() => this.upsert(o)));
    this.informer.on('update', (o) => this.guard(() => this.upsert(o)));
    this.informer.on('delete', (o) => this.guard(() => this.remove(o)));
    this.informer.on('connect', () => {
      if (!this.watch.quietTimeout) this.connects++;
      this.watch.quietTimeout = false;
    });
    this.informer.on('error', (err) => this.guard(() => this.failed(err)));
  }

  /** Callbacks run inside the library: an exception there would be lost or kill its loop. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.ds.log('error', `${this.name}: internal error handling an event: ${(err as Error).stack ?? String(err)}`);
    }
  }

  private async list(kc: KubeConfig): Promise<KubernetesListObject<KubernetesObject>> {
    const list = await listResource(kc, this.r);
    if (this.stopped) throw new KubeApiError('list', this.name, 0, 'stopped'); // no watch after stop()
    this.lists++;
    this.connected = true;
    this.failures = 0;
    this.lastError = undefined;
    // Items the library's cache cannot hold (no metadata.name) would throw inside it: refused here.
    const items: KubernetesObject[] = [];
    for (const item of list.items) {
      if (wellFormed(item)) items.push(item);
      else this.guard(() => this.reject(item, ['list item without metadata.name: not a Kubernetes object']));
    }
    // The library applies the list right after this resolves, synchronously; once that is done,
    // the resource has a complete view.
    setImmediate(() => {
      if (this.stopped) return;
      this.synced = true;
      this.ds.resourceListed();
    });
    return { metadata: { resourceVersion: list.metadata.resourceVersion }, items } as KubernetesListObject<KubernetesObject>;
  }

  /** Returns whether anything is delivered (an upsert, or a rejection). */
  private upsert(raw: KubernetesObject, fromWatch = true): boolean {
    if (fromWatch) { // the watch works (a resync's list says nothing of it, nor of its backoff)
      this.connected = true;
      this.failures = 0;
    }
    const ref = refOf(raw, this.r);
    this.handled(keyOf(ref), ref.resourceVersion);
    const c = convertApiObject(raw, this.r);
    if (!c.ok) {
      this.reject(raw, c.problems);
      return true;
    }
    const key = keyOf(c.ref);
    const had = this.view.get(key);
    // Most updates (pod conditions, managedFields) change nothing Weir reads: no batch for them.
    if (had && JSON.stringify(had) === JSON.stringify(c.object)) return false;
    this.view.set(key, c.object);
    this.ds.queue({ op: 'upsert', object: c.object });
    return true;
  }

  private remove(raw: KubernetesObject): void {
    this.removeKey(keyOf(refOf(raw, this.r)));
  }

  /** Returns whether a delete is delivered. */
  private removeKey(key: string): boolean {
    this.seen.delete(key);
    this.touched?.add(key);
    const had = this.view.get(key);
    if (!had) return false; // never valid: nothing to take back
    this.view.delete(key);
    this.ds.queue({ op: 'delete', object: had });
    return true;
  }

  private handled(key: string, resourceVersion: string | undefined): void {
    this.seen.set(key, resourceVersion);
    this.touched?.add(key);
  }

  private scheduleResync(): void {
    if (this.ds.resyncMs === 0 || this.stopped) return;
    this.resyncTimer = this.ds.timers.setTimeout(() => {
      this.resyncTimer = undefined;
      this.resync()
        .catch((err: unknown) => this.ds.log('error', `${this.name}: internal error in resync: ${(err as Error).stack ?? String(err)}`))
        .finally(() => this.scheduleResync());
    }, this.ds.resyncMs);
  }

  /** Lists the resource again and delivers, as one batch, what differs from what the watch gave:
   * objects missing or at another resourceVersion as upserts, objects no longer listed as deletes.
   * A failed list is logged and counted; the next period tries again. */
  async resync(): Promise<void> {
    if (this.stopped || !this.synced || this.touched) return; // not listed yet, or one in flight
    const touched = new Set<string>();
    this.touched = touched;
    let list: RawList;
    try {
      list = await listResource(this.kc, this.r);
    } catch (err) {
      if (this.stopped) return;
      this.resyncFailures++;
      const e = describeError(err, this.name);
      this.lastError = e.message;
      this.ds.log('warn', `${e.message}; resync ${this.name} again in ${this.ds.resyncMs} ms`);
      this.ds.failed(this, e);
      return;
    } finally {
      this.touched = null;
    }
    if (this.stopped) return;
    this.resyncs++;
    // What the watch changed during the list is newer than (or as new as) the list: left alone, the
    // next resync compares it. Everything else was unchanged throughout, so the list must match it.
    const listed = new Set<string>();
    let upserts = 0;
    let deletes = 0;
    for (const item of list.items) {
      if (!wellFormed(item)) continue; // no name: refused when listed or watched, nothing to compare
      const ref = refOf(item, this.r);
      const key = keyOf(ref);
      listed.add(key);
      if (touched.has(key) || (this.seen.has(key) && this.seen.get(key) === ref.resourceVersion)) continue;
      if (this.upsert(item, false)) upserts++;
    }
    for (const key of [...this.seen.keys()]) {
      if (listed.has(key) || touched.has(key)) continue;
      if (this.removeKey(key)) deletes++;
    }
    if (upserts + deletes === 0) return;
    this.resyncRepairs += upserts + deletes;
    this.ds.log('warn', `${this.name}: resync repaired ${upserts + deletes} object(s) the watch missed (${upserts} added or changed, ${deletes} deleted)`);
  }

  private reject(raw: unknown, problems: readonly string[]): void {
    this.rejected++;
    const ref = refOf(raw, this.r);
    const kept = this.view.has(keyOf(ref));
    this.ds.rejected(this, ref, problems, kept);
  }

  private failed(err: unknown): void {
    if (this.stopped) return;
    this.connected = false;
    const e = describeError(err, this.name);
    this.lastError = e.message;
    this.ds.failed(this, e);
    this.failures++;
    if (this.retry !== undefined) this.ds.timers.clearTimeout(this.retry); // one retry at a time
    const delay = Math.min(this.ds.initialBackoffMs * 2 ** (this.failures - 1), this.ds.maxBackoffMs);
    this.ds.log('warn', `${e.message}; retrying in ${delay} ms`);
    this.retry = this.ds.timers.setTimeout(() => {
      this.retry = undefined;
      if (this.stopped) return;
      // from the last resourceVersion: a watch resumes, or gets 410 and relists
      this.informer.start().catch((err2: unknown) => this.guard(() => this.failed(err2)));
    }, delay);
  }

  async start(): Promise<void> {
    this.scheduleResync(); // a resource not listed yet skips its resync
    await this.informer.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry !== undefined) this.ds.timers.clearTimeout(this.retry);
    if (this.resyncTimer !== undefined) this.ds.timers.clearTimeout(this.resyncTimer);
    await this.informer.stop();
    this.watch.close();
  }

  health(): SourceHealth {
    return {
      synced: this.synced, connected: this.connected, ...(this.lastError ? { lastError: this.lastError } : {}),
      relists: Math.max(0, this.lists - 1), reconnects: Math.max(0, this.connects - 1), rejected: this.rejected,
      resyncs: this.resyncs, resyncRepairs: this.resyncRepairs, resyncFailures: this.resyncFailures,
    };
  }
}

function keyOf(ref: ObjectRef): string {
  return ref.namespace ? `${ref.namespace}/${ref.name}` : ref.name;
}

/** The library's errors as ours: HTTP statuses of watches name the verb and resource. */
function describeError(err: unknown, resource: string): KubeApiError {
  if (err instanceof KubeApiError) return err;
  const e = err as { statusCode?: unknown; code?: unknown; message?: unknown; cause?: { message?: unknown } };
  const status = typeof e?.statusCode === 'number' ? e.statusCode : typeof e?.code === 'number' ? e.code : undefined;
  if (status !== undefined) return apiError('watch', resource, status);
  const cause = typeof e?.cause?.message === 'string' ? ` (${e.cause.message})` : '';
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  return new KubeApiError('watch', resource, 0, `cannot watch ${resource}: ${msg}${cause}`);
}

export class KubernetesDatastore implements Datastore {
  readonly timers: Timers;
  readonly log: DatastoreLog;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly resyncMs: number;
  private readonly watches: ResourceWatch[];
  private readonly emitter = new DatastoreEmitter();
  private readonly latch = new SyncLatch();
  private readonly events: EventRecorder | null;
  private pending = new Map<string, Pending>();
  private pendingRejected: RejectedObject[] = [];
  private flushScheduled = false;
  private started = false;
  private stopped = false;

  constructor(opts: KubernetesDatastoreOptions) {
    this.timers = opts.timers ?? realTimers;
    this.log = opts.log ?? defaultLog;
    this.initialBackoffMs = opts.initialBackoffMs ?? INITIAL_BACKOFF_MS;
    this.maxBackoffMs = opts.maxBackoffMs ?? MAX_BACKOFF_MS;
    this.resyncMs = opts.resyncMs ?? DEFAULT_RESYNC_MS;
    if (!Number.isFinite(this.resyncMs) || this.resyncMs < 0) {
      throw new Error(`KubernetesDatastore: resyncMs must be a number of milliseconds >= 0 (0: no resync), got ${opts.resyncMs}`);
    }
    this.events = opts.events === undefined ? new KubeEventRecorder(opts.kubeConfig, { log: this.log }) : opts.events;
    this.watches = (opts.resources ?? WATCHED_RESOURCES).map((r) => new ResourceWatch(r, this, opts.kubeConfig));
  }

  get synced(): boolean {
    return this.latch.done && !this.stopped;
  }

  whenSynced(): Promise<void> {
    return this.latch.promise;
  }

  async start(): Promise<void> {
    if (this.started) throw new Error('KubernetesDatastore: start() called twice');
    this.started = true;
    // Each resource lists, then watches; errors are retried by the resource itself.
    await Promise.all(this.watches.map((w) => w.start()));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.latch.reject(new Error('the datastore was stopped before it synced'));
    await Promise.all(this.watches.map((w) => w.stop()));
  }

  objects(): KubeObject[] {
    if (!this.latch.done) return [];
    return this.watches.flatMap((w) => [...w.view.values()]);
  }

  on(verb: 'change', cb: ChangeCallback): void;
  on(verb: 'error', cb: ErrorCallback): void;
  on(verb: 'change' | 'error', cb: ChangeCallback | ErrorCallback): void {
    this.emitter.on(verb, cb);
  }

  off(verb: 'change', cb: ChangeCallback): void;
  off(verb: 'error', cb: ErrorCallback): void;
  off(verb: 'change' | 'error', cb: ChangeCallback | ErrorCallback): void {
    this.emitter.off(verb, cb);
  }

  health(): DatastoreHealth {
    return { synced: this.synced, sources: Object.fromEntries(this.watches.map((w) => [w.name, w.health()])) };
  }

  // ---- called by the resources -------------------------------------------------------------------

  /** @internal */
  queue(p: Pending): void {
    if (!this.latch.done) return; // before sync the views are the state; the first batch is all of them
    this.pending.set(`${p.object.kind}|${describeObject(p.object)}`, p);
    this.scheduleFlush();
  }

  /** @internal */
  rejected(w: ResourceWatch, ref: ObjectRef, problems: readonly string[], kept: boolean): void {
    const name = `${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}`;
    const consequence = kept ? 'keeping its last valid version' : 'it is not enforced';
    this.log('warn', `skipped ${name} (${ref.apiVersion}, resourceVersion ${ref.resourceVersion ?? '?'}) from ${w.name}: ${problems.join('; ')}; ${consequence}`);
    this.pendingRejected.push({ kind: ref.kind, ...(ref.namespace ? { namespace: ref.namespace } : {}), name: ref.name, source: w.name, problems });
    if (this.latch.done) this.scheduleFlush();
    if (this.events && ref.name !== '(unnamed)') {
      const reason: EventReason = ref.kind === 'NetworkPolicy' || ref.kind === 'GlobalNetworkPolicy' ? 'InvalidPolicy' : 'InvalidObject';
      let message = `Weir skipped this object (${consequence}): ${problems.join('; ')}`;
      if (message.length > EVENT_MESSAGE_MAX) message = `${message.slice(0, EVENT_MESSAGE_MAX - 3)}...`;
      void this.events.warn(ref, reason, message);
    }
  }

  /** @internal */
  failed(_w: ResourceWatch, err: KubeApiError): void {
    this.emitter.emitError(err);
  }

  /** @internal */
  resourceListed(): void {
    if (this.latch.done || this.stopped) {
      this.scheduleFlush();
      return;
    }
    if (!this.watches.every((w) => w.synced)) return;
    // Every resource has its complete view: the first batch is all of it.
    const batch: DatastoreBatch = { upserts: this.objectsNow(), deletes: [], rejected: this.pendingRejected, initial: true };
    this.pendingRejected = [];
    this.pending.clear();
    this.latch.resolve();
    this.log('info', `synced: ${batch.upserts.length} objects from ${this.watches.length} resources`);
    this.emitter.emitChange(batch);
  }

  private objectsNow(): KubeObject[] {
    return this.watches.flatMap((w) => [...w.view.values()]);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // the end of this turn: a relist's callbacks all run in one turn, so it becomes one batch
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.stopped || !this.latch.done) return;
      const pending = [...this.pending.values()];
      const rejected = this.pendingRejected;
      this.pending = new Map();
      this.pendingRejected = [];
      if (pending.length === 0 && rejected.length === 0) return;
      this.emitter.emitChange({
        upserts: pending.filter((p) => p.op === 'upsert').map((p) => p.object),
        deletes: pending.filter((p) => p.op === 'delete').map((p) => p.object),
        rejected,
        initial: false,
      });
    });
  }
}
