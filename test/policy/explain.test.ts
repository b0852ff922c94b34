// weir_policy_explain through BPF_PROG_TEST_RUN: the hooks' decisions for a packet, reported in
// cb[], over seeded maps, and no side effect at all (no conntrack entry, no deny cache, no
// ring-buffer record, no counter). Also the user-space half: packet crafting and cb decoding.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestDatapath, tcp, udp, sctp } from '../helpers/datapath.js';
import { tcpPacket, TcpFlag } from '../helpers/packets.js';
import * as abi from '../../src/datapath/abi.js';
import { Identity, Reason, Verdict } from '../../src/datapath/abi.js';
import { craftPacket, datapathSide, decodeExplainCtx, runExplainProgram, type RawExplain } from '../../src/policy/explain.js';

const WEB = 2000; // identities
const CLIENT = 2001;
const DB = 2002;
const REMOTE = 2003;

const WEB_IP = '10.7.0.1'; // local, ingress isolated: CLIENT on tcp/80 (rule 21), anyone on udp/53 (rule 22)
const CLIENT_IP = '10.7.0.2'; // local, not isolated
const DB_IP = '10.7.0.3'; // local, egress isolated: to WEB on sctp/9000 (rule 23)
const REMOTE_IP = '10.7.1.9'; // an endpoint on another node
const WEB6 = 'fd00:7::1';
const CLIENT6 = 'fd00:7::2';
const OUTSIDE = '198.51.100.30';

const off = { applies: false, verdict: 0, reason: 0, ruleId: 0 };
const side = (verdict: number, reason: number, ruleId = 0) => ({ applies: true, verdict, reason, ruleId });

describe('weir_policy_explain', () => {
  let dp: TestDatapath;
  const explain = (src: string, dst: string, proto: 'TCP' | 'UDP' | 'SCTP', dport: number): RawExplain =>
    runExplainProgram(dp.obj.program(abi.ProgramName.policyExplain), craftPacket(src, dst, proto, 40000, dport));

  before(async () => {
    dp = await TestDatapath.load();
    dp.pod(WEB_IP, { id: 1, identity: WEB, isolate: 'ingress', ifindex: 7 });
    dp.pod(WEB6, { id: 1, identity: WEB, isolate: 'ingress', ifindex: 7 });
    dp.pod(CLIENT_IP, { id: 2, identity: CLIENT });
    dp.pod(CLIENT6, { id: 2, identity: CLIENT });
    dp.pod(DB_IP, { id: 3, identity: DB, isolate: 'egress' });
    dp.pod(REMOTE_IP, { id: 4, identity: REMOTE, local: false });
    dp.allowIngress(WEB, CLIENT, tcp(80), 21);
    dp.allowIngress(WEB, Identity.ANY, udp(53), 22);
    dp.allowEgress(DB, WEB, sctp(9000), 23);
  });
  after(() => dp?.close());

  test('an allowed pair names the rule; the source is not isolated', () => {
    const r = explain(CLIENT_IP, WEB_IP, 'TCP', 80);
    assert.deepEqual(r.egress, side(Verdict.ALLOW, Reason.ALLOW_NOT_ISOLATED));
    assert.deepEqual(r.ingress, side(Verdict.ALLOW, Reason.ALLOW_POLICY, 21));
    assert.equal(r.generation, dp.generation());
    // IPv6 takes the same keys
    assert.deepEqual(explain(CLIENT6, WEB6, 'TCP', 80).ingress, side(Verdict.ALLOW, Reason.ALLOW_POLICY, 21));
    // a rule with peer ANY
    assert.deepEqual(explain(CLIENT_IP, WEB_IP, 'UDP', 53).ingress, side(Verdict.ALLOW, Reason.ALLOW_POLICY, 22));
  });

  test('default deny on either side; both sides are judged even when one denies', () => {
    assert.deepEqual(explain(CLIENT_IP, WEB_IP, 'TCP', 81).ingress, side(Verdict.DENY, Reason.DENY_DEFAULT));
    assert.deepEqual(explain(CLIENT_IP, WEB_IP, 'UDP', 80).ingress, side(Verdict.DENY, Reason.DENY_DEFAULT));
    const r = explain(DB_IP, WEB_IP, 'TCP', 80); // DB may not send it, WEB would not take it from DB
    assert.deepEqual(r.egress, side(Verdict.DENY, Reason.DENY_DEFAULT));
    assert.deepEqual(r.ingress, side(Verdict.DENY, Reason.DENY_DEFAULT));
    const s = explain(DB_IP, WEB_IP, 'SCTP', 9000);
    assert.deepEqual(s.egress, side(Verdict.ALLOW, Reason.ALLOW_POLICY, 23));
    assert.deepEqual(s.ingress, side(Verdict.DENY, Reason.DENY_DEFAULT));
  });

  test('a side that is not a local endpoint is not applicable', () => {
    const toRemote = explain(DB_IP, REMOTE_IP, 'TCP', 80);
    assert.deepEqual(toRemote.egress, side(Verdict.DENY, Reason.DENY_DEFAULT));
    assert.deepEqual(toRemote.ingress, off);
    const fromOutside = explain(OUTSIDE, WEB_IP, 'UDP', 53);
    assert.deepEqual(fromOutside.egress, off);
    assert.deepEqual(fromOutside.ingress, side(Verdict.ALLOW, Reason.ALLOW_POLICY, 22));
    assert.deepEqual(explain(OUTSIDE, WEB_IP, 'TCP', 80).ingress, side(Verdict.DENY, Reason.DENY_DEFAULT));
  });

  test('it reads the active slot: a change is seen after the generation flip only', () => {
    const gen = dp.generation();
    const next = (gen & 1) ^ 1;
    const key = abi.encodePolicyKey({ identity: WEB, peer: CLIENT, port: 81, portBits: 16, proto: abi.Proto.TCP, direction: abi.Direction.INGRESS });
    dp.slotMap('policy', next).update(key, abi.encodePolicyValue({ ruleId: 24, rank: 24 }));
    try {
      assert.deepEqual(explain(CLIENT_IP, WEB_IP, 'TCP', 81).ingress, side(Verdict.DENY, Reason.DENY_DEFAULT), 'inactive slot ignored');
      dp.bumpGeneration();
      const r = explain(CLIENT_IP, WEB_IP, 'TCP', 81);
      assert.deepEqual(r.ingress, side(Verdict.ALLOW, Reason.ALLOW_POLICY, 24));
      assert.equal(r.generation, gen + 1);
    } finally {
      dp.slotMap('policy', next).delete(key);
      dp.bumpGeneration(); // back to a slot without the key
    }
  });

  test('no side effects: conntrack, deny cache, ring buffer, stats and counters untouched', () => {
    dp.drain();
    const denyCache = () => [...dp.map(abi.MapName.denyRateLimit).keys()].length;
    const before = { ct: dp.ctCount(), deny: denyCache(), stats: dp.allStats(), created: dp.counter('CT_CREATED'), sent: dp.counter('EVENTS_SENT') };
    for (let i = 0; i < 20; i++) {
      explain(CLIENT_IP, WEB_IP, 'TCP', 80); // would create a flow at the hooks
      explain(CLIENT_IP, WEB_IP, 'TCP', 81); // would be denied with a DENY record
      explain(DB_IP, REMOTE_IP, 'UDP', 53);
    }
    assert.equal(dp.ctCount(), before.ct);
    assert.equal(denyCache(), before.deny);
    assert.deepEqual(dp.allStats(), before.stats);
    assert.equal(dp.counter('CT_CREATED'), before.created);
    assert.equal(dp.counter('EVENTS_SENT'), before.sent);
    assert.deepEqual(dp.drain(), []);
    // and the hook itself, on the same packet, does all of those: the test can see them
    assert.equal(dp.run('toPod', tcpPacket(CLIENT_IP, WEB_IP, 40000, 81, TcpFlag.SYN)), 2);
    assert.equal(TestDatapath.flows(dp.drain(), 'DENY').length, 1);
  });

  test('a packet that does not parse says so', () => {
    const prog = dp.obj.program(abi.ProgramName.policyExplain);
    assert.throws(() => runExplainProgram(prog, Buffer.alloc(60)), /not an IP packet/);
    const truncated = craftPacket(CLIENT_IP, WEB_IP, 'TCP', 40000, 80).subarray(0, 14 + 20 + 10);
    assert.throws(() => runExplainProgram(prog, truncated), /malformed packet/);
  });
});

