// Random host-protection worlds for the global-tier differential test (test/datapath/
// global-differential.test.ts): on top of policy-gen.ts's pods, namespaces and NetworkPolicies,
// HostEndpoints (this node's "*" one, one naming the interface the test runs on, other nodes'
// endpoints whose expectedIPs make them selectable peers, now and then two listing one address),
// GlobalNetworkPolicies (orders with ties and absent, selectors over pods and host endpoints,
// namespaceSelector, all four actions, protocols by name and number, nets/notNets, ports/notPorts
// with numbers, ranges and names, applyOnForward, audit annotations, types with and without
// rules) and failsafe settings; and packets between pods, the node, outside addresses and other
// nodes' host endpoints.
import { AUDIT_ANNOTATION } from '../../src/datastore/objects.js';
import type { KubeObject, LabelSelector, Labels, Pod, PolicyType } from '../../src/datastore/objects.js';
import type { EntityRule, GlobalNetworkPolicy, GlobalRule, HostEndpoint, PortMatch, RuleAction, RuleProtocol } from '../../src/datastore/host-objects.js';
import { parseCidr } from '../../src/datastore/cidr.js';
import { DEFAULT_FAILSAFES, FAILSAFES_DISABLED, failsafesFrom, type Failsafes } from '../../src/policy/failsafe.js';
import type { GlobalRuleRef, HostDecision, HostEvaluation } from '../../src/policy/host-reference.js';
import type { IdAllocator } from '../../src/policy/ids.js';
import { NODE_IPS, OUTSIDE_IPS, PORTS, randomCluster, type Gen } from './policy-gen.js';

/** The node under test. */
export const NODE = 'node1';
/** The interface BPF_PROG_TEST_RUN runs packets on (lo): the host interface under test. */
export const TEST_IFNAME = 'lo';
export const TEST_IFINDEX = 1;

/** Addresses of other nodes' host endpoints (outside this node: identity WORLD, selectable). */
export const OTHER_HOST_IPS = [['192.0.2.77', '10.8.0.1', '198.51.100.40'], ['2001:db8::77', 'fd08::1']] as const;

const LABEL_KEYS = ['app', 'tier', 'team', 'role'];
const LABEL_VALUES = ['a', 'b', 'c'];
const PORT_NAMES = ['http', 'dns', 'metrics'];
/** Failsafe and other well-known ports packets go to now and then. */
export const HOST_PORTS = [22, 53, 67, 68, 179, 6443];
const NETS = [
  '10.9.0.0/16', '10.9.0.0/28', '10.9.0.4/30', '10.9.255.0/24', '10.0.0.0/8', '0.0.0.0/0', '192.0.2.0/24', '192.0.2.64/26',
  '198.51.100.0/24', '10.8.0.0/16', 'fd09::/16', 'fd09::/120', 'fd09::ff00/120', '::/0', '2001:db8::/32', 'fd08::/64',
];
for (const n of NETS) if (!parseCidr(n)) throw new Error(`bad test cidr ${n}`);

const audit = (g: Gen, p: number): Labels => (g.chance(p) ? { [AUDIT_ANNOTATION]: 'true' } : {});

function randomLabels(g: Gen): Labels {
  const out: Record<string, string> = {};
  for (const k of LABEL_KEYS) if (g.chance(0.4)) out[k] = g.pick(LABEL_VALUES);
  return out;
}

/** A label selector; {} (everything) a fair share of the time. */
export function randomSelector(g: Gen, keys: readonly string[] = LABEL_KEYS): LabelSelector {
  if (g.chance(0.25)) return { matchLabels: {}, matchExpressions: [] };
  const matchLabels: Record<string, string> = {};
  if (g.chance(0.6)) matchLabels[g.pick(keys)] = g.pick(LABEL_VALUES);
  const matchExpressions = g.chance(0.4)
    ? [g.pick([
      { key: g.pick(keys), operator: 'In' as const, values: [g.pick(LABEL_VALUES), g.pick(LABEL_VALUES)] },
      { key: g.pick(keys), operator: 'NotIn' as const, values: [g.pick(LABEL_VALUES)] },
      { key: g.pick(keys), operator: 'Exists' as const, values: [] },
      { key: g.pick(keys), operator: 'DoesNotExist' as const, values: [] },
    ])]
    : [];
  return { matchLabels, matchExpressions };
}

