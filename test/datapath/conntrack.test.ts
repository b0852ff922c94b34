// Conntrack through the programs: entries for new flows, replies without policy, per-direction
// counters counted at one hook only, TCP teardown records, port reuse, and the collector.
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { TestDatapath } from '../helpers/datapath.js';
import { packet, tcpPacket, udpPacket, TcpFlag } from '../helpers/packets.js';
import { CtFlag, Direction, Hook, Identity, Proto, Reason, Verdict, type CtKey } from '../../src/datapath/abi.js';

const TC_ACT_OK = 0;
const SEC = 1_000_000_000n;

const POD_A = '10.2.0.1'; // local pod, identity 100, ingress isolated without rules
const POD_B = '10.2.0.2'; // local pod, identity 200, not isolated
const WORLD = '192.0.2.10';

const tcpKey = (saddr: string, daddr: string, sport: number, dport: number): CtKey => ({ saddr, daddr, sport, dport, proto: Proto.TCP });

describe('conntrack', () => {
  let dp: TestDatapath;

  before(async () => {
    dp = await TestDatapath.load();
    dp.pod(POD_A, { id: 1, identity: 100, isolate: 'ingress', ifindex: 1 });
    dp.pod(POD_B, { id: 2, identity: 200 });
  });
  after(() => dp?.close());
  beforeEach(() => {
    dp.drain();
  });

  test('a new flow creates an entry and a FLOW_START record', () => {
    const syn = tcpPacket(POD_A, WORLD, 41000, 443, TcpFlag.SYN);
    const created = dp.counter('CT_CREATED');
    assert.equal(dp.run('fromPod', syn), TC_ACT_OK);
    assert.equal(dp.counter('CT_CREATED') - created, 1n);
    const e = dp.ct(tcpKey(POD_A, WORLD, 41000, 443));
    assert.ok(e);
    assert.equal(e.flags, CtFlag.NEED_EGRESS | CtFlag.EGRESS_OK | CtFlag.SRC_VETH, 'source is local: egress needed and approved (on its veth); world needs no ingress');
    assert.equal(e.revIfindex, 0, 'the destination is not a local pod');
    assert.deepEqual(
      [e.packetsFwd, e.bytesFwd, e.packetsRev, e.bytesRev],
      [1n, BigInt(syn.length), 0n, 0n],
    );
    assert.deepEqual([e.srcEp, e.dstEp, e.srcIdentity, e.dstIdentity], [1, 0, 100, Identity.WORLD]);
    assert.equal(e.createdNs, e.lastSeenNs);

    const [start, ...rest] = TestDatapath.flows(dp.drain());
    assert.equal(rest.length, 0);
    assert.ok(start);
    assert.equal(start.type, 'FLOW_START');
    assert.deepEqual(
      [start.saddr, start.daddr, start.sport, start.dport, start.proto, start.family],
      [POD_A, WORLD, 41000, 443, Proto.TCP, 4],
    );
    assert.equal(start.direction, Direction.EGRESS);
    assert.equal(start.hook, Hook.FROM_POD);
    assert.equal(start.verdict, Verdict.ALLOW);
    assert.equal(start.reason, Reason.ALLOW_NOT_ISOLATED);
    assert.equal(start.tcpFlags, TcpFlag.SYN);
    assert.equal(start.count, 1);
  });

  test('replies pass as established without policy, and each direction is counted', () => {
    // POD_A is ingress-isolated with no rule: only conntrack lets the replies in
    const key = tcpKey(POD_A, WORLD, 41001, 443);
    const out = (flags: number, len = 0) => dp.run('fromPod', tcpPacket(POD_A, WORLD, 41001, 443, flags, len));
    const back = (flags: number, len = 0) => dp.run('toPod', tcpPacket(WORLD, POD_A, 443, 41001, flags, len));
    const established = dp.stat('ALLOW_ESTABLISHED').packets;
    assert.equal(out(TcpFlag.SYN), TC_ACT_OK);
    assert.equal(back(TcpFlag.SYN | TcpFlag.ACK), TC_ACT_OK);
    assert.equal(out(TcpFlag.ACK, 100), TC_ACT_OK);
    assert.equal(out(TcpFlag.ACK | TcpFlag.PSH, 200), TC_ACT_OK);
    assert.equal(back(TcpFlag.ACK, 1000), TC_ACT_OK);
    assert.equal(dp.stat('ALLOW_ESTABLISHED').packets - established, 4n);

    const e = dp.ct(key);
    assert.ok(e);
    const hdr = 14 + 20 + 20;
    assert.equal(e.packetsFwd, 3n);
    assert.equal(e.bytesFwd, BigInt(3 * hdr + 300));
    assert.equal(e.packetsRev, 2n);
    assert.equal(e.bytesRev, BigInt(2 * hdr + 1000));
    assert.ok(e.flags & CtFlag.SEEN_REPLY);
    assert.equal(e.tcpFlagsFwd, TcpFlag.SYN | TcpFlag.ACK | TcpFlag.PSH);
    assert.equal(e.tcpFlagsRev, TcpFlag.SYN | TcpFlag.ACK);
    assert.equal(dp.ct(tcpKey(WORLD, POD_A, 443, 41001)), undefined, 'no entry for the reply tuple');
  });

  test('without conntrack the same reply would be denied', () => {
    assert.equal(dp.run('toPod', tcpPacket(WORLD, POD_A, 443, 41999, TcpFlag.SYN | TcpFlag.ACK)), 2);
  });

  test('pod to pod on one node: approved at both hooks, counted once per packet', () => {
    const key = tcpKey(POD_B, POD_A, 41002, 8080);
    dp.allowIngress(100, 200, { proto: Proto.TCP, port: 8080 }, 31);
    const fwd = tcpPacket(POD_B, POD_A, 41002, 8080, TcpFlag.SYN);
    const rev = tcpPacket(POD_A, POD_B, 8080, 41002, TcpFlag.SYN | TcpFlag.ACK);

    assert.equal(dp.run('fromPod', fwd), TC_ACT_OK); // B's egress (not isolated)
    let e = dp.ct(key);
    assert.ok(e);
    assert.equal(e.flags, CtFlag.NEED_EGRESS | CtFlag.NEED_INGRESS | CtFlag.EGRESS_OK | CtFlag.SRC_VETH);
    assert.equal(e.revIfindex, 1, 'A\'s veth, from its endpoint');
    assert.equal(dp.run('toPod', fwd), TC_ACT_OK); // A's ingress: rule 31
    e = dp.ct(key)!;
    assert.equal(e.flags, CtFlag.NEED_EGRESS | CtFlag.NEED_INGRESS | CtFlag.EGRESS_OK | CtFlag.INGRESS_OK | CtFlag.SRC_VETH);
    assert.equal(e.ingressRuleId, 31);
    assert.equal(e.packetsFwd, 1n, 'counted leaving B only');

    assert.equal(dp.run('fromPod', rev), TC_ACT_OK);
    assert.equal(dp.run('toPod', rev), TC_ACT_OK);
    e = dp.ct(key)!;
    assert.equal(e.packetsRev, 1n, 'counted leaving A only');
    assert.equal(e.bytesRev, BigInt(rev.length));

    const starts = TestDatapath.flows(dp.drain(), 'FLOW_START');
    assert.deepEqual(
      starts.map((s) => [s.hook, s.direction, s.reason, s.egressRuleId, s.ingressRuleId]),
      [
        [Hook.FROM_POD, Direction.EGRESS, Reason.ALLOW_NOT_ISOLATED, 0, 0],
        [Hook.TO_POD, Direction.INGRESS, Reason.ALLOW_POLICY, 0, 31],
      ],
    );
  });

  test('ICMP echo reply matches the request', () => {
    const req = packet({ src: POD_A, dst: WORLD, l4: { proto: 'icmp', type: 8, id: 4242, seq: 1 } });
    const rep = packet({ src: WORLD, dst: POD_A, l4: { proto: 'icmp', type: 0, id: 4242, seq: 1 } });
    assert.equal(dp.run('fromPod', req), TC_ACT_OK);
    const established = dp.stat('ALLOW_ESTABLISHED').packets;
    assert.equal(dp.run('toPod', rep), TC_ACT_OK, 'ingress-isolated A gets its echo reply');
    assert.equal(dp.stat('ALLOW_ESTABLISHED').packets - established, 1n);
    assert.equal(dp.ct({ saddr: POD_A, daddr: WORLD, sport: 4242, dport: 4242, proto: Proto.ICMP })?.packetsRev, 1n);
  });

  test('FIN both ways ends the flow with one FLOW_END carrying the counters', () => {
    const key = tcpKey(POD_A, WORLD, 41003, 80);
    const out = (flags: number, len = 0) => dp.run('fromPod', tcpPacket(POD_A, WORLD, 41003, 80, flags, len));
    const back = (flags: number, len = 0) => dp.run('toPod', tcpPacket(WORLD, POD_A, 80, 41003, flags, len));
    out(TcpFlag.SYN);
    back(TcpFlag.SYN | TcpFlag.ACK);
    out(TcpFlag.ACK, 10);
    out(TcpFlag.FIN | TcpFlag.ACK);
    assert.equal(TestDatapath.flows(dp.drain(), 'FLOW_END').length, 0, 'one FIN does not end it');
    back(TcpFlag.FIN | TcpFlag.ACK);
    const e = dp.ct(key);
    assert.ok(e);
    assert.ok(e.flags & CtFlag.ENDED);
    assert.ok(e.flags & CtFlag.FIN_FWD && e.flags & CtFlag.FIN_REV);
    const ends = TestDatapath.flows(dp.drain(), 'FLOW_END');
    assert.equal(ends.length, 1);
    const end = ends[0]!;
    assert.deepEqual([end.saddr, end.daddr, end.sport, end.dport], [POD_A, WORLD, 41003, 80], 'the initiator\'s tuple');
    assert.deepEqual([end.packetsFwd, end.packetsRev], [3n, 2n]);
    assert.equal(end.bytesFwd, e.bytesFwd);
    assert.equal(end.bytesRev, e.bytesRev);
    assert.equal(end.startNs, e.createdNs);
    assert.equal(end.tcpFlags, TcpFlag.SYN | TcpFlag.ACK | TcpFlag.FIN);
    assert.equal(end.direction, Direction.BOTH);
    assert.equal(end.verdict, Verdict.ALLOW);
    assert.equal(end.reason, Reason.ALLOW_ESTABLISHED);
    assert.equal(end.srcEp, 1);
    assert.equal(end.srcIdentity, 100);
    // the last ACK still passes, and ends nothing twice
    assert.equal(out(TcpFlag.ACK), TC_ACT_OK);
    assert.equal(TestDatapath.flows(dp.drain(), 'FLOW_END').length, 0);
  });

  test('RST ends the flow', () => {
    dp.run('fromPod', tcpPacket(POD_A, WORLD, 41004, 80, TcpFlag.SYN));
    dp.run('toPod', tcpPacket(WORLD, POD_A, 80, 41004, TcpFlag.RST | TcpFlag.ACK));
    const ends = TestDatapath.flows(dp.drain(), 'FLOW_END');
    assert.equal(ends.length, 1);
    assert.equal(ends[0]!.hook, Hook.TO_POD);
    assert.deepEqual([ends[0]!.packetsFwd, ends[0]!.packetsRev], [1n, 1n]);
    assert.ok(dp.ct(tcpKey(POD_A, WORLD, 41004, 80))!.flags & CtFlag.RST);
  });

  test('a SYN on an ended flow starts a new one (port reuse)', () => {
    const key = tcpKey(POD_A, WORLD, 41005, 80);
    dp.run('fromPod', tcpPacket(POD_A, WORLD, 41005, 80, TcpFlag.SYN));
    dp.run('fromPod', tcpPacket(POD_A, WORLD, 41005, 80, TcpFlag.RST));
    const old = dp.ct(key)!;
    assert.ok(old.flags & CtFlag.ENDED);
    dp.drain();
    assert.equal(dp.run('fromPod', tcpPacket(POD_A, WORLD, 41005, 80, TcpFlag.SYN)), TC_ACT_OK);
    const e = dp.ct(key)!;
    assert.equal(e.flags & (CtFlag.ENDED | CtFlag.RST), 0);
    assert.equal(e.packetsFwd, 1n);
    assert.ok(e.createdNs >= old.createdNs, "a fresh entry (coarse clock: possibly the same tick)");
    assert.equal(TestDatapath.flows(dp.drain(), 'FLOW_START').length, 1);
  });

  test('the collector removes expired entries, with FLOW_END for those not ended yet', (t) => {
    // Flows are aged by rewriting their timestamps; the collector compares them with
    // bpf_ktime_get_ns(), time since boot, so an age can be at most the machine's uptime.
    const probe = tcpKey(POD_A, WORLD, 42000, 80);
    dp.run('fromPod', tcpPacket(POD_A, WORLD, 42000, 80, TcpFlag.SYN));
    const now = dp.ct(probe)!.lastSeenNs;
    assert.ok(now > 62n * SEC, `uptime ${now / SEC}s: the collector test needs a machine up for over a minute`);
    const canAgeEstablished = now > 7202n * SEC;
    const flows = {
      synOld: { key: tcpKey(POD_A, WORLD, 42001, 80), age: 31n * SEC, expired: true },
      synYoung: { key: tcpKey(POD_A, WORLD, 42002, 80), age: 20n * SEC, expired: false },
      estOld: { key: tcpKey(POD_A, WORLD, 42003, 80), age: canAgeEstablished ? 7201n * SEC : 0n, expired: canAgeEstablished },
      estYoung: { key: tcpKey(POD_A, WORLD, 42004, 80), age: canAgeEstablished ? 3600n * SEC : now / 2n, expired: false },
      closedOld: { key: tcpKey(POD_A, WORLD, 42005, 80), age: 11n * SEC, expired: true },
      udpOld: { key: { saddr: POD_A, daddr: WORLD, sport: 42006, dport: 53, proto: Proto.UDP }, age: 61n * SEC, expired: true },
      udpYoung: { key: { saddr: POD_A, daddr: WORLD, sport: 42007, dport: 53, proto: Proto.UDP }, age: 50n * SEC, expired: false },
    };
    if (!canAgeEstablished) {
      t.diagnostic(`uptime ${now / SEC}s < 2h: the established-TCP expiry (7200 s) cannot be simulated here`);
    }
    dp.run('fromPod', tcpPacket(POD_A, WORLD, 42001, 80, TcpFlag.SYN));
    dp.run('fromPod', tcpPacket(POD_A, WORLD, 42002, 80, TcpFlag.SYN));
    for (const port of [42003, 42004, 42005]) {
      dp.run('fromPod', tcpPacket(POD_A, WORLD, port, 80, TcpFlag.SYN));
      dp.run('toPod', tcpPacket(WORLD, POD_A, 80, port, TcpFlag.SYN | TcpFlag.ACK));
    }
    dp.run('fromPod', tcpPacket(POD_A, WORLD, 42005, 80, TcpFlag.RST));
    dp.run('fromPod', udpPacket(POD_A, WORLD, 42006, 53));
    dp.run('fromPod', udpPacket(POD_A, WORLD, 42007, 53));
    for (const f of Object.values(flows)) {
      const e = dp.ct(f.key);
      assert.ok(e, `entry for ${f.key.sport}`);
      dp.setCt(f.key, { ...e, createdNs: e.createdNs - f.age, lastSeenNs: e.lastSeenNs - f.age });
    }
    dp.drain();
    const expiredBefore = dp.counter('CT_EXPIRED');

    // other tests' entries are young: only the aged ones go
    const deleted = dp.gc();
    const want = Object.values(flows).filter((f) => f.expired);
    assert.equal(deleted, want.length);
    assert.equal(dp.counter('CT_EXPIRED') - expiredBefore, BigInt(want.length));
    for (const [name, f] of Object.entries(flows)) {
      assert.equal(dp.ct(f.key) === undefined, f.expired, `${name} ${f.expired ? 'removed' : 'kept'}`);
    }
    const ends = TestDatapath.flows(dp.drain(), 'FLOW_END');
    assert.deepEqual(
      ends.map((e) => e.sport).sort(),
      (canAgeEstablished ? [42001, 42003, 42006] : [42001, 42006]),
      'FLOW_END for expired flows that had not ended (the RST one had its record already)',
    );
    for (const e of ends) {
      assert.equal(e.hook, Hook.GC);
      assert.equal(e.reason, Reason.ALLOW_ESTABLISHED);
      assert.equal(e.direction, Direction.BOTH);
      assert.equal(e.verdict, Verdict.ALLOW);
      assert.equal(e.packetsFwd, 1n);
    }
    assert.equal(dp.gc(), 0, 'nothing left to expire');
  });
});
