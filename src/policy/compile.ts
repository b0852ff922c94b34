// The policy compiler: from the cluster's objects to the datapath's desired map contents.
//
// Design (see docs/datapath.md): every distinct (namespace, namespace labels, pod labels, named
// container ports) gets a label-set identity, every prefix an ipBlock names a CIDR class. A policy
// selects identities and classes, never addresses, so the maps that answer "may identity A talk
// to peer B on port P" are keyed (subject identity, direction, peer identity / class / ANY,
// protocol, port or port block): a hash for exact ports, whole protocols and rules without ports,
// an LPM trie for range blocks. The datapath makes a bounded number of lookups per new flow,
// however many policies and pods there are. Every entry carries the best rule (in
// the reference evaluator's order) of every entry covering it, so the datapath names the rule the
// reference names. Addresses map to identities in the endpoint map.
import type { ClusterSnapshot } from '../datastore/cluster.js';
import { inAuditMode } from '../datastore/objects.js';
import type { ContainerPort, IpBlock, L4Protocol, Labels, NetworkPolicy, Pod, PolicyPeer, PolicyRule, PolicyType } from '../datastore/objects.js';
import { cidrContainsIp, parseCidr, parseIp, type ParsedCidr } from '../datastore/cidr.js';
import { matchesSelector } from './selector.js';
import { IdAllocator } from './ids.js';
import { comparePolicyKeys } from './reference.js';
import { EndpointFlag, FIRST_CIDR_CLASS, Identity, Proto, canonicalIp } from '../datapath/abi.js';
import {
  compileGlobal, globalPrefixes, hostEndpointKey, type CompiledGlobal, type GlobalPortEntry, type GlobalRuleEntry,
  type GlobalSetEntry, type GlobalTierEntry, type HostCompileOptions, type HostInterfaceEntry,
} from './compile-global.js';

export type { GlobalPortEntry, GlobalRuleEntry, GlobalSetEntry, GlobalTierEntry, HostCompileOptions, HostInterfaceEntry };
export { globalPortKey, globalSetKey, globalTierKey } from './compile-global.js';

const PROTO_NUMBER = { TCP: Proto.TCP, UDP: Proto.UDP, SCTP: Proto.SCTP } as const;
export const EP_LOCAL = EndpointFlag.LOCAL;
export const EP_ISOLATED_INGRESS = EndpointFlag.ISOLATED_INGRESS;
export const EP_ISOLATED_EGRESS = EndpointFlag.ISOLATED_EGRESS;

export interface EndpointEntry {
  /** pod key "namespace/name", HOST_ENDPOINT_KEY for the node's addresses, "host:<name>" for a
   * host endpoint's (another node's) address */
  readonly key: string;
  readonly id: number;
  readonly identity: number;
  /** host-side interface of a local pod (0 = don't check) */
  readonly ifindex: number;
  readonly flags: number;
  /** what global-policy selectors see at the address: a pod's identity, the identity of the host
   * endpoints listing it, 0 = none (absent: identity) */
  readonly selIdentity?: number;
}

/** One policy-map entry (weir_policy_key/value, docs/datapath.md). */
export interface PolicyEntry {
  readonly identity: number;
  /** a label-set identity, a CIDR class (>= FIRST_CIDR_CLASS) or Identity.ANY */
  readonly peer: number;
  /** 0 ingress, 1 egress (enum weir_direction) */
  readonly direction: 0 | 1;
  /** 0 = a rule without ports (every protocol, every port) */
  readonly proto: number;
  /** first port of the block */
  readonly port: number;
  /** leading port bits fixed: 16 one port, 16-k an aligned block of 2^k ports, 0 every port */
  readonly portBits: number;
  /** the best rule (lowest rank) among this entry's and every entry covering it */
  readonly ruleId: number;
  readonly rank: number;
}

/** A prefix of the CIDR classes' LPM map (weir_ipcache): IPv4 as ::ffff:a.b.c.d/96+n. */
export interface CidrClass {
  readonly classId: number;
  /** the prefix as 128 bits */
  readonly network128: bigint;
  readonly prefixLen128: number;
  readonly family: 4 | 6;
  /** display form, e.g. 10.0.0.0/8 */
  readonly cidr: string;
}

