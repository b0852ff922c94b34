// The reference evaluator for host protection: HostEndpoints, ordered GlobalNetworkPolicies,
// failsafes and the NetworkPolicy tier, as plain code, one packet and one side at a time. It is
// the specification the datapath (bpf/lib/global.h) is tested against
// (test/datapath/global-differential.test.ts), as reference.ts is for NetworkPolicy. Keep it
// obviously correct rather than fast.
//
// Semantics (docs/policy.md, "Host protection"):
// - A packet is judged on one side: entering or leaving a host interface of a node (subject
//   `host`), or entering or leaving a pod (subject `pod`). Direction is relative to that side:
//   Ingress = towards the host (pod), Egress = away from it.
// - Host side: the interface's HostEndpoint is the one of that node naming the interface, else
//   the node's "*" endpoint (a named interface wins). No HostEndpoint: not policed (allow).
// - Failsafes come first on a host endpoint (unless disabled): inbound ones by protocol and
//   destination port for Ingress, outbound ones for Egress. They never apply to forwarded traffic.
// - The global tier: the GlobalNetworkPolicies that select the endpoint and have the direction in
//   types (for forwarded traffic, only those with applyOnForward), evaluated by order (absent
//   last), ties by name; within a policy, rules in order. The first matching Allow or Deny
//   decides. Pass ends the global tier and goes to the NetworkPolicy tier. Log records the rule and
//   goes on. If policies selected the endpoint and none decided or passed: end-of-tier deny.
// - The NetworkPolicy tier: for a pod, NetworkPolicy as reference.ts evaluates it (its decision for
//   that side). NetworkPolicies never select host endpoints, so for a host endpoint the tier is
//   empty and its default applies: deny for the host's own traffic (apart from failsafes, checked
//   first), allow for forwarded traffic (default-deny is for traffic of the host itself, as in
//   Calico). So a host endpoint that no policy selects is default-deny apart from failsafes.
// - Selectors: a policy's selector matches a pod's or a host endpoint's labels; its
//   namespaceSelector, when set, restricts it to pods of the selected namespaces. In rules, the
//   peer is found by address (pods by their placement, host endpoints by expectedIPs); selector
//   and namespaceSelector match like the policy's, against any endpoint with that address; an
//   address of no endpoint matches no selector. nets: any of them; notNets: none of them; ports
//   and notPorts: source ports for `source`, destination ports for `destination`; a named port
//   is a container port (name and protocol) of the pod on that side (host endpoints have none).
// - Audit: the policy.weir.dev/audit annotation. Audit-mode global policies never change what
//   is enforced: the decision is made without them; if they would have denied what is allowed,
//   the verdict is audit (it passes, reported). On a HostEndpoint (or a pod or its namespace)
//   every denial on that side becomes an audit.
import type { ClusterSnapshot } from '../datastore/cluster.js';
import { cidrContainsIp, parseCidr, parseIp } from '../datastore/cidr.js';
import type { GlobalNetworkPolicy, GlobalRule, EntityRule, HostEndpoint, PortMatch, RuleAction } from '../datastore/host-objects.js';
import { ALL_INTERFACES, PROTOCOL_NUMBERS, compareGlobalPolicies, protocolNumber } from '../datastore/host-objects.js';
import type { Labels, Pod, PolicyType } from '../datastore/objects.js';
import { inAuditMode } from '../datastore/objects.js';
import type { FailsafePort, Failsafes } from './failsafe.js';
import { matchFailsafe } from './failsafe.js';
import { evaluate, formatDecision, type Decision, type PacketProtocol, type Placement } from './reference.js';
import { matchesSelector } from './selector.js';

export interface HostPacket {
  readonly src: string;
  readonly dst: string;
  /** a name, or an IP protocol number */
  readonly protocol: PacketProtocol | number;
  readonly srcPort?: number;
  readonly dstPort?: number;
}

export type Subject =
  /** the packet enters (Ingress) or leaves (Egress) the node through `interfaceName`; `forwarded`
   * when it only passes through the node (neither from nor to a host process) */
  | { readonly kind: 'host'; readonly node: string; readonly interfaceName: string; readonly direction: PolicyType; readonly forwarded?: boolean }
  /** the packet enters (Ingress) or leaves (Egress) pod "namespace/name" */
  | { readonly kind: 'pod'; readonly pod: string; readonly direction: PolicyType };

export interface HostWorld {
  /** namespaces, pods and NetworkPolicies */
  readonly cluster: ClusterSnapshot;
  readonly placement: Placement;
  readonly hostEndpoints: readonly HostEndpoint[];
  readonly globalPolicies: readonly GlobalNetworkPolicy[];
  readonly failsafes: Failsafes;
  /** for the NetworkPolicy tier: addresses of the pods' node */
  readonly nodeIps?: readonly string[];
}

