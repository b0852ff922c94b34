// Keeps Weir's tc programs on exactly the node's pod interfaces (and the selected host-endpoint
// interfaces): desired = the local pods with addresses (setPods) and the host interfaces named in
// the options; actual = the attachments this reconciler made (or adopted), by ifindex + name.
// Each pass (resync) re-reads the node through InterfaceDiscovery and:
//   - attaches the pod programs to a pod's interface once it is found,
//   - detaches them when the pod goes (or its interface is no longer its own),
//   - re-attaches when the interface is re-created (a new ifindex, same or new name),
//   - repairs an attachment whose filters were removed behind its back.
// Passes run on `ip monitor` events (debounced), on a timer, and on setPods; one at a time.
// Safety: it attaches only to interfaces discovery placed (a veth of the style's names with
// address evidence) or to host interfaces named exactly; it detaches only filters at Weir's
// priority/handle that carry Weir's programs (same program id, or same name and tag: Weir's code
// loaded by an earlier process), and removes a clsact qdisc only if it created it and it is empty.
// A program of someone else at Weir's priority/handle is never replaced: the interface is refused.
import { BpfError, tcDestroyHook, tcDetach, tcQuery, type TcDirection } from '../libbpf.js';
import { PROGRAMS, TC_HANDLE, TC_PRIORITY, type Datapath } from '../datapath.js';
import { isAbsentError } from '../../lab/exec.js';
import { checkPods, podKey, type DiscoveryPod, type InterfaceDiscovery, type NotFoundReason, type PodInterface } from './discovery.js';
import { netnsPath, readLinks, readProgTag, readTcHook, type LinkInfo, type TcFilter } from './iproute.js';
import { nameMatches, type Evidence } from './styles.js';
import { LinkMonitor, type MonitorObject } from './monitor.js';

/** A full re-read of the node this often, whatever the monitor says. */
export const DEFAULT_RESYNC_INTERVAL_MS = 30_000;
/** Events within this window make one pass (a veth pair's creation is a burst of them). */
export const DEFAULT_EVENT_DEBOUNCE_MS = 100;

/** Why a pod or host interface is not attached: discovery's reasons, plus the reconciler's own. */
export type UnresolvedReason =
  | NotFoundReason
  | 'no-interface'      // a selected host interface does not exist
  | 'is-pod-interface'  // a selected host interface is a pod's veth (or has a pod interface's name)
  | 'foreign-program';  // another program sits at Weir's tc priority/handle there: never replaced

export interface Unresolved {
  readonly reason: UnresolvedReason;
  readonly detail: string;
}

export interface Placement {
  readonly ifindex: number;
  readonly ifname: string;
  readonly via: Evidence;
}

export interface AttachmentInfo {
  /** "namespace/name" for a pod, "host:<ifname>" for a host interface */
  readonly key: string;
  readonly kind: 'pod' | 'host';
  readonly ifindex: number;
  readonly ifname: string;
  /** the clsact qdisc was made by this attachment (and goes with it when empty) */
  readonly createdQdisc: boolean;
  readonly adopted: boolean;
}

export interface ReconcilerCounters {
  /** attachments made (re-attachments after a re-creation included) */
  attached: number;
  /** attachments removed by us (the pod went, or its interface stopped being its own) */
  detached: number;
  /** interfaces that vanished while attached (the kernel dropped the filters with them) */
  gone: number;
  /** a pod's (or host) interface found under a new ifindex, and attached there */
  recreated: number;
  /** Weir's programs found already attached to a pod's interface (an earlier process) */
  adopted: number;
  /** attachments found without their filters and re-attached */
  repaired: number;
  /** a pod or host interface entering the unresolved state, by reason */
  notFound: Record<UnresolvedReason, number>;
  /** failed operations (the next pass retries) */
  errors: number;
  resyncs: number;
  events: number;
  monitorRestarts: number;
}

