// The Kubernetes objects Weir reads, as validated, normalized models. Raw YAML/JSON is turned into
// these by manifest.ts (files) and, later, by the Kubernetes datastore; nothing downstream of the
// datastore ever sees an unvalidated object.

import type { GlobalNetworkPolicy, HostEndpoint } from './host-objects.js';

export type Labels = Readonly<Record<string, string>>;

export type SelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface LabelSelectorRequirement {
  readonly key: string;
  readonly operator: SelectorOperator;
  readonly values: readonly string[];
}

/** A Kubernetes label selector. An empty selector ({}) selects everything. */
export interface LabelSelector {
  readonly matchLabels: Labels;
  readonly matchExpressions: readonly LabelSelectorRequirement[];
}

export type L4Protocol = 'TCP' | 'UDP' | 'SCTP';
export type PolicyType = 'Ingress' | 'Egress';

export interface ContainerPort {
  readonly name?: string;
  readonly port: number;
  readonly protocol: L4Protocol;
}

export interface Namespace {
  readonly kind: 'Namespace';
  readonly name: string;
  /** Includes kubernetes.io/metadata.name, as the API server sets it. */
  readonly labels: Labels;
  readonly annotations?: Labels;
}

/** One of metadata.ownerReferences: who made the object (a Pod's ReplicaSet, Job, StatefulSet...). */
export interface OwnerReference {
  readonly kind: string;
  readonly name: string;
  /** true on the managing controller's reference (at most one per object) */
  readonly controller?: boolean;
}

export interface Pod {
  readonly kind: 'Pod';
  readonly namespace: string;
  readonly name: string;
  readonly labels: Labels;
  readonly annotations?: Labels;
  readonly ports: readonly ContainerPort[];
  /** From status.podIP / status.podIPs when given; otherwise the lab assigns addresses. */
  readonly ips: readonly string[];
  /** metadata.ownerReferences, when it has any (kind, name and controller only) */
  readonly ownerReferences?: readonly OwnerReference[];
  /** spec.serviceAccountName, else the deprecated spec.serviceAccount, else "default" (the API
   * server's defaulting). Manifests always set it; undefined (a pod built by hand, or a lab state
   * written before pods kept it) means "default". */
  readonly serviceAccount?: string;
  /** spec.nodeName, when the manifest names the node (the lab places pods on its own node) */
  readonly nodeName?: string;
}

/** A ReplicaSet (apps/v1) or Job (batch/v1), kept only for its owner: a pod owned by one is
 * attributed to the Deployment or CronJob that owns it (rather than guessed from names). */
export interface ReplicaSet {
  readonly kind: 'ReplicaSet';
  readonly namespace: string;
  readonly name: string;
  /** metadata.ownerReferences, when it has any */
  readonly ownerReferences?: readonly OwnerReference[];
}

export interface Job {
  readonly kind: 'Job';
  readonly namespace: string;
  readonly name: string;
  /** metadata.ownerReferences, when it has any */
  readonly ownerReferences?: readonly OwnerReference[];
}

export interface PolicyPort {
  readonly protocol: L4Protocol;
  /** undefined = every port of the protocol; a string is a named port (an IANA_SVC_NAME),
   * resolved against the destination pod's container ports (name and protocol must match) */
  readonly port?: number | string;
  /** with a numeric port: the range port..endPort, both included */
  readonly endPort?: number;
}

/** An ipBlock peer. `cidr` is kept as written (the API server accepts host bits, 10.0.0.1/8);
 * it means its network (10.0.0.0/8), as src/datastore/cidr.ts parseCidr computes it. Every
 * `except` is a CIDR of the same family strictly inside `cidr`. */
export interface IpBlock {
  readonly cidr: string;
  readonly except: readonly string[];
}

export interface PolicyPeer {
  /** undefined = no pod restriction given (with namespaceSelector: all pods of those namespaces) */
  readonly podSelector?: LabelSelector;
  /** undefined = the policy's own namespace */
  readonly namespaceSelector?: LabelSelector;
  /** Addresses rather than pods; never combined with the selectors. It matches any address in
   * the block, pod addresses included. */
  readonly ipBlock?: IpBlock;
}

export interface PolicyRule {
  /** undefined = every peer (the rule had no from/to, or an empty list) */
  readonly peers?: readonly PolicyPeer[];
  /** undefined = every port and protocol */
  readonly ports?: readonly PolicyPort[];
}

export interface NetworkPolicy {
  readonly kind: 'NetworkPolicy';
  readonly namespace: string;
  readonly name: string;
  readonly annotations: Labels;
  readonly podSelector: LabelSelector;
  /** With the API server's defaulting applied: Ingress always, Egress when egress rules exist. */
  readonly policyTypes: readonly PolicyType[];
  readonly ingress: readonly PolicyRule[];
  readonly egress: readonly PolicyRule[];
}

/**
 * The lab's node (v1 Node, cluster-scoped; at most one per lab). Its name and labels are the lab
 * node's; the annotation `lab.weir.dev/ports: "22/TCP,80/TCP"` lists the ports the node's own
 * processes serve (the lab runs a listener for each in the node's network namespace).
 */
export interface Node {
  readonly kind: 'Node';
  readonly name: string;
  readonly labels: Labels;
  readonly annotations?: Labels;
  /** from the lab.weir.dev/ports annotation, in its order, without duplicates */
  readonly ports: readonly { readonly port: number; readonly protocol: L4Protocol }[];
}

/** The annotation on a Node listing the ports its host processes serve in the lab. */
export const NODE_PORTS_ANNOTATION = 'lab.weir.dev/ports';

export type KubeObject = Namespace | Pod | NetworkPolicy | Node | HostEndpoint | GlobalNetworkPolicy | ReplicaSet | Job;
export type KubeKind = KubeObject['kind'];
/** The objects that live in a namespace. */
export type NamespacedObject = Extract<KubeObject, { readonly namespace: string }>;

const CLUSTER_SCOPED: ReadonlySet<string> = new Set(['Namespace', 'Node', 'HostEndpoint', 'GlobalNetworkPolicy']);

/** Namespace, Node, HostEndpoint and GlobalNetworkPolicy have no namespace. */
export function isClusterScoped(kind: string): boolean {
  return CLUSTER_SCOPED.has(kind);
}

export function isNamespaced(obj: KubeObject): obj is NamespacedObject {
  return !isClusterScoped(obj.kind);
}

/** "namespace/name" for namespaced objects, "name" for cluster-scoped ones. */
export function objectKey(obj: KubeObject): string {
  return isNamespaced(obj) ? `${obj.namespace}/${obj.name}` : obj.name;
}

/** How errors and logs name an object: `NetworkPolicy x/deny-all`. */
export function describeObject(obj: { kind: string; namespace?: string; name: string }): string {
  return obj.namespace ? `${obj.kind} ${obj.namespace}/${obj.name}` : `${obj.kind} ${obj.name}`;
}

/**
 * Audit mode, for rolling policy out safely: `policy.weir.dev/audit: "true"` on a NetworkPolicy
 * makes its isolation report instead of drop (traffic it would deny passes with verdict audit);
 * on a Pod or Namespace it does that for every policy of those pods.
 */
export const AUDIT_ANNOTATION = 'policy.weir.dev/audit';

export function inAuditMode(obj: { readonly annotations?: Labels } | undefined): boolean {
  return obj?.annotations?.[AUDIT_ANNOTATION] === 'true';
}