export interface CompiledDatapath {
  /** address -> endpoint holding it */
  readonly endpoints: ReadonlyMap<string, EndpointEntry>;
  /** policyEntryKey(entry) -> entry */
  readonly policy: ReadonlyMap<string, PolicyEntry>;
  /** every prefix an ipBlock names (cidr or except), by its display form */
  readonly cidrClasses: ReadonlyMap<string, CidrClass>;
  /** identity -> what it stands for (for display) */
  readonly identities: ReadonlyMap<number, IdentityInfo>;
  /** host protection (empty without CompileOptions.host): weir_hostif, ifindex -> host endpoint
   * (0: the node's "*" endpoint) */
  readonly hostInterfaces: ReadonlyMap<number, HostInterfaceEntry>;
  /** weir_gtier: globalTierKey(entry) -> a subject's list in globalRules */
  readonly globalTiers: ReadonlyMap<string, GlobalTierEntry>;
  /** weir_grules: index -> rule */
  readonly globalRules: readonly GlobalRuleEntry[];
  /** weir_gset: globalSetKey(entry) -> entry */
  readonly globalSets: ReadonlyMap<string, GlobalSetEntry>;
  /** weir_gport: globalPortKey(entry) -> entry */
  readonly globalPorts: ReadonlyMap<string, GlobalPortEntry>;
}

export interface IdentityInfo {
  readonly namespace: string;
  readonly labels: Labels;
}

/** A pod as placed on this node: its addresses and host-side interface. */
export interface PlacedPod {
  readonly pod: Pod;
  readonly ips: readonly string[];
  readonly ifindex: number;
}

export function policyEntryKey(e: Pick<PolicyEntry, 'identity' | 'peer' | 'port' | 'proto' | 'portBits' | 'direction'>): string {
  return `${e.identity}|${e.peer}|${e.direction}|${e.proto}|${e.port}/${e.portBits}`;
}