function randomNamespaceSelector(g: Gen): LabelSelector {
  if (g.chance(0.3)) return { matchLabels: { 'kubernetes.io/metadata.name': g.pick(['x', 'y', 'z']) }, matchExpressions: [] };
  return randomSelector(g, ['app', 'tier', 'team']);
}

function randomPortMatch(g: Gen, named: boolean): PortMatch {
  const r = g.int(0, 9);
  if (named && r <= 2) return { name: g.pick(PORT_NAMES) };
  const from = g.pick([...PORTS, ...HOST_PORTS, 1000, 1024, 32768]);
  if (r <= 5) return { from, to: from };
  return { from, to: Math.min(65535, from + g.pick([1, 3, 7, 100, 1000, 30000])) };
}

function randomEntity(g: Gen, ports: boolean): EntityRule {
  const selector = g.chance(0.3) ? randomSelector(g) : undefined;
  const namespaceSelector = g.chance(0.1) ? randomNamespaceSelector(g) : undefined;
  const list = <T>(p: number, max: number, f: () => T): T[] => (g.chance(p) ? Array.from({ length: g.int(1, max) }, f) : []);
  return {
    ...(selector ? { selector } : {}),
    ...(namespaceSelector ? { namespaceSelector } : {}),
    nets: list(0.2, 2, () => g.pick(NETS)),
    notNets: list(0.12, 2, () => g.pick(NETS)),
    ports: ports ? list(0.4, 2, () => randomPortMatch(g, true)) : [],
    notPorts: ports ? list(0.12, 2, () => randomPortMatch(g, true)) : [],
  };
}

const ACTIONS: readonly RuleAction[] = ['Allow', 'Allow', 'Allow', 'Deny', 'Deny', 'Pass', 'Pass', 'Log', 'Log'];

function randomRule(g: Gen): GlobalRule {
  const protocol = g.pick<RuleProtocol | undefined>([undefined, undefined, undefined, 'TCP', 'TCP', 'UDP', 'SCTP', 'ICMP', 'ICMPv6', 47, 6]);
  // ports need TCP, UDP or SCTP (the schema refuses them otherwise)
  const ports = protocol === 'TCP' || protocol === 'UDP' || protocol === 'SCTP' || protocol === 6;
  return {
    action: g.pick(ACTIONS),
    ...(protocol !== undefined ? { protocol } : {}),
    // source ports less often than destination ports
    source: randomEntity(g, ports && g.chance(0.4)),
    destination: randomEntity(g, ports),
  };
}

function randomGlobalPolicy(g: Gen, round: number, i: number): GlobalNetworkPolicy {
  const ingress = Array.from({ length: g.int(0, 3) }, () => randomRule(g));
  const egress = Array.from({ length: g.int(0, 3) }, () => randomRule(g));
  const types = g.pick<PolicyType[]>([['Ingress'], ['Egress'], ['Ingress', 'Egress'], ['Ingress', 'Egress']]);
  const order = g.pick([undefined, undefined, 1, 5, 5, 10, 100]);
  const namespaceSelector = g.chance(0.15) ? randomNamespaceSelector(g) : undefined;
  return {
    kind: 'GlobalNetworkPolicy',
    // names that sort differently from their creation order, so ties by name matter
    name: `${g.pick(['a', 'm', 'z'])}-r${round}-g${i}`,
    annotations: audit(g, 0.15),
    ...(order !== undefined ? { order } : {}),
    selector: randomSelector(g),
    ...(namespaceSelector ? { namespaceSelector } : {}),
    types,
    ingress,
    egress,
    applyOnForward: g.chance(0.4),
  };
}

