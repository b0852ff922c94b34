// The codecs on their own (no BPF needed): addresses, round trips, and decodeRecord's refusal to
// throw on records it does not understand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as abi from '../../src/datapath/abi.js';

test('ipToKey16 / key16ToIp: IPv4 as ::ffff:a.b.c.d, IPv6 compressed', () => {
  assert.equal(abi.ipToKey16('10.1.2.3').toString('hex'), '00000000000000000000ffff0a010203');
  assert.equal(abi.key16ToIp(abi.ipToKey16('10.1.2.3')), '10.1.2.3');
  assert.equal(abi.key16ToIp(abi.ipToKey16('::ffff:192.0.2.1')), '192.0.2.1');
  for (const ip of ['fd00::a', '2001:db8::1:0:0:1', '::1', '::', 'fe80::1', '2001:db8:1:2:3:4:5:6']) {
    assert.equal(abi.key16ToIp(abi.ipToKey16(ip)), ip);
  }
  assert.equal(abi.key16ToIp(abi.ipToKey16('2001:DB8:0:0:0:0:0:1')), '2001:db8::1');
  assert.throws(() => abi.ipToKey16('10.1.2'), /not an IPv4 or IPv6 address/);
});

test('map codecs round-trip', () => {
  const ep = { id: 7, identity: 300, ifindex: 12, flags: abi.EndpointFlag.LOCAL | abi.EndpointFlag.AUDIT_INGRESS, selIdentity: 301 };
  assert.deepEqual(abi.decodeEndpoint(abi.encodeEndpoint(ep)), ep);
  // sel_identity defaults to the identity (a pod's)
  assert.equal(abi.decodeEndpoint(abi.encodeEndpoint({ id: 1, identity: 300, ifindex: 0, flags: 0 })).selIdentity, 300);
  const pk = { identity: 300, peer: 2, port: 8080, portBits: 16, proto: abi.Proto.TCP, direction: abi.Direction.INGRESS };
  assert.deepEqual(abi.decodePolicyKey(abi.encodePolicyKey(pk)), pk);
  const rk = { identity: 300, peer: 1 << 24, port: 8080, portBits: 12, proto: abi.Proto.SCTP, direction: abi.Direction.EGRESS };
  assert.deepEqual(abi.decodePortRangeKey(abi.encodePortRangeKey(rk)), rk);
  assert.throws(() => abi.encodePolicyKey(rk), /belongs in weir_prange/);
  const ck = { saddr: '10.0.0.1', daddr: 'fd00::2', sport: 1, dport: 65535, proto: abi.Proto.UDP };
  assert.deepEqual(abi.decodeCtKey(abi.encodeCtKey(ck)), ck);
  assert.equal(abi.encodeCtKey(ck).length, abi.Layouts.ctKey.size);
  const ce: abi.CtEntry = {
    createdNs: 1n, lastSeenNs: 2n, packetsFwd: 3n, bytesFwd: 4n, packetsRev: 5n, bytesRev: 6n,
    srcEp: 7, dstEp: 8, srcIdentity: 9, dstIdentity: 10, egressRuleId: 11, ingressRuleId: 12,
    ifindex: 13, revIfindex: 14, flags: abi.CtFlag.ENDED | abi.CtFlag.AUDITED, tcpFlagsFwd: 0x12, tcpFlagsRev: 0x11,
    forwardRuleId: 15,
  };
  assert.deepEqual(abi.decodeCtEntry(abi.encodeCtEntry(ce)), ce);
});

