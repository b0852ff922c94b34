// What the node agent hands the compiler: the pods of this node that sit behind an interface the
// reconciler attached (their ifindex is what anti-spoofing checks), the node's own addresses
// (identity HOST), and host protection (this node's host endpoints, the automatic one with
// --auto-host-endpoints, the global policies, the failsafes, and the host interfaces attached
// now), as src/lab/lab.ts does for a lab's node; and every other pod with an address as a remote
// peer (its identity at its addresses, so podSelector peers select pods of other nodes).
//
// Id lifetimes: compileNode records which identities and endpoint ids it uses; releaseIds()
// (after the apply) forgets those unused for ID_GRACE_MS, so <data-dir>/ids.json stays as large
// as the cluster under pod churn while the ids of pods still present never change.
import type { ClusterState } from '../datastore/cluster.js';
import type { HostEndpoint } from '../datastore/host-objects.js';
import { autoHostEndpoints, withAutoHostEndpoints } from '../datastore/auto-host-endpoints.js';
import type { Pod } from '../datastore/objects.js';
import { compilePolicy, type CompiledDatapath, type PlacedPod } from '../policy/compile.js';
import type { IdAllocator, ReleaseResult } from '../policy/ids.js';
import type { Failsafes } from '../policy/failsafe.js';
import type { Placement } from '../datapath/discovery/reconciler.js';

export interface NodePolicySettings {
  /** this node's name (spec.nodeName of its pods, spec.node of its host endpoints) */
  readonly node: string;
  readonly autoHostEndpoints: boolean;
  readonly failsafes: Failsafes;
}

/**
 * How long an identity or endpoint id outlives its last use. Flow records name pods by address
 * and time (the registry's history), not by these numbers, but a record already in the ring, in
 * the aggregator (DEFAULT_INTERVAL_MS, 15 s) or in the spool still carries the numbers of a pod
 * that just went; five minutes covers several intervals and a slow writer. A pod re-created
 * after the grace is a new endpoint (as in the lab, which releases an endpoint when its pod goes).
 */
export const ID_GRACE_MS = 5 * 60_000;

/** The pods of this node that have an address (the reconciler looks for their interfaces). */
export function localPods(state: ClusterState, node: string): Pod[] {
  return [...state.pods.values()].filter((p) => p.nodeName === node && p.ips.length > 0);
}

/** Every host endpoint in force: the datastore's, plus this node's automatic one (unless a user
 * endpoint of the node covers "*"). */
export function hostEndpointsInForce(state: ClusterState, s: NodePolicySettings, nodeIps: readonly string[]): HostEndpoint[] {
  const user = [...state.hostEndpoints.values()];
  if (!s.autoHostEndpoints) return user.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const node = state.nodes.get(s.node);
  return withAutoHostEndpoints(user, autoHostEndpoints([{ name: s.node, labels: node?.labels ?? {}, ips: nodeIps }]));
}

export function compileNode(state: ClusterState, placements: ReadonlyMap<string, Placement>, hostInterfaces: ReadonlyMap<string, number>,
  nodeIps: readonly string[], ids: IdAllocator, s: NodePolicySettings): CompiledDatapath {
  const placed: PlacedPod[] = [];
  const remotePods: Pod[] = [];
  for (const pod of state.pods.values()) {
    if (pod.ips.length === 0) continue;
    // A pod of this node without its interface yet is no subject (nothing of it passes our
    // programs yet; the reconciler's next pass recompiles once it is attached) but it is a peer
    // like a pod of another node: what it sends to attached pods carries its identity. Its entry
    // has no LOCAL flag, so no attached pod may send from its address.
    const at = pod.nodeName === s.node ? placements.get(`${pod.namespace}/${pod.name}`) : undefined;
    if (at) placed.push({ pod, ips: pod.ips, ifindex: at.ifindex });
    else remotePods.push(pod);
  }
  ids.beginUse();
  return compilePolicy(state, placed, ids, {
    hostIps: nodeIps,
    remotePods,
    host: {
      node: s.node,
      hostEndpoints: hostEndpointsInForce(state, s, nodeIps),
      globalPolicies: [...state.globalPolicies.values()],
      failsafes: s.failsafes,
      interfaces: hostInterfaces,
    },
  });
}

/** After a compile (compileNode): forgets the ids it did not use for graceMs. */
export function releaseIds(ids: IdAllocator, nowMs: number, graceMs: number = ID_GRACE_MS): ReleaseResult {
  return ids.releaseUnused(nowMs, graceMs);
}
