// Random clusters, policy sets and packets for the differential tests (test/policy/
// compile-reference.test.ts against a model of the maps, test/datapath/differential.test.ts
// against the BPF programs), and a plain-TypeScript model of the datapath's documented lookup
// (docs/datapath.md, "Per packet at a pod hook", step 4) over the compiler's output.
//
// The generator covers every feature the datapath enforces: pod/namespace selectors with every
// operator, numeric ports, ranges (endPort), named ports (pods with container ports; at egress
// with selector peers, no peers and ipBlock peers alike), protocol-only ports, ipBlock with except (IPv4 and IPv6, pod addresses inside blocks too), empty peers/ports,
// TCP/UDP/SCTP/ICMP packets to and from pods, the node and world addresses.
import { parseCidr, parseIp } from '../../src/datastore/cidr.js';
import { AUDIT_ANNOTATION } from '../../src/datastore/objects.js';
import type { ContainerPort, IpBlock, KubeObject, L4Protocol, LabelSelector, NetworkPolicy, Pod, PolicyPeer, PolicyPort, PolicyRule, PolicyType } from '../../src/datastore/objects.js';
import type { CompiledDatapath, EndpointEntry, PolicyEntry } from '../../src/policy/compile.js';
import type { Packet, PacketProtocol } from '../../src/policy/reference.js';
import { EndpointFlag, Identity, Proto } from '../../src/datapath/abi.js';

/** mulberry32: small, seedable, good enough to pick test cases. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Gen {
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
  int(lo: number, hi: number): number;
}

export function gen(next: () => number): Gen {
  return {
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
    chance: (p) => next() < p,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
  };
}

export const NODE_IPS = ['10.9.255.1', 'fd09::ff01'];
/** world addresses: outside every pod, some inside the generated blocks and excepts */
export const OUTSIDE_IPS = [['192.0.2.7', '10.9.1.5', '198.51.100.9', '10.9.0.200'], ['2001:db8::7', 'fd09::1:5', '2001:db8:1::9']] as const;

const NAMESPACES = ['x', 'y', 'z'];
const LABEL_KEYS = ['app', 'tier', 'team'];
const LABEL_VALUES = ['a', 'b', 'c'];
export const PORTS = [53, 80, 81, 443, 8080];
const PORT_NAMES = ['http', 'dns', 'metrics'];
/** cidr -> excepts strictly inside it */
const BLOCKS: Record<string, string[]> = {
  '10.9.0.0/16': ['10.9.0.0/29', '10.9.0.4/30', '10.9.1.0/24'],
  '10.0.0.0/8': ['10.9.0.0/16', '10.9.0.8/29'],
  '10.9.0.0/28': ['10.9.0.2/31'],
  '192.0.2.0/24': ['192.0.2.0/28'],
  '0.0.0.0/0': ['10.0.0.0/8', '10.9.0.0/30'],
  'fd09::/16': ['fd09::/120', 'fd09::1:0/112'],
  'fd09::/120': ['fd09::4/126'],
  '2001:db8::/32': ['2001:db8:1::/48'],
  '::/0': ['fd09::/16'],
};

function randomLabels(g: Gen): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of LABEL_KEYS) if (g.chance(0.5)) out[k] = g.pick(LABEL_VALUES);
  return out;
}

function randomSelector(g: Gen): LabelSelector {
  const matchLabels: Record<string, string> = {};
  if (g.chance(0.5)) matchLabels[g.pick(LABEL_KEYS)] = g.pick(LABEL_VALUES);
  const matchExpressions = g.chance(0.4)
    ? [g.pick([
      { key: g.pick(LABEL_KEYS), operator: 'In' as const, values: [g.pick(LABEL_VALUES), g.pick(LABEL_VALUES)] },
      { key: g.pick(LABEL_KEYS), operator: 'NotIn' as const, values: [g.pick(LABEL_VALUES)] },
      { key: g.pick(LABEL_KEYS), operator: 'Exists' as const, values: [] },
      { key: g.pick(LABEL_KEYS), operator: 'DoesNotExist' as const, values: [] },
    ])]
    : [];
  return { matchLabels, matchExpressions };
}

