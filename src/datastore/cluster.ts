// The datastore's view of the cluster: the current Namespaces, Pods, NetworkPolicies, the Node,
// the host protection objects (HostEndpoints, GlobalNetworkPolicies), and ReplicaSets and Jobs
// (only for who owns them: pods' workloads). Changes
// come in as whole objects (an applied object replaces the previous version, labels included, as
// `kubectl replace` does) and are checked as a batch first, so a bad batch changes nothing.
import type { Job, KubeObject, Namespace, NetworkPolicy, Node, Pod, ReplicaSet } from './objects.js';
import type { GlobalNetworkPolicy, HostEndpoint } from './host-objects.js';
import { describeObject, objectKey } from './objects.js';

/** Namespaces that exist without a manifest, as in a new cluster. */
const BUILTIN_NAMESPACES = ['default'];

function builtinNamespace(name: string): Namespace {
  return { kind: 'Namespace', name, labels: { 'kubernetes.io/metadata.name': name } };
}

function isUntouchedBuiltin(ns: Namespace): boolean {
  return BUILTIN_NAMESPACES.includes(ns.name) && JSON.stringify(ns) === JSON.stringify(builtinNamespace(ns.name));
}

export interface ClusterSnapshot {
  readonly namespaces: ReadonlyMap<string, Namespace>;
  readonly pods: ReadonlyMap<string, Pod>;
  readonly policies: ReadonlyMap<string, NetworkPolicy>;
}