test('host-protection codecs round-trip; a port block is a big-endian prefix', () => {
  const h = { id: 3, identity: 400, flags: abi.EndpointFlag.AUDIT_ALL };
  assert.deepEqual(abi.decodeHostIface(abi.encodeHostIface(h)), h);
  const tk = { identity: 400, direction: abi.Direction.EGRESS, variant: abi.GlobalTierVariant.FORWARDED | abi.GlobalTierVariant.WITH_AUDIT };
  assert.deepEqual(abi.decodeGlobalTierKey(abi.encodeGlobalTierKey(tk)), tk);
  assert.deepEqual(abi.decodeGlobalTierValue(abi.encodeGlobalTierValue({ first: 9, count: 0 })), { first: 9, count: 0 });
  const r: abi.GlobalRule = {
    ruleId: 20, action: abi.GlobalAction.PASS, proto: abi.Proto.UDP, srcSel: 16, dstSel: 17, srcNets: 18, dstNets: 19,
    srcNotNets: 20, dstNotNets: 21, srcPorts: 22, dstPorts: 23, srcNotPorts: 24, dstNotPorts: 25,
  };
  const rb = abi.encodeGlobalRule(r);
  assert.equal(rb.length, 48);
  assert.equal(rb.readUInt32LE(44), 25, 'dst_not_ports is the last field');
  assert.deepEqual(abi.decodeGlobalRule(rb), r);
  const sk = { set: 16, member: 300, port: (abi.Proto.TCP << 16) | 8080 };
  assert.deepEqual(abi.decodeGlobalSetKey(abi.encodeGlobalSetKey(sk)), sk);
  const pk = { set: 17, port: 0x1f40, portBits: 12 };
  const pb = abi.encodeGlobalPortKey(pk);
  assert.equal(pb.toString('hex'), '2c000000110000001f400000');
  assert.deepEqual(abi.decodeGlobalPortKey(pb), pk);
});

test('per-CPU values are summed over 8-byte-aligned slots', () => {
  const raw = Buffer.alloc(16 * 3);
  for (let cpu = 0; cpu < 3; cpu++) {
    raw.writeBigUInt64LE(BigInt(cpu + 1), cpu * 16);
    raw.writeBigUInt64LE(100n, cpu * 16 + 8);
  }
  assert.deepEqual(abi.decodePerCpuStat(raw), { packets: 6n, bytes: 300n });
  const counters = Buffer.alloc(24);
  counters.writeBigUInt64LE(5n, 8);
  assert.deepEqual(abi.decodePerCpuU64(counters), [0n, 5n, 0n]);
  assert.equal(abi.sumPerCpuU64(counters), 5n);
});

function header(version: number, type: number, len: number, size = len): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt8(version, 0);
  b.writeUInt8(type, 1);
  b.writeUInt16LE(len, 2);
  b.writeUInt32LE(3, 4);
  return b;
}

test('decodeRecord: LOST and flow records', () => {
  const lost = header(2, abi.EventType.LOST, 24);
  lost.writeBigUInt64LE(42n, 16);
  assert.deepEqual(abi.decodeRecord(lost), { type: 'LOST', cpu: 3, tsNs: 0n, lost: 42n });
  const deny = header(2, abi.EventType.DENY, 136);
  abi.ipToKey16('10.0.0.9').copy(deny, 24);
  abi.ipToKey16('10.0.0.1').copy(deny, 40);
  deny.writeUInt16LE(53, 58);
  deny.writeUInt32LE(4, 96);
  deny.writeUInt32LE(77, 100);
  const r = abi.decodeRecord(deny);
  assert.equal(r.type, 'DENY');
  assert.ok(r.type === 'DENY');
  assert.deepEqual([r.saddr, r.daddr, r.dport, r.count, r.forwardRuleId], ['10.0.0.9', '10.0.0.1', 53, 4, 77]);
  const log = abi.decodeRecord(header(2, abi.EventType.LOG, 136));
  assert.equal(log.type, 'LOG');
});

test('decodeRecord never throws: unknown version, type or length come back INVALID', () => {
  const cases: Array<[Buffer, RegExp]> = [
    [Buffer.alloc(3), /shorter than its header/],
    [header(1, abi.EventType.DENY, 136), /version 1/],
    [header(2, 99, 24), /unknown record type 99/],
    [header(2, abi.EventType.FLOW_END, 100), /expected 136/],
    [header(2, abi.EventType.FLOW_START, 136, 64), /got 64/],
  ];
  for (const [buf, msg] of cases) {
    const r = abi.decodeRecord(buf);
    assert.equal(r.type, 'INVALID');
    assert.ok(r.type === 'INVALID');
    assert.match(r.error, msg);
  }
});

test('reason and counter names', () => {
  assert.equal(abi.reasonName(abi.Reason.DROP_UNAPPROVED_REPLY), 'DROP_UNAPPROVED_REPLY');
  assert.equal(abi.REASON_NAMES[7], 'DENY_DEFAULT');
  assert.equal(abi.COUNTER_NAMES[0], 'EVENTS_LOST');
  assert.equal(abi.reasonName(19), 'ALLOW_FORWARDED');
  assert.equal(abi.reasonName(20), 'UNKNOWN(20)');
});
