import test from 'node:test';
import assert from 'node:assert/strict';
import { Aggregator } from '../../src/flows/aggregate.js';
import { enricher, ruleNamer } from '../../src/flows/enrich.js';
import { EndpointRegistry } from '../../src/flows/registry.js';
import { CtFlag, Direction, Hook, Identity, Proto, Reason, Verdict, type CtEntry, type CtKey } from '../../src/datapath/abi.js';
import type { RuleInfo } from '../../src/policy/ids.js';
import type { FlowRow } from '../../src/store/row.js';
import { MS, SEC, flow, lost } from './records.js';

const RULES: Record<number, RuleInfo> = {
  16: { kind: 'NetworkPolicy', policy: 'api/allow-frontend', direction: 'Ingress', index: 0 },
  17: { kind: 'NetworkPolicy', policy: 'web/egress-api', direction: 'Egress', index: 1 },
  20: { kind: 'GlobalNetworkPolicy', policy: 'log-ssh', direction: 'Ingress', index: 0, action: 'Log' },
  21: { kind: 'GlobalNetworkPolicy', policy: 'fwd', direction: 'Ingress', index: 2, action: 'Allow' },
};

const FRONTEND = '10.244.0.10';
const ORDERS = '10.244.0.11';
const WORLD = '203.0.113.5';

function setup(opts: { keepIps?: boolean; maxFlows?: number; maxPendingRows?: number } = {}) {
  const registry = new EndpointRegistry({ node: 'n1', worldNames: [{ cidr: '203.0.113.0/24', name: 'partner' }] });
  registry.upsertPod({ namespace: 'web', name: 'frontend-5f8c7b9d4x', labels: { app: 'frontend' }, ips: [FRONTEND, 'fd00::a'], node: 'n1', serviceAccount: 'fe', ownerReferences: [{ kind: 'ReplicaSet', name: 'frontend-5f8c7b9d4', controller: true }] }, 0);
  registry.upsertPod({ namespace: 'api', name: 'orders-0', labels: { app: 'orders' }, ips: [ORDERS, 'fd00::b'], node: 'n1', ownerReferences: [{ kind: 'StatefulSet', name: 'orders' }] }, 0);
  registry.setNodeAddresses(['10.243.0.1'], 0);
  const agg = new Aggregator({
    enricher: enricher(registry, ruleNamer((id) => RULES[id])),
    toMs: (ns) => Number(ns / MS),
    reporter: 'n1',
    startMs: 1_000_000,
    ...opts,
  });
  return { registry, agg };
}

const T = 1000n * SEC; // 1 000 000 ms
const byKind = (rows: FlowRow[], kind: FlowRow['kind']) => rows.filter((r) => r.kind === kind);

test('a denied record is one row: full 5-tuple, original addresses, packets it stands for, the pods as of its time', () => {
  const { agg } = setup();
  agg.add(flow({ type: 'DENY', tsNs: T + 5n * SEC, startNs: T + 4n * SEC, saddr: WORLD, daddr: ORDERS, sport: 5555, dport: 22, srcIdentity: Identity.WORLD, verdict: Verdict.DENY, reason: Reason.DENY_DEFAULT, count: 7 }));
  agg.add(flow({ type: 'DENY', tsNs: T + 6n * SEC, saddr: 'fd00::a', daddr: 'fd00::99', sport: 1, dport: 443, direction: Direction.EGRESS, hook: Hook.FROM_POD, dstIdentity: Identity.WORLD, verdict: Verdict.DENY, reason: Reason.DENY_POLICY, egressRuleId: 17 }));
  const rows = agg.flush(1_015_000);
  const [d, d6] = byKind(rows, 'denied');
  assert.ok(d && d6);
  assert.deepEqual([d.ts, d.start, d.verdict, d.reason, d.direction, d.protocol, d.count, d.packetsFwd, d.bytesFwd, d.reporter],
    [1_005_000, 1_004_000, 'denied', 'DENY_DEFAULT', 'ingress', Proto.TCP, 7, 7, 0, 'n1']);
  assert.deepEqual([d.src.kind, d.src.ip, d.src.port, d.src.name], ['world', '::ffff:203.0.113.5', 5555, 'partner']);
  assert.deepEqual([d.dst.kind, d.dst.ip, d.dst.port, d.dst.namespace, d.dst.pod, d.dst.workloadKind, d.dst.workload], ['pod', '::ffff:10.244.0.11', 22, 'api', 'orders-0', 'StatefulSet', 'orders']);
  assert.equal(d.policy, '');
  assert.deepEqual([d6.src.ip, d6.src.pod, d6.src.workloadKind, d6.src.workload, d6.src.serviceAccount, d6.dst.kind, d6.dst.ip, d6.direction], ['fd00::a', 'frontend-5f8c7b9d4x', 'Deployment', 'frontend', 'fe', 'world', 'fd00::99', 'egress']);
  assert.deepEqual([d6.policy, d6.egressPolicy, d6.ingressPolicy], ['web/egress-api egress[1]', 'web/egress-api egress[1]', '']);
  assert.equal(byKind(rows, 'flow').length, 0);
});