function randomBlock(g: Gen): IpBlock {
  const cidr = g.pick(Object.keys(BLOCKS));
  const except = BLOCKS[cidr]!.filter(() => g.chance(0.4));
  return { cidr, except };
}

function randomPeer(g: Gen, blocks: boolean): PolicyPeer {
  switch (g.int(0, blocks ? 4 : 2)) {
    case 0: return { podSelector: randomSelector(g) };
    case 1: return { namespaceSelector: randomSelector(g) };
    case 2: return { podSelector: randomSelector(g), namespaceSelector: randomSelector(g) };
    default: return { ipBlock: randomBlock(g) };
  }
}

function randomPort(g: Gen, named: boolean): PolicyPort {
  const protocol = g.pick<L4Protocol>(['TCP', 'UDP', 'SCTP']);
  const r = g.int(0, 9);
  if (r <= 1) return { protocol };
  if (r <= 3) {
    const port = g.pick([...PORTS, 1, 1000, 8000]);
    return { protocol, port, endPort: Math.min(65535, port + g.pick([1, 3, 7, 100, 1000])) };
  }
  if (r <= 5 && named) return { protocol, port: g.pick(PORT_NAMES) };
  return { protocol, port: g.pick(PORTS) };
}

function randomRule(g: Gen, direction: PolicyType, focus = false): PolicyRule {
  if (focus && direction === 'Egress') {
    const peers = Array.from({ length: g.int(1, 2) }, () => (g.chance(0.8) ? { ipBlock: randomBlock(g) } : randomPeer(g, true)));
    if (!peers.some((p) => p.ipBlock)) peers.push({ ipBlock: randomBlock(g) });
    const named: PolicyPort = { protocol: g.pick<L4Protocol>(['TCP', 'TCP', 'TCP', 'UDP', 'SCTP']), port: g.pick(PORT_NAMES) };
    return { peers, ports: g.chance(0.5) ? [named] : [named, randomPort(g, true)] };
  }
  const peers = g.chance(0.75) ? Array.from({ length: g.int(1, 2) }, () => randomPeer(g, true)) : undefined;
  // Egress rules with ipBlock peers and named ports (the destination must be a pod inside the
  // block with that port) get an extra share: a named port more often, alone or with another port.
  if (direction === 'Egress' && peers?.some((p) => p.ipBlock) && g.chance(0.7)) {
    const named: PolicyPort = { protocol: g.pick<L4Protocol>(['TCP', 'TCP', 'TCP', 'UDP', 'SCTP']), port: g.pick(PORT_NAMES) };
    return { peers, ports: g.chance(0.5) ? [named] : [named, randomPort(g, true)] };
  }
  return {
    ...(peers ? { peers } : {}),
    ...(g.chance(0.7) ? { ports: Array.from({ length: g.int(1, 2) }, () => randomPort(g, true)) } : {}),
  };
}

function randomContainerPorts(g: Gen): ContainerPort[] {
  const out: ContainerPort[] = [];
  for (const name of PORT_NAMES) {
    if (g.chance(0.4)) out.push({ name, port: g.pick(PORTS), protocol: g.pick<L4Protocol>(['TCP', 'UDP', 'SCTP']) });
  }
  if (g.chance(0.3)) out.push({ port: g.pick(PORTS), protocol: 'TCP' });
  return out;
}

/** Audit mode on an object, now and then (policies, pods and namespaces all take it). */
function auditMaybe(g: Gen, chance: number): { annotations?: Record<string, string> } {
  return g.chance(chance) ? { annotations: { [AUDIT_ANNOTATION]: 'true' } } : {};
}

/** `focus`: every policy isolates egress, and its egress rules have ipBlock peers and named ports
 * (for a test that needs many packets through that combination). */
