import test from 'node:test';
import assert from 'node:assert/strict';
import { describeRecord, formatFlow, monotonicToDate, type Resolver } from '../../src/flows/describe.js';
import { Direction, Hook, Identity, Proto, Reason, Verdict, type FlowEvent } from '../../src/datapath/abi.js';

const resolver: Resolver = {
  peer: (ip, identity) => (ip === '10.244.0.10' ? { name: 'web/frontend', kind: 'pod' } : ip === 'fd00::b' ? { name: 'api/orders', kind: 'pod' } : { kind: identity === Identity.HOST ? 'host' : 'world' }),
  rule: (id) => (id === 17 ? { kind: 'NetworkPolicy', policy: 'api/allow', direction: 'Ingress', index: 2 } : undefined),
};

function event(over: Partial<FlowEvent>): FlowEvent {
  return {
    type: 'FLOW_START', cpu: 0, tsNs: 5_000_000_000n, startNs: 5_000_000_000n,
    saddr: '10.244.0.10', daddr: '10.244.0.11', sport: 40000, dport: 8080, proto: Proto.TCP, family: 4,
    direction: Direction.INGRESS, verdict: Verdict.ALLOW, reason: Reason.ALLOW_POLICY, hook: Hook.TO_POD, tcpFlags: 2,
    ifindex: 5, srcEp: 1, dstEp: 2, srcIdentity: 256, dstIdentity: 257, egressRuleId: 0, ingressRuleId: 17, count: 1,
    packetsFwd: 0n, bytesFwd: 0n, packetsRev: 0n, bytesRev: 0n, ...over,
  };
}
const at = () => new Date('2026-01-01T10:00:00.000Z');

test('an allowed flow names both pods and the deciding rule', () => {
  const v = describeRecord(event({}), resolver, at);
  assert.equal(v.type, 'flow-start');
  assert.equal(v.verdict, 'allow');
  assert.equal(v.direction, 'ingress');
  assert.deepEqual(v.src, { ip: '10.244.0.10', port: 40000, name: 'web/frontend', kind: 'pod' });
  assert.deepEqual(v.dst, { ip: '10.244.0.11', port: 8080, kind: 'world' });
  assert.equal(v.policy, 'api/allow ingress[2]');
  assert.equal(formatFlow(v), '10:00:00.000 ALLOW  TCP  web/frontend 10.244.0.10:40000 -> world 10.244.0.11:8080  ingress: api/allow ingress[2]');
});

test('denies say why and which policies isolate the pod; IPv6 addresses are bracketed; counts of folded packets show', () => {
  const v = describeRecord(event({ type: 'DENY', verdict: Verdict.DENY, reason: Reason.DENY_DEFAULT, saddr: 'fd00::b', daddr: 'fd00::c', family: 6, count: 3, direction: Direction.EGRESS }),
    { ...resolver, isolatedBy: (name, dir) => (name === 'api/orders' && dir === 'Egress' ? ['api/default-deny', 'api/orders-out'] : []) }, at);
  assert.equal(v.policy, 'default deny: no egress rule allows it (isolated by api/default-deny, api/orders-out)');
  assert.match(formatFlow(v), /DENY {3}TCP  api\/orders \[fd00::b\]:40000 -> world \[fd00::c\]:8080  egress: default deny: no egress rule allows it \(isolated by api\/default-deny, api\/orders-out\)  x3$/);
  // without that knowledge the record still says what happened
  assert.equal(describeRecord(event({ type: 'DENY', verdict: Verdict.DENY, reason: Reason.DENY_DEFAULT }), resolver, at).policy, 'default deny: no ingress rule allows it');
});

test('flow ends carry counters and both decisions; node traffic and unknown rules are named', () => {
  const v = describeRecord(event({ type: 'FLOW_END', direction: Direction.BOTH, reason: Reason.ALLOW_ESTABLISHED, egressRuleId: 17, ingressRuleId: 99, packetsFwd: 3n, bytesFwd: 180n, packetsRev: 2n, bytesRev: 120n }), resolver, at);
  assert.equal(v.type, 'flow-end');
  assert.deepEqual(v.packets, { fwd: 3, rev: 2 });
  assert.equal(v.policy, 'egress: api/allow ingress[2]; ingress: rule #99');
  assert.match(formatFlow(v), /END .*packets 3\/2 bytes 180\/120$/);
});

test('lost and invalid records are shown, never dropped', () => {
  assert.equal(formatFlow(describeRecord({ type: 'LOST', cpu: 1, tsNs: 1n, lost: 42n }, resolver, at)), '10:00:00.000 LOST     42 records dropped: the ring buffer was full');
  const inv = describeRecord({ type: 'INVALID', error: 'record version 9', bytes: Buffer.alloc(8) }, resolver, at);
  assert.match(formatFlow(inv), /INVALID  record version 9$/);
});

test('monotonic timestamps map to wall-clock time', () => {
  const d = monotonicToDate(1_000_000_000n, 3_000_000_000n, Date.UTC(2026, 0, 1, 0, 0, 10));
  assert.equal(d.toISOString(), '2026-01-01T00:00:08.000Z');
});
