// Policy decisions through the programs: default deny of isolated endpoints with DENY records,
// the rule lookup order and its attribution in FLOW_START, audit mode, rate-limited DENY records,
// unapproved replies, anti-spoofing and later fragments.
import { describe, test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { TestDatapath, tcp, udp, anyPort, otherIfindexes } from '../helpers/datapath.js';
import { packet, tcpPacket, udpPacket, TcpFlag } from '../helpers/packets.js';
import * as abi from '../../src/datapath/abi.js';
import { CtFlag, Direction, Hook, Identity, Proto, Reason, Verdict } from '../../src/datapath/abi.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const SEC = 1_000_000_000n;

const WEB = 1000; // identities
const CLIENT = 1001;
const OTHER = 1002;
const DB = 1003;
const AUDITED = 1004;

const WEB_IP = '10.3.0.1'; // local, ingress isolated
const CLIENT_IP = '10.3.0.2'; // local, not isolated
const OTHER_IP = '10.3.1.7'; // a remote endpoint (another node)
const DB_IP = '10.3.0.3'; // local, egress isolated
const AUDIT_IP = '10.3.0.4'; // local, ingress isolated, audit mode
const WEB6 = 'fd00:3::1';
const OUTSIDE = '198.51.100.20';

describe('policy and deny path', () => {
  let dp: TestDatapath;

  before(async () => {
    dp = await TestDatapath.load();
    dp.pod(WEB_IP, { id: 1, identity: WEB, isolate: 'ingress', ifindex: 1 });
    dp.pod(WEB6, { id: 1, identity: WEB, isolate: 'ingress' });
    dp.pod(CLIENT_IP, { id: 2, identity: CLIENT });
    dp.pod(OTHER_IP, { id: 3, identity: OTHER, local: false });
    dp.pod(DB_IP, { id: 4, identity: DB, isolate: 'egress' });
    dp.pod(AUDIT_IP, { id: 5, identity: AUDITED, isolate: 'ingress', audit: true });
    // WEB's ingress: CLIENT on tcp/80 (rule 11) or on anything (rule 13); anyone on any TCP port
    // (rule 12). The lookup order decides which rule each flow is attributed to.
    dp.allowIngress(WEB, CLIENT, tcp(80), 11);
    dp.allowIngress(WEB, Identity.ANY, tcp(), 12);
    dp.allowIngress(WEB, CLIENT, anyPort, 13);
    // DB's egress: only OTHER on udp/5432 (rule 21)
    dp.allowEgress(DB, OTHER, udp(5432), 21);
  });
  after(() => dp?.close());
  beforeEach(() => {
    dp.drain();
  });

  test('isolated endpoint, no rule: dropped, DENY record with the original source, DENY_DEFAULT counted', () => {
    const denied = dp.stat('DENY_DEFAULT').packets;
    const pkt = udpPacket(OUTSIDE, WEB_IP, 5353, 9000);
    assert.equal(dp.run('toPod', pkt), TC_ACT_SHOT);
    assert.equal(dp.stat('DENY_DEFAULT').packets - denied, 1n);
    assert.equal(dp.ct({ saddr: OUTSIDE, daddr: WEB_IP, sport: 5353, dport: 9000, proto: Proto.UDP }), undefined, 'no entry for a denied flow');
    const recs = TestDatapath.flows(dp.drain());
    assert.equal(recs.length, 1);
    const d = recs[0]!;
    assert.equal(d.type, 'DENY');
    assert.deepEqual([d.saddr, d.daddr, d.sport, d.dport, d.proto, d.family], [OUTSIDE, WEB_IP, 5353, 9000, Proto.UDP, 4]);
    assert.deepEqual([d.verdict, d.reason, d.direction, d.hook, d.count], [Verdict.DENY, Reason.DENY_DEFAULT, Direction.INGRESS, Hook.TO_POD, 1]);
    assert.deepEqual([d.srcEp, d.dstEp, d.srcIdentity, d.dstIdentity], [0, 1, Identity.WORLD, WEB]);
    assert.deepEqual([d.egressRuleId, d.ingressRuleId], [0, 0]);
  });

  test('egress isolation: the pod\'s own packets are judged at FROM_POD', () => {
    assert.equal(dp.run('fromPod', udpPacket(DB_IP, OUTSIDE, 3000, 53)), TC_ACT_SHOT);
    assert.equal(dp.run('fromPod', udpPacket(DB_IP, OTHER_IP, 3000, 5433)), TC_ACT_SHOT, 'wrong port');
    assert.equal(dp.run('fromPod', tcpPacket(DB_IP, OTHER_IP, 3000, 5432, TcpFlag.SYN)), TC_ACT_SHOT, 'wrong protocol');
    assert.equal(dp.run('fromPod', udpPacket(DB_IP, OTHER_IP, 3000, 5432)), TC_ACT_OK);
    const recs = TestDatapath.flows(dp.drain());
    assert.deepEqual(recs.map((r) => [r.type, r.direction, r.hook]), [
      ['DENY', Direction.EGRESS, Hook.FROM_POD],
      ['DENY', Direction.EGRESS, Hook.FROM_POD],
      ['DENY', Direction.EGRESS, Hook.FROM_POD],
      ['FLOW_START', Direction.EGRESS, Hook.FROM_POD],
    ]);
    assert.equal(recs[3]!.egressRuleId, 21);
    assert.equal(recs[3]!.dstIdentity, OTHER);
  });

  test('attribution in FLOW_START: the most specific key per peer kind, the lowest rank among the kinds', () => {
    const fromClient = (pkt: Buffer) => pkt.subarray(26, 30).equals(Buffer.from([10, 3, 0, 2]));
    const cases: Array<[string, Buffer, number]> = [
      ['{peer, tcp, 80} before everything else', tcpPacket(CLIENT_IP, WEB_IP, 43001, 80, TcpFlag.SYN), 11],
      // the helper writes each rule id as its rank: {peer, any} (13) and {ANY, tcp, 0} (12) both
      // cover TCP 81, and the rule that ranks first is named, as the reference evaluator does
      ['{peer, any} and {ANY, tcp, 0}: the lower rank', tcpPacket(CLIENT_IP, WEB_IP, 43002, 81, TcpFlag.SYN), 12],
      ['{peer, any} covers UDP too', udpPacket(CLIENT_IP, WEB_IP, 43003, 53), 13],
      ['{ANY, tcp, 0} for another peer', tcpPacket(OUTSIDE, WEB_IP, 43004, 81, TcpFlag.SYN), 12],
    ];
    for (const [what, pkt, rule] of cases) {
      // CLIENT is local: its FROM_POD runs first, as on a real node
      if (fromClient(pkt)) assert.equal(dp.run('fromPod', pkt), TC_ACT_OK, what);
      const policed = dp.stat('ALLOW_POLICY').packets;
      assert.equal(dp.run('toPod', pkt), TC_ACT_OK, what);
      assert.equal(dp.stat('ALLOW_POLICY').packets - policed, 1n, what);
      const starts = TestDatapath.flows(dp.drain(), 'FLOW_START').filter((s) => s.hook === Hook.TO_POD);
      assert.equal(starts.length, 1, what);
      assert.deepEqual([starts[0]!.ingressRuleId, starts[0]!.reason, starts[0]!.verdict, starts[0]!.direction], [rule, Reason.ALLOW_POLICY, Verdict.ALLOW, Direction.INGRESS], what);
    }
    // a rule "TCP, any port" is {6, 0}: it must not let UDP in
    assert.equal(dp.run('toPod', udpPacket(OUTSIDE, WEB_IP, 43005, 81)), TC_ACT_SHOT);
    const e = dp.ct({ saddr: CLIENT_IP, daddr: WEB_IP, sport: 43001, dport: 80, proto: Proto.TCP })!;
    assert.equal(e.ingressRuleId, 11);
    assert.equal(e.flags & (CtFlag.EGRESS_OK | CtFlag.INGRESS_OK), CtFlag.EGRESS_OK | CtFlag.INGRESS_OK);
  });

  test('IPv6 is policed the same way', () => {
    assert.equal(dp.run('toPod', tcpPacket('2001:db8::9', WEB6, 43100, 22, TcpFlag.SYN)), TC_ACT_OK, 'rule 12: any TCP');
    assert.equal(dp.run('toPod', udpPacket('2001:db8::9', WEB6, 43100, 22)), TC_ACT_SHOT);
    const recs = TestDatapath.flows(dp.drain());
    assert.deepEqual(recs.map((r) => [r.type, r.family, r.saddr, r.daddr]), [
      ['FLOW_START', 6, '2001:db8::9', WEB6],
      ['DENY', 6, '2001:db8::9', WEB6],
    ]);
  });

  test('audit mode: would-be denials pass, marked AUDIT', () => {
    const audited = dp.stat('AUDIT').packets;
    assert.equal(dp.run('toPod', tcpPacket(OUTSIDE, AUDIT_IP, 43200, 443, TcpFlag.SYN)), TC_ACT_OK);
    assert.equal(dp.stat('AUDIT').packets - audited, 1n);
    const e = dp.ct({ saddr: OUTSIDE, daddr: AUDIT_IP, sport: 43200, dport: 443, proto: Proto.TCP })!;
    assert.ok(e.flags & CtFlag.AUDITED);
    const [start] = TestDatapath.flows(dp.drain());
    assert.deepEqual([start!.type, start!.verdict, start!.reason], ['FLOW_START', Verdict.AUDIT, Reason.AUDIT]);
  });

  test('rate limit: one DENY record per flow per second, the rest counted into the next', () => {
    const pkt = udpPacket(OUTSIDE, WEB_IP, 43300, 9999); // no rule lets OUTSIDE in over UDP
    const suppressed = dp.counter('DENY_SUPPRESSED');
    const denied = dp.stat('DENY_DEFAULT').packets;
    for (let i = 0; i < 5; i++) assert.equal(dp.run('toPod', pkt), TC_ACT_SHOT);
    assert.equal(dp.stat('DENY_DEFAULT').packets - denied, 5n, 'every packet counted');
    assert.equal(dp.counter('DENY_SUPPRESSED') - suppressed, 4n);
    let recs = TestDatapath.flows(dp.drain(), 'DENY');
    assert.deepEqual(recs.map((r) => r.count), [1]);

    // another flow is limited separately
    assert.equal(dp.run('toPod', udpPacket(OUTSIDE, WEB_IP, 43301, 9999)), TC_ACT_SHOT);
    assert.deepEqual(TestDatapath.flows(dp.drain(), 'DENY').map((r) => [r.sport, r.count]), [[43301, 1]]);

    // a second later (the rate-limit entry aged by hand) the next record stands for 1 + 4
    const rlMap = dp.map(abi.MapName.denyRateLimit);
    const key = abi.encodeCtKey({ saddr: OUTSIDE, daddr: WEB_IP, sport: 43300, dport: 9999, proto: Proto.UDP });
    const rl = abi.decodeDenyRl(rlMap.lookup(key)!);
    assert.equal(rl.suppressed, 4);
    rlMap.update(key, abi.encodeDenyRl({ ...rl, lastEventNs: rl.lastEventNs - SEC - 1n }));
    assert.equal(dp.run('toPod', pkt), TC_ACT_SHOT);
    recs = TestDatapath.flows(dp.drain(), 'DENY');
    assert.deepEqual(recs.map((r) => r.count), [5]);
    assert.equal(abi.decodeDenyRl(rlMap.lookup(key)!).suppressed, 0);
    // and the interval starts again
    assert.equal(dp.run('toPod', pkt), TC_ACT_SHOT);
    assert.equal(TestDatapath.flows(dp.drain(), 'DENY').length, 0);
  });

  test('deny cache: repeated denies are dropped from the cached verdict until the generation changes', () => {
    const pkt = udpPacket(OUTSIDE, WEB_IP, 43800, 9998);
    const key = abi.encodeCtKey({ saddr: OUTSIDE, daddr: WEB_IP, sport: 43800, dport: 9998, proto: Proto.UDP });
    const rlMap = dp.map(abi.MapName.denyRateLimit);
    const suppressed = dp.counter('DENY_SUPPRESSED');
    const denied = dp.stat('DENY_DEFAULT').packets;
    assert.equal(dp.run('toPod', pkt), TC_ACT_SHOT);
    const rl = abi.decodeDenyRl(rlMap.lookup(key)!);
    assert.deepEqual([rl.generation, rl.reason, rl.hook, rl.ifindex, rl.suppressed], [dp.generation(), Reason.DENY_DEFAULT, Hook.TO_POD, 1, 0]);

    // A key that would allow the flow, written without bumping the generation (no user space
    // does this): the next packets are not judged again, so they are still dropped.
    dp.policyUpdate(
      { identity: WEB, peer: Identity.ANY, port: 9998, portBits: 16, proto: Proto.UDP, direction: Direction.INGRESS },
      { ruleId: 14, rank: 14 },
    );
    for (let i = 0; i < 3; i++) assert.equal(dp.run('toPod', pkt), TC_ACT_SHOT);
    assert.equal(dp.stat('DENY_DEFAULT').packets - denied, 4n, 'counted under the cached reason');
    assert.equal(dp.counter('DENY_SUPPRESSED') - suppressed, 3n);
    assert.equal(abi.decodeDenyRl(rlMap.lookup(key)!).suppressed, 3);
    assert.deepEqual(TestDatapath.flows(dp.drain()).map((r) => [r.type, r.count]), [['DENY', 1]]);

    // the generation bump that follows every map change: the very next packet is judged again
    dp.bumpGeneration();
    assert.equal(dp.run('toPod', pkt), TC_ACT_OK);
    const [start] = TestDatapath.flows(dp.drain());
    assert.deepEqual([start!.type, start!.ingressRuleId], ['FLOW_START', 14]);
    dp.policyDelete({ identity: WEB, peer: Identity.ANY, port: 9998, portBits: 16, proto: Proto.UDP, direction: Direction.INGRESS });
    dp.bumpGeneration();
  });

  test('deny cache: a rule seeded like the compiler does takes effect on the next packet', () => {
    const pkt = udpPacket(OTHER_IP, WEB_IP, 43801, 7000);
    assert.equal(dp.run('toPod', pkt), TC_ACT_SHOT);
    assert.equal(dp.run('toPod', pkt), TC_ACT_SHOT);
    dp.allowIngress(WEB, OTHER, udp(7000), 15);
    assert.equal(dp.run('toPod', pkt), TC_ACT_OK);
  });

  test('deny cache: a reply of a flow allowed after its tuple was denied passes', () => {
    // OUTSIDE -> WEB over UDP: denied at TO_POD, and cached
    const inbound = udpPacket(OUTSIDE, WEB_IP, 53, 43810);
    assert.equal(dp.run('toPod', inbound), TC_ACT_SHOT);
    assert.equal(dp.run('toPod', inbound), TC_ACT_SHOT);
    // WEB (not egress isolated) then opens the flow this is the reply of: no policy changed, but
    // the new entry makes the cached verdict of its reply tuple stale
    assert.equal(dp.run('fromPod', udpPacket(WEB_IP, OUTSIDE, 43810, 53)), TC_ACT_OK);
    const established = dp.stat('ALLOW_ESTABLISHED').packets;
    assert.equal(dp.run('toPod', inbound), TC_ACT_OK);
    assert.equal(dp.stat('ALLOW_ESTABLISHED').packets - established, 1n);
    const rl = abi.decodeDenyRl(dp.map(abi.MapName.denyRateLimit).lookup(
      abi.encodeCtKey({ saddr: OUTSIDE, daddr: WEB_IP, sport: 53, dport: 43810, proto: Proto.UDP }))!);
    assert.deepEqual([rl.reason, rl.suppressed], [0, 1], 'verdict forgotten, the suppressed packet still pending for a record');
  });

  test('deny cache: the verdict is per hook and interface', () => {
    const [other] = otherIfindexes(1);
    // DB is egress isolated: its packet to OUTSIDE is denied at FROM_POD on veth lo...
    const pkt = udpPacket(DB_IP, OUTSIDE, 43820, 53);
    assert.equal(dp.run('fromPod', pkt), TC_ACT_SHOT);
    const denied = dp.stat('DENY_DEFAULT').packets;
    const spoofed = dp.stat('DROP_SPOOFED').packets;
    // ...while the same tuple on another veth is judged in full (DB's endpoint has ifindex 0, any
    // interface: the same default deny), and the cache follows the latest verdict
    assert.equal(dp.run('fromPod', pkt, { ifindex: other }), TC_ACT_SHOT);
    assert.equal(dp.stat('DENY_DEFAULT').packets - denied, 1n);
    assert.equal(dp.stat('DROP_SPOOFED').packets - spoofed, 0n);
    const rl = abi.decodeDenyRl(dp.map(abi.MapName.denyRateLimit).lookup(
      abi.encodeCtKey({ saddr: DB_IP, daddr: OUTSIDE, sport: 43820, dport: 53, proto: Proto.UDP }))!);
    assert.deepEqual([rl.hook, rl.ifindex, rl.suppressed], [Hook.FROM_POD, other, 1]);
  });

  test('reply of a flow the destination never approved is dropped', () => {
    // pod to pod: DB's egress allows DB -> WEB udp/9000, WEB's ingress does not
    const fwd = udpPacket(DB_IP, WEB_IP, 43400, 9000);
    dp.allowEgress(DB, WEB, udp(9000), 22);
    assert.equal(dp.run('fromPod', fwd), TC_ACT_OK, 'DB\'s egress allows it');
    assert.equal(dp.run('toPod', fwd), TC_ACT_SHOT, 'WEB\'s ingress does not');
    const e = dp.ct({ saddr: DB_IP, daddr: WEB_IP, sport: 43400, dport: 9000, proto: Proto.UDP })!;
    assert.equal(e.flags & (CtFlag.EGRESS_OK | CtFlag.INGRESS_OK), CtFlag.EGRESS_OK);
    dp.drain();
    const unapproved = dp.stat('DROP_UNAPPROVED_REPLY').packets;
    // WEB answers anyway (say, a spoofed "reply" from a compromised pod)
    assert.equal(dp.run('fromPod', udpPacket(WEB_IP, DB_IP, 9000, 43400)), TC_ACT_SHOT);
    assert.equal(dp.stat('DROP_UNAPPROVED_REPLY').packets - unapproved, 1n);
    const [d] = TestDatapath.flows(dp.drain());
    assert.deepEqual([d!.type, d!.reason, d!.saddr, d!.direction, d!.egressRuleId], ['DENY', Reason.DROP_UNAPPROVED_REPLY, WEB_IP, Direction.EGRESS, 22]);
  });

  test('anti-spoofing at FROM_POD', () => {
    const spoofed = dp.stat('DROP_SPOOFED').packets;
    // an address no endpoint holds
    assert.equal(dp.run('fromPod', udpPacket('10.3.9.9', OUTSIDE, 1, 53)), TC_ACT_SHOT);
    // a remote endpoint's address
    assert.equal(dp.run('fromPod', udpPacket(OTHER_IP, OUTSIDE, 1, 53)), TC_ACT_SHOT);
    // a local pod's address, from another interface than its veth
    dp.pod('10.3.0.50', { id: 50, identity: CLIENT, ifindex: 99 });
    assert.equal(dp.run('fromPod', udpPacket('10.3.0.50', OUTSIDE, 1, 53)), TC_ACT_SHOT);
    assert.equal(dp.stat('DROP_SPOOFED').packets - spoofed, 3n);
    const recs = TestDatapath.flows(dp.drain());
    assert.deepEqual(recs.map((r) => [r.type, r.reason, r.saddr]), [
      ['DENY', Reason.DROP_SPOOFED, '10.3.9.9'],
      ['DENY', Reason.DROP_SPOOFED, OTHER_IP],
      ['DENY', Reason.DROP_SPOOFED, '10.3.0.50'],
    ]);
    // the right interface (test runs happen on lo, ifindex 1) passes
    assert.equal(dp.run('fromPod', udpPacket(WEB_IP, OUTSIDE, 1, 53)), TC_ACT_OK);
  });

  test('the node is always allowed to and from an isolated pod: ALLOW_HOST, rule 0, no keys needed', () => {
    const NODE_IP = '10.3.255.1';
    dp.pod(NODE_IP, { id: 0, identity: Identity.HOST, local: false });
    const host = dp.stat('ALLOW_HOST').packets;
    // WEB is ingress isolated and no rule names the host; DB is egress isolated
    assert.equal(dp.run('toPod', udpPacket(NODE_IP, WEB_IP, 43500, 8080)), TC_ACT_OK);
    assert.equal(dp.run('fromPod', tcpPacket(DB_IP, NODE_IP, 43501, 10250, TcpFlag.SYN)), TC_ACT_OK);
    assert.equal(dp.stat('ALLOW_HOST').packets - host, 2n);
    const starts = TestDatapath.flows(dp.drain());
    assert.deepEqual(starts.map((r) => [r.type, r.verdict, r.reason, r.direction, r.ingressRuleId, r.egressRuleId]), [
      ['FLOW_START', Verdict.ALLOW, Reason.ALLOW_HOST, Direction.INGRESS, 0, 0],
      ['FLOW_START', Verdict.ALLOW, Reason.ALLOW_HOST, Direction.EGRESS, 0, 0],
    ]);
    assert.deepEqual([starts[0]!.srcIdentity, starts[1]!.dstIdentity], [Identity.HOST, Identity.HOST]);
  });

  test('rule-summary flags: lookups of a kind the identity has no keys of are skipped, verdicts unchanged', () => {
    const ONLY_ANY = 1010; // ingress keys with peer ANY only
    const ONLY_PEER = 1011; // ingress keys naming a peer only
    dp.pod('10.3.0.60', { id: 60, identity: ONLY_ANY, isolate: 'ingress' });
    dp.pod('10.3.0.61', { id: 61, identity: ONLY_PEER, isolate: 'ingress' });
    dp.allowIngress(ONLY_ANY, Identity.ANY, tcp(80), 31);
    dp.allowIngress(ONLY_PEER, OTHER, udp(53), 41);
    const flagsOf = (ip: string) => abi.decodeEndpoint(dp.slotMap('endpoints', dp.generation()).lookup(abi.encodeIpKey(ip))!).flags;
    assert.equal(flagsOf('10.3.0.60') & 0xf0, abi.EndpointFlag.ANY_RULES_INGRESS, 'helpers set the flags like the compiler');
    assert.equal(flagsOf('10.3.0.61') & 0xf0, abi.EndpointFlag.PEER_RULES_INGRESS);
    assert.equal(flagsOf(WEB_IP) & 0xf0, abi.EndpointFlag.PEER_RULES_INGRESS | abi.EndpointFlag.ANY_RULES_INGRESS);

    const cases: Array<[string, Buffer, number, number]> = [
      ['ANY rule, peer lookups skipped', tcpPacket(OTHER_IP, '10.3.0.60', 43600, 80, TcpFlag.SYN), TC_ACT_OK, 31],
      ['ANY rule, wrong port', tcpPacket(OTHER_IP, '10.3.0.60', 43601, 81, TcpFlag.SYN), TC_ACT_SHOT, 0],
      ['peer rule, ANY lookups skipped', udpPacket(OTHER_IP, '10.3.0.61', 43602, 53), TC_ACT_OK, 41],
      ['peer rule, another peer', udpPacket(OUTSIDE, '10.3.0.61', 43603, 53), TC_ACT_SHOT, 0],
    ];
    for (const [what, pkt, action, rule] of cases) {
      assert.equal(dp.run('toPod', pkt), action, what);
      const [r] = TestDatapath.flows(dp.drain());
      assert.equal(r!.type, action === TC_ACT_OK ? 'FLOW_START' : 'DENY', what);
      assert.equal(r!.ingressRuleId, rule, what);
    }
    // The datapath trusts the summary: a key of a kind the flags do not announce is not consulted
    // (user space always writes both together, keys first).
    dp.policyUpdate(
      { identity: ONLY_PEER, peer: Identity.ANY, port: 0, portBits: 0, proto: 0, direction: Direction.INGRESS },
      { ruleId: 42, rank: 42 },
    );
    assert.equal(dp.run('toPod', udpPacket(OUTSIDE, '10.3.0.61', 43604, 53)), TC_ACT_SHOT);
  });

  test('anti-spoofing with conntrack: an established tuple from another veth is still spoofed', () => {
    const [other] = otherIfindexes(1);
    // WEB (veth lo, 1) opens a flow: the entry vouches for WEB's address on veth 1 only
    const pkt = udpPacket(WEB_IP, OUTSIDE, 43700, 53);
    assert.equal(dp.run('fromPod', pkt), TC_ACT_OK);
    const e = dp.ct({ saddr: WEB_IP, daddr: OUTSIDE, sport: 43700, dport: 53, proto: Proto.UDP })!;
    assert.deepEqual([e.ifindex, e.flags & CtFlag.SRC_VETH], [1, CtFlag.SRC_VETH]);
    const spoofed = dp.stat('DROP_SPOOFED').packets;
    assert.equal(dp.run('fromPod', pkt, { ifindex: other }), TC_ACT_SHOT, 'same tuple, another veth');
    assert.equal(dp.stat('DROP_SPOOFED').packets - spoofed, 1n);
    assert.equal(dp.run('fromPod', pkt), TC_ACT_OK, 'the real sender still passes');
    assert.equal(dp.ct({ saddr: WEB_IP, daddr: OUTSIDE, sport: 43700, dport: 53, proto: Proto.UDP })!.packetsFwd, 2n, 'the spoofed packet was not counted');
  });

  test('anti-spoofing with conntrack: an entry made at TO_POD does not vouch for its source at FROM_POD', () => {
    const [other] = otherIfindexes(1);
    const SRC = '10.3.0.70'; // veth lo (1)
    const DST = '10.3.0.71'; // veth `other`
    dp.pod(SRC, { id: 70, identity: CLIENT, ifindex: 1 });
    dp.pod(DST, { id: 71, identity: CLIENT, ifindex: other });
    // the flow is first seen at DST's TO_POD (its FROM_POD entry was forgotten, say)
    const pkt = udpPacket(SRC, DST, 43710, 53);
    assert.equal(dp.run('toPod', pkt, { ifindex: other }), TC_ACT_OK);
    const e = dp.ct({ saddr: SRC, daddr: DST, sport: 43710, dport: 53, proto: Proto.UDP })!;
    assert.deepEqual([e.ifindex, e.flags & CtFlag.SRC_VETH], [other, 0]);
    // DST forges SRC's address on its own veth, which is the entry's ifindex
    const spoofed = dp.stat('DROP_SPOOFED').packets;
    assert.equal(dp.run('fromPod', pkt, { ifindex: other }), TC_ACT_SHOT);
    assert.equal(dp.stat('DROP_SPOOFED').packets - spoofed, 1n);
  });

  test('anti-spoofing with conntrack: a forged reply from a third pod\'s veth is dropped', () => {
    const ifs = otherIfindexes(2);
    const dstVeth = ifs[0]!;
    const thirdVeth = ifs[1] ?? 1; // with a single other interface, the initiator's veth (lo)
    const SRC = '10.3.0.80'; // veth lo (1)
    const DST = '10.3.0.81'; // veth dstVeth
    dp.pod(SRC, { id: 80, identity: CLIENT, ifindex: 1 });
    dp.pod(DST, { id: 81, identity: CLIENT, ifindex: dstVeth });
    const fwd = tcpPacket(SRC, DST, 43720, 8080, TcpFlag.SYN);
    const reply = tcpPacket(DST, SRC, 8080, 43720, TcpFlag.SYN | TcpFlag.ACK);
    assert.equal(dp.run('fromPod', fwd), TC_ACT_OK);
    assert.equal(dp.run('toPod', fwd, { ifindex: dstVeth }), TC_ACT_OK);
    const key = { saddr: SRC, daddr: DST, sport: 43720, dport: 8080, proto: Proto.TCP };
    assert.equal(dp.ct(key)!.revIfindex, dstVeth);
    const spoofed = dp.stat('DROP_SPOOFED').packets;
    assert.equal(dp.run('fromPod', reply, { ifindex: thirdVeth }), TC_ACT_SHOT, 'forged reply');
    assert.equal(dp.stat('DROP_SPOOFED').packets - spoofed, 1n);
    assert.equal(dp.ct(key)!.revIfindex, dstVeth, 'a failed check teaches the entry nothing');
    assert.equal(dp.ct(key)!.packetsRev, 0n);
    assert.equal(dp.run('fromPod', reply, { ifindex: dstVeth }), TC_ACT_OK, 'the real reply');
    assert.equal(dp.ct(key)!.packetsRev, 1n);
    const [d] = TestDatapath.flows(dp.drain(), 'DENY');
    assert.deepEqual([d!.reason, d!.saddr, d!.ifindex], [Reason.DROP_SPOOFED, DST, thirdVeth]);
  });

  test('traffic to an address that is not a local endpoint is not policed at TO_POD', () => {
    const unpoliced = dp.stat('ALLOW_UNPOLICED').packets;
    assert.equal(dp.run('toPod', udpPacket(OUTSIDE, OTHER_IP, 1, 53)), TC_ACT_OK);
    assert.equal(dp.run('toPod', udpPacket(OUTSIDE, '10.99.0.1', 1, 53)), TC_ACT_OK);
    assert.equal(dp.stat('ALLOW_UNPOLICED').packets - unpoliced, 2n);
  });

  test('later fragments: dropped by port-specific rules, allowed when all ports are', () => {
    const frag = (src: string) => packet({ src, dst: WEB_IP, l4: { proto: 6, raw: Buffer.alloc(100) }, fragOffset: 100 });
    // OUTSIDE may reach WEB on any TCP port (rule 12): allowed
    assert.equal(dp.run('toPod', frag(OUTSIDE)), TC_ACT_OK);
    // for UDP only port-specific rules would apply: no rule for OUTSIDE -> dropped
    const udpFrag = packet({ src: OUTSIDE, dst: WEB_IP, l4: { proto: 17, raw: Buffer.alloc(100) }, fragOffset: 100 });
    assert.equal(dp.run('toPod', udpFrag), TC_ACT_SHOT);
    // judged without conntrack: the verdict is not cached for the ports-0 tuple
    const rl = abi.decodeDenyRl(dp.map(abi.MapName.denyRateLimit).lookup(
      abi.encodeCtKey({ saddr: OUTSIDE, daddr: WEB_IP, sport: 0, dport: 0, proto: Proto.UDP }))!);
    assert.equal(rl.reason, 0);
    // DB's egress allows only udp/5432 to OTHER: a later fragment has no port -> dropped
    assert.equal(dp.run('fromPod', packet({ src: DB_IP, dst: OTHER_IP, l4: { proto: 17, raw: Buffer.alloc(100) }, fragOffset: 100 })), TC_ACT_SHOT);
  });
});