export function randomCluster(g: Gen, round: number, focus = false): KubeObject[] {
  const objects: KubeObject[] = [];
  let n = 1;
  for (const ns of NAMESPACES) {
    objects.push({ kind: 'Namespace', name: ns, labels: { ...randomLabels(g), 'kubernetes.io/metadata.name': ns }, ...auditMaybe(g, 0.1) });
    for (let i = 0; i < g.int(1, 3); i++, n++) {
      objects.push({ kind: 'Pod', namespace: ns, name: `p${i}`, labels: randomLabels(g), ports: randomContainerPorts(g), ips: [`10.9.0.${n}`, `fd09::${n}`], ...auditMaybe(g, 0.05) } satisfies Pod);
    }
  }
  for (let i = 0; i < g.int(1, 5); i++) {
    const policyTypes = focus ? ['Egress' as const] : g.pick<PolicyType[]>([['Ingress'], ['Egress'], ['Ingress', 'Egress']]);
    const policy: NetworkPolicy = {
      kind: 'NetworkPolicy', namespace: g.pick(NAMESPACES), name: `r${round}-p${i}`, annotations: auditMaybe(g, 0.15).annotations ?? {},
      podSelector: g.chance(0.5) ? { matchLabels: {}, matchExpressions: [] } : randomSelector(g),
      policyTypes,
      ingress: Array.from({ length: g.int(0, 3) }, () => randomRule(g, 'Ingress')),
      egress: Array.from({ length: g.int(focus ? 1 : 0, 3) }, () => randomRule(g, 'Egress', focus)),
    };
    objects.push(policy);
  }
  return objects;
}

export function randomPacket(g: Gen, pods: readonly Pod[]): Packet {
  const v6 = g.chance(0.3);
  const addr = (): string => {
    const r = g.int(0, 9);
    if (r === 0) return NODE_IPS[v6 ? 1 : 0]!;
    if (r <= 2) return g.pick(OUTSIDE_IPS[v6 ? 1 : 0]);
    return g.pick(pods).ips[v6 ? 1 : 0]!;
  };
  const protocol = g.pick<PacketProtocol>(['TCP', 'UDP', 'SCTP', v6 ? 'ICMPv6' : 'ICMP']);
  const src = addr();
  const dst = addr();
  // now and then, one of the destination pod's container ports (so named ports get hit)
  const dstPod = pods.find((p) => p.ips.includes(dst));
  if (dstPod && dstPod.ports.length > 0 && g.chance(0.4)) {
    const c = g.pick(dstPod.ports);
    return { src, dst, protocol: c.protocol, dstPort: c.port };
  }
  if (protocol.startsWith('ICMP')) return { src, dst, protocol };
  const dstPort = g.chance(0.8) ? g.pick([...PORTS, 82, 84, 1001, 8081, 8087]) : g.int(1, 65535);
  return { src, dst, protocol, dstPort };
}

export const PROTO: Record<PacketProtocol, number> = { TCP: Proto.TCP, UDP: Proto.UDP, SCTP: Proto.SCTP, ICMP: Proto.ICMP, ICMPv6: Proto.ICMPV6 };

// ---- the datapath model ------------------------------------------------------------------------

/** One side's decision as the datapath makes it: allowed or not, and the rule named (0 = none). */
export interface ModelDecision {
  readonly allow: boolean;
  /** passed only because of audit mode (no rule allowed it) */
  readonly audit?: boolean;
  readonly ruleId: number;
}

export interface ModelVerdict {
  readonly allow: boolean;
  /** allowed, but some side only because of audit mode */
  readonly audit?: boolean;
  /** undefined: that hook polices nobody (not a local pod, or a pod to itself) */
  readonly egress?: ModelDecision;
  readonly ingress?: ModelDecision;
}

const to128 = (ip: string): bigint => {
  const p = parseIp(ip)!;
  return p.family === 4 ? (0xffffn << 32n) | p.value : p.value;
};

/** The compiler's output indexed as the datapath looks it up. */
export class DatapathModel {
  private readonly groups = new Map<string, PolicyEntry[]>();

  constructor(readonly dp: CompiledDatapath, private readonly nodeIps: readonly string[] = NODE_IPS) {
    for (const e of dp.policy.values()) {
      const k = `${e.identity}|${e.direction}|${e.peer}`;
      let l = this.groups.get(k);
      if (!l) this.groups.set(k, (l = []));
      l.push(e);
    }
  }

  /** weir_ipcache: the class of the longest listed prefix holding ip, 0 = none. */
  classOf(ip: string): number {
    const a = to128(ip);
    let best = -1;
    let cls = 0;
    for (const c of this.dp.cidrClasses.values()) {
      const shift = BigInt(128 - c.prefixLen128);
      if ((a >> shift) === (c.network128 >> shift) && c.prefixLen128 > best) {
        best = c.prefixLen128;
        cls = c.classId;
      }
    }
    return cls;
  }

