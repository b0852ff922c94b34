// What the node agent hands the compiler: the pods of this node that sit behind an interface the
// reconciler attached (their ifindex is what anti-spoofing checks), the node's own addresses
// (identity HOST), and host protection (this node's host endpoints, the automatic one with
// --auto-host-endpoints, the global policies, the failsafes, and the host interfaces attached
// now), as src/lab/lab.ts does for a lab's node.
import type { ClusterState } from '../datastore/cluster.js';
import type { HostEndpoint } from '../datastore/host-objects.js';
import { autoHostEndpoints, withAutoHostEndpoints } from '../datastore/auto-host-endpoints.js';
import type { Pod } from '../datastore/objects.js';
import { compilePolicy, type CompiledDatapath, type PlacedPod } from '../policy/compile.js';
import type { IdAllocator } from '../policy/ids.js';
import type { Failsafes } from '../policy/failsafe.js';
import type { Placement } from '../datapath/discovery/reconciler.js';

export interface NodePolicySettings {
  /** this node's name (spec.nodeName of its pods, spec.node of its host endpoints) */
  readonly node: string;
  readonly autoHostEndpoints: boolean;
  readonly failsafes: Failsafes;
}

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
  for (const pod of localPods(state, s.node)) {
    // a pod without its interface yet has no endpoint: nothing of it passes our programs yet,
    // and the reconciler's next pass recompiles once it is attached
    const at = placements.get(`${pod.namespace}/${pod.name}`);
    if (at) placed.push({ pod, ips: pod.ips, ifindex: at.ifindex });
  }
  return compilePolicy(state, placed, ids, {
    hostIps: nodeIps,
    host: {
      node: s.node,
      hostEndpoints: hostEndpointsInForce(state, s, nodeIps),
      globalPolicies: [...state.globalPolicies.values()],
      failsafes: s.failsafes,
      interfaces: hostInterfaces,
    },
  });
}