export class ClusterStateError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`rejected (nothing was applied):\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ClusterStateError';
  }
}

export class ClusterState implements ClusterSnapshot {
  readonly namespaces = new Map<string, Namespace>();
  readonly pods = new Map<string, Pod>();
  readonly policies = new Map<string, NetworkPolicy>();
  /** The lab's Node object, by name (at most one: a lab is one node). */
  readonly nodes = new Map<string, Node>();
  /** Host protection (cluster-scoped, by name), as applied (the lab adds its automatic host
   * endpoint when compiling, not here). */
  readonly hostEndpoints = new Map<string, HostEndpoint>();
  readonly globalPolicies = new Map<string, GlobalNetworkPolicy>();
  /** ReplicaSets and Jobs (namespace/name), for the owners of pods' owners. */
  readonly replicaSets = new Map<string, ReplicaSet>();
  readonly jobs = new Map<string, Job>();

  /** The Node object, if one was given. */
  get node(): Node | undefined {
    return this.nodes.values().next().value;
  }

  constructor(objects: readonly KubeObject[] = []) {
    for (const name of BUILTIN_NAMESPACES) {
      this.namespaces.set(name, builtinNamespace(name));
    }
    if (objects.length > 0) this.apply(objects);
  }

  /** Every object, less built-in namespaces nobody changed. */
  objects(): KubeObject[] {
    const namespaces = [...this.namespaces.values()].filter((ns) => !isUntouchedBuiltin(ns));
    return [...namespaces, ...this.nodes.values(), ...this.pods.values(), ...this.policies.values(),
      ...this.hostEndpoints.values(), ...this.globalPolicies.values(), ...this.replicaSets.values(), ...this.jobs.values()];
  }

  /** Creates or replaces objects. Checked as a whole first: on error nothing changes. */
  apply(objects: readonly KubeObject[]): void {
    const next = this.clone();
    for (const obj of objects) next.put(obj);
    next.checkReferences();
    this.adopt(next);
  }

  /** Deletes objects (deleting a namespace deletes what is in it, as the API server does). */
  delete(objects: readonly KubeObject[]): { deleted: string[]; missing: string[] } {
    const next = this.clone();
    const deleted: string[] = [];
    const missing: string[] = [];
    for (const obj of objects) {
      const key = objectKey(obj);
      const map = next.mapFor(obj.kind);
      if (!map.delete(key)) {
        missing.push(describeObject(obj));
        continue;
      }
      deleted.push(describeObject(obj));
      if (obj.kind === 'Namespace') {
        for (const [k, p] of next.pods) if (p.namespace === key) next.pods.delete(k);
        for (const [k, p] of next.policies) if (p.namespace === key) next.policies.delete(k);
        for (const [k, r] of next.replicaSets) if (r.namespace === key) next.replicaSets.delete(k);
        for (const [k, j] of next.jobs) if (j.namespace === key) next.jobs.delete(k);
      }
    }
    this.adopt(next);
    return { deleted, missing };
  }

  private put(obj: KubeObject): void {
    (this.mapFor(obj.kind) as Map<string, KubeObject>).set(objectKey(obj), obj);
  }

  private mapFor(kind: KubeObject['kind']): Map<string, KubeObject> {
    switch (kind) {
      case 'Namespace': return this.namespaces as Map<string, KubeObject>;
      case 'Pod': return this.pods as Map<string, KubeObject>;
      case 'NetworkPolicy': return this.policies as Map<string, KubeObject>;
      case 'Node': return this.nodes as Map<string, KubeObject>;
      case 'HostEndpoint': return this.hostEndpoints as Map<string, KubeObject>;
      case 'GlobalNetworkPolicy': return this.globalPolicies as Map<string, KubeObject>;
      case 'ReplicaSet': return this.replicaSets as Map<string, KubeObject>;
      case 'Job': return this.jobs as Map<string, KubeObject>;
    }
  }

  private checkReferences(): void {
    const problems: string[] = [];
    for (const obj of [...this.pods.values(), ...this.policies.values(), ...this.replicaSets.values(), ...this.jobs.values()]) {
      if (!this.namespaces.has(obj.namespace)) {
        problems.push(`${describeObject(obj)}: metadata.namespace: "${obj.namespace}" does not exist; add a Namespace object for it`);
      }
    }
    // Two pods cannot hold the same address.
    const owner = new Map<string, string>();
    for (const pod of this.pods.values()) {
      for (const ip of pod.ips) {
        const other = owner.get(ip);
        if (other) problems.push(`${describeObject(pod)}: status.podIPs: "${ip}" is already the address of Pod ${other}`);
        else owner.set(ip, `${pod.namespace}/${pod.name}`);
      }
    }
    if (this.nodes.size > 1) {
      const names = [...this.nodes.keys()].sort();
      problems.push(`Node ${names[1]}: metadata.name: "${names[1]}": at most one Node (the lab is one node; Node ${names[0]} is it)`);
    }
    // One HostEndpoint per node and interface ("*" included): two would make which one covers the
    // interface an accident.
    const covers = new Map<string, string>();
    for (const hep of [...this.hostEndpoints.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const key = `${hep.node}\u0000${hep.interfaceName}`;
      const other = covers.get(key);
      if (other) {
        problems.push(`HostEndpoint ${hep.name}: spec.interfaceName: ${JSON.stringify(hep.interfaceName)}: node ${hep.node} ${hep.interfaceName === '*' ? 'all interfaces ("*")' : `interface ${hep.interfaceName}`} is already covered by HostEndpoint ${other}; one HostEndpoint per node and interface`);
      } else {
        covers.set(key, hep.name);
      }
    }
    if (problems.length > 0) throw new ClusterStateError(problems);
  }

  private clone(): ClusterState {
    const c = new ClusterState();
    c.namespaces.clear();
    for (const [k, v] of this.namespaces) c.namespaces.set(k, v);
    for (const [k, v] of this.pods) c.pods.set(k, v);
    for (const [k, v] of this.policies) c.policies.set(k, v);
    for (const [k, v] of this.nodes) c.nodes.set(k, v);
    for (const [k, v] of this.hostEndpoints) c.hostEndpoints.set(k, v);
    for (const [k, v] of this.globalPolicies) c.globalPolicies.set(k, v);
    for (const [k, v] of this.replicaSets) c.replicaSets.set(k, v);
    for (const [k, v] of this.jobs) c.jobs.set(k, v);
    return c;
  }

  private adopt(other: ClusterState): void {
    for (const [mine, theirs] of [[this.namespaces, other.namespaces], [this.pods, other.pods], [this.policies, other.policies], [this.nodes, other.nodes],
      [this.hostEndpoints, other.hostEndpoints], [this.globalPolicies, other.globalPolicies],
      [this.replicaSets, other.replicaSets], [this.jobs, other.jobs]] as const) {
      (mine as Map<string, unknown>).clear();
      for (const [k, v] of theirs) (mine as Map<string, unknown>).set(k, v);
    }
  }
}
