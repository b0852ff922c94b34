// What the Kubernetes datastore reads from the API server: one entry per resource it lists and
// watches. The chart's RBAC (charts/weir/templates) is checked against this list by a test, so a
// resource added here without a matching rule fails the suite instead of failing on a cluster.

export type WatchVerb = 'get' | 'list' | 'watch';

export interface WatchedResource {
  /** API group: '' for the core group */
  readonly group: string;
  readonly version: string;
  /** the plural, lower-case resource name RBAC rules use */
  readonly resource: string;
  readonly kind: string;
  readonly namespaced: boolean;
  readonly verbs: readonly WatchVerb[];
}

const READ: readonly WatchVerb[] = ['get', 'list', 'watch'];

export const WEIR_API_GROUP = 'weir.dev';
export const WEIR_API_VERSION = 'v1alpha1';

export const WATCHED_RESOURCES: readonly WatchedResource[] = [
  { group: '', version: 'v1', resource: 'namespaces', kind: 'Namespace', namespaced: false, verbs: READ },
  { group: '', version: 'v1', resource: 'pods', kind: 'Pod', namespaced: true, verbs: READ },
  { group: '', version: 'v1', resource: 'nodes', kind: 'Node', namespaced: false, verbs: READ },
  { group: 'networking.k8s.io', version: 'v1', resource: 'networkpolicies', kind: 'NetworkPolicy', namespaced: true, verbs: READ },
  // only for pods' owners' owners (ReplicaSet -> Deployment, Job -> CronJob) in flow records
  { group: 'apps', version: 'v1', resource: 'replicasets', kind: 'ReplicaSet', namespaced: true, verbs: READ },
  { group: 'batch', version: 'v1', resource: 'jobs', kind: 'Job', namespaced: true, verbs: READ },
  { group: WEIR_API_GROUP, version: WEIR_API_VERSION, resource: 'hostendpoints', kind: 'HostEndpoint', namespaced: false, verbs: READ },
  { group: WEIR_API_GROUP, version: WEIR_API_VERSION, resource: 'globalnetworkpolicies', kind: 'GlobalNetworkPolicy', namespaced: false, verbs: READ },
];

/** What the agent writes: Events on objects it rejects. */
export const WRITTEN_RESOURCES: readonly { group: string; resource: string; verbs: readonly string[] }[] = [
  { group: '', resource: 'events', verbs: ['create', 'patch'] },
  { group: 'events.k8s.io', resource: 'events', verbs: ['create', 'patch'] },
];