export interface GlobalRuleRef {
  readonly policy: string;
  readonly direction: PolicyType;
  /** index in spec.ingress / spec.egress */
  readonly index: number;
  readonly action: RuleAction;
}

/** What decided. */
export type HostDecision =
  /** a host interface without a HostEndpoint */
  | { readonly verdict: 'allow'; readonly reason: 'not-policed' }
  | { readonly verdict: 'allow'; readonly reason: 'failsafe'; readonly hostEndpoint: string; readonly failsafe: FailsafePort }
  /** an Allow or Deny rule of a global policy */
  | { readonly verdict: 'allow' | 'deny'; readonly reason: 'global-rule'; readonly rule: GlobalRuleRef }
  /** global policies (names, in evaluation order) selected the endpoint; none decided or passed */
  | { readonly verdict: 'deny'; readonly reason: 'end-of-tier'; readonly policies: readonly string[] }
  /** a host endpoint's default, no global policy having decided (none selected it, or `passed`):
   * deny for the host's own traffic, allow for forwarded traffic */
  | { readonly verdict: 'allow' | 'deny'; readonly reason: 'host-default'; readonly hostEndpoint: string; readonly forwarded: boolean; readonly passed?: GlobalRuleRef }
  /** a pod's NetworkPolicy tier decided (reference.ts), no global policy selecting it or `passed` */
  | { readonly verdict: 'allow' | 'deny' | 'audit'; readonly reason: 'network-policy'; readonly decision: Decision; readonly passed?: GlobalRuleRef };

export interface HostEvaluation {
  /** audit: passes, but is reported as a denial (see `wouldDeny` or the annotated endpoint) */
  readonly verdict: 'allow' | 'deny' | 'audit';
  readonly decision: HostDecision;
  /** with audit-mode global policies counted: what would have denied it */
  readonly wouldDeny?: HostDecision;
  /** Log rules that matched on the way, in evaluation order */
  readonly logs: readonly GlobalRuleRef[];
}

/** Endpoints that can be selected: a pod or a host endpoint. */
type Endpoint =
  | { readonly kind: 'pod'; readonly key: string; readonly pod: Pod }
  | { readonly kind: 'host'; readonly hep: HostEndpoint };

function sameIp(a: string, b: string): boolean {
  const x = parseIp(a);
  const y = parseIp(b);
  return x !== undefined && y !== undefined && x.family === y.family && x.value === y.value;
}

/** Every endpoint holding `ip`: pods by placement, host endpoints by expectedIPs. */
function endpointsAt(world: HostWorld, ip: string): Endpoint[] {
  const out: Endpoint[] = [];
  for (const [key, ips] of world.placement) {
    const pod = world.cluster.pods.get(key);
    if (pod && ips.some((x) => sameIp(x, ip))) out.push({ kind: 'pod', key, pod });
  }
  for (const hep of world.hostEndpoints) if (hep.expectedIPs.some((x) => sameIp(x, ip))) out.push({ kind: 'host', hep });
  return out;
}

function namespaceLabels(world: HostWorld, pod: Pod): Labels {
  return world.cluster.namespaces.get(pod.namespace)?.labels ?? {};
}

/** selector + namespaceSelector, as a policy's or a rule side's: namespaceSelector set = pods of
 * those namespaces only. */
function selects(world: HostWorld, sel: { selector?: GlobalNetworkPolicy['selector']; namespaceSelector?: GlobalNetworkPolicy['selector'] }, e: Endpoint): boolean {
  if (sel.namespaceSelector) {
    if (e.kind !== 'pod' || !matchesSelector(sel.namespaceSelector, namespaceLabels(world, e.pod))) return false;
  }
  if (!sel.selector) return true;
  return matchesSelector(sel.selector, e.kind === 'pod' ? e.pod.labels : e.hep.labels);
}

function inNets(nets: readonly string[], ip: string): boolean {
  const addr = parseIp(ip);
  return addr !== undefined && nets.some((n) => {
    const c = parseCidr(n);
    return c !== undefined && cidrContainsIp(c, addr);
  });
}

function portMatches(p: PortMatch, port: number, proto: number, endpoints: readonly Endpoint[]): boolean {
  if (!('name' in p)) return port >= p.from && port <= p.to;
  // A named port: a container port of that name and protocol of the pod on this side.
  return endpoints.some((e) => e.kind === 'pod' && e.pod.ports.some((c) => c.name === p.name && PROTOCOL_NUMBERS[c.protocol] === proto && c.port === port));
}

