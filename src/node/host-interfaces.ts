// Which of the node's interfaces get the host-device programs. A HostEndpoint naming an interface
// (spec.interfaceName: eth0) selects exactly that one; one with "*" (the automatic host endpoint)
// selects the node's host interfaces, which must never include a pod's veth, the CNI's bridge or
// an overlay device (host programs there would police pod traffic as the host's):
//   --host-interfaces PATTERNS  the interfaces whose names match (globs: eth*,bond0), minus lo,
//                               bridges and pod interfaces;
//   default                     interfaces with a global address (the node's own addresses are
//                               what a host endpoint protects) that are not lo, not pod interfaces
//                               (the CNI style's names or discovered), and not of a kind a CNI or
//                               kube-proxy makes: bridges, tunnels/overlays, dummies (kube-ipvs0,
//                               nodelocaldns), tun, OVS, VRF; Cilium's cilium_* veths too.
import { canonicalIp } from '../datapath/abi.js';
import { nameMatches, type CniStyle } from '../datapath/discovery/styles.js';
import { run } from '../lab/exec.js';
import { ALL_INTERFACES, type HostEndpoint } from '../datastore/host-objects.js';

/** Link kinds that are never a node's own host interface by default (CNI and kube-proxy devices). */
export const NOT_HOST_KINDS: readonly string[] = [
  'bridge', 'vxlan', 'geneve', 'ipip', 'sit', 'gre', 'gretap', 'ip6gre', 'ip6tnl', 'wireguard', 'dummy', 'tun', 'openvswitch', 'vrf', 'ipvlan',
];
/** Names of CNI devices whose kind alone does not give them away (Cilium's host veth pair). */
const NOT_HOST_NAMES = /^(lo|cilium_.*|kube-ipvs0|nodelocaldns)$/;

export interface NodeLink {
  readonly ifindex: number;
  readonly ifname: string;
  /** linkinfo.info_kind ('' for a NIC or lo) */
  readonly kind: string;
  /** global-scope addresses (canonical) */
  readonly globalIps: readonly string[];
}

/** The node's links with their global addresses (`ip -d addr show` in the current netns). */
export async function readNodeLinks(): Promise<NodeLink[]> {
  const { stdout } = await run('ip', ['-j', '-d', 'addr', 'show']);
  const rows = JSON.parse(stdout.trim() || '[]') as unknown;
  if (!Array.isArray(rows)) throw new Error('ip -j -d addr show: expected a JSON array');
  const out: NodeLink[] = [];
  for (const r of rows as Array<Record<string, any>>) {
    if (typeof r?.ifindex !== 'number' || typeof r.ifname !== 'string') continue;
    const ips: string[] = [];
    for (const a of Array.isArray(r.addr_info) ? r.addr_info : []) {
      if (a?.scope !== 'global' || typeof a.local !== 'string') continue;
      try { ips.push(canonicalIp(a.local)); } catch { /* not an address */ }
    }
    out.push({ ifindex: r.ifindex, ifname: r.ifname, kind: typeof r.linkinfo?.info_kind === 'string' ? r.linkinfo.info_kind : '', globalIps: ips });
  }
  return out;
}

/** "eth*,bond0" -> matchers; each pattern an interface name with * and ? wildcards. */
export function parseInterfacePatterns(text: string, field = '--host-interfaces'): RegExp[] {
  const parts = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length === 0) throw new Error(`${field}: ${JSON.stringify(text)} names no interface (e.g. eth0 or "eth*,bond*")`);
  return parts.map((p) => {
    if (!/^[^\s/:]{1,15}$/.test(p)) throw new Error(`${field}: ${JSON.stringify(p)} is not an interface name or pattern`);
    const re = p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    return new RegExp(`^${re}$`);
  });
}

/** The interfaces a "*" host endpoint covers on this node. */
export function allHostInterfaces(links: readonly NodeLink[], style: CniStyle, podIfindexes: ReadonlySet<number>, patterns?: readonly RegExp[]): string[] {
  return links.filter((l) => {
    if (l.ifname === 'lo' || l.kind === 'bridge' || podIfindexes.has(l.ifindex) || nameMatches(style, l.ifname)) return false;
    if (patterns) return patterns.some((p) => p.test(l.ifname));
    return l.globalIps.length > 0 && !NOT_HOST_KINDS.includes(l.kind) && !NOT_HOST_NAMES.test(l.ifname);
  }).map((l) => l.ifname).sort();
}

/** The interface names this node's host endpoints select (sorted, unique). */
export function wantedHostInterfaces(endpoints: readonly HostEndpoint[], node: string, all: () => readonly string[]): string[] {
  const out = new Set<string>();
  for (const h of endpoints) {
    if (h.node !== node) continue;
    if (h.interfaceName === ALL_INTERFACES) for (const n of all()) out.add(n);
    else out.add(h.interfaceName);
  }
  return [...out].sort();
}

/** The node's own addresses: every global address of its netns (the CNI's gateway addresses
 * included: the node speaks to its pods from them). */
export function nodeAddresses(links: readonly NodeLink[]): string[] {
  return [...new Set(links.flatMap((l) => l.globalIps))].sort();
}
