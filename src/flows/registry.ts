// Who held an address, and when. Every pod, host endpoint and node address is kept as a history of
// intervals [from, to) per IP, so a flow record is attributed to whoever had the address when the
// packet flowed, even if the address was given to another pod seconds later. Times are wall-clock
// UTC ms (what RecordClock makes of a record's ts_ns). History older than the retention window is
// dropped by expire(), so memory stays bounded by the endpoints alive plus those of the window.
//
// Per address, pod holders come before host holders: a pod address is never a node's; the node's
// own addresses and the expectedIPs of host endpoints name hosts. What neither names is the world,
// named by the longest configured CIDR containing it.
import { canonicalIp } from '../datapath/abi.js';
import { parseCidr, parseIp } from '../datastore/cidr.js';
import type { Labels } from '../datastore/objects.js';

/** Default retention of closed intervals: longer than any record waits in the ring buffer and the
 * queues, so late records still find who held the address. */
export const DEFAULT_RETENTION_MS = 10 * 60_000;

export interface OwnerReference {
  readonly kind: string;
  readonly name: string;
  /** the managing controller (Kubernetes sets it on the one controller reference) */
  readonly controller?: boolean;
}

/** A pod as the registry needs it. Fields beyond datastore's Pod are optional: the datastore does
 * not carry them yet (node, service account, owner references, host network). */
export interface PodInput {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Labels;
  readonly ips: readonly string[];
  readonly node?: string;
  readonly serviceAccount?: string;
  readonly ownerReferences?: readonly OwnerReference[];
  /** hostNetwork pods use the node's addresses: they are not registered by address */
  readonly hostNetwork?: boolean;
  /** when it got its addresses (status.startTime or creation), for pods first seen after they
   * started, e.g. the agent's initial list: records made before the agent saw the pod still find it */
  readonly since?: number;
}

export interface HostEndpointInput {
  readonly name: string;
  readonly node: string;
  readonly labels: Labels;
  readonly expectedIPs: readonly string[];
  /** an interface name or "*" (every interface of the node) */
  readonly interfaceName?: string;
}

export interface WorldName {
  readonly cidr: string;
  readonly name: string;
}

/** One version of an endpoint: immutable; a change of any field makes a new one. */
export interface EndpointRecord {
  /** unique per version, never reused: the aggregation key of the endpoint */
  readonly serial: number;
  readonly kind: 'pod' | 'host';
  readonly namespace: string;
  readonly pod: string;
  readonly labels: Labels;
  readonly workloadKind: string;
  readonly workload: string;
  readonly serviceAccount: string;
  readonly node: string;
  readonly hostEndpoint: string;
}

interface Interval {
  from: number;
  to: number; // Infinity while held
  /** who holds it: `pod:ns/name`, `node:name`, `hep:name` */
  readonly holder: string;
  readonly rec: EndpointRecord;
}

interface PodEntry {
  input: PodInput;
  rec: EndpointRecord;
  ips: string[];
}

interface WorldCidr {
  readonly network: bigint;
  readonly prefix: number; // in the 128-bit (IPv4-mapped) space
  readonly name: string;
}

export interface RegistryOptions {
  /** this node's name: its addresses and the records' HOST identity are named after it */
  readonly node?: string;
  readonly retentionMs?: number;
  readonly worldNames?: readonly WorldName[];
}

const WORLD_CACHE_MAX = 65_536;
const V4_MAPPED = 0xffffn << 32n;
/** Kubernetes' safe encoding alphabet of generated name suffixes (rand.SafeEncodeString). */
const RS_HASH = /^(.+)-[bcdfghjklmnpqrstvwxz2456789]{5,10}$/;
/** A CronJob names its Jobs `<cronjob>-<scheduled time in minutes since the epoch>`. */
const CRONJOB_JOB = /^(.+)-\d{8,}$/;

/** Addresses as records carry them (re-exported: the registry's keys are in this form). */
export { canonicalIp };

function ipValue128(ip: string): bigint | undefined {
  const p = parseIp(ip);
  if (!p) return undefined;
  return p.family === 4 ? V4_MAPPED | p.value : p.value;
}

const sameLabels = (a: Labels, b: Labels): boolean => {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (a[k] !== b[k]) return false;
  return true;
};

const sameRecord = (a: EndpointRecord, b: Omit<EndpointRecord, 'serial'>): boolean =>
  a.kind === b.kind && a.namespace === b.namespace && a.pod === b.pod && a.workloadKind === b.workloadKind
  && a.workload === b.workload && a.serviceAccount === b.serviceAccount && a.node === b.node
  && a.hostEndpoint === b.hostEndpoint && sameLabels(a.labels, b.labels);

