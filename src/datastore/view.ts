// The consumer of a Datastore: keeps the ClusterState the policy compiler works from. It holds two
// things: the datastore's view as delivered (`desired`) and the last set ClusterState accepted
// (`state`). Every batch updates `desired`, which is then checked whole by ClusterState; when it is
// refused (a pod whose namespace has not arrived yet: the watches of different resources are not
// ordered; two pods briefly showing one address) the last good state stays in force, and the next
// batch, which usually completes the picture, is tried again from `desired`, so nothing is lost.
// `compile` is called only once the datastore is synced, never on a partial view.
import { ClusterState, ClusterStateError } from './cluster.js';
import type { Datastore, DatastoreBatch, DatastoreLog, RejectedObject } from './datastore.js';
import { defaultLog } from './datastore.js';
import type { KubeObject } from './objects.js';
import { describeObject, objectKey } from './objects.js';

export interface ClusterViewOptions {
  /**
   * This node's name. A cluster has many Nodes; ClusterState holds one (the node being enforced),
   * so only this one goes in. Undefined: every Node (a lab or a host: one node).
   */
  readonly nodeName?: string;
  /** Called with the new state after each accepted change (the first: the whole synced view). */
  readonly compile?: (state: ClusterState, batch: DatastoreBatch) => void;
  readonly log?: DatastoreLog;
}

export interface ClusterViewStatus {
  /** synced and a state was accepted (the agent is ready) */
  readonly ready: boolean;
  /** why the current view is refused; empty when `state` is the view */
  readonly problems: readonly string[];
  /** objects the datastore refused since the start (malformed, unknown version, invalid) */
  readonly rejectedObjects: number;
  /** views ClusterState refused since the start (the last good set stayed) */
  readonly rejectedViews: number;
  readonly compiles: number;
  readonly lastCompileError?: string;
}

const idOf = (o: KubeObject): string => `${o.kind}|${objectKey(o)}`;

export class ClusterView {
  /** The last accepted set: what the compiler was last given. */
  state = new ClusterState();
  private readonly desired = new Map<string, KubeObject>();
  private ready = false;
  private problems: readonly string[] = [];
  private rejectedObjects = 0;
  private rejectedViews = 0;
  private compiles = 0;
  private lastCompileError?: string;
  private readonly log: DatastoreLog;
  private readonly onChange = (batch: DatastoreBatch): void => this.apply(batch);
  /** rejected objects of the last batch, for callers that surface them */
  lastRejected: readonly RejectedObject[] = [];

  constructor(private readonly ds: Datastore, private readonly opts: ClusterViewOptions = {}) {
    this.log = opts.log ?? defaultLog;
    ds.on('change', this.onChange);
  }

  close(): void {
    this.ds.off('change', this.onChange);
  }

  status(): ClusterViewStatus {
    return {
      ready: this.ready, problems: this.problems, rejectedObjects: this.rejectedObjects, rejectedViews: this.rejectedViews,
      compiles: this.compiles, ...(this.lastCompileError ? { lastCompileError: this.lastCompileError } : {}),
    };
  }

  private keep(o: KubeObject): boolean {
    return o.kind !== 'Node' || this.opts.nodeName === undefined || o.name === this.opts.nodeName;
  }

  private apply(batch: DatastoreBatch): void {
    this.rejectedObjects += batch.rejected.length;
    this.lastRejected = batch.rejected;
    if (batch.initial) this.desired.clear();
    for (const o of batch.deletes) this.desired.delete(idOf(o));
    for (const o of batch.upserts) if (this.keep(o)) this.desired.set(idOf(o), o);
    if (batch.upserts.length === 0 && batch.deletes.length === 0 && !batch.initial) return;
    let next: ClusterState;
    try {
      next = new ClusterState([...this.desired.values()]);
    } catch (err) {
      if (!(err instanceof ClusterStateError)) throw err;
      this.rejectedViews++;
      this.problems = err.problems;
      const changed = [...batch.upserts, ...batch.deletes].slice(0, 5).map(describeObject).join(', ');
      this.log('warn', `the view after changes to ${changed || 'nothing'} is inconsistent; ${this.ready ? 'enforcing the last good set' : 'not ready'}: ${err.problems.join('; ')}`);
      return;
    }
    this.state = next;
    this.problems = [];
    this.ready = true;
    if (!this.opts.compile) return;
    try {
      this.compiles++;
      this.opts.compile(next, batch);
      this.lastCompileError = undefined;
    } catch (err) {
      this.lastCompileError = (err as Error).message;
      this.log('error', `compiling the view failed: ${(err as Error).message}`);
    }
  }
}