function hep(name: string, node: string, interfaceName: string, expectedIPs: string[], g: Gen): HostEndpoint {
  return { kind: 'HostEndpoint', name, labels: randomLabels(g), annotations: audit(g, 0.1), node, interfaceName, expectedIPs };
}

function randomHostEndpoints(g: Gen): HostEndpoint[] {
  const out: HostEndpoint[] = [];
  // this node: "*" (usually listing the node's addresses), and one naming the test interface
  if (g.chance(0.8)) out.push(hep(`${NODE}-star`, NODE, '*', NODE_IPS.filter(() => g.chance(0.8)), g));
  if (g.chance(0.4)) out.push(hep(`${NODE}-${TEST_IFNAME}`, NODE, TEST_IFNAME, NODE_IPS.filter(() => g.chance(0.3)), g));
  // other nodes: their addresses, sometimes one listed by two endpoints
  const others = [...OTHER_HOST_IPS[0], ...OTHER_HOST_IPS[1]];
  for (const [i, node] of ['node2', 'node3'].entries()) {
    if (!g.chance(0.6)) continue;
    const ips = others.filter(() => g.chance(0.35));
    out.push(hep(`${node}-star`, node, '*', ips, g));
    if (g.chance(0.3)) out.push(hep(`${node}-eth${i}`, node, `eth${i}`, ips.filter(() => g.chance(0.6)), g));
  }
  return out;
}

function randomFailsafes(g: Gen): Failsafes {
  switch (g.int(0, 4)) {
    case 0: return FAILSAFES_DISABLED;
    case 1: return failsafesFrom({ inbound: 'tcp:80,udp:53,sctp:81', outbound: 'tcp:443,udp:53' });
    case 2: return failsafesFrom({ inbound: '', outbound: 'tcp:8080' });
    default: return DEFAULT_FAILSAFES;
  }
}

export interface HostScenario {
  /** namespaces, pods, NetworkPolicies (policy-gen.ts) */
  readonly objects: KubeObject[];
  readonly hostEndpoints: HostEndpoint[];
  readonly globalPolicies: GlobalNetworkPolicy[];
  readonly failsafes: Failsafes;
}

export function randomHostScenario(g: Gen, round: number): HostScenario {
  const objects = randomCluster(g, round);
  const globalPolicies = Array.from({ length: g.int(0, 5) }, (_, i) => randomGlobalPolicy(g, round, i));
  return { objects, hostEndpoints: randomHostEndpoints(g), globalPolicies, failsafes: randomFailsafes(g) };
}

/** A packet as the differential test draws it. */
export interface DrawnPacket {
  readonly src: string;
  readonly dst: string;
  /** 6, 17, 132, 1, 58, or another IP protocol (no ports) */
  readonly proto: number;
  /** TCP, UDP, SCTP only */
  readonly srcPort?: number;
  readonly dstPort?: number;
}

/** Where an address is, seen from the node under test. */
export type Place = 'pod' | 'node' | 'outside';

export function randomHostPacket(g: Gen, pods: readonly Pod[]): DrawnPacket {
  const v6 = g.chance(0.3);
  const fam = v6 ? 1 : 0;
  const addr = (): string => {
    const r = g.int(0, 11);
    if (r <= 1) return NODE_IPS[fam]!;
    if (r <= 3) return g.pick(OUTSIDE_IPS[fam]);
    if (r <= 5) return g.pick(OTHER_HOST_IPS[fam]);
    return g.pick(pods).ips[fam]!;
  };
  const src = addr();
  const dst = addr();
  const proto = g.pick([6, 6, 6, 17, 17, 132, v6 ? 58 : 1, v6 ? 58 : 1, 47]);
  if (proto !== 6 && proto !== 17 && proto !== 132) return { src, dst, proto };
  const srcPort = g.chance(0.4) ? g.pick([...PORTS, ...HOST_PORTS, 1000, 1001, 8000]) : g.int(1024, 65535);
  // now and then one of the destination pod's container ports (named ports), a failsafe port
  const dstPod = pods.find((p) => p.ips.includes(dst));
  if (dstPod && dstPod.ports.length > 0 && g.chance(0.35)) {
    const c = g.pick(dstPod.ports);
    return { src, dst, proto: c.protocol === 'TCP' ? 6 : c.protocol === 'UDP' ? 17 : 132, srcPort, dstPort: c.port };
  }
  const r = g.int(0, 9);
  const dstPort = r <= 4 ? g.pick([...PORTS, 82, 1001, 8081]) : r <= 7 ? g.pick(HOST_PORTS) : g.int(1, 65535);
  return { src, dst, proto, srcPort, dstPort };
}

