// The policy compiler: from the cluster's objects to the datapath's desired map contents.
//
// Design (see docs/datapath.md): every distinct (namespace, namespace labels, pod labels) gets a
// label-set identity. A policy selects identities, never addresses, so the map that answers "may
// identity A talk to identity B on port P" has one entry per (subject identity, peer identity or
// ANY, protocol, port, direction): the datapath does a fixed number of hash lookups per new flow,
// however many policies and pods there are. Addresses map to identities in the endpoint map.
import { ClusterStateError, type ClusterSnapshot } from '../datastore/cluster.js';
import { describeObject } from '../datastore/objects.js';
import type { Labels, NetworkPolicy, Pod, PolicyPeer, PolicyType } from '../datastore/objects.js';
import { matchesSelector } from './selector.js';
import { IdAllocator } from './ids.js';
import { EndpointFlag, Identity, Proto } from '../datapath/abi.js';

const PROTO_NUMBER = { TCP: Proto.TCP, UDP: Proto.UDP, SCTP: Proto.SCTP } as const;
export const EP_LOCAL = EndpointFlag.LOCAL;
export const EP_ISOLATED_INGRESS = EndpointFlag.ISOLATED_INGRESS;
export const EP_ISOLATED_EGRESS = EndpointFlag.ISOLATED_EGRESS;

export interface EndpointEntry {
  /** pod key "namespace/name" */
  readonly key: string;
  readonly id: number;
  readonly identity: number;
  /** host-side interface of a local pod (0 = don't check) */
  readonly ifindex: number;
  readonly flags: number;
}

export interface PolicyEntry {
  readonly identity: number;
  readonly peerIdentity: number;
  readonly port: number;
  readonly proto: number;
  /** 0 ingress, 1 egress (enum weir_direction) */
  readonly direction: 0 | 1;
  readonly ruleId: number;
}

export interface CompiledDatapath {
  /** address -> endpoint holding it */
  readonly endpoints: ReadonlyMap<string, EndpointEntry>;
  /** policyEntryKey(entry) -> entry */
  readonly policy: ReadonlyMap<string, PolicyEntry>;
  /** identity -> what it stands for (for display) */
  readonly identities: ReadonlyMap<number, IdentityInfo>;
}

export interface IdentityInfo {
  readonly namespace: string;
  readonly labels: Labels;
}

/** A pod as placed on this node: its addresses and host-side interface. */
export interface PlacedPod {
  readonly pod: Pod;
  readonly ips: readonly string[];
  readonly ifindex: number;
}

export function policyEntryKey(e: Pick<PolicyEntry, 'identity' | 'peerIdentity' | 'port' | 'proto' | 'direction'>): string {
  return `${e.identity}|${e.peerIdentity}|${e.proto}|${e.port}|${e.direction}`;
}