function entityMatches(world: HostWorld, rule: EntityRule, ip: string, port: number | undefined, proto: number): boolean {
  const endpoints = endpointsAt(world, ip);
  if ((rule.selector || rule.namespaceSelector) && !endpoints.some((e) => selects(world, rule, e))) return false;
  if (rule.nets.length > 0 && !inNets(rule.nets, ip)) return false;
  if (rule.notNets.length > 0 && inNets(rule.notNets, ip)) return false;
  if (rule.ports.length > 0 && (port === undefined || !rule.ports.some((p) => portMatches(p, port, proto, endpoints)))) return false;
  if (port !== undefined && rule.notPorts.some((p) => portMatches(p, port, proto, endpoints))) return false;
  return true;
}

function packetProtocol(p: HostPacket['protocol']): number {
  return typeof p === 'number' ? p : PROTOCOL_NUMBERS[p];
}

export function ruleMatches(world: HostWorld, rule: GlobalRule, packet: HostPacket): boolean {
  const proto = packetProtocol(packet.protocol);
  if (rule.protocol !== undefined && protocolNumber(rule.protocol) !== proto) return false;
  return entityMatches(world, rule.source, packet.src, packet.srcPort, proto)
    && entityMatches(world, rule.destination, packet.dst, packet.dstPort, proto);
}

type TierOutcome =
  | { readonly kind: 'decided'; readonly rule: GlobalRuleRef }
  | { readonly kind: 'pass'; readonly rule: GlobalRuleRef }
  | { readonly kind: 'end-of-tier'; readonly policies: readonly string[] }
  | { readonly kind: 'not-selected' };

function globalTier(world: HostWorld, policies: readonly GlobalNetworkPolicy[], direction: PolicyType, packet: HostPacket, logs: GlobalRuleRef[]): TierOutcome {
  if (policies.length === 0) return { kind: 'not-selected' };
  for (const policy of policies) {
    const rules = direction === 'Ingress' ? policy.ingress : policy.egress;
    for (let index = 0; index < rules.length; index++) {
      const rule = rules[index]!;
      if (!ruleMatches(world, rule, packet)) continue;
      const ref: GlobalRuleRef = { policy: policy.name, direction, index, action: rule.action };
      if (rule.action === 'Log') logs.push(ref); // records, and evaluation goes on
      else if (rule.action === 'Pass') return { kind: 'pass', rule: ref };
      else return { kind: 'decided', rule: ref };
    }
  }
  return { kind: 'end-of-tier', policies: policies.map((p) => p.name) };
}

/** The host endpoint of an interface: the node's endpoint naming it, else its "*" endpoint. */
export function hostEndpointFor(endpoints: readonly HostEndpoint[], node: string, interfaceName: string): HostEndpoint | undefined {
  const ofNode = endpoints.filter((h) => h.node === node).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return ofNode.find((h) => h.interfaceName === interfaceName) ?? ofNode.find((h) => h.interfaceName === ALL_INTERFACES);
}

/** The global policies selecting `e` in `direction`, in evaluation order. */
function selecting(world: HostWorld, e: Endpoint, direction: PolicyType, forwarded: boolean, policies: readonly GlobalNetworkPolicy[]): GlobalNetworkPolicy[] {
  return policies
    .filter((p) => p.types.includes(direction) && (!forwarded || p.applyOnForward) && selects(world, p, e))
    .sort(compareGlobalPolicies);
}

