// `weir policy explain`: why one pod may or may not reach another on one port, answered twice and
// side by side: by the reference evaluator over the lab's objects, and by the datapath itself (the
// BPF program weir_policy_explain, which runs the hooks' own decision code over the pinned maps,
// with no side effect) on a crafted first packet of the flow. The two must agree; when they do
// not, the datapath enforces something other than what the policies say.
import { existsSync } from 'node:fs';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import * as abi from '../datapath/abi.js';
import { BpfProgram } from '../datapath/libbpf.js';
import { PROGRAMS, programPin } from '../datapath/datapath.js';
import { ClusterState } from '../datastore/cluster.js';
import type { L4Protocol } from '../datastore/objects.js';
import type { LabState } from '../lab/state.js';
import { labResolver } from '../lab/resolver.js';
import type { RuleInfo } from './ids.js';
import { evaluate, type Decision, type RuleRef } from './reference.js';
import { evaluateHost, type GlobalRuleRef, type HostEvaluation } from './host-reference.js';
import { labFailsafes, labHostEndpoints, labNodeIps } from '../lab/host-protection.js';

export interface ExplainOptions {
  /** "namespace/pod" */
  readonly from: string;
  readonly to: string;
  readonly port: number;
  readonly protocol: L4Protocol;
  readonly family?: 4 | 6;
  /** source port of the crafted packet (default: a random ephemeral port) */
  readonly sourcePort?: number;
}

export type SideReason = 'not-applicable' | 'not-isolated' | 'self' | 'node' | 'policy' | 'default-deny' | 'audit'
  | 'global-rule' | 'end-of-tier' | 'unknown';

/** One side's decision (the sender's egress or the receiver's ingress), in terms both evaluators share. */
export interface SideView {
  readonly verdict: 'allow' | 'deny' | 'audit';
  readonly reason: SideReason;
  /** the policed pod ("namespace/name"); absent when not applicable */
  readonly pod?: string;
  /** reason "policy": the deciding rule (datapath: from its rule id; absent if the id is unknown) */
  readonly rule?: RuleRef;
  /** datapath only: the rule id the maps hold (0 = none) */
  readonly ruleId?: number;
  /** reason "default-deny" (and "audit"): the policies that select the pod in this direction;
   * "end-of-tier": the global policies that did */
  readonly policies?: readonly string[];
  /** reason "global-rule": the deciding GlobalNetworkPolicy rule */
  readonly globalRule?: GlobalRuleRef;
}

export interface SideBySide {
  readonly verdict: 'allow' | 'deny' | 'audit';
  readonly egress: SideView;
  readonly ingress: SideView;
}

export interface Explanation {
  readonly lab: string;
  readonly from: string;
  readonly to: string;
  readonly src: string;
  readonly dst: string;
  readonly sourcePort: number;
  readonly port: number;
  readonly protocol: L4Protocol;
  readonly family: 4 | 6;
  readonly reference: SideBySide;
  readonly datapath: SideBySide & { readonly generation: number };
  readonly agree: boolean;
  /** what differs, one line each; empty when they agree */
  readonly differences: readonly string[];
}

// ---- the datapath side ------------------------------------------------------------------------

// The answer is struct weir_explain_result (bpf/include/weir_abi.h), decoded by the ABI module.
export { EXPLAIN_APPLIES } from '../datapath/abi.js';
const SKB_CTX_IN = abi.SKB_CB_OFFSET + abi.Layouts.explainResult.size; // the kernel takes a context shorter than the struct
const SKB_CTX_OUT = 512; // the kernel writes the whole struct back (192 bytes on 6.x)
const EXPLAIN_RETVAL: Record<number, string> = { [abi.ExplainRetval.NON_IP]: 'not an IP packet', [abi.ExplainRetval.MALFORMED]: 'malformed packet' };

export type RawSide = abi.ExplainSide;
export type RawExplain = abi.ExplainResult;

/** Decodes the context weir_policy_explain wrote back. */
export const decodeExplainCtx = abi.decodeExplainResult;

const PROTO_NUMBER: Record<L4Protocol, number> = { TCP: abi.Proto.TCP, UDP: abi.Proto.UDP, SCTP: abi.Proto.SCTP };

/** The first packet of a flow as the source pod sends it: Ethernet, IPv4/IPv6, and a TCP SYN, a
 * UDP header or an SCTP common header. Checksums are left zero: the programs never verify them. */
