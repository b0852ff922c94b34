// Feeds the flow endpoint registry (src/flows/registry.ts) from a Datastore's batches, stamped with
// the time each batch arrived: a pod deleted at t1 and its address given to another pod at t2 are
// two intervals, so a flow record is named after whoever held the address when it was made. It
// follows the datastore, not ClusterState's acceptance: who holds an address is a fact even while
// the policy view waits for its namespace. As lab-feed.ts does for a lab's state file.
import type { EndpointRegistry } from '../flows/registry.js';
import type { Datastore, DatastoreBatch } from './datastore.js';
import type { Job, KubeObject, ReplicaSet } from './objects.js';

/** Applies one batch at `atMs`: releases first, so a pod of the same batch taking a released
 * address holds it from atMs. */
export function applyBatchToRegistry(registry: EndpointRegistry, batch: DatastoreBatch, atMs: number): void {
  for (const o of batch.deletes) {
    if (o.kind === 'Pod') registry.deletePod(o.namespace, o.name, atMs);
    else if (o.kind === 'Namespace') registry.deleteNamespace(o.name);
    else if (o.kind === 'HostEndpoint') registry.deleteHostEndpoint(o.name, atMs);
    else if (o.kind === 'ReplicaSet' || o.kind === 'Job') registry.deleteOwner(o.kind, o.namespace, o.name);
  }
  const byKind = <K extends KubeObject['kind']>(kind: K) => batch.upserts.filter((o): o is Extract<KubeObject, { kind: K }> => o.kind === kind);
  for (const ns of byKind('Namespace')) registry.upsertNamespace(ns.name, ns.labels);
  // owners before pods, so a pod's Deployment or CronJob is exact from its first record
  for (const o of [...byKind('ReplicaSet'), ...byKind('Job')] as (ReplicaSet | Job)[]) {
    const refs = o.ownerReferences ?? [];
    registry.setOwner(o.kind, o.namespace, o.name, refs.find((r) => r.controller) ?? refs[0] ?? null, atMs);
  }
  for (const p of byKind('Pod')) {
    registry.upsertPod({
      namespace: p.namespace, name: p.name, labels: p.labels, ips: p.ips,
      ...(p.nodeName ? { node: p.nodeName } : {}),
      serviceAccount: p.serviceAccount ?? 'default',
      ...(p.ownerReferences ? { ownerReferences: p.ownerReferences } : {}),
    }, atMs);
  }
  for (const h of byKind('HostEndpoint')) {
    registry.upsertHostEndpoint({ name: h.name, node: h.node, labels: h.labels, expectedIPs: h.expectedIPs, interfaceName: h.interfaceName }, atMs);
  }
}

/** Subscribes the registry to the datastore; returns the unsubscribe function. */
export function feedRegistry(ds: Datastore, registry: EndpointRegistry, now: () => number = Date.now): () => void {
  const cb = (batch: DatastoreBatch): void => applyBatchToRegistry(registry, batch, now());
  ds.on('change', cb);
  return () => ds.off('change', cb);
}