export class EndpointRegistry {
  readonly node: string;
  private readonly retentionMs: number;
  private serial = 0;
  private readonly podHistory = new Map<string, Interval[]>();
  private readonly hostHistory = new Map<string, Interval[]>();
  private readonly pods = new Map<string, PodEntry>();
  private readonly namespaces = new Map<string, Labels>();
  private readonly hostEndpoints = new Map<string, HostEndpointInput>();
  private nodeIps: string[] = [];
  /** holder key -> the addresses it holds now, for hosts (node addresses, host endpoints) */
  private readonly hostHolds = new Map<string, { ips: string[]; rec: EndpointRecord }>();
  /** `ReplicaSet/ns/name` or `Job/ns/name` -> its controller (null: known to have none) */
  private readonly owners = new Map<string, OwnerReference | null>();
  private world: WorldCidr[] = [];
  private worldCache = new Map<string, string>();
  private readonly hostRecord: EndpointRecord;

  constructor(opts: RegistryOptions = {}) {
    this.node = opts.node ?? '';
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.hostRecord = this.newRecord({ kind: 'host', namespace: '', pod: '', labels: {}, workloadKind: '', workload: '', serviceAccount: '', node: this.node, hostEndpoint: '' });
    if (opts.worldNames) this.setWorldNames(opts.worldNames);
  }

  private newRecord(r: Omit<EndpointRecord, 'serial'>): EndpointRecord {
    // rows share these objects (labels included): frozen, so no consumer can change history
    return Object.freeze({ ...r, labels: Object.freeze({ ...r.labels }), serial: ++this.serial });
  }

  // ---- pods ------------------------------------------------------------------------------------

  /** A pod was added or changed at `atMs`. A change of labels, owner, node or service account
   * starts a new version from `atMs`; records before keep the old one. */
  upsertPod(pod: PodInput, atMs: number): void {
    const key = `${pod.namespace}/${pod.name}`;
    const prev = this.pods.get(key);
    const [workloadKind, workload] = this.workloadOf(pod);
    const fields = {
      kind: 'pod' as const, namespace: pod.namespace, pod: pod.name, labels: { ...pod.labels }, workloadKind, workload,
      serviceAccount: pod.serviceAccount ?? '', node: pod.node ?? '', hostEndpoint: '',
    };
    const rec = prev && sameRecord(prev.rec, fields) ? prev.rec : this.newRecord(fields);
    const ips = pod.hostNetwork ? [] : [...new Set(pod.ips.map(canonicalIp))];
    const holder = `pod:${key}`;
    const from = prev ? atMs : Math.min(atMs, pod.since ?? atMs);
    if (prev) for (const ip of prev.ips) if (!ips.includes(ip)) release(this.podHistory, ip, holder, atMs);
    for (const ip of ips) {
      if (prev && prev.rec === rec && prev.ips.includes(ip)) continue;
      hold(this.podHistory, ip, holder, rec, prev?.ips.includes(ip) ? atMs : from);
    }
    this.pods.set(key, { input: pod, rec, ips });
  }

  deletePod(namespace: string, name: string, atMs: number): void {
    const key = `${namespace}/${name}`;
    const prev = this.pods.get(key);
    if (!prev) return;
    for (const ip of prev.ips) release(this.podHistory, ip, `pod:${key}`, atMs);
    this.pods.delete(key);
  }

  upsertNamespace(name: string, labels: Labels): void {
    this.namespaces.set(name, { ...labels });
  }

  deleteNamespace(name: string): void {
    this.namespaces.delete(name);
  }

  namespaceLabels(name: string): Labels | undefined {
    return this.namespaces.get(name);
  }

  /** The controller of a ReplicaSet or Job (null: it has none), for owner resolution better than
   * the naming convention. Pods already known are resolved again from `atMs`. */
  setOwner(kind: 'ReplicaSet' | 'Job', namespace: string, name: string, owner: OwnerReference | null, atMs: number): void {
    const k = `${kind}/${namespace}/${name}`;
    const had = this.owners.get(k);
    if (had === owner || (had && owner && had.kind === owner.kind && had.name === owner.name)) return;
    this.owners.set(k, owner);
    for (const p of [...this.pods.values()]) {
      const ref = controllerOf(p.input.ownerReferences);
      if (p.input.namespace === namespace && ref?.kind === kind && ref.name === name) this.upsertPod(p.input, atMs);
    }
  }

