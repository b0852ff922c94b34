// Pod address -> host-side interface. Given the node's local pods (name, namespace, addresses) and
// the CNI style, finds the one veth each pod sits behind, from evidence the node holds:
//   route      a /32 or /128 host route "ADDR dev IF" (Calico, Cilium endpoint routes, kindnet)
//   neighbour  a bridge's neighbour entry ADDR -> MAC, and the bridge FDB MAC -> port (Flannel,
//              the bridge plugin): the port is the pod's veth
//   peer       the veth's peer netns (link-netnsid -> a netns named under /run/netns) holds ADDR
//              on the peer interface (link_index): works for any veth CNI, costs one `ip addr`
//              per candidate netns, so it runs only for pods the others did not place
// An interface is a pod's only if it is a veth, its name fits the style (prefix, not excluded)
// and the evidence is unambiguous (one interface per pod, one pod per interface); anything else
// is refused with a reason, so nothing that is not a pod is ever handed to the reconciler.
import { canonicalIp } from '../abi.js';
import { checkNetnsName, readAddresses, readSnapshot, type LinkInfo, type NetnsName, type NodeSnapshot } from './iproute.js';
import { nameMatches, resolveStyle, type CniStyle, type CniStyleInput, type Evidence } from './styles.js';

/** A local pod as discovery needs it (a datastore Pod fits). */
export interface DiscoveryPod {
  readonly namespace: string;
  readonly name: string;
  readonly ips: readonly string[];
  /** the pod's netns name under /run/netns, when the caller knows it (CRI: cni-<uuid>) */
  readonly netns?: string;
}

export interface PodInterface {
  readonly ifindex: number;
  readonly ifname: string;
  /** the evidence that placed the pod */
  readonly via: Evidence;
}

export type NotFoundReason =
  | 'no-ips'            // the pod has no address yet
  | 'no-evidence'       // no route, neighbour/FDB entry or peer address names any of its addresses
  | 'not-veth'          // the evidence points at a device that is not a veth (a bridge, a dummy, a tunnel)
  | 'name-mismatch'     // ... at a veth whose name does not fit the CNI style
  | 'conflict'          // its addresses point at different interfaces
  | 'shared';           // another pod's addresses point at the same interface

export interface NotFound {
  readonly reason: NotFoundReason;
  /** what was seen, for logs: "10.0.0.5 -> route dev cni0 (bridge)" */
  readonly detail: string;
}

export interface DiscoveryResult {
  /** pod key "namespace/name" -> its interface */
  readonly found: ReadonlyMap<string, PodInterface>;
  readonly notFound: ReadonlyMap<string, NotFound>;
  /** the snapshot the answer came from (links by ifindex, for the reconciler's bookkeeping) */
  readonly snapshot: NodeSnapshot;
}

export interface InterfaceDiscoveryOptions {
  /** the node's netns by name under /run/netns; undefined = this process's (a real node) */
  readonly netns?: string;
  /** a preset name ('calico', 'cilium', 'flannel', 'bridge', 'kindnet', 'auto') or a custom style */
  readonly style: CniStyleInput;
}

/** `ip addr` commands in flight at once when reading pod netns (the peer method). */
export const PEER_READ_CONCURRENCY = 8;

export const podKey = (p: Pick<DiscoveryPod, 'namespace' | 'name'>): string => `${p.namespace}/${p.name}`;

interface Claim { ifindex: number; via: Evidence; ip: string }

export class InterfaceDiscovery {
  readonly netns: NetnsName;
  readonly style: CniStyle;

  constructor(opts: InterfaceDiscoveryOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('InterfaceDiscovery: options must be an object');
    checkNetnsName(opts.netns, 'netns');
    this.netns = opts.netns;
    this.style = resolveStyle(opts.style, 'style');
  }

  /** Reads the node once and places every pod. */
  async discover(pods: readonly DiscoveryPod[]): Promise<DiscoveryResult> {
    const checked = checkPods(pods);
    const uses = (e: Evidence): boolean => this.style.evidence.includes(e);
    const snapshot = await readSnapshot(this.netns, { bridges: this.style.bridges, neighbours: uses('neighbour') });
    const claims = new Map<string, Claim[]>();
    for (const p of checked) claims.set(podKey(p), []);

    if (uses('route')) this.byRoutes(snapshot, checked, claims);
    if (uses('neighbour')) this.byNeighbours(snapshot, checked, claims);
    if (uses('peer')) {
      // only for pods nothing else placed: it is the costly method (one `ip addr` per netns)
      const unplaced = checked.filter((p) => claims.get(podKey(p))!.length === 0);
      if (unplaced.length > 0) await this.byPeers(snapshot, unplaced, claims);
    }
    return { ...judge(this.style, snapshot, checked, claims), snapshot };
  }