/** One run over the given global policies. */
function decide(world: HostWorld, subject: Subject, packet: HostPacket, policies: readonly GlobalNetworkPolicy[], logs: GlobalRuleRef[]): HostDecision {
  if (subject.kind === 'host') {
    const hep = hostEndpointFor(world.hostEndpoints, subject.node, subject.interfaceName);
    if (!hep) return { verdict: 'allow', reason: 'not-policed' };
    const forwarded = subject.forwarded ?? false;
    // Failsafe: never let host policy cut SSH, DHCP, DNS or the control plane (not for forwarded traffic).
    const failsafe = forwarded ? undefined : matchFailsafe(world.failsafes, subject.direction, packet.protocol, packet.dstPort);
    if (failsafe) return { verdict: 'allow', reason: 'failsafe', hostEndpoint: hep.name, failsafe };
    const outcome = globalTier(world, selecting(world, { kind: 'host', hep }, subject.direction, forwarded, policies), subject.direction, packet, logs);
    if (outcome.kind === 'decided') return { verdict: outcome.rule.action === 'Allow' ? 'allow' : 'deny', reason: 'global-rule', rule: outcome.rule };
    if (outcome.kind === 'end-of-tier') return { verdict: 'deny', reason: 'end-of-tier', policies: outcome.policies };
    // Not selected, or passed: no NetworkPolicy selects a host endpoint, so its default applies.
    return {
      verdict: forwarded ? 'allow' : 'deny', reason: 'host-default', hostEndpoint: hep.name, forwarded,
      ...(outcome.kind === 'pass' ? { passed: outcome.rule } : {}),
    };
  }
  const pod = world.cluster.pods.get(subject.pod);
  if (!pod) throw new Error(`unknown pod ${JSON.stringify(subject.pod)}`);
  const outcome = globalTier(world, selecting(world, { kind: 'pod', key: subject.pod, pod }, subject.direction, false, policies), subject.direction, packet, logs);
  if (outcome.kind === 'decided') return { verdict: outcome.rule.action === 'Allow' ? 'allow' : 'deny', reason: 'global-rule', rule: outcome.rule };
  if (outcome.kind === 'end-of-tier') return { verdict: 'deny', reason: 'end-of-tier', policies: outcome.policies };
  // The NetworkPolicy tier, as reference.ts decides that side. A protocol other than TCP, UDP and
  // SCTP matches only NetworkPolicy rules without ports, exactly as ICMP does there.
  const proto = packetProtocol(packet.protocol);
  const npProtocol: PacketProtocol = proto === 6 ? 'TCP' : proto === 17 ? 'UDP' : proto === 132 ? 'SCTP' : proto === 58 ? 'ICMPv6' : 'ICMP';
  const both = evaluate(world.cluster, world.placement, {
    src: packet.src, dst: packet.dst, protocol: npProtocol, ...(packet.dstPort !== undefined ? { dstPort: packet.dstPort } : {}),
  }, world.nodeIps ? { nodeIps: world.nodeIps } : {});
  const decision = subject.direction === 'Ingress' ? both.ingress : both.egress;
  return { verdict: decision.verdict, reason: 'network-policy', decision, ...(outcome.kind === 'pass' ? { passed: outcome.rule } : {}) };
}

/** Is the subject's own endpoint in audit mode (HostEndpoint, or pod or its namespace)? */
function subjectInAudit(world: HostWorld, subject: Subject): boolean {
  if (subject.kind === 'host') return inAuditMode(hostEndpointFor(world.hostEndpoints, subject.node, subject.interfaceName));
  const pod = world.cluster.pods.get(subject.pod);
  return inAuditMode(pod) || (pod !== undefined && inAuditMode(world.cluster.namespaces.get(pod.namespace)));
}

export function evaluateHost(world: HostWorld, subject: Subject, packet: HostPacket): HostEvaluation {
  const logs: GlobalRuleRef[] = [];
  // Enforcement ignores audit-mode global policies; they only report what they would deny.
  const decision = decide(world, subject, packet, world.globalPolicies.filter((p) => !inAuditMode(p)), logs);
  if (decision.verdict === 'deny') return { verdict: subjectInAudit(world, subject) ? 'audit' : 'deny', decision, logs };
  if (decision.verdict === 'audit') return { verdict: 'audit', decision, logs };
  if (world.globalPolicies.some((p) => inAuditMode(p))) {
    const all = decide(world, subject, packet, world.globalPolicies, []);
    if (all.verdict === 'deny') return { verdict: 'audit', decision, wouldDeny: all, logs };
  }
  return { verdict: 'allow', decision, logs };
}

function formatRule(r: GlobalRuleRef): string {
  return `${r.policy} ${r.direction.toLowerCase()}[${r.index}] ${r.action}`;
}

/** One line, for tables and test failures. */
export function formatHostDecision(d: HostDecision): string {
  const passed = 'passed' in d && d.passed ? `, after ${formatRule(d.passed)}` : '';
  switch (d.reason) {
    case 'not-policed': return 'allow (no host endpoint: not policed)';
    case 'failsafe': return `allow (failsafe ${d.failsafe.protocol}/${d.failsafe.port} on ${d.hostEndpoint})`;
    case 'global-rule': return `${d.verdict} (${formatRule(d.rule)})`;
    case 'end-of-tier': return `deny (end of tier: selected by ${d.policies.join(', ')}, no rule decided)`;
    case 'host-default': return `${d.verdict} (host endpoint ${d.hostEndpoint} default${d.forwarded ? ' for forwarded traffic' : ''}${passed})`;
    case 'network-policy': return `${d.verdict} (NetworkPolicy tier${passed}: ${formatDecision(d.decision)})`;
  }
}