describe('explain: user-space half', () => {
  test('craftPacket: a TCP SYN, UDP and SCTP headers, IPv4 and IPv6', () => {
    const syn = craftPacket('10.0.0.1', '10.0.0.2', 'TCP', 50000, 443);
    assert.equal(syn.readUInt16BE(12), 0x0800);
    assert.equal(syn[14 + 9], 6);
    assert.equal(syn.readUInt16BE(14 + 20), 50000);
    assert.equal(syn.readUInt16BE(14 + 22), 443);
    assert.equal(syn[14 + 20 + 13], TcpFlag.SYN);
    assert.deepEqual([...syn.subarray(14 + 12, 14 + 20)], [10, 0, 0, 1, 10, 0, 0, 2]);
    const u6 = craftPacket('fd00::1', 'fd00::2', 'UDP', 50000, 53);
    assert.equal(u6.readUInt16BE(12), 0x86dd);
    assert.equal(u6[14 + 6], 17);
    assert.equal(u6.length, 14 + 40 + 8);
    assert.equal(craftPacket('10.0.0.1', '10.0.0.2', 'SCTP', 1, 2)[14 + 9], 132);
    assert.throws(() => craftPacket('10.0.0.1', 'fd00::2', 'TCP', 1, 2), /different families/);
  });

  test('decodeExplainCtx and datapathSide: verdict, reason, applicability and names', () => {
    const ctx = Buffer.alloc(192);
    ctx.writeUInt32LE((0x8000_0000 | (Reason.ALLOW_POLICY << 8) | Verdict.ALLOW) >>> 0, 48);
    ctx.writeUInt32LE(77, 52);
    ctx.writeUInt32LE(0, 56);
    ctx.writeUInt32LE(9, 64);
    const raw = decodeExplainCtx(ctx);
    assert.deepEqual(raw, { egress: side(Verdict.ALLOW, Reason.ALLOW_POLICY, 77), ingress: off, generation: 9 });
    const names = {
      rule: (id: number) => (id === 77 ? { kind: 'NetworkPolicy' as const, policy: 'x/p', direction: 'Egress' as const, index: 2 } : undefined),
      isolatedBy: () => ['x/a', 'x/b'],
    };
    assert.deepEqual(datapathSide(raw.egress, 'x/s', 'Egress', names),
      { verdict: 'allow', reason: 'policy', pod: 'x/s', ruleId: 77, rule: { policy: 'x/p', direction: 'Egress', index: 2 } });
    assert.deepEqual(datapathSide(raw.ingress, 'x/d', 'Ingress', names), { verdict: 'allow', reason: 'not-applicable' });
    assert.deepEqual(datapathSide(side(Verdict.DENY, Reason.DENY_DEFAULT), 'x/d', 'Ingress', names),
      { verdict: 'deny', reason: 'default-deny', pod: 'x/d', ruleId: 0, policies: ['x/a', 'x/b'] });
  });
});