export function craftPacket(src: string, dst: string, protocol: L4Protocol, sport: number, dport: number): Buffer {
  const v6 = net.isIPv6(src);
  if (v6 !== net.isIPv6(dst)) throw new Error(`${src} -> ${dst}: addresses of different families`);
  let l4: Buffer;
  if (protocol === 'TCP') {
    l4 = Buffer.alloc(20);
    l4.writeUInt32BE(1, 4); // sequence number
    l4[12] = 5 << 4; // data offset: 5 words
    l4[13] = 0x02; // SYN
    l4.writeUInt16BE(64240, 14); // window
  } else if (protocol === 'UDP') {
    l4 = Buffer.alloc(8);
    l4.writeUInt16BE(8, 4);
  } else {
    l4 = Buffer.alloc(12); // verification tag, checksum (an INIT would carry tag 0)
  }
  l4.writeUInt16BE(sport, 0);
  l4.writeUInt16BE(dport, 2);
  let l3: Buffer;
  if (v6) {
    l3 = Buffer.alloc(40);
    l3.writeUInt32BE(0x6000_0000, 0);
    l3.writeUInt16BE(l4.length, 4);
    l3[6] = PROTO_NUMBER[protocol];
    l3[7] = 64;
    abi.ipToKey16(src).copy(l3, 8);
    abi.ipToKey16(dst).copy(l3, 24);
  } else {
    l3 = Buffer.alloc(20);
    l3[0] = 0x45;
    l3.writeUInt16BE(20 + l4.length, 2);
    l3.writeUInt16BE(0x4000, 6); // don't fragment
    l3[8] = 64;
    l3[9] = PROTO_NUMBER[protocol];
    abi.ipToKey16(src).copy(l3, 12, 12);
    abi.ipToKey16(dst).copy(l3, 16, 12);
  }
  const eth = Buffer.from([0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, v6 ? 0x86 : 0x08, v6 ? 0xdd : 0x00]);
  return Buffer.concat([eth, l3, l4]);
}

/** Runs weir_policy_explain once on `packet`. It only reads maps, so this is safe on a live datapath. */
export function runExplainProgram(prog: BpfProgram, packet: Buffer): RawExplain {
  const r = prog.testRun({ data: packet, dataOutSize: 0, ctx: Buffer.alloc(SKB_CTX_IN), ctxOutSize: SKB_CTX_OUT });
  if (r.retval !== 0) throw new Error(`weir_policy_explain: ${EXPLAIN_RETVAL[r.retval] ?? `returned ${r.retval}`}`);
  if (!r.ctx) throw new Error('weir_policy_explain: the kernel returned no context');
  return decodeExplainCtx(r.ctx);
}

const VERDICT_VIEW: Record<number, SideView['verdict']> = {
  [abi.Verdict.ALLOW]: 'allow', [abi.Verdict.DENY]: 'deny', [abi.Verdict.AUDIT]: 'audit',
};

const REASON_VIEW: Partial<Record<number, SideReason>> = {
  [abi.Reason.ALLOW_NOT_ISOLATED]: 'not-isolated',
  [abi.Reason.ALLOW_POLICY]: 'policy',
  [abi.Reason.ALLOW_HOST]: 'node',
  [abi.Reason.DENY_DEFAULT]: 'default-deny',
  [abi.Reason.AUDIT]: 'audit',
  [abi.Reason.ALLOW_GLOBAL]: 'global-rule',
  [abi.Reason.DENY_POLICY]: 'global-rule',
  [abi.Reason.DENY_END_OF_TIER]: 'end-of-tier',
};

/** Names for what the datapath reported: rule ids through the lab's rule table, the selecting
 * policies of a default deny from the lab's objects (as flow records are described). */
export interface ExplainNames {
  rule(id: number): RuleInfo | undefined;
  isolatedBy(pod: string, direction: 'Ingress' | 'Egress'): string[];
}

export function datapathSide(raw: RawSide, pod: string | undefined, direction: 'Ingress' | 'Egress', names: ExplainNames): SideView {
  if (!raw.applies || pod === undefined) return { verdict: 'allow', reason: 'not-applicable' };
  const reason = REASON_VIEW[raw.reason] ?? 'unknown';
  const base = { verdict: VERDICT_VIEW[raw.verdict] ?? 'deny', reason, pod, ruleId: raw.ruleId };
  if (reason === 'policy') {
    const info = names.rule(raw.ruleId);
    return info ? { ...base, rule: { policy: info.policy, direction: info.direction, index: info.index } } : base;
  }
  if (reason === 'global-rule') {
    const info = names.rule(raw.ruleId);
    return info?.kind === 'GlobalNetworkPolicy'
      ? { ...base, globalRule: { policy: info.policy, direction: info.direction, index: info.index, action: info.action } }
      : base;
  }
  if (reason === 'default-deny' || reason === 'audit') return { ...base, policies: names.isolatedBy(pod, direction) };
  return base;
}

