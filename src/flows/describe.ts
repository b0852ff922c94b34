// From a raw ring-buffer record to what a person reads: names instead of addresses and ids, the
// deciding policy rule in words, wall-clock time. Pure functions over a Resolver, so the same code
// serves the lab, the agent and tests.
import {
  Direction, Identity, Reason, Verdict, directionName, hookName, reasonName,
  type FlowEvent, type WeirRecord,
} from '../datapath/abi.js';
import type { Labels } from '../datastore/objects.js';
import type { RuleInfo } from '../policy/ids.js';
import { ruleText } from './enrich.js';

export type PeerKind = 'pod' | 'host' | 'world';

/** A host endpoint, as a peer shows it. */
export interface PeerHostEndpoint {
  readonly name: string;
  readonly labels: Labels;
}

export interface FlowPeer {
  readonly ip: string;
  readonly port: number;
  /** "namespace/pod" for pods; the node's name for `host` */
  readonly name?: string;
  readonly kind: PeerKind;
  /** host: the host endpoint covering this node where the record was made; world: the host
   * endpoint (of another node) whose expectedIPs list the address */
  readonly hostEndpoint?: PeerHostEndpoint;
}

/** Where the record was made, for resolvers that name things by interface. */
export interface PeerContext {
  /** Hook value */
  readonly hook: number;
  readonly ifindex: number;
}

export interface FlowView {
  readonly time: Date;
  readonly type: 'flow-start' | 'deny' | 'flow-end' | 'log' | 'lost' | 'invalid';
  readonly verdict: 'allow' | 'deny' | 'audit' | 'none';
  readonly reason: string;
  readonly direction: 'ingress' | 'egress' | 'both' | 'none';
  readonly hook: string;
  readonly protocol: string;
  readonly src?: FlowPeer;
  readonly dst?: FlowPeer;
  /** what decided, in words: `api/allow-frontend-to-orders ingress[0]`, `default deny (no policy allows it)` */
  readonly policy: string;
  /** the rule of a host endpoint the flow was forwarded through (applyOnForward), in words */
  readonly forward?: string;
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
  peer(ip: string, identity: number, where?: PeerContext): { name?: string; kind: PeerKind; hostEndpoint?: PeerHostEndpoint };
  rule(id: number): RuleInfo | undefined;
  /** The policies that isolate pod `name` in `direction` (a default deny names them). */
  isolatedBy?(name: string, direction: 'Ingress' | 'Egress'): string[];
  /** The global policies (in evaluation order) selecting the endpoint at `ip` (a pod, or this
   * node's host endpoint) in `direction` (an end-of-tier deny names them). */
  globalSelectedBy?(ip: string, identity: number, direction: 'Ingress' | 'Egress', where?: PeerContext): string[];
}

/** bpf_ktime_get_ns() and process.hrtime() both read CLOCK_MONOTONIC. */
export function monotonicToDate(tsNs: bigint, nowMonoNs = process.hrtime.bigint(), nowMs = Date.now()): Date {
  return new Date(nowMs - Number((nowMonoNs - tsNs) / 1_000_000n));
}

const PROTOCOLS: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' };

export function protocolName(proto: number): string {
  return PROTOCOLS[proto] ?? `proto-${proto}`;
}

/** A rule id in words: `api/allow ingress[0]` (NetworkPolicy), `gnp/allow-ssh ingress[0] Allow`
 * (GlobalNetworkPolicy), `rule #42` (unknown). */
export function describeRule(id: number, resolver: Resolver): string {
  if (id === 0) return 'no rule';
  return ruleText(id, resolver.rule(id));
}

