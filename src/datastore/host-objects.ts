// Host protection: HostEndpoint and GlobalNetworkPolicy, as validated, normalized models. Raw
// YAML is turned into these by host-schema.ts. The semantics are in src/policy/host-reference.ts
// and docs/policy.md ("Host protection"); the lab enforces them with its datapath.
//
// The YAML shape, close to Calico's projectcalico.org/v3 so users recognize it. Both kinds are
// cluster-scoped (metadata.namespace is refused).
//
//   apiVersion: weir.dev/v1alpha1
//   kind: HostEndpoint
//   metadata:
//     name: node1-eth0
//     labels: {role: worker}              # what GlobalNetworkPolicy selectors match
//     annotations: {policy.weir.dev/audit: "true"}   # optional: denials for it only report
//   spec:
//     node: node1                         # required, the node's name
//     interfaceName: eth0                 # required: an interface name, or "*" = all of the node's
//                                         # host interfaces (never pod veths)
//     expectedIPs: [192.0.2.10, "2001:db8::10"]  # the node's addresses on it; how rule selectors
//                                         # recognize this host as a peer
//
//   apiVersion: weir.dev/v1alpha1
//   kind: GlobalNetworkPolicy
//   metadata:
//     name: allow-ssh-from-bastion
//     annotations: {policy.weir.dev/audit: "true"}   # optional, as on NetworkPolicy
//   spec:
//     order: 100                          # lower first; absent = after every ordered policy
//     selector: {matchLabels: {role: worker}}        # required, a Kubernetes label selector over
//                                         # host endpoints and pods ({} = every one of them)
//     namespaceSelector: {matchLabels: {team: a}}    # optional: only pods of these namespaces
//                                         # (a host endpoint, having no namespace, never matches)
//     types: [Ingress, Egress]            # default: from the rule lists present (as Calico)
//     applyOnForward: false               # also police traffic forwarded through the interface
//     ingress:
//     - action: Allow                     # Allow | Deny | Pass | Log
//       protocol: TCP                     # TCP | UDP | SCTP | ICMP | ICMPv6 | 1-255; absent = any
//       source:
//         selector: {matchLabels: {app: bastion}}   # endpoints (pods, host endpoints)
//         namespaceSelector: {}           # pods of these namespaces (no host endpoints)
//         nets: [10.0.0.0/8]              # any of these
//         notNets: [10.9.0.0/16]          # none of these
//         ports: [22, "6000:6010", {port: 7000, endPort: 7010}, ssh]  # numbers, "lo:hi", ranges, names
//         notPorts: [23]
//       destination: {ports: [22]}
//     egress: [...]
//
// Differences from Calico, on purpose: selectors are Kubernetes label selector objects (as in
// NetworkPolicy), not Calico's selector expressions; spec.selector is required (as podSelector
// is), because a forgotten selector would select every host and pod; spec.interfaceName is
// required (Calico also allows an expectedIPs-only endpoint); no notProtocol, icmp, notSelector,
// serviceAccounts, http, doNotTrack or preDNAT.
import type { LabelSelector, Labels, L4Protocol, PolicyType } from './objects.js';

export const HOST_API_VERSION = 'weir.dev/v1alpha1';

/** interfaceName meaning every host interface of the node. */
export const ALL_INTERFACES = '*';

export interface HostEndpoint {
  readonly kind: 'HostEndpoint';
  readonly name: string;
  readonly labels: Labels;
  readonly annotations: Labels;
  readonly node: string;
  /** an interface name, or ALL_INTERFACES */
  readonly interfaceName: string;
  readonly expectedIPs: readonly string[];
}

export type RuleAction = 'Allow' | 'Deny' | 'Pass' | 'Log';

/** As written: a name, or an IP protocol number 1-255. */
export type RuleProtocol = L4Protocol | 'ICMP' | 'ICMPv6' | number;

export const PROTOCOL_NUMBERS: Readonly<Record<Exclude<RuleProtocol, number>, number>> = {
  ICMP: 1, TCP: 6, UDP: 17, ICMPv6: 58, SCTP: 132,
};

export function protocolNumber(p: RuleProtocol): number {
  return typeof p === 'number' ? p : PROTOCOL_NUMBERS[p];
}

/** One entry of ports/notPorts: a range (a single number is from === to) or a named port. */
export type PortMatch =
  | { readonly from: number; readonly to: number }
  | { readonly name: string };

export interface EntityRule {
  /** undefined = any endpoint, or none at all (an outside address) */
  readonly selector?: LabelSelector;
  /** set: only pods of the selected namespaces (host endpoints have no namespace) */
  readonly namespaceSelector?: LabelSelector;
  /** empty = any address; else the address must be in one of them */
  readonly nets: readonly string[];
  /** the address must be in none of them */
  readonly notNets: readonly string[];
  /** empty = any port; else the port must match one (only with protocol TCP, UDP or SCTP) */
  readonly ports: readonly PortMatch[];
  readonly notPorts: readonly PortMatch[];
}

export interface GlobalRule {
  readonly action: RuleAction;
  /** undefined = every protocol */
  readonly protocol?: RuleProtocol;
  readonly source: EntityRule;
  readonly destination: EntityRule;
}

export interface GlobalNetworkPolicy {
  readonly kind: 'GlobalNetworkPolicy';
  readonly name: string;
  readonly annotations: Labels;
  /** undefined = after every policy that has an order */
  readonly order?: number;
  readonly selector: LabelSelector;
  readonly namespaceSelector?: LabelSelector;
  /** Calico's defaulting applied: [Ingress] without egress rules, [Egress] with egress rules
   * only, both when both lists are present. */
  readonly types: readonly PolicyType[];
  readonly ingress: readonly GlobalRule[];
  readonly egress: readonly GlobalRule[];
  readonly applyOnForward: boolean;
}

export type HostObject = HostEndpoint | GlobalNetworkPolicy;

/** The evaluation order of global policies: by order (absent last), ties by name (as
 * JavaScript's `<` compares strings). */
export function compareGlobalPolicies(a: GlobalNetworkPolicy, b: GlobalNetworkPolicy): number {
  const oa = a.order ?? Number.POSITIVE_INFINITY;
  const ob = b.order ?? Number.POSITIVE_INFINITY;
  if (oa !== ob) return oa < ob ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