/** One pod side as the host reference decides it (global tier, then NetworkPolicy). */
export function referenceHostSide(ev: HostEvaluation, pod: string): SideView {
  const d = ev.decision;
  if (ev.verdict === 'audit' && d.reason !== 'network-policy') return { verdict: 'audit', reason: 'audit', pod };
  switch (d.reason) {
    case 'global-rule': return { verdict: ev.verdict, reason: 'global-rule', pod, globalRule: d.rule };
    case 'end-of-tier': return { verdict: ev.verdict, reason: 'end-of-tier', pod, policies: d.policies };
    case 'network-policy': {
      const side = referenceSide(d.decision);
      return ev.verdict === 'audit' && side.verdict !== 'audit' ? { ...side, verdict: 'audit', reason: 'audit' } : side;
    }
    default: return { verdict: ev.verdict, reason: 'unknown', pod };
  }
}

export function referenceSide(d: Decision): SideView {
  switch (d.reason) {
    case 'not-applicable': return { verdict: 'allow', reason: 'not-applicable' };
    case 'policy': return { verdict: 'allow', reason: 'policy', pod: d.pod, rule: d.rule };
    case 'default-deny': return { verdict: 'deny', reason: 'default-deny', pod: d.pod, policies: d.policies };
    // audit (a denial that only reports) carries the selecting policies like a default deny
    default: {
      const policies = (d as { readonly policies?: readonly string[] }).policies;
      return policies ? { verdict: d.verdict, reason: d.reason, pod: d.pod, policies } : { verdict: d.verdict, reason: d.reason, pod: d.pod };
    }
  }
}

function overall(egress: SideView, ingress: SideView): SideBySide['verdict'] {
  if (egress.verdict === 'deny' || ingress.verdict === 'deny') return 'deny';
  if (egress.verdict === 'audit' || ingress.verdict === 'audit') return 'audit';
  return 'allow';
}

const ruleText = (r: RuleRef): string => `${r.policy} ${r.direction.toLowerCase()}[${r.index}]`;
const globalRuleText = (r: GlobalRuleRef): string => `gnp/${r.policy} ${r.direction.toLowerCase()}[${r.index}] ${r.action}`;

