// The reference evaluator: Kubernetes NetworkPolicy semantics as plain code, one packet at a
// time, with no identities, maps or precomputation. It is what the compiler and the datapath are
// tested against, and what `weir policy check` reports. Keep it obviously correct rather than fast.
//
// Semantics (networking.k8s.io/v1):
// - A pod is isolated for ingress (egress) when some policy in its namespace selects it and has
//   Ingress (Egress) in policyTypes (the API's defaulting is applied by the datastore). A pod not
//   isolated in a direction allows everything that way.
// - An isolated pod allows what the union of the rules of all policies selecting it allows.
// - Pod-to-pod traffic needs both the sender's egress and the receiver's ingress to allow it. A
//   side that is not a local pod (an outside address, a pod not placed here) is not policed.
// - A pod always reaches itself, and traffic between a pod and its own node is always allowed.
// - Peers: none listed = every source/destination. podSelector alone = pods of the policy's
//   namespace; namespaceSelector alone = every pod of the selected namespaces; both in one peer =
//   both must hold (AND); several peers = any of them (OR). ipBlock matches by address alone: any
//   address inside cidr and outside every except, pod addresses included — that is what the
//   upstream conformance tests expect (an ipBlock covering the pod network allows pods).
// - Ports: none listed = every protocol and port (ICMP included). A port entry matches only its
//   protocol: without a port, every port of it; a number; a range port..endPort; a name, resolved
//   against the DESTINATION pod's container ports (name, protocol and number must all match; a
//   destination that is not a pod never matches a named port). ICMP/ICMPv6 match only rules
//   without ports.
//
// Attribution: among all rules that allow a packet in a direction, the one named is the first in
// the order (policy key "namespace/name" by UTF-16 code units, as JavaScript's `<` compares;
// then rule index). That is independent of allocation history, so it is reproducible anywhere.
import type { ClusterSnapshot } from '../datastore/cluster.js';
import { cidrContainsIp, parseCidr, parseIp } from '../datastore/cidr.js';
import type { L4Protocol, NetworkPolicy, Pod, PolicyPeer, PolicyPort, PolicyType } from '../datastore/objects.js';
import { inAuditMode } from '../datastore/objects.js';
import { matchesSelector } from './selector.js';

export type PacketProtocol = L4Protocol | 'ICMP' | 'ICMPv6';

export interface Packet {
  readonly src: string;
  readonly dst: string;
  readonly protocol: PacketProtocol;
  /** TCP/UDP/SCTP destination port; undefined for ICMP (or unknown: then only rules that cover
   * every port of the protocol match) */
  readonly dstPort?: number;
}

/** Where pods are: pod key "namespace/name" -> its addresses. Pods listed here are local pods. */
export type Placement = ReadonlyMap<string, readonly string[]>;

export interface EvaluateOptions {
  /** addresses of the node the pods run on */
  readonly nodeIps?: readonly string[];
}

export interface RuleRef {
  /** "namespace/name" */
  readonly policy: string;
  readonly direction: PolicyType;
  /** index in spec.ingress / spec.egress */
  readonly index: number;
}

/** What decided one side (the sender's egress or the receiver's ingress). */
export type Decision =
  /** that side is not a local pod: nobody's policy applies */
  | { readonly verdict: 'allow'; readonly reason: 'not-applicable' }
  /** no policy isolates the pod in this direction */
  | { readonly verdict: 'allow'; readonly reason: 'not-isolated'; readonly pod: string }
  /** a pod to itself */
  | { readonly verdict: 'allow'; readonly reason: 'self'; readonly pod: string }
  /** between the pod and its own node */
  | { readonly verdict: 'allow'; readonly reason: 'node'; readonly pod: string }
  | { readonly verdict: 'allow'; readonly reason: 'policy'; readonly pod: string; readonly rule: RuleRef }
  /** isolated and no rule allowed it; `policies` ("namespace/name", sorted) select the pod in this direction */
  | { readonly verdict: 'deny'; readonly reason: 'default-deny'; readonly pod: string; readonly policies: readonly string[] }
  /** the same, but in audit mode (the pod, its namespace, or every policy isolating it this way
   * is in audit mode): the traffic passes, reported as what would have been denied */
  | { readonly verdict: 'audit'; readonly reason: 'audit'; readonly pod: string; readonly policies: readonly string[] };

export interface Evaluation {
  /** deny if either side denies; audit if either side only audits; else allow */
  readonly verdict: 'allow' | 'deny' | 'audit';
  readonly egress: Decision;
  readonly ingress: Decision;
}

interface Endpoint {
  readonly key: string;
  readonly pod: Pod;
}

/** The order attribution uses: policy key, as JavaScript compares strings. */
export function comparePolicyKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const policyKey = (p: NetworkPolicy): string => `${p.namespace}/${p.name}`;

function podAt(cluster: ClusterSnapshot, placement: Placement, ip: string): Endpoint | undefined {
  const want = parseIp(ip);
  if (!want) return undefined;
  for (const [key, ips] of placement) {
    if (!ips.some((x) => parseIp(x)?.value === want.value && parseIp(x)?.family === want.family)) continue;
    const pod = cluster.pods.get(key);
    if (pod) return { key, pod };
  }
  return undefined;
}

