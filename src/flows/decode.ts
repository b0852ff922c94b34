// The pipeline's decoder: decodeRecord's results (src/datapath/abi.ts), faster. Offsets come from
// abi.ts's layouts (which test/datapath/abi-btf.test.ts checks against weir.o's BTF), read once;
// the fields are read straight from the buffer without copies. Anything but a well-formed flow
// or LOST record of this version goes to decodeRecord, so INVALID records are the same.
// test/flows/decode.test.ts checks both decoders agree.
import {
  EventType, Layouts, WEIR_EVENT_VERSION, decodeRecord, key16ToIp,
  type FlowEvent, type StructLayout, type WeirRecord,
} from '../datapath/abi.js';

function offsets<L extends StructLayout>(l: L): Record<string, number> {
  return Object.fromEntries(l.fields.map((f) => [f.name, f.offset]));
}

const F = offsets(Layouts.flowEvent);
const L = offsets(Layouts.lostEvent);
const FLOW_SIZE = Layouts.flowEvent.size;
const LOST_SIZE = Layouts.lostEvent.size;
const TYPE_NAMES: Record<number, FlowEvent['type']> = {
  [EventType.FLOW_START]: 'FLOW_START', [EventType.DENY]: 'DENY', [EventType.FLOW_END]: 'FLOW_END', [EventType.LOG]: 'LOG',
};

/** An address field: dotted IPv4 for IPv4-mapped, else compressed IPv6 (as key16ToIp). */
function ipAt(b: Buffer, o: number): string {
  if (b.readUInt32LE(o) === 0 && b.readUInt32LE(o + 4) === 0 && b.readUInt32BE(o + 8) === 0xffff) {
    return `${b[o + 12]}.${b[o + 13]}.${b[o + 14]}.${b[o + 15]}`;
  }
  return key16ToIp(b.subarray(o, o + 16));
}

export function decodeRecordFast(b: Buffer): WeirRecord {
  if (b.length >= 4 && b[0] === WEIR_EVENT_VERSION) {
    const type = b[1]!;
    const len = b.readUInt16LE(2);
    const name = TYPE_NAMES[type];
    if (name && len === FLOW_SIZE && b.length >= FLOW_SIZE) {
      return {
        type: name,
        cpu: b.readUInt32LE(4),
        tsNs: b.readBigUInt64LE(F.ts_ns!),
        startNs: b.readBigUInt64LE(F.start_ns!),
        saddr: ipAt(b, F.saddr!),
        daddr: ipAt(b, F.daddr!),
        sport: b.readUInt16LE(F.sport!),
        dport: b.readUInt16LE(F.dport!),
        proto: b[F.proto!]!,
        family: b[F.family!]!,
        direction: b[F.direction!]!,
        verdict: b[F.verdict!]!,
        reason: b.readUInt16LE(F.reason!),
        hook: b[F.hook!]!,
        tcpFlags: b[F.tcp_flags!]!,
        ifindex: b.readUInt32LE(F.ifindex!),
        srcEp: b.readUInt32LE(F.src_ep!),
        dstEp: b.readUInt32LE(F.dst_ep!),
        srcIdentity: b.readUInt32LE(F.src_identity!),
        dstIdentity: b.readUInt32LE(F.dst_identity!),
        egressRuleId: b.readUInt32LE(F.egress_rule_id!),
        ingressRuleId: b.readUInt32LE(F.ingress_rule_id!),
        count: b.readUInt32LE(F.count!),
        forwardRuleId: b.readUInt32LE(F.forward_rule_id!),
        packetsFwd: b.readBigUInt64LE(F.packets_fwd!),
        bytesFwd: b.readBigUInt64LE(F.bytes_fwd!),
        packetsRev: b.readBigUInt64LE(F.packets_rev!),
        bytesRev: b.readBigUInt64LE(F.bytes_rev!),
      };
    }
    if (type === EventType.LOST && len === LOST_SIZE && b.length >= LOST_SIZE) {
      return { type: 'LOST', cpu: b.readUInt32LE(4), tsNs: b.readBigUInt64LE(L.ts_ns!), lost: b.readBigUInt64LE(L.lost!) };
    }
  }
  return decodeRecord(b);
}