export interface ReconcilerOptions {
  readonly discovery: InterfaceDiscovery;
  /** the installed datapath whose programs go on the interfaces */
  readonly datapath: Datapath;
  /** host-endpoint interfaces by exact name, for the host-device programs */
  readonly hostInterfaces?: readonly string[];
  readonly resyncIntervalMs?: number;
  readonly debounceMs?: number;
  /** after a pass that changed which pod sits behind which interface: the agent recompiles the
   * endpoint map with these ifindexes (anti-spoofing checks them). The pass waits for it, so it
   * must not wait for resync() itself (that pass runs after this one). */
  readonly onPlacementsChanged?: (pods: ReadonlyMap<string, Placement>, hosts: ReadonlyMap<string, number>) => void | Promise<void>;
  /** errors of passes nobody awaits (events, timer) */
  readonly onError?: (err: Error) => void;
}

interface Target { kind: 'pod' | 'host'; key: string; ifindex: number; ifname: string; via?: Evidence }
interface Held { kind: 'pod' | 'host'; key: string; ifindex: number; ifname: string; via?: Evidence; createdQdisc: boolean; adopted: boolean }
/** 'previous': an older Weir's program (pinned under our pin root before this install), replaced */
type Ownership = 'ours' | 'previous' | 'foreign' | 'none';

const DIRECTIONS: readonly TcDirection[] = ['ingress', 'egress'];
const OUR_PROGRAMS = {
  pod: { ingress: PROGRAMS.fromPod, egress: PROGRAMS.toPod },
  host: { ingress: PROGRAMS.fromHostDev, egress: PROGRAMS.toHostDev },
} as const;
const IFNAME = /^[^\s/:]{1,15}$/;

function isGone(err: unknown): boolean {
  return (err instanceof BpfError && (err.code === 'ENODEV' || err.code === 'ENOENT')) || isAbsentError(err);
}

function emptyReasons(): Record<UnresolvedReason, number> {
  return { 'no-ips': 0, 'no-evidence': 0, 'not-veth': 0, 'name-mismatch': 0, conflict: 0, shared: 0, 'no-interface': 0, 'is-pod-interface': 0, 'foreign-program': 0 };
}

export class PodInterfaceReconciler {
  private readonly discovery: InterfaceDiscovery;
  private readonly datapath: Datapath;
  private readonly hostInterfaces: readonly string[];
  private readonly resyncIntervalMs: number;
  private readonly debounceMs: number;
  private pods: DiscoveryPod[] = [];
  private readonly records = new Map<string, Held>();
  private unresolvedNow = new Map<string, Unresolved>();
  private readonly _counters: ReconcilerCounters = {
    attached: 0, detached: 0, gone: 0, recreated: 0, adopted: 0, repaired: 0, notFound: emptyReasons(), errors: 0, resyncs: 0, events: 0, monitorRestarts: 0,
  };
  private lastPlacements = '';
  private inflight: Promise<void> | undefined;
  private pending: Promise<void> | undefined;
  private monitor: LinkMonitor | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private intervalTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** our programs per kind and direction: id, and name/tag once known */
  private readonly ours: Record<'pod' | 'host', Record<TcDirection, { id: number; name?: string; tag?: string }>>;
  private tagsRead = false;

  constructor(private readonly opts: ReconcilerOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('PodInterfaceReconciler: options must be an object');
    if (!opts.discovery) throw new TypeError('discovery: required (an InterfaceDiscovery)');
    if (!opts.datapath) throw new TypeError('datapath: required (an installed Datapath)');
    this.discovery = opts.discovery;
    this.datapath = opts.datapath;
    const hosts = opts.hostInterfaces ?? [];
    if (!Array.isArray(hosts)) throw new TypeError(`hostInterfaces: expected an array of interface names, got ${JSON.stringify(hosts)}`);
    hosts.forEach((h, i) => {
      if (typeof h !== 'string' || !IFNAME.test(h)) throw new TypeError(`hostInterfaces[${i}]: ${JSON.stringify(h)} is not an interface name`);
    });
    this.hostInterfaces = [...new Set(hosts)];
    this.resyncIntervalMs = positive(opts.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS, 'resyncIntervalMs');
    this.debounceMs = nonNegative(opts.debounceMs ?? DEFAULT_EVENT_DEBOUNCE_MS, 'debounceMs');
    const id = (name: string): number => this.datapath.program(name as Parameters<Datapath['program']>[0]).id;
    this.ours = {
      pod: { ingress: { id: id(PROGRAMS.fromPod) }, egress: { id: id(PROGRAMS.toPod) } },
      host: { ingress: { id: id(PROGRAMS.fromHostDev) }, egress: { id: id(PROGRAMS.toHostDev) } },
    };
  }