  /** One LPM lookup in weir_policy: the longest entry covering (proto, dport). */
  private lpm(identity: number, direction: number, peer: number, proto: number, dport: number): PolicyEntry | undefined {
    let best: PolicyEntry | undefined;
    let bestLen = -1;
    const portsMatter = proto === Proto.TCP || proto === Proto.UDP || proto === Proto.SCTP;
    for (const e of this.groups.get(`${identity}|${direction}|${peer}`) ?? []) {
      let len: number;
      if (e.proto === 0) len = 72;
      else if (e.proto !== proto) continue;
      else if (e.portBits === 0) len = 80;
      else {
        const shift = 16 - e.portBits;
        if (!portsMatter || (dport >> shift) !== (e.port >> shift)) continue;
        len = 80 + e.portBits;
      }
      if (len > bestLen) {
        bestLen = len;
        best = e;
      }
    }
    return best;
  }

  decide(ep: EndpointEntry, direction: 0 | 1, peer: number, peerIp: string, proto: number, dport: number): ModelDecision {
    const ingress = direction === 0;
    if (!(ep.flags & (ingress ? EndpointFlag.ISOLATED_INGRESS : EndpointFlag.ISOLATED_EGRESS))) return { allow: true, ruleId: 0 };
    if (peer === Identity.HOST) return { allow: true, ruleId: 0 };
    const hits: PolicyEntry[] = [];
    const add = (e: PolicyEntry | undefined) => { if (e) hits.push(e); };
    if ((ep.flags & (ingress ? EndpointFlag.PEER_RULES_INGRESS : EndpointFlag.PEER_RULES_EGRESS)) && peer !== Identity.WORLD) add(this.lpm(ep.identity, direction, peer, proto, dport));
    if (ep.flags & (ingress ? EndpointFlag.CIDR_RULES_INGRESS : EndpointFlag.CIDR_RULES_EGRESS)) {
      const cls = this.classOf(peerIp);
      if (cls) add(this.lpm(ep.identity, direction, cls, proto, dport));
    }
    if (ep.flags & (ingress ? EndpointFlag.ANY_RULES_INGRESS : EndpointFlag.ANY_RULES_EGRESS)) add(this.lpm(ep.identity, direction, Identity.ANY, proto, dport));
    if (hits.length === 0) {
      // audit mode in this direction: what would be denied passes, reported as audit
      return ep.flags & (ingress ? EndpointFlag.AUDIT_INGRESS : EndpointFlag.AUDIT_EGRESS) ? { allow: true, audit: true, ruleId: 0 } : { allow: false, ruleId: 0 };
    }
    hits.sort((a, b) => a.rank - b.rank);
    return { allow: true, ruleId: hits[0]!.ruleId };
  }

  judge(p: Packet): ModelVerdict {
    const src = this.dp.endpoints.get(p.src);
    const dst = this.dp.endpoints.get(p.dst);
    // A pod's traffic to itself stays inside its network namespace: no hook sees it.
    if (src && dst && src.key === dst.key) return { allow: true };
    const identityOf = (ip: string) => this.dp.endpoints.get(ip)?.identity ?? (this.nodeIps.includes(ip) ? Identity.HOST : Identity.WORLD);
    const proto = PROTO[p.protocol];
    const dport = p.dstPort ?? 0;
    // FROM_POD polices the source's egress; TO_POD the destination's ingress.
    const egress = src ? this.decide(src, 1, identityOf(p.dst), p.dst, proto, dport) : undefined;
    const ingress = dst && (!egress || egress.allow) ? this.decide(dst, 0, identityOf(p.src), p.src, proto, dport) : undefined;
    const allow = (egress?.allow ?? true) && (ingress?.allow ?? true);
    const audit = allow && (!!egress?.audit || !!ingress?.audit);
    return { allow, ...(audit ? { audit } : {}), ...(egress ? { egress } : {}), ...(ingress ? { ingress } : {}) };
  }
}

/** Every cidr the generator uses parses (a typo here would silently shrink the test). */
for (const [c, ex] of Object.entries(BLOCKS)) for (const x of [c, ...ex]) if (!parseCidr(x)) throw new Error(`bad test cidr ${x}`);
