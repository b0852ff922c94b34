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
    ifindex: 5, srcEp: 1, dstEp: 2, srcIdentity: 256, dstIdentity: 257, egressRuleId: 0, ingressRuleId: 17, forwardRuleId: 0, count: 1,
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

// ---- host protection ------------------------------------------------------------------------------

const hostResolver: Resolver = {
  peer: (ip, identity, where): ReturnType<Resolver['peer']> => {
    if (ip === '10.244.0.10') return { name: 'web/frontend', kind: 'pod' };
    if (ip === '10.243.0.1') {
      // the uplink's endpoint at the host-device hooks, the "*" one at the pod hooks
      const onUplink = where && (where.hook === Hook.FROM_HOST_DEV || where.hook === Hook.TO_HOST_DEV);
      return { name: 'lab-node', kind: 'host', hostEndpoint: onUplink ? { name: 'up', labels: { role: 'edge', a: 'b' } } : { name: 'lab-node-auto-hep', labels: {} } };
    }
    if (ip === '192.0.2.7') return { kind: 'world', hostEndpoint: { name: 'node2-eth0', labels: { role: 'worker' } } };
    return { kind: identity === Identity.HOST ? 'host' : 'world' };
  },
  rule: (id) => (id === 20 ? { kind: 'GlobalNetworkPolicy', policy: 'allow-ssh', direction: 'Ingress', index: 0, action: 'Allow' }
    : id === 21 ? { kind: 'GlobalNetworkPolicy', policy: 'log-all', direction: 'Ingress', index: 1, action: 'Log' }
      : id === 22 ? { kind: 'GlobalNetworkPolicy', policy: 'fwd', direction: 'Egress', index: 3, action: 'Deny' }
        : id === 23 ? { kind: 'GlobalNetworkPolicy', policy: 'to-np', direction: 'Ingress', index: 0, action: 'Pass' }
          : id === 17 ? { kind: 'NetworkPolicy', policy: 'api/allow', direction: 'Ingress', index: 2 } : undefined),
  globalSelectedBy: (ip, _identity, direction) => (ip === '10.243.0.1' && direction === 'Ingress' ? ['a-first', 'b-second'] : []),
};

const world = { saddr: '10.243.0.100', daddr: '10.243.0.1', srcIdentity: Identity.WORLD, dstIdentity: Identity.HOST, hook: Hook.FROM_HOST_DEV, ifindex: 3, dport: 22, srcEp: 0, dstEp: 0 };

test('host protection: the node is named with its host endpoint, world as its address; global rules as gnp/NAME dir[i] Action', () => {
  const v = describeRecord(event({ ...world, reason: Reason.ALLOW_GLOBAL, ingressRuleId: 20 }), hostResolver, at);
  assert.equal(v.reason, 'ALLOW_GLOBAL');
  assert.equal(v.policy, 'gnp/allow-ssh ingress[0] Allow');
  assert.deepEqual(v.dst, { ip: '10.243.0.1', port: 22, name: 'lab-node', kind: 'host', hostEndpoint: { name: 'up', labels: { role: 'edge', a: 'b' } } });
  assert.equal(formatFlow(v), '10:00:00.000 ALLOW  TCP  world 10.243.0.100:40000 -> lab-node (hep up: a=b,role=edge) 10.243.0.1:22  ingress: gnp/allow-ssh ingress[0] Allow');
  // at a pod hook the node is covered by its "*" endpoint
  const fromPod = describeRecord(event({ saddr: '10.244.0.10', daddr: '10.243.0.1', dstIdentity: Identity.HOST, hook: Hook.FROM_POD, reason: Reason.ALLOW_GLOBAL, ingressRuleId: 20 }), hostResolver, at);
  assert.match(formatFlow(fromPod), /web\/frontend 10\.244\.0\.10:40000 -> lab-node \(hep lab-node-auto-hep\) 10\.243\.0\.1:8080/);
  // an address another node's host endpoint lists is still the world, shown with that endpoint
  const other = describeRecord(event({ ...world, saddr: '192.0.2.7', reason: Reason.ALLOW_GLOBAL, ingressRuleId: 20 }), hostResolver, at);
  assert.match(formatFlow(other), / world \(hep node2-eth0: role=worker\) 192\.0\.2\.7:40000 -> /);
});

