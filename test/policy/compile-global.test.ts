// The global tier of the compiler (src/policy/compile-global.ts): host interfaces, identities and
// selector identities of addresses, list order and variants, sets, failsafes; then a model of the
// datapath's walk over the compiled maps against the host reference evaluator on random rules.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import { parseManifestText, type ManifestProblem } from '../../src/datastore/manifest.js';
import type { EntityRule, GlobalNetworkPolicy, GlobalRule, HostEndpoint, PortMatch, RuleAction } from '../../src/datastore/host-objects.js';
import type { LabelSelector, Pod } from '../../src/datastore/objects.js';
import { compilePolicy, globalTierKey, type CompiledDatapath, type HostCompileOptions, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { DEFAULT_FAILSAFES, FAILSAFES_DISABLED, type Failsafes } from '../../src/policy/failsafe.js';
import { evaluateHost, type HostDecision, type HostPacket, type HostWorld, type Subject } from '../../src/policy/host-reference.js';
import { EndpointFlag, GlobalAction, GlobalSet, GlobalTierVariant, Identity, Proto, ipToKey16 } from '../../src/datapath/abi.js';

const NODE = 'node1';
const STAR_IP = '192.0.2.10';
const ETH1_IP = '192.0.2.11';
const NODE2_IP = '192.0.2.20';
const SHARED_IP = '192.0.2.30'; // listed by node2-star and node2-vip
const IFINDEX = { eth0: 2, eth1: 3, eth2: 4 } as const;

const BASE = `
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {team: b}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
spec: {containers: [{ports: [{containerPort: 8080, name: http}, {containerPort: 53, name: dns, protocol: UDP}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: client}}
spec: {containers: [{ports: [{containerPort: 9090, name: http}]}]}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: y, labels: {app: client}}
spec: {containers: [{ports: [{containerPort: 7070, name: http, protocol: UDP}]}]}
status: {podIPs: [{ip: 10.0.1.1}, {ip: "fd00::11"}]}
---
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: node1-star, labels: {role: node}}
spec: {node: node1, interfaceName: "*", expectedIPs: [${STAR_IP}]}
---
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: node1-eth1, labels: {role: uplink}}
spec: {node: node1, interfaceName: eth1, expectedIPs: [${ETH1_IP}]}
---
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: node2-star, labels: {role: node}}
spec: {node: node2, interfaceName: "*", expectedIPs: [${NODE2_IP}, ${SHARED_IP}]}
---
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: node2-vip, labels: {role: vip}}
spec: {node: node2, interfaceName: vip0, expectedIPs: [${SHARED_IP}]}
`;

interface Built {
  readonly out: CompiledDatapath;
  readonly ids: IdAllocator;
  readonly cluster: ClusterState;
  readonly host: HostCompileOptions;
  readonly placed: readonly PlacedPod[];
  /** identity of a pod address */
  readonly id: (ip: string) => number;
}

function build(extra = '', opts: { failsafes?: Failsafes; policies?: readonly GlobalNetworkPolicy[]; host?: boolean } = {}): Built {
  const problems: ManifestProblem[] = [];
  const objects = parseManifestText(`${BASE}${extra ? `---\n${extra}` : ''}`, 't.yaml', problems);
  assert.deepEqual(problems, []);
  const cluster = new ClusterState(objects.map((o) => o.object));
  const placed: PlacedPod[] = [...cluster.pods.values()].map((pod: Pod, i) => ({ pod, ips: pod.ips, ifindex: 10 + i }));
  const host: HostCompileOptions = {
    node: NODE, hostEndpoints: [...cluster.hostEndpoints.values()],
    globalPolicies: opts.policies ?? [...cluster.globalPolicies.values()],
    failsafes: opts.failsafes ?? DEFAULT_FAILSAFES, interfaces: new Map(Object.entries(IFINDEX)),
  };
  const ids = new IdAllocator();
  const out = compilePolicy(cluster, placed, ids, { hostIps: [STAR_IP, ETH1_IP], ...(opts.host === false ? {} : { host }) });
  return { out, ids, cluster, host, placed, id: (ip) => out.endpoints.get(ip)!.identity };
}

const starIdentity = (b: Built): number => b.out.hostInterfaces.get(0)!.identity;

/** The rules of a subject's list, as "policy direction[index] Action". */
function listOf(b: Built, identity: number, direction: 0 | 1, variant = 0): string[] | undefined {
  const t = b.out.globalTiers.get(globalTierKey({ identity, direction, variant }));
  if (!t) return undefined;
  return b.out.globalRules.slice(t.first, t.first + t.count).map((r) => {
    const info = b.ids.ruleInfo(r.ruleId);
    assert.ok(info?.kind === 'GlobalNetworkPolicy');
    assert.equal(r.action, GlobalAction[info.action.toUpperCase() as 'ALLOW'], 'the compiled action is the rule\'s');
    return `${info.policy} ${info.direction}[${info.index}] ${info.action}`;
  });
}

/** Members of a set: "member" or "member/proto:port". */
function members(b: Built, set: number): string[] {
  return [...b.out.globalSets.values()].filter((e) => e.set === set)
    .map((e) => (e.port === 0 ? `${e.member}` : `${e.member}/${e.port >>> 16}:${e.port & 0xffff}`)).sort();
}

const gnp = (name: string, spec: string, annotations = ''): string => `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: ${name}${annotations ? `, annotations: {${annotations}}` : ''}}
spec: ${spec}
---`;

test('without host options nothing is added: empty host-protection maps, sel identity = identity', () => {
  const b = build(gnp('all', '{selector: {}, ingress: [{action: Deny}]}'), { host: false });
  assert.equal(b.out.hostInterfaces.size + b.out.globalTiers.size + b.out.globalRules.length + b.out.globalSets.size + b.out.globalPorts.size, 0);
  assert.equal(b.out.endpoints.size, 6, 'pods and node addresses only');
  for (const e of b.out.endpoints.values()) assert.equal(e.selIdentity ?? e.identity, e.identity);
  assert.equal(b.out.endpoints.get('10.0.0.1')!.flags & (EndpointFlag.GLOBAL_INGRESS | EndpointFlag.AUDIT_ALL), 0);
});

test('host interfaces: a named interface\'s endpoint wins, else "*" (key 0); other nodes\' endpoints are no subjects', () => {
  const b = build(`
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: node1-eth2, labels: {role: node}, annotations: {policy.weir.dev/audit: "true"}}
spec: {node: node1, interfaceName: eth2, expectedIPs: []}
`);
  const hif = b.out.hostInterfaces;
  assert.deepEqual([...hif.keys()].sort(), [0, IFINDEX.eth0, IFINDEX.eth1, IFINDEX.eth2]);
  assert.equal(hif.get(0)!.hostEndpoint, 'node1-star');
  assert.deepEqual(hif.get(IFINDEX.eth0), hif.get(0), 'eth0 has no endpoint of its own: "*"');
  assert.equal(hif.get(IFINDEX.eth1)!.hostEndpoint, 'node1-eth1');
  assert.equal(hif.get(IFINDEX.eth1)!.id, b.ids.endpoint('host:node1-eth1'));
  assert.notEqual(hif.get(IFINDEX.eth1)!.identity, hif.get(0)!.identity);
  // same labels, same identity; the audit annotation is a flag of the interface entry
  assert.equal(hif.get(IFINDEX.eth2)!.identity, hif.get(0)!.identity);
  assert.equal(hif.get(IFINDEX.eth2)!.flags, EndpointFlag.AUDIT_ALL);
  assert.equal(hif.get(0)!.flags, 0);
  // no "*" endpoint on the node: no key 0, and interfaces without an endpoint are not policed
  const none = compilePolicy(b.cluster, b.placed, new IdAllocator(), {
    host: { ...b.host, hostEndpoints: b.host.hostEndpoints.filter((h) => h.name !== 'node1-star') },
  });
  assert.deepEqual([...none.hostInterfaces.keys()].sort(), [IFINDEX.eth1, IFINDEX.eth2]);
});

test('addresses: the node\'s keep identity HOST, other host endpoints\' are WORLD; selectors see the endpoints listing them', () => {
  const b = build();
  const star = b.out.endpoints.get(STAR_IP)!;
  assert.deepEqual({ ...star, selIdentity: 0 }, { key: '(host)', id: 0, identity: Identity.HOST, ifindex: 0, flags: 0, selIdentity: 0 });
  assert.equal(star.selIdentity, starIdentity(b), 'one host endpoint: its own identity');
  assert.equal(b.out.endpoints.get(ETH1_IP)!.selIdentity, b.out.hostInterfaces.get(IFINDEX.eth1)!.identity);
  const node2 = b.out.endpoints.get(NODE2_IP)!;
  assert.deepEqual(node2, { key: 'host:node2-star', id: b.ids.endpoint('host:node2-star'), identity: Identity.WORLD, ifindex: 0, flags: 0, selIdentity: starIdentity(b) });
  const shared = b.out.endpoints.get(SHARED_IP)!;
  assert.equal(shared.identity, Identity.WORLD);
  assert.ok(![0, starIdentity(b), node2.selIdentity].includes(shared.selIdentity!), 'two host endpoints: an identity of their own');
  // pods: their identity
  assert.equal(b.out.endpoints.get('10.0.0.1')!.selIdentity, b.id('10.0.0.1'));
});

test('list order: by order then name, absent order last; rules in order; Pass and Log kept; equal lists shared', () => {
  const b = build([
    gnp('p-z', '{selector: {matchLabels: {role: node}}, ingress: [{action: Allow}]}'),
    gnp('p-b', '{order: 10, selector: {matchLabels: {role: node}}, ingress: [{action: Log}, {action: Pass, protocol: UDP}]}'),
    gnp('p-a', '{order: 10, selector: {matchLabels: {role: node}}, ingress: [{action: Deny, protocol: 17}]}'),
    gnp('p-first', '{order: 1, selector: {}, ingress: [{action: Log}], egress: [{action: Allow}]}'),
  ].join('\n'));
  const star = starIdentity(b);
  assert.deepEqual(listOf(b, star, 0), [
    'p-first Ingress[0] Log', 'p-a Ingress[0] Deny', 'p-b Ingress[0] Log', 'p-b Ingress[1] Pass', 'p-z Ingress[0] Allow',
  ]);
  assert.equal(b.out.globalRules[b.out.globalTiers.get(globalTierKey({ identity: star, direction: 0, variant: 0 }))!.first + 1]!.proto, Proto.UDP);
  assert.deepEqual(listOf(b, star, 1), ['p-first Egress[0] Allow']);
  // eth1 (role uplink) and the pods: only p-first; one copy of each list
  const uplink = b.out.hostInterfaces.get(IFINDEX.eth1)!.identity;
  assert.deepEqual(listOf(b, uplink, 0), ['p-first Ingress[0] Log']);
  const t = (identity: number) => b.out.globalTiers.get(globalTierKey({ identity, direction: 0, variant: 0 }))!;
  assert.deepEqual(t(b.id('10.0.0.1')), { ...t(uplink), identity: b.id('10.0.0.1') });
  assert.equal(b.out.globalRules.length, 5 + 1 + 1);
  // pods with lists carry the flags
  assert.equal(b.out.endpoints.get('10.0.0.1')!.flags & (EndpointFlag.GLOBAL_INGRESS | EndpointFlag.GLOBAL_EGRESS), EndpointFlag.GLOBAL_INGRESS | EndpointFlag.GLOBAL_EGRESS);
});

test('a policy selecting a subject without rules that way: a list of 0 rules (end-of-tier deny); not selected: no list', () => {
  const b = build(gnp('ingress-only', '{selector: {matchLabels: {role: node}}, types: [Ingress, Egress], ingress: [{action: Allow}]}'));
  const star = starIdentity(b);
  const egress = b.out.globalTiers.get(globalTierKey({ identity: star, direction: 1, variant: 0 }));
  assert.equal(egress?.count, 0);
  assert.equal(listOf(b, b.out.hostInterfaces.get(IFINDEX.eth1)!.identity, 0), undefined);
  assert.equal(listOf(b, b.id('10.0.0.1'), 0), undefined);
  assert.equal(b.out.endpoints.get('10.0.0.1')!.flags & (EndpointFlag.GLOBAL_INGRESS | EndpointFlag.GLOBAL_EGRESS), 0);
});

test('audit mode: the enforced list leaves audit-mode policies out, the WITH_AUDIT one has them; AUDIT_ALL for audited pods', () => {
  const audit = 'policy.weir.dev/audit: "true"';
  const b = build([
    gnp('enforce', '{order: 2, selector: {matchLabels: {app: web}}, ingress: [{action: Allow, protocol: TCP}]}'),
    gnp('try', '{order: 1, selector: {}, namespaceSelector: {matchLabels: {team: a}}, ingress: [{action: Deny}]}', audit),
    `apiVersion: v1
kind: Pod
metadata: {name: d, namespace: y, labels: {app: other}, annotations: {${audit}}}
spec: {containers: [{}]}
status: {podIP: 10.0.1.2}
---`,
  ].join('\n'));
  const web = b.id('10.0.0.1');
  assert.deepEqual(listOf(b, web, 0), ['enforce Ingress[0] Allow']);
  assert.deepEqual(listOf(b, web, 0, GlobalTierVariant.WITH_AUDIT), ['try Ingress[0] Deny', 'enforce Ingress[0] Allow']);
  assert.equal(b.out.endpoints.get('10.0.0.1')!.flags & 0x3e000, EndpointFlag.GLOBAL_INGRESS | EndpointFlag.GAUDIT_INGRESS);
  // x/b: selected by the audit-mode policy only
  const client = b.id('10.0.0.2');
  assert.equal(listOf(b, client, 0), undefined);
  assert.deepEqual(listOf(b, client, 0, GlobalTierVariant.WITH_AUDIT), ['try Ingress[0] Deny']);
  assert.equal(b.out.endpoints.get('10.0.0.2')!.flags & 0x3e000, EndpointFlag.GAUDIT_INGRESS);
  // the host endpoints: a namespaceSelector never selects them
  assert.equal(listOf(b, starIdentity(b), 0, GlobalTierVariant.WITH_AUDIT), undefined);
  // y/d in audit mode: AUDIT_ALL besides the NetworkPolicy audit flags; y/c not
  assert.equal(b.out.endpoints.get('10.0.1.2')!.flags & EndpointFlag.AUDIT_ALL, EndpointFlag.AUDIT_ALL);
  assert.equal(b.out.endpoints.get('10.0.1.1')!.flags & EndpointFlag.AUDIT_ALL, 0);
});

test('forwarded variant: applyOnForward policies only, for host endpoints (with audit when an audit one selects)', () => {
  const b = build([
    gnp('fwd', '{order: 1, selector: {}, applyOnForward: true, ingress: [{action: Deny}]}'),
    gnp('fwd-audit', '{order: 2, selector: {matchLabels: {role: node}}, applyOnForward: true, ingress: [{action: Log}]}', 'policy.weir.dev/audit: "true"'),
    gnp('own', '{order: 3, selector: {}, ingress: [{action: Allow}]}'),
  ].join('\n'));
  const star = starIdentity(b);
  assert.deepEqual(listOf(b, star, 0), ['fwd Ingress[0] Deny', 'own Ingress[0] Allow']);
  assert.deepEqual(listOf(b, star, 0, GlobalTierVariant.FORWARDED), ['fwd Ingress[0] Deny']);
  assert.deepEqual(listOf(b, star, 0, GlobalTierVariant.FORWARDED | GlobalTierVariant.WITH_AUDIT), ['fwd Ingress[0] Deny', 'fwd-audit Ingress[0] Log']);
  assert.equal(listOf(b, b.out.hostInterfaces.get(IFINDEX.eth1)!.identity, 0, GlobalTierVariant.FORWARDED | GlobalTierVariant.WITH_AUDIT), undefined);
  assert.equal(listOf(b, b.id('10.0.0.1'), 0, GlobalTierVariant.FORWARDED), undefined, 'pods have no forwarded lists');
});

test('sets: selectors by sel identity, nets by CIDR class, port blocks, named ports per identity and protocol', () => {
  const b = build(gnp('sets', `{selector: {matchLabels: {role: node}}, ingress: [
    {action: Allow, protocol: TCP,
     source: {selector: {matchLabels: {app: client}}, namespaceSelector: {matchLabels: {team: a}}, nets: [10.0.0.0/8], notNets: [10.0.1.0/24]},
     destination: {selector: {matchExpressions: [{key: role, operator: In, values: [node, vip]}]}, ports: ["8000:8003", http], notPorts: [8001]}},
    {action: Deny, source: {namespaceSelector: {}}, destination: {selector: {matchLabels: {role: node}}}}]}`));
  const t = b.out.globalTiers.get(globalTierKey({ identity: starIdentity(b), direction: 0, variant: 0 }))!;
  const [allow, deny] = b.out.globalRules.slice(t.first, t.first + t.count);
  assert.ok(allow && deny && t.count === 2);
  // x/b only (app=client in a team=a namespace); host endpoints never with a namespaceSelector
  assert.deepEqual(members(b, allow.srcSel), [`${b.id('10.0.0.2')}`]);
  // the node's and node2's addresses (role node), the shared one (node2-vip has role vip); no pods
  const sel = (ip: string) => `${b.out.endpoints.get(ip)!.selIdentity}`;
  assert.deepEqual(members(b, allow.dstSel), [...new Set([sel(STAR_IP), sel(SHARED_IP)])].sort());
  // nets: every class inside 10.0.0.0/8; notNets: the /24's class
  const cls = (cidr: string) => b.out.cidrClasses.get(cidr)!.classId;
  assert.deepEqual(members(b, allow.srcNets), [`${cls('10.0.0.0/8')}`, `${cls('10.0.1.0/24')}`].sort());
  assert.deepEqual(members(b, allow.srcNotNets), [`${cls('10.0.1.0/24')}`]);
  assert.equal(allow.dstNets, 0);
  // ports: the block 8000-8003 and, for the name, each identity with a TCP port "http" (y/c's is UDP)
  const blocks = (set: number) => [...b.out.globalPorts.values()].filter((p) => p.set === set).map((p) => `${p.port}/${p.bits}`);
  assert.deepEqual(blocks(allow.dstPorts), ['8000/14']);
  assert.deepEqual(members(b, allow.dstPorts), [`${b.id('10.0.0.1')}/6:8080`, `${b.id('10.0.0.2')}/6:9090`].sort());
  assert.deepEqual(blocks(allow.dstNotPorts), ['8001/16']);
  assert.equal(allow.srcPorts, 0);
  assert.equal(allow.proto, Proto.TCP);
  // namespaceSelector {}: every pod, no host endpoint
  assert.deepEqual(members(b, deny.srcSel), [...new Set(['10.0.0.1', '10.0.0.2', '10.0.1.1'].map((ip) => `${b.id(ip)}`))].sort());
  assert.equal(deny.proto, 0);
  for (const s of [allow.srcSel, allow.dstSel, allow.srcNets, allow.srcNotNets, allow.dstPorts, allow.dstNotPorts, deny.srcSel, deny.dstSel]) {
    assert.ok(s >= GlobalSet.FIRST_DYNAMIC);
  }
});

test('failsafes: sets 1 (inbound) and 2 (outbound) by protocol and port; none when disabled', () => {
  const on = build('', { failsafes: { enabled: true, inbound: [{ protocol: 'TCP', port: 22 }], outbound: [{ protocol: 'UDP', port: 53 }] } });
  assert.deepEqual(members(on, GlobalSet.FAILSAFE_IN), ['0/6:22']);
  assert.deepEqual(members(on, GlobalSet.FAILSAFE_OUT), ['0/17:53']);
  const off = build('', { failsafes: FAILSAFES_DISABLED });
  assert.equal(off.out.globalSets.size, 0);
});

// ---- the compiled maps, walked as the datapath walks them, against the reference ---------------

/** The datapath's view of one address: its sel identity and CIDR class. */
function addressOf(out: CompiledDatapath, ip: string): { sel: number; cls: number } {
  const key = ipToKey16(ip);
  let sel = 0;
  for (const [addr, e] of out.endpoints) if (ipToKey16(addr).equals(key)) sel = e.selIdentity ?? e.identity;
  const v = key.reduce((acc, byte) => (acc << 8n) | BigInt(byte), 0n);
  let best = { len: -1, cls: 0 };
  for (const c of out.cidrClasses.values()) {
    const shift = BigInt(128 - c.prefixLen128);
    if ((v >> shift) === (c.network128 >> shift) && c.prefixLen128 > best.len) best = { len: c.prefixLen128, cls: c.classId };
  }
  return { sel, cls: best.cls };
}

type Walk = { kind: 'decided' | 'pass'; ruleId: number } | { kind: 'end-of-tier' } | { kind: 'not-selected' };

function walk(out: CompiledDatapath, identity: number, direction: 0 | 1, variant: number, p: HostPacket, proto: number, logs: number[]): Walk {
  const t = out.globalTiers.get(globalTierKey({ identity, direction, variant }));
  if (!t) return { kind: 'not-selected' };
  const has = (set: number, member: number, port = 0) => out.globalSets.has(`${set}|${member}|${port}`);
  const l4 = proto === Proto.TCP || proto === Proto.UDP || proto === Proto.SCTP;
  const inPorts = (set: number, port: number | undefined, sel: number): boolean => {
    if (!l4 || port === undefined) return false;
    for (let bits = 0; bits <= 16; bits++) if (out.globalPorts.has(`${set}|${port & ~((1 << (16 - bits)) - 1) & 0xffff}/${bits}`)) return true;
    return has(set, sel, (proto << 16) | port);
  };
  const src = addressOf(out, p.src);
  const dst = addressOf(out, p.dst);
  for (const r of out.globalRules.slice(t.first, t.first + t.count)) {
    const side = (a: { sel: number; cls: number }, port: number | undefined, s: { sel: number; nets: number; notNets: number; ports: number; notPorts: number }) =>
      (s.sel === 0 || has(s.sel, a.sel)) && (s.nets === 0 || has(s.nets, a.cls)) && (s.notNets === 0 || !has(s.notNets, a.cls))
      && (s.ports === 0 || inPorts(s.ports, port, a.sel)) && (s.notPorts === 0 || !inPorts(s.notPorts, port, a.sel));
    if (r.proto !== 0 && r.proto !== proto) continue;
    if (!side(src, p.srcPort, { sel: r.srcSel, nets: r.srcNets, notNets: r.srcNotNets, ports: r.srcPorts, notPorts: r.srcNotPorts })) continue;
    if (!side(dst, p.dstPort, { sel: r.dstSel, nets: r.dstNets, notNets: r.dstNotNets, ports: r.dstPorts, notPorts: r.dstNotPorts })) continue;
    if (r.action === GlobalAction.LOG) logs.push(r.ruleId);
    else return { kind: r.action === GlobalAction.PASS ? 'pass' : 'decided', ruleId: r.ruleId };
  }
  return { kind: 'end-of-tier' };
}

/** The reference's decision in the model's terms. */
function summarize(d: HostDecision, ids: IdAllocator): string {
  const rule = (r: { policy: string; direction: string; index: number; action: RuleAction }) =>
    `${ids.rule({ kind: 'GlobalNetworkPolicy', policy: r.policy, direction: r.direction as 'Ingress', index: r.index, action: r.action })}`;
  switch (d.reason) {
    case 'global-rule': return `${d.verdict} rule ${rule(d.rule)}`;
    case 'end-of-tier': return 'deny end-of-tier';
    case 'failsafe': return 'allow failsafe';
    case 'host-default': return `${d.verdict} default${d.passed ? ` after ${rule(d.passed)}` : ''}`;
    case 'network-policy': return `tier-2${d.passed ? ` after ${rule(d.passed)}` : ''}`;
    case 'not-policed': return 'allow not-policed';
  }
}

function modelDecision(b: Built, subject: Subject, p: HostPacket, logs: number[]): string {
  const proto = typeof p.protocol === 'number' ? p.protocol : { TCP: 6, UDP: 17, SCTP: 132, ICMP: 1, ICMPv6: 58 }[p.protocol];
  const direction = subject.direction === 'Ingress' ? 0 : 1;
  const verdict = (w: Walk, fallback: (passed: string) => string): string => {
    if (w.kind === 'decided') return `${b.out.globalRules.find((r) => r.ruleId === w.ruleId)!.action === GlobalAction.ALLOW ? 'allow' : 'deny'} rule ${w.ruleId}`;
    if (w.kind === 'end-of-tier') return 'deny end-of-tier';
    return fallback(w.kind === 'pass' ? ` after ${w.ruleId}` : '');
  };
  if (subject.kind === 'pod') {
    const identity = b.out.endpoints.get(b.cluster.pods.get(subject.pod)!.ips[0]!)!.identity;
    return verdict(walk(b.out, identity, direction, 0, p, proto, logs), (passed) => `tier-2${passed}`);
  }
  const hif = b.out.hostInterfaces.get(IFINDEX[subject.interfaceName as keyof typeof IFINDEX]);
  if (!hif) return 'allow not-policed';
  const fwd = subject.forwarded ?? false;
  const failsafe = direction === 0 ? GlobalSet.FAILSAFE_IN : GlobalSet.FAILSAFE_OUT;
  if (!fwd && p.dstPort !== undefined && b.out.globalSets.has(`${failsafe}|0|${(proto << 16) | p.dstPort}`)) return 'allow failsafe';
  return verdict(walk(b.out, hif.identity, direction, fwd ? GlobalTierVariant.FORWARDED : 0, p, proto, logs), (passed) => `${fwd ? 'allow' : 'deny'} default${passed}`);
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('the compiled maps, walked as the datapath walks them, decide as the host reference on random rules', () => {
  const rand = rng(20261126);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const chance = (p: number) => rand() < p;
  const sel = (m: Record<string, string>): LabelSelector => ({ matchLabels: m, matchExpressions: [] });
  const SELECTORS = [sel({}), sel({ role: 'node' }), sel({ role: 'vip' }), sel({ app: 'client' }), sel({ app: 'web' }), sel({ role: 'uplink' })];
  const NETS = ['10.0.0.0/8', '10.0.1.0/24', '192.0.2.0/24', '192.0.2.20/32', '198.51.100.0/24', 'fd00::/64'];
  const PORTS: PortMatch[] = [{ from: 22, to: 22 }, { from: 8000, to: 8100 }, { name: 'http' }, { name: 'dns' }, { from: 53, to: 53 }, { from: 9090, to: 9090 }];
  const IPS = ['10.0.0.1', '10.0.0.2', '10.0.1.1', 'fd00::11', STAR_IP, ETH1_IP, NODE2_IP, SHARED_IP, '198.51.100.7', '10.9.9.9'];
  const entity = (l4: boolean): EntityRule => ({
    ...(chance(0.25) ? { selector: pick(SELECTORS) } : {}),
    ...(chance(0.1) ? { namespaceSelector: pick([sel({}), sel({ team: 'a' })]) } : {}),
    nets: chance(0.2) ? [pick(NETS), ...(chance(0.3) ? [pick(NETS)] : [])] : [],
    notNets: chance(0.15) ? [pick(NETS)] : [],
    ports: l4 && chance(0.25) ? [pick(PORTS), ...(chance(0.3) ? [pick(PORTS)] : [])] : [],
    notPorts: l4 && chance(0.1) ? [pick(PORTS)] : [],
  });
  const rule = (): GlobalRule => {
    const protocol = pick([undefined, undefined, undefined, 'TCP', 'TCP', 'UDP', 'ICMP', 'SCTP'] as const);
    const l4 = protocol === 'TCP' || protocol === 'UDP' || protocol === 'SCTP';
    return { action: pick(['Allow', 'Deny', 'Pass', 'Log'] as const), ...(protocol ? { protocol } : {}), source: entity(l4), destination: entity(l4) };
  };
  let compared = 0;
  let decided = 0;
  let passed = 0;
  let logged = 0;
  const reasons = new Map<string, number>();
  for (let round = 0; round < 100; round++) {
    const policies: GlobalNetworkPolicy[] = [];
    for (let i = 0, n = 1 + Math.floor(rand() * 4); i < n; i++) {
      const types = pick([['Ingress'], ['Egress'], ['Ingress', 'Egress']] as const);
      policies.push({
        kind: 'GlobalNetworkPolicy', name: `p${i}`, annotations: {}, ...(chance(0.7) ? { order: Math.floor(rand() * 3) } : {}),
        selector: pick(SELECTORS), ...(chance(0.15) ? { namespaceSelector: sel({}) } : {}), types: [...types],
        ingress: Array.from({ length: Math.floor(rand() * 6) }, rule), egress: Array.from({ length: Math.floor(rand() * 6) }, rule),
        applyOnForward: chance(0.5),
      });
    }
    const b = build('', { policies });
    const world: HostWorld = {
      cluster: b.cluster, placement: new Map(b.placed.map((p) => [`${p.pod.namespace}/${p.pod.name}`, p.ips])),
      hostEndpoints: b.host.hostEndpoints as HostEndpoint[], globalPolicies: policies, failsafes: b.host.failsafes, nodeIps: [STAR_IP, ETH1_IP],
    };
    for (let k = 0; k < 40; k++) {
      const protocol = pick(['TCP', 'TCP', 'UDP', 'SCTP', 'ICMP'] as const);
      const l4 = protocol !== 'ICMP';
      const p: HostPacket = {
        src: pick(IPS), dst: pick(IPS), protocol,
        ...(l4 ? { srcPort: pick([22, 53, 8080, 9090, 40000]), dstPort: pick([22, 53, 7070, 8050, 8080, 9090, 6443]) } : {}),
      };
      const direction = pick(['Ingress', 'Egress'] as const);
      const subject: Subject = chance(0.5)
        ? { kind: 'host', node: NODE, interfaceName: pick(['eth0', 'eth1', 'eth2']), direction, forwarded: chance(0.3) }
        : { kind: 'pod', pod: pick(['x/a', 'x/b', 'y/c']), direction };
      const ref = evaluateHost(world, subject, p);
      const logs: number[] = [];
      const model = modelDecision(b, subject, p, logs);
      const want = summarize(ref.decision, b.ids);
      const refLogs = ref.logs.map((r) => b.ids.rule({ kind: 'GlobalNetworkPolicy', policy: r.policy, direction: r.direction, index: r.index, action: r.action }));
      const what = `round ${round}: ${JSON.stringify(subject)} ${JSON.stringify(p)}\npolicies ${JSON.stringify(policies)}`;
      assert.equal(model, want, what);
      assert.deepEqual(logs, refLogs, `logs: ${what}`);
      compared++;
      if (ref.decision.reason === 'global-rule') decided++;
      if ('passed' in ref.decision && ref.decision.passed) passed++;
      if (ref.logs.length > 0) logged++;
      reasons.set(ref.decision.reason, (reasons.get(ref.decision.reason) ?? 0) + 1);
    }
  }
  // the generator must reach every outcome often enough for the comparison to mean something
  const seen = `${compared} cases: ${JSON.stringify([...reasons])}, ${passed} passed, ${logged} logged`;
  assert.ok(decided > compared / 20 && passed > compared / 50 && logged > compared / 50 && (reasons.get('end-of-tier') ?? 0) > compared / 20, seen);
});