/** One line per side, e.g. `allow: x/allow-a ingress[0]`, `deny: no rule allowed it (selected by x/deny-b)`. */
export function formatSide(s: SideView): string {
  switch (s.reason) {
    case 'not-applicable': return 'allow: not a local pod, nobody\'s policy applies';
    case 'not-isolated': return `allow: ${s.pod} is not isolated`;
    case 'self': return 'allow: a pod to itself';
    case 'node': return `allow: between ${s.pod} and its node`;
    case 'policy': return `allow: ${s.rule ? ruleText(s.rule) : `rule id ${s.ruleId ?? '?'} (not in the lab's rule table)`}`;
    case 'default-deny': return `deny: no rule allowed it (${s.pod} selected by ${(s.policies ?? []).join(', ') || '?'})`;
    case 'audit': return `audit: would be denied, passes in audit mode (${s.pod} selected by ${(s.policies ?? []).join(', ') || '?'})`;
    case 'global-rule': return `${s.verdict}: ${s.globalRule ? globalRuleText(s.globalRule) : `rule id ${s.ruleId ?? '?'} (not in the lab's rule table)`}`;
    case 'end-of-tier': return `deny: end of the global tier, no rule decided${s.policies ? ` (${s.pod} selected by ${s.policies.map((p) => `gnp/${p}`).join(', ')})` : ''}`;
    case 'unknown': return `${s.verdict}: reason unknown to this build`;
  }
}

function sideDifferences(label: string, ref: SideView, dp: SideView): string[] {
  const out: string[] = [];
  const same = ref.verdict === dp.verdict && ref.reason === dp.reason &&
    (ref.reason !== 'policy' || (ref.rule !== undefined && dp.rule !== undefined && ruleText(ref.rule) === ruleText(dp.rule))) &&
    (ref.reason !== 'global-rule' || (ref.globalRule !== undefined && dp.globalRule !== undefined && globalRuleText(ref.globalRule) === globalRuleText(dp.globalRule)));
  if (!same) out.push(`${label}: reference says "${formatSide(ref)}", datapath says "${formatSide(dp)}"`);
  return out;
}

// ---- the command ------------------------------------------------------------------------------

function podAddress(state: LabState, which: string, flag: string, family: 4 | 6): string {
  const pod = state.pods[which];
  if (!pod) {
    const all = Object.keys(state.pods).sort();
    throw new Error(`${flag} ${which}: no such pod in lab "${state.name}" (pods: ${all.join(', ') || 'none'})`);
  }
  const ip = family === 4 ? pod.ipv4 : pod.ipv6;
  if (!ip) throw new Error(`${flag} ${which}: the pod has no IPv${family} address`);
  return ip;
}

/** The program to run, from the lab's pins. */
export function openExplainProgram(state: LabState): BpfProgram {
  const pin = programPin(state.pinRoot, PROGRAMS.policyExplain);
  if (!existsSync(pin)) {
    throw new Error(`lab "${state.name}" was created by a Weir without \`policy explain\` (no ${pin}): recreate it with \`weir lab down\` and \`weir lab up\``);
  }
  return BpfProgram.fromPin(pin);
}

/** Explains one flow of a lab that is up. `prog` defaults to the lab's pinned weir_policy_explain. */
export function explainLab(state: LabState, opts: ExplainOptions, prog?: BpfProgram): Explanation {
  const family = opts.family ?? 4;
  const src = podAddress(state, opts.from, '--from', family);
  const dst = podAddress(state, opts.to, '--to', family);
  const sourcePort = opts.sourcePort ?? randomInt(49152, 65536);

  const cluster = new ClusterState(state.objects.filter((o) => !(o.kind === 'Namespace' && o.name === 'default')));
  const placement = new Map(Object.entries(state.pods).map(([key, p]) => [key, [p.ipv4, p.ipv6].filter((x): x is string => !!x)]));
  const ev = evaluate(cluster, placement, { src, dst, protocol: opts.protocol, dstPort: opts.port });
  let refEgress = referenceSide(ev.egress);
  let refIngress = referenceSide(ev.ingress);
  if (cluster.globalPolicies.size > 0 && opts.from !== opts.to) {
    // The global tier comes first: judge each pod side as the host reference does.
    const world = {
      cluster, placement, hostEndpoints: labHostEndpoints(state), globalPolicies: [...cluster.globalPolicies.values()],
      failsafes: labFailsafes(state), nodeIps: labNodeIps(state),
    };
    const packet = { src, dst, protocol: opts.protocol, srcPort: sourcePort, dstPort: opts.port };
    refEgress = referenceHostSide(evaluateHost(world, { kind: 'pod', pod: opts.from, direction: 'Egress' }, packet), opts.from);
    refIngress = referenceHostSide(evaluateHost(world, { kind: 'pod', pod: opts.to, direction: 'Ingress' }, packet), opts.to);
  }
  const reference: SideBySide = { verdict: overall(refEgress, refIngress), egress: refEgress, ingress: refIngress };

  let datapath: SideBySide & { generation: number };
  const own = prog === undefined;
  const program = prog ?? openExplainProgram(state);
  try {
    const raw = runExplainProgram(program, craftPacket(src, dst, opts.protocol, sourcePort, opts.port));
    if (opts.from === opts.to) {
      // A pod's traffic to itself never leaves it: no hook sees it, nothing is policed.
      const self: SideView = { verdict: 'allow', reason: 'self', pod: opts.from };
      datapath = { verdict: 'allow', egress: self, ingress: self, generation: raw.generation };
    } else {
      const resolver = labResolver(() => state);
      const names: ExplainNames = { rule: (id) => resolver.rule(id), isolatedBy: (pod, dir) => resolver.isolatedBy?.(pod, dir) ?? [] };
      const egress = datapathSide(raw.egress, opts.from, 'Egress', names);
      const ingress = datapathSide(raw.ingress, opts.to, 'Ingress', names);
      datapath = { verdict: overall(egress, ingress), egress, ingress, generation: raw.generation };
    }
  } finally {
    if (own) program.close();
  }

  const differences = [
    ...(reference.verdict !== datapath.verdict ? [`verdict: reference ${reference.verdict}, datapath ${datapath.verdict}`] : []),
    ...sideDifferences(`egress of ${opts.from}`, refEgress, datapath.egress),
    ...sideDifferences(`ingress of ${opts.to}`, refIngress, datapath.ingress),
  ];
  return {
    lab: state.name, from: opts.from, to: opts.to, src, dst, sourcePort, port: opts.port, protocol: opts.protocol, family,
    reference, datapath, agree: differences.length === 0, differences,
  };
}

/** The table: one row per side, reference and datapath in two columns, then AGREE or DISAGREE. */
export function formatExplanation(e: Explanation): string {
  const rows: [string, string, string][] = [
    ['', 'reference', `datapath (generation ${e.datapath.generation})`],
    [`egress of ${e.from}`, formatSide(e.reference.egress), formatSide(e.datapath.egress)],
    [`ingress of ${e.to}`, formatSide(e.reference.ingress), formatSide(e.datapath.ingress)],
    ['verdict', e.reference.verdict.toUpperCase(), e.datapath.verdict.toUpperCase()],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const lines = [`${e.from} (${e.src}:${e.sourcePort}) -> ${e.to} (${e.family === 6 ? `[${e.dst}]` : e.dst}:${e.port}) ${e.protocol}`];
  for (const r of rows) lines.push(`${r[0].padEnd(w0)}  ${r[1].padEnd(w1)}  ${r[2]}`.trimEnd());
  lines.push(e.agree ? 'AGREE' : 'DISAGREE');
  for (const d of e.differences) lines.push(`  ${d}`);
  return lines.join('\n');
}