function sortedLabels(labels: Labels): [string, string][] {
  return Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** A pod's named container ports, in a canonical order ("name/PROTO/port"). */
function namedPortsOf(ports: readonly ContainerPort[]): string[] {
  return ports.filter((p) => p.name !== undefined).map((p) => `${p.name}/${p.protocol}/${p.port}`).sort();
}

/** The label set an identity stands for: the namespace (with its labels) and the pod's labels,
 * plus its named container ports when it has any: a named port resolves against the destination
 * pod, so pods with the same labels but different named ports must not share an identity. */
export function labelSetKey(namespace: string, namespaceLabels: Labels, podLabels: Labels, ports: readonly ContainerPort[] = []): string {
  const named = namedPortsOf(ports);
  const base: unknown[] = [namespace, sortedLabels(namespaceLabels), sortedLabels(podLabels)];
  if (named.length > 0) base.push(named);
  return JSON.stringify(base);
}

interface Identity {
  readonly id: number;
  readonly namespace: string;
  readonly namespaceLabels: Labels;
  readonly podLabels: Labels;
  readonly ports: readonly ContainerPort[];
}

const DIRECTIONS: readonly { type: PolicyType; dir: 0 | 1; rules: 'ingress' | 'egress'; flag: number; audit: number }[] = [
  { type: 'Ingress', dir: 0, rules: 'ingress', flag: EP_ISOLATED_INGRESS, audit: EndpointFlag.AUDIT_INGRESS },
  { type: 'Egress', dir: 1, rules: 'egress', flag: EP_ISOLATED_EGRESS, audit: EndpointFlag.AUDIT_EGRESS },
];

/** Identities grouped by namespace, so a policy only looks at the namespaces it can select: with
 * thousands of policies, scanning every identity per policy and rule dominated compile time. */
class IdentityIndex {
  private readonly byNamespace = new Map<string, Identity[]>();
  constructor(all: readonly Identity[]) {
    for (const i of all) {
      let list = this.byNamespace.get(i.namespace);
      if (!list) this.byNamespace.set(i.namespace, (list = []));
      list.push(i);
    }
  }

  inNamespace(ns: string): readonly Identity[] {
    return this.byNamespace.get(ns) ?? [];
  }

  /** Identities a peer selects (ipBlock peers select none: they match by address). */
  peer(peer: PolicyPeer, policy: NetworkPolicy): Identity[] {
    if (peer.ipBlock) return [];
    let candidates: readonly Identity[];
    if (peer.namespaceSelector) {
      const sel = peer.namespaceSelector;
      candidates = [...this.byNamespace.values()].filter((l) => matchesSelector(sel, l[0]!.namespaceLabels)).flat();
    } else {
      candidates = this.inNamespace(policy.namespace);
    }
    return candidates.filter((who) => peerMatches(peer, policy, who));
  }
}

function peerMatches(peer: PolicyPeer, policy: NetworkPolicy, who: Identity): boolean {
  if (peer.ipBlock) return false; // by address: CIDR classes, not identities
  // namespaceSelector picks namespaces by label; without it the peer is in the policy's namespace.
  if (peer.namespaceSelector) {
    if (!matchesSelector(peer.namespaceSelector, who.namespaceLabels)) return false;
  } else if (who.namespace !== policy.namespace) {
    return false;
  }
  return !peer.podSelector || matchesSelector(peer.podSelector, who.podLabels);
}

// ---- CIDR classes --------------------------------------------------------------------------------

const V4_MAPPED = 0xffffn << 32n;

interface Prefix128 { readonly net: bigint; readonly len: number; readonly family: 4 | 6 }

function toPrefix128(c: ParsedCidr): Prefix128 {
  return c.family === 4 ? { net: V4_MAPPED | c.network, len: 96 + c.prefix, family: 4 } : { net: c.network, len: c.prefix, family: 6 };
}

function prefixContains(outer: Prefix128, inner: Prefix128): boolean {
  if (inner.len < outer.len) return false;
  const shift = BigInt(128 - outer.len);
  return (inner.net >> shift) === (outer.net >> shift);
}

function formatPrefix(p: Prefix128): string {
  if (p.family === 4) {
    const v = Number(p.net & 0xffffffffn);
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}/${p.len - 96}`;
  }
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((p.net >> BigInt(i * 16)) & 0xffffn).toString(16));
  return `${groups.join(':')}/${p.len}`;
}

/**
 * Every prefix an ipBlock of the policy set names (cidr or except) is a class; an address's
 * class is its longest listed prefix, and block B covers class P iff B.cidr ⊇ P and no B.except
 * ⊇ P (both contain the address, so both contain its longest listed prefix). IPv4 lives at
 * ::ffff:0:0/96 in the map, where an IPv6 block such as ::/0 would also reach it: that prefix is
 * listed as an IPv4 class of its own whenever an IPv6 prefix contains it, so IPv4 addresses never
 * fall into an IPv6 class. `hostAddresses` adds one prefix per address (/32, /128): the pod
 * addresses an egress rule with ipBlock peers and named ports allows, which need a class of their
 * own. Extra prefixes only split classes: the argument above holds for any listed set that
 * includes every cidr and except, so which blocks match an address never changes.
 */
function cidrClasses(policies: readonly NetworkPolicy[], hostAddresses: Iterable<string> = [], prefixes: Iterable<string> = []): {
  classes: Map<string, CidrClass>; covers: (block: IpBlock) => number[]; hostClass: (ip: string) => number | undefined;
} {
  const byKey = new Map<string, Prefix128>();
  const add = (p: Prefix128): void => { byKey.set(`${p.net}/${p.len}`, p); };
  // Extra listed prefixes, one address each: they never change which blocks match an address
  // (see above: exactness only needs every cidr and except to be listed), only split classes.
  for (const ip of hostAddresses) {
    const h = hostPrefix(ip);
    if (h) add(h);
  }
  // the global policies' nets and notNets (an address is in a net iff its class is)
  for (const c of prefixes) {
    const parsed = parseCidr(c);
    if (parsed) add(toPrefix128(parsed));
  }
  for (const pol of policies) {
    for (const rule of [...pol.ingress, ...pol.egress]) {
      for (const peer of rule.peers ?? []) {
        if (!peer.ipBlock) continue;
        for (const c of [peer.ipBlock.cidr, ...peer.ipBlock.except]) {
          const parsed = parseCidr(c);
          if (parsed) add(toPrefix128(parsed));
        }
      }
    }
  }
  const v4Space: Prefix128 = { net: V4_MAPPED, len: 96, family: 4 };
  if ([...byKey.values()].some((p) => p.family === 6 && prefixContains(p, v4Space))) add(v4Space);
  const sorted = [...byKey.values()].sort((a, b) => (a.len - b.len) || (a.net < b.net ? -1 : a.net > b.net ? 1 : 0));
  const classes = new Map<string, CidrClass>();
  const list: (CidrClass & { p: Prefix128 })[] = [];
  sorted.forEach((p, i) => {
    const c = { classId: FIRST_CIDR_CLASS + i, network128: p.net, prefixLen128: p.len, family: p.family, cidr: formatPrefix(p), p };
    list.push(c);
    classes.set(c.cidr, { classId: c.classId, network128: c.network128, prefixLen128: c.prefixLen128, family: c.family, cidr: c.cidr });
  });
  const byPrefix = new Map<string, number>();
  for (const c of list) byPrefix.set(`${c.p.net}/${c.p.len}`, c.classId);
  const hostClass = (ip: string): number | undefined => {
    const h = hostPrefix(ip);
    return h ? byPrefix.get(`${h.net}/${h.len}`) : undefined;
  };
  const covers = (block: IpBlock): number[] => {
    const cidr = parseCidr(block.cidr);
    if (!cidr) return [];
    const outer = toPrefix128(cidr);
    const excepts = block.except.map(parseCidr).filter((x): x is ParsedCidr => x !== undefined).map(toPrefix128);
    return list
      .filter((c) => c.family === outer.family && prefixContains(outer, c.p) && !excepts.some((e) => prefixContains(e, c.p)))
      .map((c) => c.classId);
  };
  return { classes, covers, hostClass };
}

/** One address as a prefix of its own (/32 IPv4, /128 IPv6). */
function hostPrefix(ip: string): Prefix128 | undefined {
  const a = parseIp(ip);
  if (!a) return undefined;
  return a.family === 4 ? { net: V4_MAPPED | a.value, len: 128, family: 4 } : { net: a.value, len: 128, family: 6 };
}

/** Does `block` match address `ip` (inside cidr, outside every except), as the reference says? */
function blockMatchesIp(block: IpBlock, ip: string): boolean {
  const addr = parseIp(ip);
  const cidr = parseCidr(block.cidr);
  if (!addr || !cidr || !cidrContainsIp(cidr, addr)) return false;
  return !block.except.some((e) => {
    const ex = parseCidr(e);
    return ex !== undefined && cidrContainsIp(ex, addr);
  });
}

/** The destinations an egress rule with ipBlock peers and named ports allows through those
 * ports: every address of a placed pod that one of the rule's blocks matches, with each port
 * number the pod gives one of the rule's names (name and protocol), as the reference resolves a
 * named port against the destination pod (placed or remote). Empty for a rule without either. */
function blockNamedPortTargets(rule: PolicyRule, placed: readonly Pick<PlacedPod, 'pod' | 'ips'>[]): { ip: string; proto: number; port: number }[] {
  const blocks = (rule.peers ?? []).flatMap((p) => (p.ipBlock ? [p.ipBlock] : []));
  const named = (rule.ports ?? []).filter((p) => typeof p.port === 'string');
  if (blocks.length === 0 || named.length === 0) return [];
  const out: { ip: string; proto: number; port: number }[] = [];
  for (const { pod, ips } of placed) {
    const ports = named.flatMap((n) => namedPortNumbers(pod.ports, n.port as string, n.protocol).map((port) => ({ proto: PROTO_NUMBER[n.protocol], port })));
    if (ports.length === 0) continue;
    for (const ip of ips) if (blocks.some((b) => blockMatchesIp(b, ip))) for (const p of ports) out.push({ ip, ...p });
  }
  return out;
}

// ---- ports -----------------------------------------------------------------------------------------

interface PortBlock { readonly proto: number; readonly port: number; readonly bits: number }

/** lo..hi as aligned power-of-two blocks (at most 30 for 16-bit ports). */
export function portBlocks(lo: number, hi: number): { port: number; bits: number }[] {
  const out: { port: number; bits: number }[] = [];
  let p = lo;
  while (p <= hi) {
    let size = 1;
    let bits = 16;
    while (bits > 0 && p % (size * 2) === 0 && p + size * 2 - 1 <= hi) {
      size *= 2;
      bits--;
    }
    out.push({ port: p, bits });
    p += size;
  }
  return out;
}

function namedPortNumbers(ports: readonly ContainerPort[], name: string, protocol: L4Protocol): number[] {
  return ports.filter((c) => c.name === name && c.protocol === protocol).map((c) => c.port);
}

interface Raw { proto: number; port: number; bits: number; rank: number; ruleId: number }

/** What compilePolicy knows beyond the cluster and its placed pods. */
export interface CompileOptions {
  /**
   * The node's own addresses. They go into the endpoint map with identity HOST (key HOST_ENDPOINT_KEY,
   * id 0, no flags), so traffic between a pod and its node is allowed under ALLOW_HOST even when
   * the pod is isolated, as NetworkPolicy requires. An address a pod holds stays the pod's.
   */
  readonly hostIps?: readonly string[];
  /** Host protection: this node's host endpoints, the global policies and failsafes. */
  readonly host?: HostCompileOptions;
  /**
   * Pods with addresses whose traffic never passes a hook of this node as their own (pods of
   * other nodes; see src/node/compile.ts for this node's pods not attached yet). They are peers
   * only: their identities are computed, so selectors select them and named ports resolve
   * against them, and each address gets an endpoint entry with that identity, no LOCAL flag and
   * ifindex 0; no policy key, global tier list or endpoint flag has them as its subject (their
   * own node polices them). A pod also in `placed` is placed.
   */
  readonly remotePods?: readonly Pod[];
}

/** The endpoint-map key of the node's own addresses. */
export const HOST_ENDPOINT_KEY = '(host)';

export function compilePolicy(cluster: ClusterSnapshot, placed: readonly PlacedPod[], ids: IdAllocator, opts: CompileOptions = {}): CompiledDatapath {
  // 1. identities of the pods that exist: placed pods (subjects and peers) and remote pods
  // (peers only: `subjectIds` holds the identities some placed pod has)
  const identities = new Map<number, Identity>();
  const podIdentity = new Map<string, number>();
  const subjectIds = new Set<number>();
  const placedKeys = new Set(placed.map(({ pod }) => `${pod.namespace}/${pod.name}`));
  const remote = (opts.remotePods ?? []).filter((pod) => pod.ips.length > 0 && !placedKeys.has(`${pod.namespace}/${pod.name}`));
  for (const pod of [...placed.map((p) => p.pod), ...remote]) {
    const nsLabels = cluster.namespaces.get(pod.namespace)?.labels ?? {};
    const id = ids.identity(labelSetKey(pod.namespace, nsLabels, pod.labels, pod.ports));
    identities.set(id, { id, namespace: pod.namespace, namespaceLabels: nsLabels, podLabels: pod.labels, ports: pod.ports });
    podIdentity.set(`${pod.namespace}/${pod.name}`, id);
  }
  for (const { pod } of placed) subjectIds.add(podIdentity.get(`${pod.namespace}/${pod.name}`)!);
  const allIdentities = [...identities.values()];
  const byNamespace = new IdentityIndex(allIdentities);

  // 2. The reference's attribution order: policy "namespace/name" as JavaScript compares
  // strings, then rule index. A rule's rank is its position in that order.
  const policies = [...cluster.policies.values()].sort((a, b) => comparePolicyKeys(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
  // Egress named ports with ipBlock peers: the destination must be a pod inside the block that
  // has the port, and the number comes from that pod, so each such pod address gets a CIDR class
  // of its own (its /32 or /128) and keys {subject, that class, proto, the pod's port}.
  const blockNamed = new Map<PolicyRule, { ip: string; proto: number; port: number }[]>();
  for (const pol of policies) {
    if (!pol.policyTypes.includes('Egress')) continue;
    for (const rule of pol.egress) {
      const targets = blockNamedPortTargets(rule, [...placed, ...remote.map((pod) => ({ pod, ips: pod.ips }))]);
      if (targets.length > 0) blockNamed.set(rule, targets);
    }
  }
  const { classes, covers, hostClass } = cidrClasses(policies, [...blockNamed.values()].flat().map((t) => t.ip), opts.host ? globalPrefixes(opts.host.globalPolicies) : []);

  // 3. raw entries per (subject identity, direction, peer)
  const endpointFlags = new Map<number, number>();
  const groups = new Map<string, { identity: number; direction: 0 | 1; peer: number; raw: Raw[] }>();
  const put = (identity: number, direction: 0 | 1, peer: number, r: Raw): void => {
    const gk = `${identity}|${direction}|${peer}`;
    let g = groups.get(gk);
    if (!g) groups.set(gk, (g = { identity, direction, peer, raw: [] }));
    g.raw.push(r);
  };
  // subjects: identities of placed pods only (a remote pod's own node enforces its policies)
  const selects = (pol: NetworkPolicy) => byNamespace.inNamespace(pol.namespace).filter((s) => subjectIds.has(s.id) && matchesSelector(pol.podSelector, s.podLabels));
  // Audit mode: an audit-mode policy must never change what is enforced. Where an enforcing
  // policy isolates a pod in a direction, audit-mode policies add nothing there (their allows
  // would open what enforcement closes); where only audit-mode policies isolate it, they are
  // compiled as usual and the direction is flagged AUDIT, so what they would deny passes with
  // verdict audit.
  const enforced = new Set<string>();
  for (const pol of policies) {
    if (inAuditMode(pol)) continue;
    for (const s of selects(pol)) for (const { type, dir } of DIRECTIONS) if (pol.policyTypes.includes(type)) enforced.add(`${s.id}|${dir}`);
  }
  let rank = 0;
  for (const pol of policies) {
    const audit = inAuditMode(pol);
    const selected = selects(pol);
    for (const { type, dir, rules, flag, audit: auditFlag } of DIRECTIONS) {
      if (!pol.policyTypes.includes(type)) {
        rank += pol[rules].length; // keeps ranks a pure function of the order
        continue;
      }
      const subjects = audit ? selected.filter((s) => !enforced.has(`${s.id}|${dir}`)) : selected;
      pol[rules].forEach((rule, index) => {
        const ruleRank = rank++;
        if (subjects.length === 0) return;
        const ruleId = ids.rule({ kind: 'NetworkPolicy', policy: `${pol.namespace}/${pol.name}`, direction: type, index });
        // peers: identities (selectors), CIDR classes (ipBlocks), or ANY (no peers listed)
        let peerIds: number[];
        let classIds: number[] = [];
        if (rule.peers === undefined) {
          peerIds = [Identity.ANY];
        } else {
          const selected = new Set<number>();
          for (const p of rule.peers) for (const who of byNamespace.peer(p, pol)) selected.add(who.id);
          peerIds = [...selected];
          const cls = new Set<number>();
          for (const p of rule.peers) if (p.ipBlock) for (const c of covers(p.ipBlock)) cls.add(c);
          classIds = [...cls];
        }
        const fixed: PortBlock[] = [];
        const named: { name: string; proto: number; protocol: L4Protocol }[] = [];
        if (rule.ports === undefined) {
          fixed.push({ proto: 0, port: 0, bits: 0 });
        } else {
          for (const p of rule.ports) {
            const proto = PROTO_NUMBER[p.protocol];
            if (p.port === undefined) fixed.push({ proto, port: 0, bits: 0 });
            else if (typeof p.port === 'string') named.push({ name: p.port, proto, protocol: p.protocol });
            else for (const b of portBlocks(p.port, p.endPort ?? p.port)) fixed.push({ proto, port: b.port, bits: b.bits });
          }
        }
        for (const s of subjects) {
          const emit = (peer: number, b: PortBlock): void => put(s.id, dir, peer, { proto: b.proto, port: b.port, bits: b.bits, rank: ruleRank, ruleId });
          for (const peer of [...peerIds, ...classIds]) for (const b of fixed) emit(peer, b);
          // Named ports resolve against the destination pod's container ports (name and protocol):
          // at ingress the subject itself; at egress each peer identity (for ANY: every pod
          // identity that has the port; for ipBlock peers, the class of each matching pod address).
          for (const t of dir === 1 ? blockNamed.get(rule) ?? [] : []) emit(hostClass(t.ip)!, { proto: t.proto, port: t.port, bits: 16 });
          for (const n of named) {
            if (dir === 0) {
              const nums = namedPortNumbers(s.ports, n.name, n.protocol);
              for (const peer of [...peerIds, ...classIds]) for (const port of nums) emit(peer, { proto: n.proto, port, bits: 16 });
            } else {
              const dsts = rule.peers === undefined ? allIdentities : peerIds.map((i) => identities.get(i)!);
              for (const d of dsts) for (const port of namedPortNumbers(d.ports, n.name, n.protocol)) emit(d.id, { proto: n.proto, port, bits: 16 });
            }
          }
        }
      });
      for (const s of subjects) endpointFlags.set(s.id, (endpointFlags.get(s.id) ?? 0) | flag | (audit ? auditFlag : 0));
    }
  }

  // 4. Fold: the datapath stops at the most specific entry of a peer kind, so every entry
  // carries the best rule of every entry covering it (a rule without ports covers everything, a
  // protocol-wide entry its protocol's blocks, a block the blocks inside it).
  const policy = new Map<string, PolicyEntry>();
  for (const g of groups.values()) {
    const own = new Map<string, Raw>();
    for (const r of g.raw) {
      const k = `${r.proto}|${r.port}|${r.bits}`;
      const had = own.get(k);
      if (!had || r.rank < had.rank) own.set(k, r);
    }
    const better = (a: Raw | undefined, b: Raw | undefined): Raw | undefined => (!a ? b : !b ? a : b.rank < a.rank ? b : a);
    const all = own.get('0|0|0');
    for (const r of own.values()) {
      let best: Raw | undefined = r;
      if (r.proto !== 0) {
        best = better(best, all);
        if (r.bits > 0) {
          best = better(best, own.get(`${r.proto}|0|0`));
          for (let bits = 1; bits < r.bits; bits++) {
            const mask = (0xffff << (16 - bits)) & 0xffff;
            best = better(best, own.get(`${r.proto}|${r.port & mask}|${bits}`));
          }
        }
      }
      const e: PolicyEntry = { identity: g.identity, peer: g.peer, direction: g.direction, proto: r.proto, port: r.port, portBits: r.bits, ruleId: best!.ruleId, rank: best!.rank };
      policy.set(policyEntryKey(e), e);
    }
    // 5. Which kinds of keys each identity has, so the datapath skips lookups that cannot hit.
    // (Traffic between a pod and its own node needs no key: the datapath always allows it, as
    // NetworkPolicy says, under reason ALLOW_HOST.)
    const ingress = g.direction === 0;
    const flag = g.peer === Identity.ANY
      ? (ingress ? EndpointFlag.ANY_RULES_INGRESS : EndpointFlag.ANY_RULES_EGRESS)
      : g.peer >= FIRST_CIDR_CLASS
        ? (ingress ? EndpointFlag.CIDR_RULES_INGRESS : EndpointFlag.CIDR_RULES_EGRESS)
        : (ingress ? EndpointFlag.PEER_RULES_INGRESS : EndpointFlag.PEER_RULES_EGRESS);
    const ranges = [...own.values()].some((r) => r.proto !== 0 && r.bits > 0 && r.bits < 16)
      ? (ingress ? EndpointFlag.RANGE_RULES_INGRESS : EndpointFlag.RANGE_RULES_EGRESS) : 0;
    endpointFlags.set(g.identity, (endpointFlags.get(g.identity) ?? 0) | flag | ranges);
  }

  // 6. The global tier (host protection): lists, rules and sets; flags of pod identities.
  // Remote identities are selectable (set members) but no subject: their tier lists are dropped.
  const global: CompiledGlobal | undefined = opts.host
    ? peersOnly(compileGlobal(opts.host, allIdentities, ids, (nets) => nets.flatMap((cidr) => covers({ cidr, except: [] })), portBlocks),
      allIdentities.filter((i) => !subjectIds.has(i.id)).map((i) => i.id))
    : undefined;

  // 7. endpoints: every address of every placed pod
  const endpoints = new Map<string, EndpointEntry>();
  for (const { pod, ips, ifindex } of placed) {
    const key = `${pod.namespace}/${pod.name}`;
    const identity = podIdentity.get(key)!;
    // A pod, or a whole namespace, in audit mode: whatever its policies would deny passes as audit
    // (with host protection, global denials too: AUDIT_ALL).
    const podAudit = inAuditMode(pod) || inAuditMode(cluster.namespaces.get(pod.namespace))
      ? EndpointFlag.AUDIT_INGRESS | EndpointFlag.AUDIT_EGRESS | (global ? EndpointFlag.AUDIT_ALL : 0) : 0;
    const flags = EP_LOCAL | podAudit | (endpointFlags.get(identity) ?? 0) | (global?.podFlags.get(identity) ?? 0);
    const entry: EndpointEntry = { key, id: ids.endpoint(key), identity, ifindex, flags, selIdentity: identity };
    for (const ip of ips) endpoints.set(ip, entry);
  }
  // 8. the node's own addresses: identity HOST (never policed as a peer, see step 5); selectors
  // see the host endpoints listing the address
  const held = new Set([...endpoints.keys()].map(canonicalIp));
  for (const ip of opts.hostIps ?? []) {
    if (endpoints.has(ip)) continue;
    const entry: EndpointEntry = { key: HOST_ENDPOINT_KEY, id: 0, identity: Identity.HOST, ifindex: 0, flags: 0 };
    endpoints.set(ip, global ? { ...entry, selIdentity: global.hostAddresses.get(canonicalIp(ip))?.selIdentity ?? 0 } : entry);
    held.add(canonicalIp(ip));
  }
  // 8b. remote pods' addresses: peers with their identity. No LOCAL flag: the datapath never
  // polices them as the endpoint (no ingress at TO_POD for them, and a local pod sending from
  // their address is spoofed); ifindex 0 and no policy or audit flags (flags are read from the
  // policed endpoint only). Global selectors see them as the pod they are (selIdentity).
  for (const pod of remote) {
    const key = `${pod.namespace}/${pod.name}`;
    const identity = podIdentity.get(key)!;
    const entry: EndpointEntry = { key, id: ids.endpoint(key), identity, ifindex: 0, flags: 0, selIdentity: identity };
    for (const ip of pod.ips) {
      // the node's own addresses stay HOST (a pod never holds them: hostNetwork pods hold none)
      if (held.has(canonicalIp(ip))) continue;
      endpoints.set(ip, entry);
      held.add(canonicalIp(ip));
    }
  }
  // 9. other host endpoints' addresses: outside the node (WORLD), selectable by their labels
  for (const [ip, a] of global?.hostAddresses ?? []) {
    if (held.has(ip)) continue;
    endpoints.set(ip, { key: hostEndpointKey(a.hostEndpoint), id: a.endpointId, identity: Identity.WORLD, ifindex: 0, flags: 0, selIdentity: a.selIdentity });
  }

  const info = new Map<number, IdentityInfo>();
  for (const i of identities.values()) info.set(i.id, { namespace: i.namespace, labels: i.podLabels });
  return {
    endpoints, policy, cidrClasses: classes, identities: info,
    hostInterfaces: global?.hostInterfaces ?? new Map(),
    globalTiers: global?.globalTiers ?? new Map(),
    globalRules: global?.globalRules ?? [],
    globalSets: global?.globalSets ?? new Map(),
    globalPorts: global?.globalPorts ?? new Map(),
  };
}

/** The global tier without the lists whose subject is one of `identities` (remote pods: peers only). */
function peersOnly(g: CompiledGlobal, identities: readonly number[]): CompiledGlobal {
  if (identities.length === 0) return g;
  const drop = new Set(identities);
  for (const [k, e] of g.globalTiers) if (drop.has(e.identity)) g.globalTiers.delete(k);
  for (const id of drop) g.podFlags.delete(id);
  return g;
}