/** Does `peer` of `policy` cover the other side (address `ip`, pod `who` if it is one)? */
function peerMatches(cluster: ClusterSnapshot, policy: NetworkPolicy, peer: PolicyPeer, ip: string, who: Endpoint | undefined): boolean {
  if (peer.ipBlock) {
    // By address only: pod addresses included.
    const addr = parseIp(ip);
    const block = parseCidr(peer.ipBlock.cidr);
    if (!addr || !block || !cidrContainsIp(block, addr)) return false;
    return !peer.ipBlock.except.some((e) => {
      const ex = parseCidr(e);
      return ex !== undefined && cidrContainsIp(ex, addr);
    });
  }
  if (!who) return false; // selectors select pods only
  if (peer.namespaceSelector) {
    const nsLabels = cluster.namespaces.get(who.pod.namespace)?.labels ?? {};
    if (!matchesSelector(peer.namespaceSelector, nsLabels)) return false;
  } else if (who.pod.namespace !== policy.namespace) {
    return false;
  }
  return !peer.podSelector || matchesSelector(peer.podSelector, who.pod.labels);
}

function portMatches(port: PolicyPort, packet: Packet, dstPod: Endpoint | undefined): boolean {
  if (packet.protocol !== port.protocol) return false;
  if (port.port === undefined) return true; // every port of the protocol
  if (packet.dstPort === undefined) return false;
  if (typeof port.port === 'number') {
    const end = port.endPort ?? port.port;
    return packet.dstPort >= port.port && packet.dstPort <= end;
  }
  // A named port means the destination pod's container port of that name and protocol.
  if (!dstPod) return false;
  return dstPod.pod.ports.some((c) => c.name === port.port && c.protocol === port.protocol && c.port === packet.dstPort);
}

function decide(
  cluster: ClusterSnapshot, subject: Endpoint, direction: PolicyType, packet: Packet,
  other: { ip: string; who: Endpoint | undefined }, dstPod: Endpoint | undefined,
): Decision {
  const all = [...cluster.policies.values()]
    .filter((p) => p.namespace === subject.pod.namespace && p.policyTypes.includes(direction) && matchesSelector(p.podSelector, subject.pod.labels))
    .sort((a, b) => comparePolicyKeys(policyKey(a), policyKey(b)));
  if (all.length === 0) return { verdict: 'allow', reason: 'not-isolated', pod: subject.key };
  // Audit-mode policies never change what is enforced: where an enforcing policy isolates the
  // pod they are ignored; where only they isolate it, they decide, but a denial only reports.
  const enforcing = all.filter((p) => !inAuditMode(p));
  const selecting = enforcing.length > 0 ? enforcing : all;
  for (const policy of selecting) {
    const rules = direction === 'Ingress' ? policy.ingress : policy.egress;
    for (let index = 0; index < rules.length; index++) {
      const rule = rules[index]!;
      const peerOk = rule.peers === undefined || rule.peers.some((peer) => peerMatches(cluster, policy, peer, other.ip, other.who));
      const portOk = rule.ports === undefined || rule.ports.some((port) => portMatches(port, packet, dstPod));
      if (peerOk && portOk) return { verdict: 'allow', reason: 'policy', pod: subject.key, rule: { policy: policyKey(policy), direction, index } };
    }
  }
  const policies = selecting.map(policyKey);
  if (enforcing.length === 0 || inAuditMode(subject.pod) || inAuditMode(cluster.namespaces.get(subject.pod.namespace))) {
    return { verdict: 'audit', reason: 'audit', pod: subject.key, policies };
  }
  return { verdict: 'deny', reason: 'default-deny', pod: subject.key, policies };
}

const NOT_APPLICABLE: Decision = { verdict: 'allow', reason: 'not-applicable' };

export function evaluate(cluster: ClusterSnapshot, placement: Placement, packet: Packet, options: EvaluateOptions = {}): Evaluation {
  const src = podAt(cluster, placement, packet.src);
  const dst = podAt(cluster, placement, packet.dst);
  const node = new Set((options.nodeIps ?? []).map((ip) => parseIp(ip)).filter((x) => x !== undefined).map((x) => `${x.family}|${x.value}`));
  const isNode = (ip: string): boolean => {
    const p = parseIp(ip);
    return p !== undefined && node.has(`${p.family}|${p.value}`);
  };

  let egress: Decision = NOT_APPLICABLE;
  let ingress: Decision = NOT_APPLICABLE;
  if (src && dst && src.key === dst.key) {
    // A pod always reaches itself (the traffic never leaves it).
    egress = { verdict: 'allow', reason: 'self', pod: src.key };
    ingress = { verdict: 'allow', reason: 'self', pod: dst.key };
  } else {
    if (src) {
      egress = isNode(packet.dst)
        ? { verdict: 'allow', reason: 'node', pod: src.key }
        : decide(cluster, src, 'Egress', packet, { ip: packet.dst, who: dst }, dst);
    }
    if (dst) {
      ingress = isNode(packet.src)
        ? { verdict: 'allow', reason: 'node', pod: dst.key }
        : decide(cluster, dst, 'Ingress', packet, { ip: packet.src, who: src }, dst);
    }
  }
  const verdict = egress.verdict === 'deny' || ingress.verdict === 'deny' ? 'deny'
    : egress.verdict === 'audit' || ingress.verdict === 'audit' ? 'audit' : 'allow';
  return { verdict, egress, ingress };
}

/** One line, for tables and test failures: `allow (x/p ingress[0])`, `deny (default; selected by x/a, x/b)`. */
export function formatDecision(d: Decision): string {
  switch (d.reason) {
    case 'not-applicable': return 'allow (not a local pod)';
    case 'not-isolated': return `allow (${d.pod} not isolated)`;
    case 'self': return 'allow (a pod to itself)';
    case 'node': return `allow (${d.pod} and its node)`;
    case 'policy': return `allow (${d.rule.policy} ${d.rule.direction.toLowerCase()}[${d.rule.index}])`;
    case 'default-deny': return `deny (no rule allowed it; ${d.pod} selected by ${d.policies.join(', ')})`;
    case 'audit': return `audit (would be denied: no rule allowed it; ${d.pod} selected by ${d.policies.join(', ')})`;
  }
}
