// Enrichment: a record's addresses, identities and rule ids become who talked to whom and which
// rule decided, as of the packet's time (the registry's history), in the shape of the store's row
// (src/store/row.ts).
import { Direction, Identity, REASON_NAMES, Verdict, type FlowEvent } from '../datapath/abi.js';
import type { RuleInfo } from '../policy/ids.js';
import type { EndpointKind, FlowRow, SideIdentity } from '../store/row.js';
import type { EndpointRecord, EndpointRegistry } from './registry.js';

/** A rule id in words ('' for 0). */
export type RuleNamer = (id: number) => string;

/** `ns/name ingress[0]` (NetworkPolicy), `gnp/name ingress[0] Allow` (GlobalNetworkPolicy),
 * `rule #42` (an id nobody knows). The same words as describe.ts's describeRule. */
export function ruleText(id: number, info: RuleInfo | undefined): string {
  if (id === 0) return '';
  if (!info) return `rule #${id}`;
  if (info.kind === 'GlobalNetworkPolicy') return `gnp/${info.policy} ${info.direction.toLowerCase()}[${info.index}] ${info.action}`;
  return `${info.policy} ${info.direction.toLowerCase()}[${info.index}]`;
}

/** A RuleNamer over a rule-info lookup (e.g. IdAllocator.ruleInfo), caching the texts. Rule ids
 * are never reused, so a cached text stays right. */
export function ruleNamer(info: (id: number) => RuleInfo | undefined): RuleNamer {
  const cache = new Map<number, string>();
  return (id) => {
    if (id === 0) return '';
    let t = cache.get(id);
    if (t === undefined) {
      const i = info(id);
      t = ruleText(id, i);
      if (i) cache.set(id, t); // unknown ids may become known
    }
    return t;
  };
}

export const verdictOf = (v: number): FlowRow['verdict'] =>
  v === Verdict.ALLOW ? 'allowed' : v === Verdict.DENY ? 'denied' : v === Verdict.AUDIT ? 'audit' : '';

export const directionOf = (d: number): FlowRow['direction'] =>
  d === Direction.INGRESS ? 'ingress' : d === Direction.EGRESS ? 'egress' : d === Direction.BOTH ? 'both' : '';

export const reasonOf = (r: number): string => REASON_NAMES[r] ?? `UNKNOWN(${r})`;

/** Row addresses: IPv6 text, IPv4 as IPv4-mapped. */
export function rowIp(ip: string): string {
  return ip.includes(':') ? ip : `::ffff:${ip}`;
}

export const NO_IP = '::';
const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

/** A side from what the registry knew (or the world, when nothing held the address). */
export function sideOf(rec: EndpointRecord | undefined, ip: string, port: number, worldName: string): SideIdentity {
  if (!rec) {
    return { kind: 'world' as EndpointKind, ip, port, namespace: '', pod: '', labels: NO_LABELS, workloadKind: '', workload: '', serviceAccount: '', node: '', hostEndpoint: '', name: worldName };
  }
  return {
    kind: rec.kind, ip, port, namespace: rec.namespace, pod: rec.pod, labels: rec.labels, workloadKind: rec.workloadKind,
    workload: rec.workload, serviceAccount: rec.serviceAccount, node: rec.node, hostEndpoint: rec.hostEndpoint, name: '',
  };
}

export interface Enricher {
  /** Who held `ip` at `atMs`; identity HOST without a known address is this node. */
  endpoint(ip: string, identity: number, atMs: number): EndpointRecord | undefined;
  side(ip: string, port: number, identity: number, atMs: number): SideIdentity;
  /** The rule texts of a one-direction record (DENY, FLOW_START, LOG): `policy` is the rule of
   * the record's direction, else the other direction's (between a pod and its node the pod
   * hook's record carries the host endpoint's rule in the other field). */
  policies(ev: FlowEvent): Pick<FlowRow, 'policy' | 'egressPolicy' | 'ingressPolicy' | 'forwardPolicy'>;
  readonly ruleName: RuleNamer;
  readonly registry: EndpointRegistry;
}

export function enricher(registry: EndpointRegistry, ruleName: RuleNamer): Enricher {
  const endpoint = (ip: string, identity: number, atMs: number): EndpointRecord | undefined =>
    registry.lookup(ip, atMs) ?? (identity === Identity.HOST ? registry.host : undefined);
  return {
    registry,
    ruleName,
    endpoint,
    side(ip, port, identity, atMs) {
      const rec = endpoint(ip, identity, atMs);
      return sideOf(rec, rowIp(ip), port, rec ? '' : registry.worldName(ip));
    },
    policies(ev) {
      const egress = ev.direction === Direction.EGRESS;
      const own = egress ? ev.egressRuleId : ev.ingressRuleId;
      const decidingId = own || (egress ? ev.ingressRuleId : ev.egressRuleId);
      return {
        policy: ruleName(decidingId),
        egressPolicy: ruleName(ev.egressRuleId),
        ingressPolicy: ruleName(ev.ingressRuleId),
        forwardPolicy: ruleName(ev.forwardRuleId),
      };
    },
  };
}