function hostEndpointText(h: PeerHostEndpoint | undefined): string {
  if (!h) return '';
  const labels = Object.entries(h.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v}`);
  return labels.length > 0 ? `hep ${h.name}: ${labels.join(',')}` : `hep ${h.name}`;
}

function decision(ev: FlowEvent, resolver: Resolver): string {
  const egress = ev.direction === Direction.EGRESS;
  const ruleId = egress ? ev.egressRuleId : ev.ingressRuleId;
  // Between a pod and its node, an allowed flow's record has the pod hook's direction but the
  // host endpoint's reason, with its rule in the other direction's field: name that rule then
  // (a rule's text says its direction).
  const decidingRule = ruleId || (egress ? ev.ingressRuleId : ev.egressRuleId);
  const way = egress ? 'egress' : 'ingress';
  const where: PeerContext = { hook: ev.hook, ifindex: ev.ifindex };
  // The policed side: the sender for egress decisions, the receiver for ingress ones.
  const [ip, identity] = egress ? [ev.saddr, ev.srcIdentity] : [ev.daddr, ev.dstIdentity];
  const policed = () => {
    const name = resolver.peer(ip, identity, where).name;
    const by = name && resolver.isolatedBy ? resolver.isolatedBy(name, egress ? 'Egress' : 'Ingress') : [];
    return by.length > 0 ? ` (isolated by ${by.join(', ')})` : '';
  };
  const selected = () => {
    const by = resolver.globalSelectedBy ? resolver.globalSelectedBy(ip, identity, egress ? 'Egress' : 'Ingress', where) : [];
    return by.length > 0 ? ` (selected by ${by.map((p) => `gnp/${p}`).join(', ')})` : '';
  };
  const hostEndpoint = () => {
    const h = hostEndpointText(resolver.peer(ip, identity, where).hostEndpoint);
    return h ? ` (${h})` : '';
  };
  // A global Pass rule recorded with a default: what led there.
  const after = () => {
    const r = ruleId ? resolver.rule(ruleId) : undefined;
    return r?.kind === 'GlobalNetworkPolicy' && r.action === 'Pass' ? `, after ${describeRule(ruleId, resolver)}` : '';
  };
  if (ev.type === 'LOG') return `log: ${ruleId ? describeRule(ruleId, resolver) : 'a Log rule'}`;
  switch (ev.reason) {
    case Reason.ALLOW_POLICY: return describeRule(decidingRule, resolver);
    case Reason.ALLOW_GLOBAL: return describeRule(decidingRule, resolver);
    case Reason.DENY_POLICY: return decidingRule ? describeRule(decidingRule, resolver) : `denied by a ${way} rule`;
    case Reason.ALLOW_NOT_ISOLATED: return `no policy selects it for ${way}`;
    case Reason.ALLOW_HOST: return 'traffic with its own node (always allowed)';
    case Reason.DENY_DEFAULT: return `default deny: no ${way} rule allows it${policed()}${after()}`;
    case Reason.AUDIT:
      // the rule that would deny it (an audit-mode policy's), else a default: NetworkPolicy's
      // default deny, a global tier's end, or a host endpoint's default
      return ruleId ? `audit: ${describeRule(ruleId, resolver)} would deny it (${way})` : `audit: default deny would drop it (${way})${policed()}${selected()}${hostEndpoint()}`;
    case Reason.ALLOW_FAILSAFE: {
      // inbound when the node is the destination (whichever hook made the record)
      const toHost = ev.dstIdentity === Identity.HOST ? true : ev.srcIdentity === Identity.HOST ? false : !egress;
      return `failsafe: ${protocolName(ev.proto)} ${ev.dport} ${toHost ? 'to' : 'from'} the host (no policy can close it)`;
    }
    case Reason.DENY_END_OF_TIER:
      return `end of tier: global policies select it for ${way} and none allowed or passed it${selected()}`;
    case Reason.DENY_HOST_DEFAULT:
      return `host endpoint default deny: no global rule allows it (${way})${hostEndpoint()}${after()}`;
    case Reason.ALLOW_FORWARDED: return 'forwarded through a host endpoint: no applyOnForward policy decided it (allowed)';
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

const TYPE_NAMES: Record<FlowEvent['type'], FlowView['type']> = { FLOW_START: 'flow-start', DENY: 'deny', FLOW_END: 'flow-end', LOG: 'log' };
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
  const where: PeerContext = { hook: rec.hook, ifindex: rec.ifindex };
  const peer = (ip: string, port: number, identity: number): FlowPeer => ({ ip, port, ...resolver.peer(ip, identity, where) });
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
    ...(rec.forwardRuleId ? { forward: describeRule(rec.forwardRuleId, resolver) } : {}),
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
  // host: the node's name (and its host endpoint); world: an outside address, shown as the address
  const who = p.name ?? p.kind;
  const hep = hostEndpointText(p.hostEndpoint);
  return hep ? `${who} (${hep}) ${addr}` : `${who} ${addr}`;
}

/** One line per record, as `weir lab observe` prints them. */
export function formatFlow(f: FlowView): string {
  const t = f.time.toISOString().slice(11, 23);
  if (f.type === 'lost') return `${t} LOST     ${f.lost} records dropped: the ring buffer was full`;
  if (f.type === 'invalid') return `${t} INVALID  ${f.error}`;
  const label = f.type === 'flow-end' ? 'END' : f.type === 'log' ? 'LOG' : f.verdict.toUpperCase();
  let line = `${t} ${label.padEnd(6)} ${f.protocol.padEnd(4)} ${peerText(f.src)} -> ${peerText(f.dst)}`;
  line += f.type === 'flow-end' ? `  (${f.policy})` : `  ${f.direction}: ${f.policy}`;
  if (f.forward) line += `  forwarded: ${f.forward}`;
  if (f.type === 'deny' && f.count > 1) line += `  x${f.count}`;
  if (f.packets) line += `  packets ${f.packets.fwd}/${f.packets.rev} bytes ${f.bytes!.fwd}/${f.bytes!.rev}`;
  return line;
}

export const RESERVED_IDENTITY_KIND: Record<number, PeerKind> = { [Identity.HOST]: 'host', [Identity.WORLD]: 'world' };