test('host protection reasons: failsafe, end of tier (naming the policies), host default, forwarded; global denies name their rule', () => {
  const d = (over: Partial<FlowEvent>) => describeRecord(event({ ...world, ...over }), hostResolver, at);
  const fs = d({ reason: Reason.ALLOW_FAILSAFE });
  assert.equal(fs.reason, 'ALLOW_FAILSAFE');
  assert.equal(fs.policy, 'failsafe: TCP 22 to the host (no policy can close it)');
  assert.equal(d({ reason: Reason.ALLOW_FAILSAFE, direction: Direction.EGRESS, saddr: '10.243.0.1', daddr: '10.243.0.100', srcIdentity: Identity.HOST, dstIdentity: Identity.WORLD, dport: 53, proto: Proto.UDP, hook: Hook.TO_HOST_DEV }).policy,
    'failsafe: UDP 53 from the host (no policy can close it)');
  const eot = d({ type: 'DENY', verdict: Verdict.DENY, reason: Reason.DENY_END_OF_TIER, ingressRuleId: 0 });
  assert.equal(eot.reason, 'DENY_END_OF_TIER');
  assert.equal(eot.policy, 'end of tier: global policies select it for ingress and none allowed or passed it (selected by gnp/a-first, gnp/b-second)');
  const hd = d({ type: 'DENY', verdict: Verdict.DENY, reason: Reason.DENY_HOST_DEFAULT, ingressRuleId: 0 });
  assert.equal(hd.policy, 'host endpoint default deny: no global rule allows it (ingress) (hep up: a=b,role=edge)');
  assert.equal(d({ type: 'DENY', verdict: Verdict.DENY, reason: Reason.DENY_HOST_DEFAULT, ingressRuleId: 23 }).policy,
    'host endpoint default deny: no global rule allows it (ingress) (hep up: a=b,role=edge), after gnp/to-np ingress[0] Pass');
  assert.equal(d({ type: 'DENY', verdict: Verdict.DENY, reason: Reason.DENY_POLICY, ingressRuleId: 20 }).policy, 'gnp/allow-ssh ingress[0] Allow');
  const fwd = d({ daddr: '10.244.0.10', dstIdentity: 256, reason: Reason.ALLOW_FORWARDED, ingressRuleId: 0 });
  assert.equal(fwd.reason, 'ALLOW_FORWARDED');
  assert.equal(fwd.policy, 'forwarded through a host endpoint: no applyOnForward policy decided it (allowed)');
  assert.equal(d({ type: 'DENY', verdict: Verdict.AUDIT, reason: Reason.AUDIT, ingressRuleId: 22 }).policy, 'audit: gnp/fwd egress[3] Deny would deny it (ingress)');
});

test('LOG records and forward rules', () => {
  const log = describeRecord(event({ ...world, type: 'LOG', reason: Reason.ALLOW_GLOBAL, ingressRuleId: 21 }), hostResolver, at);
  assert.equal(log.type, 'log');
  assert.equal(log.policy, 'log: gnp/log-all ingress[1] Log');
  assert.match(formatFlow(log), /^10:00:00\.000 LOG {4}TCP  world .* ingress: log: gnp\/log-all ingress\[1\] Log$/);
  // a flow forwarded through a host endpoint whose applyOnForward rule allowed it
  const f = describeRecord(event({ saddr: '10.243.0.100', srcIdentity: Identity.WORLD, daddr: '10.244.0.10', hook: Hook.TO_POD, reason: Reason.ALLOW_POLICY, ingressRuleId: 17, forwardRuleId: 22 }), hostResolver, at);
  assert.equal(f.forward, 'gnp/fwd egress[3] Deny');
  assert.match(formatFlow(f), /ingress: api\/allow ingress\[2\]  forwarded: gnp\/fwd egress\[3\] Deny$/);
  assert.equal(describeRecord(event({}), hostResolver, at).forward, undefined, 'no forward rule: nothing shown');
  const end = describeRecord(event({ type: 'FLOW_END', direction: Direction.BOTH, reason: Reason.ALLOW_ESTABLISHED, egressRuleId: 0, ingressRuleId: 20, forwardRuleId: 22 }), hostResolver, at);
  assert.match(formatFlow(end), /\(ingress: gnp\/allow-ssh ingress\[0\] Allow\)  forwarded: gnp\/fwd egress\[3\] Deny/);
});

test('between a pod and its node: the host endpoint\'s rule and failsafe, whatever the pod hook\'s direction', () => {
  // pod -> node at FROM_POD: direction egress (the pod's), reason and rule the host endpoint's ingress
  const toNode = { saddr: '10.244.0.10', daddr: '10.243.0.1', srcIdentity: 256, dstIdentity: Identity.HOST, hook: Hook.FROM_POD, direction: Direction.EGRESS };
  assert.equal(describeRecord(event({ ...toNode, reason: Reason.ALLOW_GLOBAL, egressRuleId: 0, ingressRuleId: 20 }), hostResolver, at).policy, 'gnp/allow-ssh ingress[0] Allow');
  assert.equal(describeRecord(event({ ...toNode, reason: Reason.ALLOW_FAILSAFE, egressRuleId: 0, ingressRuleId: 0, dport: 22 }), hostResolver, at).policy,
    'failsafe: TCP 22 to the host (no policy can close it)');
  // node -> pod at TO_POD: direction ingress (the pod's), the host's outbound failsafe
  const fromNode = { saddr: '10.243.0.1', daddr: '10.244.0.10', srcIdentity: Identity.HOST, dstIdentity: 256, hook: Hook.TO_POD, direction: Direction.INGRESS };
  assert.equal(describeRecord(event({ ...fromNode, reason: Reason.ALLOW_FAILSAFE, egressRuleId: 0, ingressRuleId: 0, dport: 53, proto: Proto.UDP }), hostResolver, at).policy,
    'failsafe: UDP 53 from the host (no policy can close it)');
});
