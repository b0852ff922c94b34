// Label values: how flow rows become bounded label values. A label whose values come from the
// cluster (namespace, policy, pod) keeps at most `max` distinct values per metric; the rest count
// under "other", so a namespace storm cannot blow up the agent's memory or Prometheus's.
import { DEFAULT_FAILSAFE_INBOUND, parseFailsafePorts, type FailsafePort } from '../policy/failsafe.js';
import { MapCapacityError } from '../datapath/datapath.js';
import { BpfError } from '../datapath/libbpf.js';
import { NO_POLICY_LABEL_VALUE, OVERFLOW_LABEL_VALUE } from './catalog.js';

/** First come, first kept: the first `max` distinct values pass, later ones become "other". */
export class LabelCap {
  private readonly seen = new Set<string>();
  /** values that were folded into "other" (for the docs' "raise the cap" advice; not exported) */
  overflowed = 0;
  constructor(readonly max: number) {}

  value(v: string): string {
    if (this.seen.has(v)) return v;
    if (this.seen.size < this.max) { this.seen.add(v); return v; }
    this.overflowed++;
    return OVERFLOW_LABEL_VALUE;
  }
}

/** Ports worth their own `port` label on weir_host_denied_total: the failsafe ports (denied only
 * when failsafes are disabled, which is when it matters) and the kubelet's API. */
export const DEFAULT_PROTECTED_PORTS = `${DEFAULT_FAILSAFE_INBOUND},tcp:10250`;

/** "tcp:22,udp:68" -> the set of "tcp:22" keys; `field` names the knob in errors. */
export function parseProtectedPorts(text: string, field = '--metrics-protected-ports'): FailsafePort[] {
  return parseFailsafePorts(text, field);
}

const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6', 132: 'sctp' };

/** IP protocol number -> lower-case name; anything else "other" (bounded). */
export function protocolLabel(proto: number): string {
  return PROTOCOL_NAMES[proto] ?? OVERFLOW_LABEL_VALUE;
}

/** The deciding rule in words (`x/deny-b ingress[0]`, `gnp/deny-ssh ingress[0] Deny`) -> the
 * policy (`x/deny-b`, `gnp/deny-ssh`): one series per policy, not per rule. */
export function policyLabel(rule: string): string {
  const name = rule.trim().split(/\s+/, 1)[0] ?? '';
  return name === '' ? NO_POLICY_LABEL_VALUE : name;
}

/** enum weir_reason name -> the verdict it implies (the prefix names it). */
export function reasonVerdict(reason: string): string {
  if (reason === 'AUDIT') return 'audit';
  const m = /^(ALLOW|DENY|DROP|PASS)_/.exec(reason);
  return m ? m[1]!.toLowerCase() : 'unknown';
}

/** A positive integer knob (e.g. --metrics-max-label-values). */
export function parseLabelCap(value: string | number, field = '--metrics-max-label-values'): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new RangeError(`${field}: ${JSON.stringify(value)} must be an integer from 1 to 100000`);
  return n;
}

/** The `kind` label of weir_datastore_objects_rejected_total: the kinds the Kubernetes datastore
 * reads (src/datastore/objects.ts), and "File": the files datastore refuses a manifest file
 * whole (an invalid NetworkPolicy in it included). Anything else is "other", so the label stays
 * bounded whatever the objects claim to be. */
export const DATASTORE_KINDS = ['Namespace', 'Pod', 'ReplicaSet', 'Job', 'Node', 'NetworkPolicy', 'GlobalNetworkPolicy', 'HostEndpoint', 'File'] as const;

export function rejectedKindLabel(kind: string): string {
  return (DATASTORE_KINDS as readonly string[]).includes(kind) ? kind : OVERFLOW_LABEL_VALUE;
}

/** The `reason` label of weir_policy_apply_failures_total. */
export const APPLY_FAILURE_REASONS = ['compile', 'map_capacity', 'datapath', 'other'] as const;
export type ApplyFailureReason = (typeof APPLY_FAILURE_REASONS)[number];

/** Why a policy apply failed: a map too small (checked before anything is written), the compiler
 * (an error `fromCompile` recognises: thrown inside timeCompile), a BPF map update, or other. */
export function applyFailureReason(err: unknown, fromCompile: (err: object) => boolean): ApplyFailureReason {
  if (err instanceof MapCapacityError) return 'map_capacity';
  if (typeof err === 'object' && err !== null && fromCompile(err)) return 'compile';
  if (err instanceof BpfError) return 'datapath';
  return 'other';
}