  private byRoutes(s: NodeSnapshot, pods: readonly DiscoveryPod[], claims: Map<string, Claim[]>): void {
    const byName = linksByName(s);
    const routes = new Map<string, number[]>();
    for (const r of s.hostRoutes) {
      const link = byName.get(r.dev);
      if (link) routes.set(r.ip, [...(routes.get(r.ip) ?? []), link.ifindex]);
    }
    for (const p of pods) {
      for (const ip of p.ips) {
        for (const ifindex of routes.get(ip) ?? []) claims.get(podKey(p))!.push({ ifindex, via: 'route', ip });
      }
    }
  }

  private byNeighbours(s: NodeSnapshot, pods: readonly DiscoveryPod[], claims: Map<string, Claim[]>): void {
    const byName = linksByName(s);
    const isBridge = (dev: string): boolean => {
      const l = byName.get(dev);
      return l !== undefined && l.kind === 'bridge' && (this.style.bridges === undefined || this.style.bridges.includes(dev));
    };
    // learned entries only: a "permanent" entry on a port is the port's own MAC (its host side),
    // a "self" entry is the device's own table, not the bridge's
    const ports = new Map<string, string[]>();
    for (const f of s.fdb) {
      if (!f.master || !isBridge(f.master) || f.state === 'permanent' || f.flags.includes('self')) continue;
      const k = `${f.master}|${f.mac}`;
      ports.set(k, [...(ports.get(k) ?? []), f.ifname]);
    }
    const neigh = new Map<string, Array<{ dev: string; lladdr: string }>>();
    for (const n of s.neighbours) {
      if (!isBridge(n.dev)) continue;
      neigh.set(n.ip, [...(neigh.get(n.ip) ?? []), { dev: n.dev, lladdr: n.lladdr }]);
    }
    for (const p of pods) {
      for (const ip of p.ips) {
        for (const n of neigh.get(ip) ?? []) {
          for (const port of ports.get(`${n.dev}|${n.lladdr}`) ?? []) {
            const link = byName.get(port);
            if (link) claims.get(podKey(p))!.push({ ifindex: link.ifindex, via: 'neighbour', ip });
          }
        }
      }
    }
  }

  private async byPeers(s: NodeSnapshot, pods: readonly DiscoveryPod[], claims: Map<string, Claim[]>): Promise<void> {
    // candidate veths: the style's names with a peer in a named netns
    const candidates = [...s.links.values()].filter((l) => l.kind === 'veth' && nameMatches(this.style, l.ifname) && l.peerNetnsId !== undefined);
    const wanted = new Map<string, DiscoveryPod>();
    for (const p of pods) for (const ip of p.ips) wanted.set(ip, p);
    const netnsOf = (l: LinkInfo): string | undefined => s.netnsIds.get(l.peerNetnsId!);
    const hinted = new Set(pods.map((p) => p.netns).filter((n): n is string => n !== undefined));
    const names = new Set(candidates.map(netnsOf).filter((n): n is string => n !== undefined));
    // a pod's known netns first; without hints, every candidate's netns
    const toRead = hinted.size > 0 ? [...names].filter((n) => hinted.has(n)) : [...names];
    const addrs = new Map<string, Map<number, string[]>>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < toRead.length) {
        const ns = toRead[next++]!;
        try {
          addrs.set(ns, await readAddresses(ns));
        } catch { /* the netns went between the two reads: no evidence from it */ }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PEER_READ_CONCURRENCY, toRead.length) }, worker));
    for (const l of candidates) {
      const ns = netnsOf(l);
      const peerAddrs = ns ? addrs.get(ns)?.get(l.peerIfindex!) : undefined;
      for (const ip of peerAddrs ?? []) {
        const p = wanted.get(ip);
        if (p && (p.netns === undefined || p.netns === ns)) claims.get(podKey(p))!.push({ ifindex: l.ifindex, via: 'peer', ip });
      }
    }
  }
}

function linksByName(s: NodeSnapshot): Map<string, LinkInfo> {
  return new Map([...s.links.values()].map((l) => [l.ifname, l]));
}