test('audit, log and lost records are rows of their own', () => {
  const { agg } = setup();
  agg.add(flow({ tsNs: T, saddr: FRONTEND, daddr: ORDERS, verdict: Verdict.AUDIT, reason: Reason.AUDIT, ingressRuleId: 0 }));
  agg.add(flow({ type: 'LOG', tsNs: T, saddr: WORLD, daddr: '10.243.0.1', dport: 22, srcIdentity: Identity.WORLD, dstIdentity: Identity.HOST, hook: Hook.FROM_HOST_DEV, reason: Reason.ALLOW_GLOBAL, ingressRuleId: 20 }));
  agg.add(lost(T + 2n * SEC, 42n));
  agg.add({ type: 'INVALID', error: 'record version 9', bytes: Buffer.alloc(8) });
  const rows = agg.flush(1_015_000);
  const [a] = byKind(rows, 'audit');
  assert.deepEqual([a?.verdict, a?.reason, a?.count, a?.src.pod, a?.dst.pod, a?.src.port], ['audit', 'AUDIT', 1, 'frontend-5f8c7b9d4x', 'orders-0', 40000]);
  const [l] = byKind(rows, 'log');
  assert.deepEqual([l?.policy, l?.verdict, l?.reason, l?.dst.kind, l?.dst.node, l?.src.name], ['gnp/log-ssh ingress[0] Log', 'allowed', 'ALLOW_GLOBAL', 'host', 'n1', 'partner']);
  const losses = byKind(rows, 'lost').map((r) => [r.reason, r.count, r.ts]);
  assert.deepEqual(losses, [['ring_buffer', 42, 1_002_000], ['invalid_record', 1, 1_015_000]]);
  // the audited flow is also a tracked flow: its traffic lands in a flow row with verdict audit
  const [f] = byKind(rows, 'flow');
  assert.deepEqual([f?.verdict, f?.connectionsStarted, f?.connectionsLive], ['audit', 1, 1]);
});

