// Automatic host endpoints (as Calico's autoCreate host endpoints): one HostEndpoint per node,
// covering all of its host interfaces ("*"), with the node's labels and addresses, so global
// policies can protect every node by its labels without a HostEndpoint manifest per node.
// A HostEndpoint the user wrote for the same node and "*" wins over the automatic one.
import type { HostEndpoint } from './host-objects.js';
import { ALL_INTERFACES } from './host-objects.js';
import type { Labels } from './objects.js';

export interface AutoHostEndpointNode {
  readonly name: string;
  readonly labels: Labels;
  /** the node's own addresses (the endpoint's expectedIPs) */
  readonly ips: readonly string[];
}

/** The name of a node's automatic host endpoint (Calico's naming). */
export function autoHostEndpointName(node: string): string {
  return `${node}-auto-hep`;
}

/** One HostEndpoint per node: `<node>-auto-hep`, interfaceName "*", the node's labels and IPs
 * (duplicates dropped, order kept). Nodes listed twice give one endpoint (the first). */
export function autoHostEndpoints(nodes: readonly AutoHostEndpointNode[]): HostEndpoint[] {
  const out: HostEndpoint[] = [];
  const seen = new Set<string>();
  for (const node of nodes) {
    if (seen.has(node.name)) continue;
    seen.add(node.name);
    out.push({
      kind: 'HostEndpoint',
      name: autoHostEndpointName(node.name),
      labels: { ...node.labels },
      annotations: {},
      node: node.name,
      interfaceName: ALL_INTERFACES,
      expectedIPs: [...new Set(node.ips)],
    });
  }
  return out;
}

/**
 * The host endpoints in force: the user's, plus each automatic one whose node has no
 * user-written "*" endpoint (the user's wins) and whose name no user endpoint has taken (a
 * user endpoint of that name is the user's to keep). In name order.
 */
export function withAutoHostEndpoints(user: readonly HostEndpoint[], auto: readonly HostEndpoint[]): HostEndpoint[] {
  const covered = new Set(user.filter((h) => h.interfaceName === ALL_INTERFACES).map((h) => h.node));
  const names = new Set(user.map((h) => h.name));
  const kept = auto.filter((h) => !covered.has(h.node) && !names.has(h.name));
  return [...user, ...kept].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
