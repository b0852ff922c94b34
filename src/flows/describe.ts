// From a raw ring-buffer record to what a person reads: names instead of addresses and ids, the
// deciding policy rule in words, wall-clock time. Pure functions over a Resolver, so the same code
// serves the lab, the agent and tests.
import {
  Direction, Identity, Reason, Verdict, directionName, hookName, reasonName,
  type FlowEvent, type WeirRecord,
} from '../datapath/abi.js';
import type { RuleInfo } from '../policy/ids.js';

export type PeerKind = 'pod' | 'host' | 'world';

export interface FlowPeer {
  readonly ip: string;
  readonly port: number;
  /** "namespace/pod" for pods */
  readonly name?: string;
  readonly kind: PeerKind;
}

export interface FlowView {
  readonly time: Date;
  readonly type: 'flow-start' | 'deny' | 'flow-end' | 'lost' | 'invalid';
  readonly verdict: 'allow' | 'deny' | 'audit' | 'none';
  readonly reason: string;
  readonly direction: 'ingress' | 'egress' | 'both' | 'none';
  readonly hook: string;
  readonly protocol: string;
  readonly src?: FlowPeer;
  readonly dst?: FlowPeer;
  /** what decided, in words: `api/allow-frontend-to-orders ingress[0]`, `default deny (no policy allows it)` */
  readonly policy: string;
  /** DENY: packets this record stands for */
  readonly count: number;
  readonly packets?: { readonly fwd: number; readonly rev: number };
  readonly bytes?: { readonly fwd: number; readonly rev: number };
  /** LOST: records the ring buffer could not take */
  readonly lost?: number;
  readonly error?: string;
}

export interface Resolver {
  /** Who held `ip` (for the lab: now; for the agent: when the packet flowed). */
  peer(ip: string, identity: number): { name?: string; kind: PeerKind };
  rule(id: number): RuleInfo | undefined;
  /** The policies that isolate pod `name` in `direction` (a default deny names them). */
  isolatedBy?(name: string, direction: 'Ingress' | 'Egress'): string[];
}

/** bpf_ktime_get_ns() and process.hrtime() both read CLOCK_MONOTONIC. */
export function monotonicToDate(tsNs: bigint, nowMonoNs = process.hrtime.bigint(), nowMs = Date.now()): Date {
  return new Date(nowMs - Number((nowMonoNs - tsNs) / 1_000_000n));
}

const PROTOCOLS: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' };

export function protocolName(proto: number): string {
  return PROTOCOLS[proto] ?? `proto-${proto}`;
}

export function describeRule(id: number, resolver: Resolver): string {
  const r = resolver.rule(id);
  if (!r) return `rule #${id}`;
  return `${r.policy} ${r.direction.toLowerCase()}[${r.index}]`;
}

function decision(ev: FlowEvent, resolver: Resolver): string {
  const ruleId = ev.direction === Direction.EGRESS ? ev.egressRuleId : ev.ingressRuleId;
  const way = ev.direction === Direction.EGRESS ? 'egress' : 'ingress';
  // The policed pod: the sender for egress decisions, the receiver for ingress ones.
  const policed = () => {
    const [ip, identity] = ev.direction === Direction.EGRESS ? [ev.saddr, ev.srcIdentity] : [ev.daddr, ev.dstIdentity];
    const name = resolver.peer(ip, identity).name;
    const by = name && resolver.isolatedBy ? resolver.isolatedBy(name, ev.direction === Direction.EGRESS ? 'Egress' : 'Ingress') : [];
    return by.length > 0 ? ` (isolated by ${by.join(', ')})` : '';
  };
  switch (ev.reason) {
    case Reason.ALLOW_POLICY: return describeRule(ruleId, resolver);
    case Reason.ALLOW_NOT_ISOLATED: return `no policy selects it for ${way}`;
    case Reason.ALLOW_HOST: return 'traffic with its own node (always allowed)';
    case Reason.DENY_DEFAULT: return `default deny: no ${way} rule allows it${policed()}`;
    case Reason.AUDIT: return `audit: default deny would drop it (${way})${policed()}`;
    case Reason.DROP_SPOOFED: return 'source address is not the pod\'s';
    case Reason.DROP_UNAPPROVED_REPLY: return 'reply to a flow policy never allowed';
    case Reason.DROP_CT_FULL: return 'conntrack table full';
    default: break;
  }
  if (ev.type === 'FLOW_END') {
    const parts: string[] = [];
    if (ev.egressRuleId) parts.push(`egress: ${describeRule(ev.egressRuleId, resolver)}`);
    if (ev.ingressRuleId) parts.push(`ingress: ${describeRule(ev.ingressRuleId, resolver)}`);
    return parts.join('; ') || 'not policed';
  }
  return reasonName(ev.reason).toLowerCase().replace(/_/g, ' ');
}