test('pod-to-pod on one node: two FLOW_STARTs and a FLOW_END are one connection in one row, with both rules', () => {
  const { agg } = setup();
  const tuple = { saddr: FRONTEND, daddr: ORDERS, sport: 40000, dport: 8080 };
  agg.add(flow({ ...tuple, tsNs: T, direction: Direction.EGRESS, hook: Hook.FROM_POD, reason: Reason.ALLOW_POLICY, egressRuleId: 17 }));
  agg.add(flow({ ...tuple, tsNs: T + MS, direction: Direction.INGRESS, hook: Hook.TO_POD, reason: Reason.ALLOW_POLICY, ingressRuleId: 16 }));
  // a second connection, same pods and port, still open at the interval's end
  agg.add(flow({ ...tuple, sport: 40001, tsNs: T + 2n * SEC, direction: Direction.EGRESS, hook: Hook.FROM_POD, egressRuleId: 17 }));
  agg.add(flow({ ...tuple, sport: 40001, tsNs: T + 2n * SEC, direction: Direction.INGRESS, hook: Hook.TO_POD, ingressRuleId: 16 }));
  agg.add(flow({ ...tuple, type: 'FLOW_END', tsNs: T + 3n * SEC, startNs: T, direction: Direction.BOTH, hook: Hook.FROM_POD, reason: Reason.ALLOW_ESTABLISHED, egressRuleId: 17, ingressRuleId: 16, packetsFwd: 10n, bytesFwd: 1000n, packetsRev: 8n, bytesRev: 64000n }));
  let rows = agg.flush(1_015_000);
  assert.equal(rows.length, 1);
  const r = rows[0]!;
  assert.deepEqual([r.kind, r.ts, r.start, r.verdict, r.reason, r.direction, r.protocol], ['flow', 1_015_000, 1_000_000, 'allowed', 'ALLOW_POLICY', 'both', Proto.TCP]);
  assert.deepEqual([r.src.pod, r.src.ip, r.src.port, r.dst.pod, r.dst.ip, r.dst.port], ['frontend-5f8c7b9d4x', '::', 0, 'orders-0', '::', 8080]);
  assert.deepEqual([r.policy, r.egressPolicy, r.ingressPolicy, r.forwardPolicy], ['api/allow-frontend ingress[0]', 'web/egress-api egress[1]', 'api/allow-frontend ingress[0]', '']);
  assert.deepEqual([r.packetsFwd, r.bytesFwd, r.packetsRev, r.bytesRev], [10, 1000, 8, 64000]);
  assert.deepEqual([r.connectionsStarted, r.connectionsCompleted, r.connectionsLive, r.count], [2, 1, 1, 2]);

  // next interval: the open connection is still live, nothing started
  rows = agg.flush(1_030_000);
  assert.deepEqual(rows.map((x) => [x.connectionsStarted, x.connectionsCompleted, x.connectionsLive, x.packetsFwd, x.start]), [[0, 0, 1, 0, 1_015_000]]);
  agg.add(flow({ ...tuple, sport: 40001, type: 'FLOW_END', tsNs: T + 40n * SEC, startNs: T + 2n * SEC, direction: Direction.BOTH, egressRuleId: 17, ingressRuleId: 16, packetsFwd: 3n, bytesFwd: 300n }));
  rows = agg.flush(1_045_000);
  assert.deepEqual(rows.map((x) => [x.connectionsStarted, x.connectionsCompleted, x.connectionsLive, x.packetsFwd, x.bytesFwd]), [[0, 1, 0, 3, 300]]);
  assert.deepEqual(agg.flush(1_060_000), [], 'nothing open, nothing to say');
});

test('long-lived flows: conntrack reads report each interval\'s share, FLOW_END the rest; the sum is the total', () => {
  const { agg } = setup();
  const key: CtKey = { saddr: FRONTEND, daddr: WORLD, sport: 50000, dport: 443, proto: Proto.TCP };
  const entry = (pf: number, bf: number, pr: number, br: number): CtEntry => ({
    createdNs: T, lastSeenNs: T + 10n * SEC, packetsFwd: BigInt(pf), bytesFwd: BigInt(bf), packetsRev: BigInt(pr), bytesRev: BigInt(br),
    srcEp: 1, dstEp: 0, srcIdentity: 256, dstIdentity: Identity.WORLD, egressRuleId: 17, ingressRuleId: 0, ifindex: 5, revIfindex: 0,
    flags: CtFlag.NEED_EGRESS | CtFlag.EGRESS_OK, tcpFlagsFwd: 0, tcpFlagsRev: 0, forwardRuleId: 0,
  });
  agg.add(flow({ ...key, tsNs: T, direction: Direction.EGRESS, hook: Hook.FROM_POD, dstIdentity: Identity.WORLD, egressRuleId: 17 }));
  agg.conntrack([[key, entry(10, 1_000, 10, 50_000)]], true, 1_015_000);
  const a = agg.flush(1_015_000);
  agg.conntrack([[key, entry(15, 1_500, 20, 90_000)]], true, 1_030_000);
  const b = agg.flush(1_030_000);
  agg.add(flow({ ...key, type: 'FLOW_END', tsNs: T + 40n * SEC, startNs: T, direction: Direction.BOTH, egressRuleId: 17, dstIdentity: Identity.WORLD, packetsFwd: 16n, bytesFwd: 1_600n, packetsRev: 21n, bytesRev: 95_000n }));
  const c = agg.flush(1_045_000);
  const counters = (rows: FlowRow[]) => rows.map((r) => [r.packetsFwd, r.bytesFwd, r.packetsRev, r.bytesRev, r.connectionsLive]);
  assert.deepEqual(counters(a), [[10, 1_000, 10, 50_000, 1]]);
  assert.deepEqual(counters(b), [[5, 500, 10, 40_000, 1]]);
  assert.deepEqual(counters(c), [[1, 100, 1, 5_000, 0]]);
  assert.deepEqual([a[0]!.dst.kind, a[0]!.dst.name, a[0]!.dst.ip, a[0]!.direction, a[0]!.policy], ['world', 'partner', '::', 'egress', 'web/egress-api egress[1]']);
});