// ---- what the datapath must say for one side, from the reference's evaluation ----------------

/** A rule id as the differential tests compare it: "gnp NAME Egress[1] Deny", "np NS/NAME
 * Ingress[0]", '' for none. */
export function ruleName(ids: IdAllocator, id: number): string {
  if (id === 0) return '';
  const r = ids.ruleInfo(id);
  if (!r) return `unknown rule ${id}`;
  return r.kind === 'NetworkPolicy' ? `np ${r.policy} ${r.direction}[${r.index}]` : `gnp ${r.policy} ${r.direction}[${r.index}] ${r.action}`;
}

const globalRuleName = (r: GlobalRuleRef): string => `gnp ${r.policy} ${r.direction}[${r.index}] ${r.action}`;

export interface SideExpectation {
  /** abi.Reason name of the side's decision (AUDIT when it passes only because of audit) */
  readonly reason: string;
  /** ruleName() of the rule its records name: the deciding global rule, the Pass rule that led
   * to a host endpoint's default, the NetworkPolicy rule; '' for none */
  readonly rule: string;
  /** ruleName() of each Log rule that matched, in order */
  readonly logs: readonly string[];
}

/** The BPF reason, record rule and Log rules of one side the reference judged. */
export function hostSideExpectation(ev: HostEvaluation): SideExpectation {
  const d = ev.decision;
  let reason: string;
  let rule = '';
  switch (d.reason) {
    case 'not-policed': reason = 'ALLOW_UNPOLICED'; break;
    case 'failsafe': reason = 'ALLOW_FAILSAFE'; break;
    case 'global-rule':
      reason = d.verdict === 'allow' ? 'ALLOW_GLOBAL' : 'DENY_POLICY';
      rule = globalRuleName(d.rule);
      break;
    case 'end-of-tier': reason = 'DENY_END_OF_TIER'; break;
    case 'host-default':
      reason = d.verdict === 'allow' ? 'ALLOW_FORWARDED' : 'DENY_HOST_DEFAULT';
      if (d.passed) rule = globalRuleName(d.passed);
      break;
    case 'network-policy': {
      const np = d.decision;
      reason = { 'not-isolated': 'ALLOW_NOT_ISOLATED', node: 'ALLOW_HOST', policy: 'ALLOW_POLICY', 'default-deny': 'DENY_DEFAULT', audit: 'AUDIT', self: 'UNEXPECTED(self)', 'not-applicable': 'UNEXPECTED(not-applicable)' }[np.reason];
      if (np.reason === 'policy') rule = `np ${np.rule.policy} ${np.rule.direction}[${np.rule.index}]`;
      break;
    }
  }
  if (ev.verdict === 'audit') reason = 'AUDIT';
  // An allow that only audit-mode policies would deny: the records name what would deny it.
  if (ev.wouldDeny) rule = recordRule(ev.wouldDeny);
  return { reason, rule, logs: ev.logs.map(globalRuleName) };
}

/** The rule a record names for a decision: the deciding global rule, the Pass rule that led to
 * a host endpoint's default, a NetworkPolicy rule; '' for none. */
function recordRule(d: HostDecision): string {
  switch (d.reason) {
    case 'global-rule': return globalRuleName(d.rule);
    case 'host-default': return d.passed ? globalRuleName(d.passed) : '';
    case 'network-policy': return d.decision.reason === 'policy' ? `np ${d.decision.rule.policy} ${d.decision.rule.direction}[${d.decision.rule.index}]` : '';
    default: return '';
  }
}
