// Synthetic input of the pipeline benchmark: a cluster of pods (for the endpoint registry) and
// ring-buffer records over them, encoded byte for byte as the datapath writes them
// (abi.Layouts.flowEvent, the layout the BTF test checks against weir.o), so the pipeline decodes
// exactly what it would read from the ring.
import * as abi from '../src/datapath/abi.js';
import { labAddress } from '../src/lab/addresses.js';
import type { EndpointRegistry } from '../src/flows/registry.js';
import type { Labels } from '../src/datastore/objects.js';

export const NAMESPACES = 20;
export const APPS = 50;
export const SERVER_PORT = 8080;

export interface SynthPod {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Labels;
  readonly ipv4: string;
  readonly ipv6: string;
}

/** Pod i: namespace ns-(i%20), app a(i%50), 4 labels, lab-style addresses. */
export function synthPod(i: number): SynthPod {
  const a = labAddress(i + 10);
  return {
    namespace: `ns-${i % NAMESPACES}`, name: `pod-${i}`,
    labels: { app: `a${i % APPS}`, team: `t${i % 5}`, version: `v${i % 3}`, 'pod-template-hash': `h${(i * 2654435761) % 100000}` },
    ipv4: a.ipv4, ipv6: a.ipv6,
  };
}

export function synthPods(n: number): { registry: (r: EndpointRegistry) => void; podIps: readonly string[]; pods: readonly SynthPod[] } {
  const pods = Array.from({ length: n }, (_, i) => synthPod(i));
  return {
    pods,
    podIps: pods.map((p) => p.ipv4),
    registry: (r) => {
      const since = Date.now() - 3_600_000;
      for (let ns = 0; ns < NAMESPACES; ns++) r.upsertNamespace(`ns-${ns}`, { 'kubernetes.io/metadata.name': `ns-${ns}` });
      for (const p of pods) r.upsertPod({ namespace: p.namespace, name: p.name, labels: p.labels, ips: [p.ipv4, p.ipv6], node: 'bench-node', since }, since);
    },
  };
}

const FIELD = new Map(abi.Layouts.flowEvent.fields.map((f) => [f.name, f.offset]));
const off = (name: string): number => FIELD.get(name)!;

export interface SynthEvent {
  readonly type: 'FLOW_START' | 'DENY' | 'FLOW_END';
  readonly saddr: string;
  readonly daddr: string;
  readonly sport: number;
  readonly dport: number;
  readonly direction: number;
  readonly verdict: number;
  readonly reason: number;
  readonly hook: number;
  readonly egressRuleId?: number;
  readonly ingressRuleId?: number;
  readonly tsNs: bigint;
  readonly packets?: number;
  readonly bytes?: number;
}

/** One weir_flow_event as the datapath writes it (TCP, IPv4). */
export function encodeFlowEvent(e: SynthEvent): Buffer {
  const b = Buffer.alloc(abi.Layouts.flowEvent.size);
  b.writeUInt8(abi.WEIR_EVENT_VERSION, 0);
  b.writeUInt8(abi.EventType[e.type], 1);
  b.writeUInt16LE(abi.Layouts.flowEvent.size, 2);
  b.writeUInt32LE(0, 4);
  b.writeBigUInt64LE(e.tsNs, off('ts_ns'));
  b.writeBigUInt64LE(e.tsNs, off('start_ns'));
  abi.ipToKey16(e.saddr).copy(b, off('saddr'));
  abi.ipToKey16(e.daddr).copy(b, off('daddr'));
  b.writeUInt16LE(e.sport, off('sport'));
  b.writeUInt16LE(e.dport, off('dport'));
  b.writeUInt8(abi.Proto.TCP, off('proto'));
  b.writeUInt8(4, off('family'));
  b.writeUInt8(e.direction, off('direction'));
  b.writeUInt8(e.verdict, off('verdict'));
  b.writeUInt16LE(e.reason, off('reason'));
  b.writeUInt8(e.hook, off('hook'));
  b.writeUInt8(e.type === 'FLOW_END' ? 0x11 : 0x02, off('tcp_flags'));
  b.writeUInt32LE(abi.Identity.FIRST_DYNAMIC + 1, off('src_identity'));
  b.writeUInt32LE(abi.Identity.FIRST_DYNAMIC + 2, off('dst_identity'));
  b.writeUInt32LE(e.egressRuleId ?? 0, off('egress_rule_id'));
  b.writeUInt32LE(e.ingressRuleId ?? 0, off('ingress_rule_id'));
  b.writeUInt32LE(e.type === 'DENY' ? 1 : 0, off('count'));
  if (e.type === 'FLOW_END') {
    b.writeBigUInt64LE(BigInt(e.packets ?? 10), off('packets_fwd'));
    b.writeBigUInt64LE(BigInt(e.bytes ?? 1500), off('bytes_fwd'));
    b.writeBigUInt64LE(BigInt(e.packets ?? 10), off('packets_rev'));
    b.writeBigUInt64LE(BigInt(e.bytes ?? 1500) * 4n, off('bytes_rev'));
  }
  return b;
}

/**
 * `count` records over the pods: per 10 flows, 9 allowed pod-to-pod TCP flows, each a FLOW_START
 * at the sender's egress, one at the receiver's ingress and a FLOW_END (27 records), and 3 denied
 * connection attempts (DENY): 10% of the records are denies, as in a cluster with a few
 * misbehaving clients. Every flow has its own source port.
 */
export function synthEvents(podIps: readonly string[], count: number): Buffer[] {
  const out: Buffer[] = [];
  const P = podIps.length;
  const now = process.hrtime.bigint();
  for (let f = 0; out.length < count; f++) {
    const c = f % P;
    const s = (c * 7 + 3 + Math.floor(f / P)) % P;
    const saddr = podIps[c]!;
    const daddr = podIps[s === c ? (s + 1) % P : s]!;
    const sport = 1024 + (Math.floor(f / P) % 60_000);
    const tsNs = now + BigInt(f) * 1000n;
    const rule = 1 + (s % 100);
    if (f % 10 === 9) {
      for (let k = 0; k < 3 && out.length < count; k++) {
        out.push(encodeFlowEvent({ type: 'DENY', saddr, daddr, sport: (sport + 20_000 * (k + 1)) % 64_000 + 1024, dport: SERVER_PORT + 1, direction: abi.Direction.INGRESS, verdict: abi.Verdict.DENY, reason: abi.Reason.DENY_DEFAULT, hook: abi.Hook.TO_POD, tsNs }));
      }
      continue;
    }
    const base = { saddr, daddr, sport, dport: SERVER_PORT, verdict: abi.Verdict.ALLOW, reason: abi.Reason.ALLOW_POLICY, tsNs };
    out.push(encodeFlowEvent({ ...base, type: 'FLOW_START', direction: abi.Direction.EGRESS, hook: abi.Hook.FROM_POD, egressRuleId: rule + 1000 }));
    if (out.length < count) out.push(encodeFlowEvent({ ...base, type: 'FLOW_START', direction: abi.Direction.INGRESS, hook: abi.Hook.TO_POD, ingressRuleId: rule }));
    if (out.length < count) out.push(encodeFlowEvent({ ...base, type: 'FLOW_END', direction: abi.Direction.BOTH, hook: abi.Hook.GC, egressRuleId: rule + 1000, ingressRuleId: rule, tsNs: tsNs + 500n }));
  }
  return out;
}