function describeLink(l: LinkInfo | undefined, ifindex: number): string {
  return l ? `${l.ifname} (${l.kind || 'no kind'}, ifindex ${ifindex})` : `ifindex ${ifindex} (gone)`;
}

/** From the claims to one interface per pod, refusing what does not look like a pod's veth. */
function judge(style: CniStyle, s: NodeSnapshot, pods: readonly DiscoveryPod[], claims: ReadonlyMap<string, Claim[]>):
  { found: Map<string, PodInterface>; notFound: Map<string, NotFound> } {
  const found = new Map<string, PodInterface>();
  const notFound = new Map<string, NotFound>();
  for (const p of pods) {
    const key = podKey(p);
    if (p.ips.length === 0) {
      notFound.set(key, { reason: 'no-ips', detail: 'the pod has no address' });
      continue;
    }
    const cs = claims.get(key)!;
    if (cs.length === 0) {
      notFound.set(key, { reason: 'no-evidence', detail: `no ${style.evidence.join('/')} evidence for ${p.ips.join(', ')}` });
      continue;
    }
    const ifindexes = [...new Set(cs.map((c) => c.ifindex))];
    const seen = cs.map((c) => `${c.ip} -> ${c.via} ${describeLink(s.links.get(c.ifindex), c.ifindex)}`).join('; ');
    if (ifindexes.length > 1) {
      notFound.set(key, { reason: 'conflict', detail: seen });
      continue;
    }
    const link = s.links.get(ifindexes[0]!);
    if (!link || link.kind !== 'veth') {
      notFound.set(key, { reason: 'not-veth', detail: seen });
      continue;
    }
    if (!nameMatches(style, link.ifname)) {
      notFound.set(key, { reason: 'name-mismatch', detail: `${seen}; style ${style.name} takes ${style.prefixes.map((x) => x + '*').join(', ')}` });
      continue;
    }
    // the most trusted evidence names it (style.evidence order)
    const via = style.evidence.find((e) => cs.some((c) => c.via === e))!;
    found.set(key, { ifindex: link.ifindex, ifname: link.ifname, via });
  }
  // one pod per interface: two pods claiming one veth means the evidence is stale or wrong
  const owners = new Map<number, string[]>();
  for (const [key, f] of found) owners.set(f.ifindex, [...(owners.get(f.ifindex) ?? []), key]);
  for (const [ifindex, keys] of owners) {
    if (keys.length < 2) continue;
    for (const key of keys) {
      found.delete(key);
      notFound.set(key, { reason: 'shared', detail: `${describeLink(s.links.get(ifindex), ifindex)} is claimed by ${keys.join(', ')}` });
    }
  }
  return { found, notFound };
}

/** The pods with their addresses in canonical form; a TypeError naming the field otherwise. */
export function checkPods(pods: readonly DiscoveryPod[], field = 'pods'): DiscoveryPod[] {
  if (!Array.isArray(pods)) throw new TypeError(`${field}: expected an array of pods, got ${JSON.stringify(pods)}`);
  const checked = pods.map((p, i) => checkPod(p, `${field}[${i}]`));
  const keys = new Set<string>();
  for (const p of checked) {
    const k = podKey(p);
    if (keys.has(k)) throw new TypeError(`${field}: ${k} is listed twice`);
    keys.add(k);
  }
  return checked;
}

function checkPod(p: DiscoveryPod, field: string): DiscoveryPod {
  if (typeof p !== 'object' || p === null) throw new TypeError(`${field}: expected a pod {namespace, name, ips}, got ${JSON.stringify(p)}`);
  if (typeof p.namespace !== 'string' || p.namespace === '') throw new TypeError(`${field}.namespace: expected a non-empty string, got ${JSON.stringify(p.namespace)}`);
  if (typeof p.name !== 'string' || p.name === '') throw new TypeError(`${field}.name: expected a non-empty string, got ${JSON.stringify(p.name)}`);
  if (!Array.isArray(p.ips)) throw new TypeError(`${field}.ips: expected an array of addresses, got ${JSON.stringify(p.ips)}`);
  const ips = p.ips.map((ip, i) => {
    try {
      if (typeof ip !== 'string') throw new Error();
      return canonicalIp(ip);
    } catch {
      throw new TypeError(`${field}.ips[${i}]: ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
    }
  });
  checkNetnsName(p.netns, `${field}.netns`);
  return p.netns === undefined ? { namespace: p.namespace, name: p.name, ips } : { namespace: p.namespace, name: p.name, ips, netns: p.netns };
}