test('conntrack: flows started before the agent are picked up; flows gone from two complete reads complete', () => {
  const { agg } = setup();
  const key: CtKey = { saddr: WORLD, daddr: ORDERS, sport: 1234, dport: 8080, proto: Proto.UDP };
  const e: CtEntry = {
    createdNs: T - 100n * SEC, lastSeenNs: T, packetsFwd: 4n, bytesFwd: 400n, packetsRev: 0n, bytesRev: 0n,
    srcEp: 0, dstEp: 2, srcIdentity: Identity.WORLD, dstIdentity: 257, egressRuleId: 0, ingressRuleId: 16, ifindex: 1, revIfindex: 5,
    flags: CtFlag.NEED_INGRESS | CtFlag.INGRESS_OK | CtFlag.AUDITED, tcpFlagsFwd: 0, tcpFlagsRev: 0, forwardRuleId: 21,
  };
  agg.conntrack([[key, e], [{ ...key, sport: 9 }, { ...e, flags: CtFlag.ENDED }]], true, 1_015_000);
  let rows = agg.flush(1_015_000);
  assert.equal(rows.length, 1, 'an ENDED entry nobody tracks is not picked up');
  const r = rows[0]!;
  assert.deepEqual([r.verdict, r.direction, r.policy, r.forwardPolicy, r.connectionsStarted, r.connectionsLive, r.packetsFwd, r.src.name, r.dst.pod, r.protocol],
    ['audit', 'ingress', 'api/allow-frontend ingress[0]', 'gnp/fwd ingress[2] Allow', 0, 1, 4, 'partner', 'orders-0', Proto.UDP]);
  agg.conntrack([], true, 1_030_000);
  assert.deepEqual(agg.flush(1_030_000).map((x) => [x.connectionsCompleted, x.connectionsLive]), [[0, 1]], 'one miss: its FLOW_END may be on its way');
  agg.conntrack([], true, 1_045_000);
  assert.deepEqual(agg.flush(1_045_000).map((x) => [x.connectionsCompleted, x.connectionsLive]), [[1, 0]]);
  rows = agg.flush(1_060_000);
  assert.deepEqual(rows, []);
});

test('a flow is attributed to who held the addresses when it started, even if the address moved on', () => {
  const { agg, registry } = setup();
  // orders-0 goes at 1 000 500; payments gets its address at 1 001 000
  registry.deletePod('api', 'orders-0', 1_000_500);
  registry.upsertPod({ namespace: 'api', name: 'payments', labels: { app: 'payments' }, ips: [ORDERS] }, 1_001_000);
  const tuple = { saddr: FRONTEND, daddr: ORDERS, dport: 8080, direction: Direction.EGRESS, hook: Hook.FROM_POD };
  agg.add(flow({ ...tuple, sport: 1, tsNs: T })); // orders-0's
  agg.add(flow({ ...tuple, sport: 2, tsNs: T + 2n * SEC })); // payments'
  agg.add(flow({ ...tuple, type: 'DENY', sport: 3, tsNs: T + 700n * MS, verdict: Verdict.DENY, reason: Reason.DENY_DEFAULT })); // nobody's
  agg.add(flow({ ...tuple, type: 'FLOW_END', sport: 1, tsNs: T + 5n * SEC, startNs: T, direction: Direction.BOTH }));
  const rows = agg.flush(1_015_000);
  const flows = byKind(rows, 'flow').map((r) => [r.dst.pod, r.dst.kind, r.connectionsStarted, r.connectionsCompleted]).sort();
  assert.deepEqual(flows, [['orders-0', 'pod', 1, 1], ['payments', 'pod', 1, 0]]);
  assert.deepEqual(byKind(rows, 'denied').map((r) => [r.dst.kind, r.dst.pod]), [['world', '']]);
});