const TYPE_NAMES = { FLOW_START: 'flow-start', DENY: 'deny', FLOW_END: 'flow-end' } as const;
const VERDICT_NAMES: Record<number, FlowView['verdict']> = {
  [Verdict.ALLOW]: 'allow', [Verdict.DENY]: 'deny', [Verdict.AUDIT]: 'audit', [Verdict.NONE]: 'none',
};

export function describeRecord(rec: WeirRecord, resolver: Resolver, toDate: (ns: bigint) => Date = (ns) => monotonicToDate(ns)): FlowView {
  if (rec.type === 'INVALID') {
    return { time: new Date(), type: 'invalid', verdict: 'none', reason: 'invalid record', direction: 'none', hook: '', protocol: '', policy: '', count: 0, error: rec.error };
  }
  if (rec.type === 'LOST') {
    return { time: toDate(rec.tsNs), type: 'lost', verdict: 'none', reason: 'ring buffer full', direction: 'none', hook: '', protocol: '', policy: '', count: 0, lost: Number(rec.lost) };
  }
  const peer = (ip: string, port: number, identity: number): FlowPeer => ({ ip, port, ...resolver.peer(ip, identity) });
  const view: FlowView = {
    time: toDate(rec.tsNs),
    type: TYPE_NAMES[rec.type],
    verdict: VERDICT_NAMES[rec.verdict] ?? 'none',
    reason: reasonName(rec.reason),
    direction: (directionName(rec.direction).toLowerCase() as FlowView['direction']),
    hook: hookName(rec.hook),
    protocol: protocolName(rec.proto),
    src: peer(rec.saddr, rec.sport, rec.srcIdentity),
    dst: peer(rec.daddr, rec.dport, rec.dstIdentity),
    policy: decision(rec, resolver),
    count: rec.count,
    ...(rec.type === 'FLOW_END' ? {
      packets: { fwd: Number(rec.packetsFwd), rev: Number(rec.packetsRev) },
      bytes: { fwd: Number(rec.bytesFwd), rev: Number(rec.bytesRev) },
    } : {}),
  };
  return view;
}

function peerText(p: FlowPeer | undefined): string {
  if (!p) return '?';
  const addr = p.ip.includes(':') ? `[${p.ip}]:${p.port}` : `${p.ip}:${p.port}`;
  const who = p.name ?? p.kind;
  return `${who} ${addr}`;
}

/** One line per record, as `weir lab observe` prints them. */
export function formatFlow(f: FlowView): string {
  const t = f.time.toISOString().slice(11, 23);
  if (f.type === 'lost') return `${t} LOST     ${f.lost} records dropped: the ring buffer was full`;
  if (f.type === 'invalid') return `${t} INVALID  ${f.error}`;
  const label = f.type === 'flow-end' ? 'END' : f.verdict.toUpperCase();
  let line = `${t} ${label.padEnd(6)} ${f.protocol.padEnd(4)} ${peerText(f.src)} -> ${peerText(f.dst)}`;
  line += f.type === 'flow-end' ? `  (${f.policy})` : `  ${f.direction}: ${f.policy}`;
  if (f.type === 'deny' && f.count > 1) line += `  x${f.count}`;
  if (f.packets) line += `  packets ${f.packets.fwd}/${f.packets.rev} bytes ${f.bytes!.fwd}/${f.bytes!.rev}`;
  return line;
}

export const RESERVED_IDENTITY_KIND: Record<number, PeerKind> = { [Identity.HOST]: 'host', [Identity.WORLD]: 'world' };