  deleteOwner(kind: 'ReplicaSet' | 'Job', namespace: string, name: string): void {
    this.owners.delete(`${kind}/${namespace}/${name}`);
  }

  /** [workloadKind, workload]: ReplicaSet -> Deployment, Job -> CronJob, by the known owner of
   * the ReplicaSet or Job, else by Kubernetes' naming convention. */
  workloadOf(pod: Pick<PodInput, 'namespace' | 'labels' | 'ownerReferences'>): [string, string] {
    const ref = controllerOf(pod.ownerReferences);
    if (!ref) return ['', ''];
    if (ref.kind === 'ReplicaSet') {
      const known = this.owners.get(`ReplicaSet/${pod.namespace}/${ref.name}`);
      if (known !== undefined) return known ? [known.kind, known.name] : ['ReplicaSet', ref.name];
      // a Deployment names its ReplicaSets `<deployment>-<pod-template-hash>`
      const hash = pod.labels['pod-template-hash'];
      if (hash && ref.name.endsWith(`-${hash}`) && ref.name.length > hash.length + 1) return ['Deployment', ref.name.slice(0, -hash.length - 1)];
      const m = RS_HASH.exec(ref.name);
      return m ? ['Deployment', m[1]!] : ['ReplicaSet', ref.name];
    }
    if (ref.kind === 'Job') {
      const known = this.owners.get(`Job/${pod.namespace}/${ref.name}`);
      if (known !== undefined) return known ? [known.kind, known.name] : ['Job', ref.name];
      const m = CRONJOB_JOB.exec(ref.name);
      return m ? ['CronJob', m[1]!] : ['Job', ref.name];
    }
    return [ref.kind, ref.name];
  }

  // ---- hosts -----------------------------------------------------------------------------------

  /** This node's own addresses (they carry the HOST identity in the datapath). */
  setNodeAddresses(ips: readonly string[], atMs: number): void {
    this.nodeIps = [...new Set(ips.map(canonicalIp))];
    this.refreshHosts(atMs);
  }

  upsertHostEndpoint(h: HostEndpointInput, atMs: number): void {
    this.hostEndpoints.set(h.name, { ...h, expectedIPs: h.expectedIPs.map(canonicalIp) });
    this.refreshHosts(atMs);
  }

  deleteHostEndpoint(name: string, atMs: number): void {
    if (this.hostEndpoints.delete(name)) this.refreshHosts(atMs);
  }