test('keepIps keeps both addresses in the aggregate key; ports other than the destination\'s never', () => {
  const { agg } = setup({ keepIps: true });
  agg.add(flow({ saddr: FRONTEND, daddr: ORDERS, sport: 1, tsNs: T, direction: Direction.EGRESS, hook: Hook.FROM_POD }));
  agg.add(flow({ saddr: FRONTEND, daddr: ORDERS, sport: 2, tsNs: T, direction: Direction.EGRESS, hook: Hook.FROM_POD }));
  agg.add(flow({ saddr: 'fd00::a', daddr: ORDERS, sport: 3, tsNs: T, direction: Direction.EGRESS, hook: Hook.FROM_POD }));
  agg.add(flow({ saddr: WORLD, daddr: ORDERS, sport: 4, tsNs: T, srcIdentity: Identity.WORLD }));
  agg.add(flow({ saddr: '203.0.113.6', daddr: ORDERS, sport: 5, tsNs: T, srcIdentity: Identity.WORLD }));
  const rows = agg.flush(1_015_000);
  const got = rows.map((r) => [r.src.ip, r.src.port, r.dst.ip, r.dst.port, r.connectionsStarted]).sort();
  assert.deepEqual(got, [
    ['::ffff:10.244.0.10', 0, '::ffff:10.244.0.11', 8080, 2],
    ['::ffff:203.0.113.5', 0, '::ffff:10.244.0.11', 8080, 1],
    ['::ffff:203.0.113.6', 0, '::ffff:10.244.0.11', 8080, 1],
    ['fd00::a', 0, '::ffff:10.244.0.11', 8080, 1],
  ]);
  // without keepIps the two world addresses of one named CIDR and both families of a pod merge
  const { agg: merged } = setup();
  for (const o of [
    { saddr: FRONTEND, sport: 1, direction: Direction.EGRESS, hook: Hook.FROM_POD }, { saddr: 'fd00::a', daddr: 'fd00::b', sport: 3, direction: Direction.EGRESS, hook: Hook.FROM_POD },
    { saddr: WORLD, sport: 4, srcIdentity: Identity.WORLD }, { saddr: '203.0.113.6', sport: 5, srcIdentity: Identity.WORLD },
  ]) merged.add(flow({ daddr: ORDERS, tsNs: T, ...o }));
  assert.deepEqual(merged.flush(1_015_000).map((r) => [r.src.kind, r.src.pod || r.src.name, r.connectionsStarted]).sort(), [['pod', 'frontend-5f8c7b9d4x', 2], ['world', 'partner', 2]]);
});

test('loss is counted, never silent: a full flow table and a full row buffer become lost rows', () => {
  const { agg } = setup({ maxFlows: 2, maxPendingRows: 3 });
  for (let i = 0; i < 5; i++) agg.add(flow({ saddr: FRONTEND, daddr: ORDERS, sport: 100 + i, tsNs: T }));
  for (let i = 0; i < 5; i++) agg.add(flow({ type: 'DENY', saddr: WORLD, daddr: ORDERS, sport: 200 + i, tsNs: T, verdict: Verdict.DENY, reason: Reason.DENY_DEFAULT }));
  agg.add(lost(T, 9n)); // the buffer is full: the loss joins the interval's ring_buffer row
  const stats = agg.stats();
  assert.deepEqual(stats.lostTotal, { flow_table: 3, row_buffer: 2, ring_buffer: 9 });
  const rows = agg.flush(1_015_000);
  assert.equal(byKind(rows, 'denied').length, 3);
  assert.deepEqual(byKind(rows, 'flow').map((r) => r.connectionsStarted), [2]);
  assert.deepEqual(byKind(rows, 'lost').map((r) => [r.reason, r.count]).sort(), [['flow_table', 3], ['ring_buffer', 9], ['row_buffer', 2]]);
  assert.deepEqual(agg.stats().lostPending, {});
});