  /** The desired pods (this node's, with their addresses). Takes effect on the next pass, which
   * it schedules when started. */
  setPods(pods: readonly DiscoveryPod[]): void {
    this.pods = checkPods(pods);
    if (this.monitor) this.schedule(0);
  }

  /** Starts watching (ip monitor + the periodic pass) and runs a first pass. */
  async start(): Promise<void> {
    if (this.monitor) return;
    this.stopped = false;
    const objects: MonitorObject[] = ['link', 'route'];
    if (this.discovery.style.evidence.includes('neighbour')) objects.push('neigh');
    this.monitor = new LinkMonitor({
      netns: this.discovery.netns,
      objects,
      onEvent: () => {
        this._counters.events++;
        this.schedule(this.debounceMs);
      },
      onExit: (why) => {
        this._counters.monitorRestarts++;
        this.opts.onError?.(new Error(`interface monitor: ${why}; restarting`));
      },
    });
    await this.monitor.start();
    this.intervalTimer = setInterval(() => this.schedule(0), this.resyncIntervalMs);
    this.intervalTimer.unref();
    await this.resync();
  }

  /** Stops watching and waits for a running pass. With detach, removes every attachment it holds
   * (an agent shutting down for good; a restart keeps them and adopts them again). Idempotent. */
  async stop(opts: { detach?: boolean } = {}): Promise<void> {
    this.stopped = true;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    if (this.intervalTimer) clearInterval(this.intervalTimer);
    this.debounceTimer = this.intervalTimer = undefined;
    const monitor = this.monitor;
    this.monitor = undefined;
    await monitor?.stop();
    await this.pending?.catch(() => undefined);
    await this.inflight?.catch(() => undefined);
    if (opts.detach) {
      let links: Map<number, LinkInfo>;
      try {
        links = await readLinks(this.discovery.netns);
      } catch (err) {
        if (!isAbsentError(err)) throw err;
        links = new Map(); // the node netns is gone, and every interface with it
      }
      for (const rec of [...this.records.values()]) {
        await this.release(rec, links);
        this.records.delete(rec.key);
      }
    }
  }