  /** The host endpoint naming `ip` of `node`: one listing the address, else the node's "*" one. */
  private hostEndpointFor(node: string, ip: string | undefined): HostEndpointInput | undefined {
    let all: HostEndpointInput | undefined;
    for (const h of [...this.hostEndpoints.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (h.node !== node) continue;
      if (ip && h.expectedIPs.includes(ip)) return h;
      if (h.interfaceName === '*' && !all) all = h;
    }
    return all;
  }

  /** Recomputes who holds each host address; only changes make new intervals. */
  private refreshHosts(atMs: number): void {
    const want = new Map<string, { ips: string[]; rec: Omit<EndpointRecord, 'serial'> }>();
    const hostRec = (node: string, h: HostEndpointInput | undefined): Omit<EndpointRecord, 'serial'> => ({
      kind: 'host', namespace: '', pod: '', labels: h ? { ...h.labels } : {}, workloadKind: '', workload: '', serviceAccount: '', node, hostEndpoint: h?.name ?? '',
    });
    for (const ip of this.nodeIps) {
      const h = this.hostEndpointFor(this.node, ip);
      const key = `node:${this.node}|${h?.name ?? ''}`;
      const w = want.get(key) ?? { ips: [], rec: hostRec(this.node, h) };
      w.ips.push(ip);
      want.set(key, w);
    }
    for (const h of this.hostEndpoints.values()) {
      for (const ip of h.expectedIPs) {
        if (h.node === this.node && this.nodeIps.includes(ip)) continue; // named above
        const key = `hep:${h.name}`;
        const w = want.get(key) ?? { ips: [], rec: hostRec(h.node, h) };
        w.ips.push(ip);
        want.set(key, w);
      }
    }
    for (const [key, had] of this.hostHolds) {
      const w = want.get(key);
      for (const ip of had.ips) if (!w || !w.ips.includes(ip) || !sameRecord(had.rec, w.rec)) release(this.hostHistory, ip, key, atMs);
      if (!w) this.hostHolds.delete(key);
    }
    for (const [key, w] of want) {
      const had = this.hostHolds.get(key);
      const rec = had && sameRecord(had.rec, w.rec) ? had.rec : this.newRecord(w.rec);
      for (const ip of w.ips) if (!had || had.rec !== rec || !had.ips.includes(ip)) hold(this.hostHistory, ip, key, rec, atMs);
      this.hostHolds.set(key, { ips: w.ips, rec });
    }
  }

  /** The node itself, for records whose identity is HOST but whose address the registry does
   * not know (yet). */
  get host(): EndpointRecord {
    return this.hostRecord;
  }

  // ---- world -----------------------------------------------------------------------------------

  /** CIDR -> name mappings for the world; the longest prefix containing an address names it. */
  setWorldNames(list: readonly WorldName[]): void {
    const out: WorldCidr[] = [];
    for (const { cidr, name } of list) {
      const c = parseCidr(cidr);
      if (!c) throw new TypeError(`world name "${name}": "${cidr}" is not a CIDR`);
      out.push(c.family === 4 ? { network: V4_MAPPED | c.network, prefix: c.prefix + 96, name } : { network: c.network, prefix: c.prefix, name });
    }
    this.world = out.sort((a, b) => b.prefix - a.prefix);
    this.worldCache = new Map();
  }

  worldName(ip: string): string {
    if (this.world.length === 0) return '';
    const cached = this.worldCache.get(ip);
    if (cached !== undefined) return cached;
    const v = ipValue128(ip);
    let name = '';
    if (v !== undefined) {
      for (const c of this.world) {
        const shift = BigInt(128 - c.prefix);
        if ((v >> shift) === (c.network >> shift)) {
          name = c.name;
          break;
        }
      }
    }
    if (this.worldCache.size >= WORLD_CACHE_MAX) this.worldCache.clear();
    this.worldCache.set(ip, name);
    return name;
  }

  // ---- lookups ---------------------------------------------------------------------------------

  /** Who held `ip` (as records write it: dotted IPv4, compressed IPv6) at `atMs`. */
  lookup(ip: string, atMs: number): EndpointRecord | undefined {
    return find(this.podHistory.get(ip), atMs) ?? find(this.hostHistory.get(ip), atMs);
  }

  /** Drops intervals that ended before `nowMs - retention`. */
  expire(nowMs: number): number {
    const cutoff = nowMs - this.retentionMs;
    let dropped = 0;
    for (const hist of [this.podHistory, this.hostHistory]) {
      for (const [ip, list] of hist) {
        let n = 0;
        while (n < list.length && list[n]!.to < cutoff) n++;
        if (n === 0) continue;
        dropped += n;
        if (n === list.length) hist.delete(ip);
        else list.splice(0, n);
      }
    }
    return dropped;
  }

  stats(): { pods: number; addresses: number; intervals: number } {
    let intervals = 0;
    for (const l of this.podHistory.values()) intervals += l.length;
    for (const l of this.hostHistory.values()) intervals += l.length;
    return { pods: this.pods.size, addresses: this.podHistory.size + this.hostHistory.size, intervals };
  }
}

function controllerOf(refs: readonly OwnerReference[] | undefined): OwnerReference | undefined {
  if (!refs || refs.length === 0) return undefined;
  return refs.find((r) => r.controller) ?? refs[0];
}

/** `holder` holds `ip` from `at` on. Intervals of an address never overlap: an open one of another
 * holder ends at `at`; a new one starts no earlier than the previous one ended. */
function hold(hist: Map<string, Interval[]>, ip: string, holder: string, rec: EndpointRecord, at: number): void {
  let list = hist.get(ip);
  if (!list) {
    list = [];
    hist.set(ip, list);
  }
  let from = at;
  const last = list[list.length - 1];
  if (last) {
    if (last.to === Infinity) last.to = Math.max(at, last.from);
    from = Math.max(from, last.to);
    // a zero-length interval (changed again at the same instant) is replaced
    if (last.to === last.from) list.pop();
  }
  list.push({ from, to: Infinity, holder, rec });
}

function release(hist: Map<string, Interval[]>, ip: string, holder: string, at: number): void {
  const list = hist.get(ip);
  const last = list?.[list.length - 1];
  if (!list || !last || last.holder !== holder || last.to !== Infinity) return;
  last.to = Math.max(at, last.from);
  if (last.to === last.from) list.pop();
  if (list.length === 0) hist.delete(ip);
}

function find(list: Interval[] | undefined, at: number): EndpointRecord | undefined {
  if (!list) return undefined;
  // newest first: records are mostly recent
  for (let i = list.length - 1; i >= 0; i--) {
    const iv = list[i]!;
    if (at >= iv.from) return at < iv.to ? iv.rec : undefined;
  }
  return undefined;
}