test('a FLOW_START on a hook that already started the tuple is a new connection (the old one\'s end was lost)', () => {
  const { agg } = setup();
  const o = { saddr: FRONTEND, daddr: ORDERS, sport: 7, direction: Direction.EGRESS, hook: Hook.FROM_POD };
  agg.add(flow({ ...o, tsNs: T }));
  agg.add(flow({ ...o, tsNs: T + SEC }));
  assert.deepEqual(agg.flush(1_015_000).map((r) => [r.connectionsStarted, r.connectionsCompleted, r.connectionsLive]), [[2, 1, 1]]);
});

test('flows with no sign of life past the flow timeout are forgotten', () => {
  const { agg } = setup();
  const a = new Aggregator({ enricher: (agg as unknown as { e: never }).e, toMs: (ns) => Number(ns / MS), startMs: 1_000_000, flowTimeoutMs: 60_000 });
  a.add(flow({ saddr: FRONTEND, daddr: ORDERS, tsNs: T }));
  assert.equal(a.flush(1_015_000).length, 1);
  assert.equal(a.flush(1_061_000).length, 0);
  assert.equal(a.stats().flowsExpired, 1);
});

test('pod to its node: the pod hook\'s record carries the host endpoint\'s rule and reason; the row names them and the node', () => {
  const { agg } = setup();
  agg.add(flow({ saddr: FRONTEND, daddr: '10.243.0.1', dport: 9100, tsNs: T, direction: Direction.EGRESS, hook: Hook.FROM_POD, dstIdentity: Identity.HOST, reason: Reason.ALLOW_GLOBAL, egressRuleId: 0, ingressRuleId: 21 }));
  agg.add(flow({ saddr: FRONTEND, daddr: '10.243.0.2', dport: 9100, tsNs: T, direction: Direction.EGRESS, hook: Hook.FROM_POD, dstIdentity: Identity.HOST, reason: Reason.ALLOW_HOST }));
  const rows = agg.flush(1_015_000).map((r) => [r.reason, r.policy, r.dst.kind, r.dst.node, r.direction]).sort();
  assert.deepEqual(rows, [
    ['ALLOW_GLOBAL', 'gnp/fwd ingress[2] Allow', 'host', 'n1', 'egress'],
    ['ALLOW_HOST', '', 'host', 'n1', 'egress'], // an address the registry does not know, with the HOST identity: this node
  ]);
});

test('flow buckets and tuples tell apart values that differ only in high bits; sides stay per row', () => {
  const { agg } = setup();
  // rule ids with the same low 16 bits, two ports, the same pair of pods
  const ids = [16, 16 + 65_536, 0x7fff_0010];
  let sport = 40_000;
  for (const id of ids) {
    for (const dport of [8080, 8081]) {
      sport++;
      agg.add(flow({ tsNs: T, saddr: FRONTEND, daddr: ORDERS, sport, dport, direction: Direction.INGRESS, hook: Hook.TO_POD, ingressRuleId: id }));
      agg.add(flow({ type: 'FLOW_END', tsNs: T + SEC, saddr: FRONTEND, daddr: ORDERS, sport, dport, direction: Direction.BOTH, hook: Hook.GC, ingressRuleId: id, packetsFwd: 1n, bytesFwd: 10n }));
    }
  }
  // a world source and a pod source to the same destination port are two buckets
  agg.add(flow({ type: 'FLOW_END', tsNs: T + SEC, saddr: WORLD, daddr: ORDERS, sport: 1, dport: 8080, srcIdentity: Identity.WORLD, direction: Direction.BOTH, hook: Hook.GC, ingressRuleId: 16 }));
  const rows = byKind(agg.flush(1_015_000), 'flow');
  assert.equal(rows.length, ids.length * 2 + 1);
  const keys = new Set(rows.map((r) => `${r.src.kind}|${r.dst.port}|${r.ingressPolicy}`));
  assert.equal(keys.size, rows.length);
  for (const r of rows) {
    assert.equal(r.count, 1);
    assert.equal(r.src.port, 0);
    assert.equal(r.src.ip, '::');
  }
  assert.deepEqual(rows.filter((r) => r.src.kind === 'world').map((r) => [r.src.name, r.dst.pod, r.dst.port]), [['partner', 'orders-0', 8080]]);
});
