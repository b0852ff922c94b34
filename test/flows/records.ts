// Ring-buffer records for the flow tests, encoded byte for byte as weir_flow_event /
// weir_lost_event (offsets from abi.ts's layouts, which the BTF test checks against weir.o) and
// decoded by decodeRecord, so the tests see exactly what the reader delivers.
import {
  Direction, EventType, Hook, Layouts, Proto, Reason, Verdict, WEIR_EVENT_VERSION, decodeRecord, ipToKey16,
  type FlowEvent, type LostEvent, type StructLayout,
} from '../../src/datapath/abi.js';
import type { Clocks } from '../../src/flows/clock.js';

export const SEC = 1_000_000_000n;
export const MS = 1_000_000n;

function at(l: StructLayout, name: string): number {
  const f = l.fields.find((x) => x.name === name);
  if (!f) throw new Error(`no field ${name} in ${l.name}`);
  return f.offset;
}

export type FlowFields = Partial<Omit<FlowEvent, 'type'>> & { type?: FlowEvent['type'] };

/** The raw bytes of a weir_flow_event. */
export function encodeFlow(o: FlowFields): Buffer {
  const l = Layouts.flowEvent;
  const b = Buffer.alloc(l.size);
  const ev: FlowEvent = {
    type: 'FLOW_START', cpu: 0, tsNs: 1000n * SEC, startNs: o.tsNs ?? 1000n * SEC,
    saddr: '10.244.0.10', daddr: '10.244.0.11', sport: 40000, dport: 8080, proto: Proto.TCP, family: 4,
    direction: Direction.INGRESS, verdict: Verdict.ALLOW, reason: Reason.ALLOW_POLICY, hook: Hook.TO_POD, tcpFlags: 2,
    ifindex: 5, srcEp: 1, dstEp: 2, srcIdentity: 256, dstIdentity: 257, egressRuleId: 0, ingressRuleId: 0, forwardRuleId: 0, count: 1,
    packetsFwd: 0n, bytesFwd: 0n, packetsRev: 0n, bytesRev: 0n, ...o,
  } as FlowEvent;
  b.writeUInt8(WEIR_EVENT_VERSION, 0);
  b.writeUInt8(EventType[ev.type], 1);
  b.writeUInt16LE(l.size, 2);
  b.writeUInt32LE(ev.cpu, 4);
  b.writeBigUInt64LE(ev.tsNs, at(l, 'ts_ns'));
  b.writeBigUInt64LE(ev.startNs, at(l, 'start_ns'));
  ipToKey16(ev.saddr).copy(b, at(l, 'saddr'));
  ipToKey16(ev.daddr).copy(b, at(l, 'daddr'));
  b.writeUInt16LE(ev.sport, at(l, 'sport'));
  b.writeUInt16LE(ev.dport, at(l, 'dport'));
  b.writeUInt8(ev.proto, at(l, 'proto'));
  b.writeUInt8(ev.saddr.includes(':') ? 6 : 4, at(l, 'family'));
  b.writeUInt8(ev.direction, at(l, 'direction'));
  b.writeUInt8(ev.verdict, at(l, 'verdict'));
  b.writeUInt16LE(ev.reason, at(l, 'reason'));
  b.writeUInt8(ev.hook, at(l, 'hook'));
  b.writeUInt8(ev.tcpFlags, at(l, 'tcp_flags'));
  b.writeUInt32LE(ev.ifindex, at(l, 'ifindex'));
  b.writeUInt32LE(ev.srcEp, at(l, 'src_ep'));
  b.writeUInt32LE(ev.dstEp, at(l, 'dst_ep'));
  b.writeUInt32LE(ev.srcIdentity, at(l, 'src_identity'));
  b.writeUInt32LE(ev.dstIdentity, at(l, 'dst_identity'));
  b.writeUInt32LE(ev.egressRuleId, at(l, 'egress_rule_id'));
  b.writeUInt32LE(ev.ingressRuleId, at(l, 'ingress_rule_id'));
  b.writeUInt32LE(ev.count, at(l, 'count'));
  b.writeUInt32LE(ev.forwardRuleId, at(l, 'forward_rule_id'));
  b.writeBigUInt64LE(ev.packetsFwd, at(l, 'packets_fwd'));
  b.writeBigUInt64LE(ev.bytesFwd, at(l, 'bytes_fwd'));
  b.writeBigUInt64LE(ev.packetsRev, at(l, 'packets_rev'));
  b.writeBigUInt64LE(ev.bytesRev, at(l, 'bytes_rev'));
  return b;
}

/** A decoded flow record, as the reader delivers it. */
export function flow(o: FlowFields): FlowEvent {
  const r = decodeRecord(encodeFlow(o));
  if (r.type === 'LOST' || r.type === 'INVALID') throw new Error(`not a flow record: ${JSON.stringify(r)}`);
  return r;
}

export function encodeLost(tsNs: bigint, lost: bigint, cpu = 0): Buffer {
  const l = Layouts.lostEvent;
  const b = Buffer.alloc(l.size);
  b.writeUInt8(WEIR_EVENT_VERSION, 0);
  b.writeUInt8(EventType.LOST, 1);
  b.writeUInt16LE(l.size, 2);
  b.writeUInt32LE(cpu, 4);
  b.writeBigUInt64LE(tsNs, at(l, 'ts_ns'));
  b.writeBigUInt64LE(lost, at(l, 'lost'));
  return b;
}

export function lost(tsNs: bigint, n: bigint): LostEvent {
  const r = decodeRecord(encodeLost(tsNs, n));
  if (r.type !== 'LOST') throw new Error('not a LOST record');
  return r;
}

/** Clocks a test moves by hand. */
export function fakeClocks(monoNs: bigint, wallMs: number): Clocks & { advance(ms: number): void; stepWall(ms: number): void } {
  let mono = monoNs;
  let wall = wallMs;
  return {
    monoNs: () => mono,
    wallMs: () => wall,
    advance(ms) { mono += BigInt(ms) * 1_000_000n; wall += ms; },
    stepWall(ms) { wall += ms; },
  };
}