  /** One pass now (after the running one, if any); rejects with the pass's error. */
  resync(): Promise<void> {
    if (this.inflight) {
      this.pending ??= this.inflight.catch(() => undefined).then(() => {
        this.pending = undefined;
        return this.resync();
      });
      return this.pending;
    }
    this.inflight = this.pass().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  /** Pods attached now: key -> interface. */
  placements(): Map<string, Placement> {
    const out = new Map<string, Placement>();
    for (const r of this.records.values()) if (r.kind === 'pod') out.set(r.key, { ifindex: r.ifindex, ifname: r.ifname, via: r.via! });
    return out;
  }

  /** Host interfaces attached now: name -> ifindex (HostCompileOptions.interfaces). */
  hostPlacements(): Map<string, number> {
    const out = new Map<string, number>();
    for (const r of this.records.values()) if (r.kind === 'host') out.set(r.ifname, r.ifindex);
    return out;
  }

  attachments(): AttachmentInfo[] {
    return [...this.records.values()].map((r) => ({ key: r.key, kind: r.kind, ifindex: r.ifindex, ifname: r.ifname, createdQdisc: r.createdQdisc, adopted: r.adopted }));
  }

  /** Pods (and host interfaces) wanted but not attached after the last pass, with the reason. */
  unresolved(): Map<string, Unresolved> {
    return new Map(this.unresolvedNow);
  }

  counters(): ReconcilerCounters {
    return { ...this._counters, notFound: { ...this._counters.notFound } };
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.debounceTimer) return; // a pass is already due
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      this.resync().catch((err: Error) => {
        this._counters.errors++;
        this.opts.onError?.(err);
      });
    }, delayMs);
    this.debounceTimer.unref();
  }

  private async pass(): Promise<void> {
    this._counters.resyncs++;
    await this.readOurTags();
    const result = await this.discovery.discover(this.pods);
    const links = result.snapshot.links;
    const unresolved = new Map<string, Unresolved>(result.notFound);
    const targets = new Map<string, Target>();
    for (const [key, f] of result.found) targets.set(key, { kind: 'pod', key, ifindex: f.ifindex, ifname: f.ifname, via: f.via });
    this.hostTargets(result.found, links, targets, unresolved);

    // 1. attachments whose interface is no longer the one wanted: release them first, so a pod
    //    whose veth was re-created is never attached twice
    const moved = new Set<string>();
    for (const rec of [...this.records.values()]) {
      const t = targets.get(rec.key);
      if (t && t.ifindex === rec.ifindex) continue;
      try {
        await this.release(rec, links);
      } catch (err) {
        this._counters.errors++;
        this.opts.onError?.(err as Error);
      }
      this.records.delete(rec.key);
      if (t) moved.add(rec.key);
    }
    // 2. attach what is wanted and not attached; check what is
    for (const t of targets.values()) {
      try {
        const refusal = await this.ensure(t, moved.has(t.key));
        if (refusal) unresolved.set(t.key, refusal);
      } catch (err) {
        this._counters.errors++;
        if (!isGone(err)) this.opts.onError?.(err as Error);
        // gone between the read and the attach: the monitor's event brings the next pass
      }
    }
    for (const [key, u] of unresolved) {
      const before = this.unresolvedNow.get(key);
      if (!before || before.reason !== u.reason) this._counters.notFound[u.reason]++;
    }
    this.unresolvedNow = unresolved;
    await this.notify();
  }

  private hostTargets(pods: ReadonlyMap<string, PodInterface>, links: ReadonlyMap<number, LinkInfo>, targets: Map<string, Target>, unresolved: Map<string, Unresolved>): void {
    const podIfindexes = new Set([...pods.values()].map((p) => p.ifindex));
    const byName = new Map([...links.values()].map((l) => [l.ifname, l]));
    for (const name of this.hostInterfaces) {
      const key = `host:${name}`;
      const link = byName.get(name);
      if (!link) unresolved.set(key, { reason: 'no-interface', detail: `no interface ${name}` });
      else if (podIfindexes.has(link.ifindex) || nameMatches(this.discovery.style, name)) {
        unresolved.set(key, { reason: 'is-pod-interface', detail: `${name} is (or is named like) a pod interface of style ${this.discovery.style.name}` });
      } else targets.set(key, { kind: 'host', key, ifindex: link.ifindex, ifname: name });
    }
  }

  /** Attaches `t` unless our programs are there already; returns a refusal instead of touching a
   * hook where someone else's program holds Weir's priority/handle. */
  private async ensure(t: Target, recreated: boolean): Promise<Unresolved | undefined> {
    const netns = this.discovery.netns;
    const rec0 = this.records.get(t.key);
    // the steady state, checked in-process (two netlink queries, no command): our programs by id
    if (rec0 && DIRECTIONS.every((d) => this.queryId(t, d) === this.ours[t.kind][d].id)) {
      rec0.ifname = t.ifname; // a rename keeps the ifindex (and the filters)
      if (t.via) rec0.via = t.via;
      return undefined;
    }
    const hook = await readTcHook(netns, t.ifname);
    const own = DIRECTIONS.map((d) => this.ownership(t.kind, d, hook.filters));
    const rec = this.records.get(t.key);
    if (own.includes('foreign')) {
      if (rec) this.records.delete(t.key);
      const f = hook.filters.filter((x) => x.pref === TC_PRIORITY && x.handle === TC_HANDLE).map((x) => `${x.direction} ${x.prog ? `${x.prog.name}#${x.prog.id}` : 'non-bpf'}`);
      return { reason: 'foreign-program', detail: `${t.ifname}: ${f.join(', ')} at Weir's tc priority ${TC_PRIORITY} handle 0x${TC_HANDLE.toString(16)}` };
    }
    if (rec) {
      rec.ifname = t.ifname; // a rename keeps the ifindex (and the filters)
      if (t.via) rec.via = t.via;
      if (own.every((o) => o === 'ours')) return undefined;
      this.attach(t);
      if (!hook.clsact) rec.createdQdisc = true; // the qdisc went too: ours now
      this._counters.repaired++;
      return undefined;
    }
    if (own.every((o) => o === 'ours')) {
      this.records.set(t.key, { ...t, createdQdisc: false, adopted: true });
      this._counters.adopted++;
      return undefined;
    }
    this.attach(t);
    this.records.set(t.key, { ...t, createdQdisc: !hook.clsact, adopted: false });
    this._counters.attached++;
    if (recreated) this._counters.recreated++;
    return undefined;
  }

  private queryId(t: Target, direction: TcDirection): number | undefined {
    return tcQuery({ ifindex: t.ifindex, netns: netnsPath(this.discovery.netns), direction, priority: TC_PRIORITY, handle: TC_HANDLE })?.progId;
  }

  private attach(t: Target): void {
    const target = { ifindex: t.ifindex, netns: netnsPath(this.discovery.netns) };
    if (t.kind === 'pod') this.datapath.attachPod(target);
    else this.datapath.attachHostDevice(target);
  }

  private ownership(kind: 'pod' | 'host', direction: TcDirection, filters: readonly TcFilter[]): Ownership {
    const at = filters.filter((f) => f.direction === direction && f.pref === TC_PRIORITY && f.handle === TC_HANDLE);
    if (at.length === 0) return 'none';
    const mine = this.ours[kind][direction];
    const isOurs = (f: TcFilter): boolean =>
      f.prog !== undefined && (f.prog.id === mine.id || (mine.tag !== undefined && f.prog.tag === mine.tag && f.prog.name === mine.name));
    if (at.every(isOurs)) return 'ours';
    // an older agent's program (pins.ts: read before install re-pinned the names): ours to replace
    const previous = this.datapath.previousPrograms();
    const isPrevious = (f: TcFilter): boolean =>
      f.prog !== undefined && previous.some((p) => p.id === f.prog!.id || (p.tag !== undefined && p.tag === f.prog!.tag && p.name === f.prog!.name));
    return at.every((f) => isOurs(f) || isPrevious(f)) ? 'previous' : 'foreign';
  }

  /** Removes our filters from rec's interface (if it still exists) and the qdisc we made, if empty. */
  private async release(rec: Held, links: ReadonlyMap<number, LinkInfo>): Promise<void> {
    const link = links.get(rec.ifindex);
    if (!link) {
      this._counters.gone++;
      return;
    }
    const netns = this.discovery.netns;
    const ns = netnsPath(netns);
    try {
      const hook = await readTcHook(netns, link.ifname);
      for (const direction of DIRECTIONS) {
        if (this.ownership(rec.kind, direction, hook.filters) !== 'ours') continue;
        tcDetach({ ifindex: rec.ifindex, netns: ns, direction, priority: TC_PRIORITY, handle: TC_HANDLE });
      }
      if (rec.createdQdisc) {
        const after = await readTcHook(netns, link.ifname);
        if (after.clsact && after.filters.length === 0) tcDestroyHook({ ifindex: rec.ifindex, netns: ns });
      }
      this._counters.detached++;
    } catch (err) {
      if (!isGone(err)) throw err;
      this._counters.gone++;
    }
  }

  private async readOurTags(): Promise<void> {
    if (this.tagsRead) return;
    this.tagsRead = true;
    for (const kind of ['pod', 'host'] as const) {
      for (const d of DIRECTIONS) {
        const prog = this.datapath.program(OUR_PROGRAMS[kind][d]);
        const t = await readProgTag(this.ours[kind][d].id, { fd: prog.fd, name: prog.name });
        if (t) Object.assign(this.ours[kind][d], t);
      }
    }
  }

  private async notify(): Promise<void> {
    const pods = this.placements();
    const hosts = this.hostPlacements();
    const sig = JSON.stringify([[...pods].sort(), [...hosts].sort()]);
    if (sig === this.lastPlacements) return;
    this.lastPlacements = sig;
    if (!this.opts.onPlacementsChanged) return;
    try {
      await this.opts.onPlacementsChanged(pods, hosts);
    } catch (err) {
      this._counters.errors++;
      this.opts.onError?.(err as Error);
    }
  }
}

function positive(v: number, field: string): number {
  if (!Number.isFinite(v) || v <= 0) throw new TypeError(`${field}: expected a positive number of milliseconds, got ${JSON.stringify(v)}`);
  return v;
}

function nonNegative(v: number, field: string): number {
  if (!Number.isFinite(v) || v < 0) throw new TypeError(`${field}: expected a number of milliseconds >= 0, got ${JSON.stringify(v)}`);
  return v;
}

export { podKey };