function sortedLabels(labels: Labels): [string, string][] {
  return Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The label set an identity stands for: the namespace (with its labels) and the pod's labels. */
export function labelSetKey(namespace: string, namespaceLabels: Labels, podLabels: Labels): string {
  return JSON.stringify([namespace, sortedLabels(namespaceLabels), sortedLabels(podLabels)]);
}

interface Identity {
  readonly id: number;
  readonly namespace: string;
  readonly namespaceLabels: Labels;
  readonly podLabels: Labels;
}

const DIRECTIONS: readonly { type: PolicyType; dir: 0 | 1; rules: 'ingress' | 'egress'; flag: number }[] = [
  { type: 'Ingress', dir: 0, rules: 'ingress', flag: EP_ISOLATED_INGRESS },
  { type: 'Egress', dir: 1, rules: 'egress', flag: EP_ISOLATED_EGRESS },
];

function peerMatches(peer: PolicyPeer, policy: NetworkPolicy, who: Identity): boolean {
  // namespaceSelector picks namespaces by label; without it the peer is in the policy's namespace.
  if (peer.namespaceSelector) {
    if (!matchesSelector(peer.namespaceSelector, who.namespaceLabels)) return false;
  } else if (who.namespace !== policy.namespace) {
    return false;
  }
  return !peer.podSelector || matchesSelector(peer.podSelector, who.podLabels);
}

const NOT_ENFORCED = "not enforced by this version's datapath yet; refused rather than enforced incompletely";

/** What of `policy` this version's datapath cannot enforce (ipBlock peers, named ports, port
 * ranges), one message per field with kubectl's path. The datastore accepts these (they are valid
 * Kubernetes), so whoever programs the datapath must refuse a batch for which this is non-empty,
 * instead of enforcing a policy with parts silently missing. Rules of a direction the policy's
 * policyTypes leave out are ignored by Kubernetes, and so here. */
export function unsupportedByDatapath(policy: NetworkPolicy): string[] {
  const problems: string[] = [];
  const who = describeObject(policy);
  for (const { type, rules } of DIRECTIONS) {
    if (!policy.policyTypes.includes(type)) continue;
    const peersField = rules === 'ingress' ? 'from' : 'to';
    policy[rules].forEach((rule, r) => {
      (rule.peers ?? []).forEach((peer, i) => {
        if (peer.ipBlock) problems.push(`${who}: spec.${rules}[${r}].${peersField}[${i}].ipBlock: ${NOT_ENFORCED}`);
      });
      (rule.ports ?? []).forEach((port, i) => {
        if (typeof port.port === 'string') problems.push(`${who}: spec.${rules}[${r}].ports[${i}].port: ${JSON.stringify(port.port)}: named ports are ${NOT_ENFORCED}`);
        if (port.endPort !== undefined) problems.push(`${who}: spec.${rules}[${r}].ports[${i}].endPort: ${port.endPort}: port ranges are ${NOT_ENFORCED}`);
      });
    });
  }
  return problems;
}

/** Throws ClusterStateError listing every policy feature of `cluster` the datapath cannot enforce. */
export function checkDatapathSupport(cluster: ClusterSnapshot): void {
  const problems = [...cluster.policies.values()].flatMap(unsupportedByDatapath);
  if (problems.length > 0) throw new ClusterStateError(problems);
}

export function compilePolicy(cluster: ClusterSnapshot, placed: readonly PlacedPod[], ids: IdAllocator): CompiledDatapath {
  // Never compile a policy with parts the maps cannot express: that would enforce something else.
  checkDatapathSupport(cluster);
  // 1. identities of the pods that exist
  const identities = new Map<number, Identity>();
  const podIdentity = new Map<string, number>();
  for (const { pod } of placed) {
    const nsLabels = cluster.namespaces.get(pod.namespace)?.labels ?? {};
    const id = ids.identity(labelSetKey(pod.namespace, nsLabels, pod.labels));
    identities.set(id, { id, namespace: pod.namespace, namespaceLabels: nsLabels, podLabels: pod.labels });
    podIdentity.set(`${pod.namespace}/${pod.name}`, id);
  }

  // 2. policy entries and endpointFlags, per identity
  const endpointFlags = new Map<number, number>();
  const policy = new Map<string, PolicyEntry>();
  const put = (e: PolicyEntry): void => {
    const key = policyEntryKey(e);
    const had = policy.get(key);
    // Several rules can allow the same thing; the lowest rule id is named, deterministically.
    if (!had || e.ruleId < had.ruleId) policy.set(key, e);
  };
  const policies = [...cluster.policies.values()].sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
  for (const pol of policies) {
    const subjects = [...identities.values()].filter((s) => s.namespace === pol.namespace && matchesSelector(pol.podSelector, s.podLabels));
    for (const { type, dir, rules, flag } of DIRECTIONS) {
      if (!pol.policyTypes.includes(type)) continue;
      pol[rules].forEach((rule, index) => {
        const ruleId = ids.rule({ kind: 'NetworkPolicy', policy: `${pol.namespace}/${pol.name}`, direction: type, index });
        const peers = rule.peers === undefined
          ? [Identity.ANY]
          : [...identities.values()].filter((who) => rule.peers!.some((p) => peerMatches(p, pol, who))).map((who) => who.id);
        const ports = rule.ports === undefined
          ? [{ proto: 0, port: 0 }]
          : rule.ports.map((p) => ({ proto: PROTO_NUMBER[p.protocol], port: typeof p.port === 'number' ? p.port : 0 }));
        for (const s of subjects) {
          for (const peerIdentity of peers) {
            for (const { proto, port } of ports) put({ identity: s.id, peerIdentity, proto, port, direction: dir, ruleId });
          }
        }
      });
      for (const s of subjects) endpointFlags.set(s.id, (endpointFlags.get(s.id) ?? 0) | flag);
    }
  }

  // 3. Which kinds of keys each identity has, so the datapath skips lookups that cannot hit.
  // (Traffic between a pod and its own node needs no key: the datapath always allows it, as
  // NetworkPolicy says, under reason ALLOW_HOST.)
  for (const e of policy.values()) {
    const flag = e.direction === 0
      ? (e.peerIdentity === Identity.ANY ? EndpointFlag.ANY_RULES_INGRESS : EndpointFlag.PEER_RULES_INGRESS)
      : (e.peerIdentity === Identity.ANY ? EndpointFlag.ANY_RULES_EGRESS : EndpointFlag.PEER_RULES_EGRESS);
    endpointFlags.set(e.identity, (endpointFlags.get(e.identity) ?? 0) | flag);
  }

  // 4. endpoints: every address of every placed pod
  const endpoints = new Map<string, EndpointEntry>();
  for (const { pod, ips, ifindex } of placed) {
    const key = `${pod.namespace}/${pod.name}`;
    const identity = podIdentity.get(key)!;
    const entry: EndpointEntry = { key, id: ids.endpoint(key), identity, ifindex, flags: EP_LOCAL | (endpointFlags.get(identity) ?? 0) };
    for (const ip of ips) endpoints.set(ip, entry);
  }

  const info = new Map<number, IdentityInfo>();
  for (const i of identities.values()) info.set(i.id, { namespace: i.namespace, labels: i.podLabels });
  return { endpoints, policy, identities: info };
}
