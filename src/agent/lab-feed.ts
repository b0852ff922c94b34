// The endpoint registry's datastore view for a lab: the lab's state file says which pod holds which
// address, which namespaces, host endpoints and node addresses there are. The agent re-reads the
// file when it changed (a stat before every ring batch, so a record made after a change finds it)
// and tells the registry, stamped with the time the lab wrote the change: a record made before a
// pod was deleted still names that pod even when another pod holds its address since.
import { statSync } from 'node:fs';
import path from 'node:path';
import { labDir, readLabState, type LabState } from '../lab/state.js';
import { labHostEndpoints, labNodeIps, labNodeName } from '../lab/host-protection.js';
import { LAB_WORLD_V4, LAB_WORLD_V6 } from '../lab/addresses.js';
import type { EndpointRegistry, WorldName } from '../flows/registry.js';
import type { Job, ReplicaSet } from '../datastore/objects.js';

/** The lab's world client, named, as a default CIDR -> name mapping for a lab's agent. */
export const LAB_WORLD_NAMES: readonly WorldName[] = [
  { cidr: `${LAB_WORLD_V4}/32`, name: 'lab-world' },
  { cidr: `${LAB_WORLD_V6}/128`, name: 'lab-world' },
];

/** Brings the registry to what `s` says, at `atMs`. `since`: when the pods first listed got
 * their addresses (the first read: the lab's creation). Only changes make new history. */
export function applyLabState(registry: EndpointRegistry, s: LabState, before: LabState | undefined, atMs: number, since?: number): void {
  for (const o of s.objects) if (o.kind === 'Namespace') registry.upsertNamespace(o.name, o.labels);
  for (const o of before?.objects ?? []) {
    if (o.kind === 'Namespace' && !s.objects.some((n) => n.kind === 'Namespace' && n.name === o.name)) registry.deleteNamespace(o.name);
  }
  // Pods gone (or whose network was re-made) release their addresses first, so a pod of this
  // same change that takes one over holds it from atMs.
  for (const key of Object.keys(before?.pods ?? {})) {
    if (!s.pods[key]) {
      const [ns, name] = key.split('/') as [string, string];
      registry.deletePod(ns, name, atMs);
    }
  }
  // The owners of ReplicaSets and Jobs before the pods, so a pod's Deployment or CronJob is exact
  // from the start (without them, the registry goes by Kubernetes' naming convention).
  const owned = (st: LabState | undefined) => (st?.objects ?? []).filter((o): o is ReplicaSet | Job => o.kind === 'ReplicaSet' || o.kind === 'Job');
  for (const o of owned(s)) {
    const refs = o.ownerReferences ?? [];
    registry.setOwner(o.kind, o.namespace, o.name, refs.find((r) => r.controller) ?? refs[0] ?? null, atMs);
  }
  for (const o of owned(before)) {
    if (!owned(s).some((n) => n.kind === o.kind && n.namespace === o.namespace && n.name === o.name)) registry.deleteOwner(o.kind, o.namespace, o.name);
  }
  const node = labNodeName(s);
  for (const o of s.objects) {
    if (o.kind !== 'Pod') continue;
    const placed = s.pods[`${o.namespace}/${o.name}`];
    if (!placed) continue;
    registry.upsertPod({
      namespace: o.namespace, name: o.name, labels: o.labels,
      // spec.nodeName when the manifest names a node, else the lab node (where every lab pod runs)
      node: o.nodeName ?? node,
      serviceAccount: o.serviceAccount ?? 'default',
      ...(o.ownerReferences ? { ownerReferences: o.ownerReferences } : {}),
      ips: [placed.ipv4, placed.ipv6].filter((ip): ip is string => !!ip),
      ...(since !== undefined ? { since } : {}),
    }, atMs);
  }
  const heps = labHostEndpoints(s);
  for (const h of heps) {
    registry.upsertHostEndpoint({ name: h.name, node: h.node, labels: h.labels, expectedIPs: h.expectedIPs, interfaceName: h.interfaceName }, atMs);
  }
  if (before) for (const h of labHostEndpoints(before)) if (!heps.some((x) => x.name === h.name)) registry.deleteHostEndpoint(h.name, atMs);
  registry.setNodeAddresses(labNodeIps(s), atMs);
}

/** Follows a lab's state file, feeding the registry. `sync()` costs a stat when nothing changed. */
export class LabStateFeed {
  private state?: LabState;
  private stamp = -1;
  private readonly file: string;
  updates = 0;

  constructor(private readonly lab: string, private readonly registry: EndpointRegistry) {
    this.file = path.join(labDir(lab), 'state.json');
  }

  /** The last state read (rule names come from it: a lab never reuses a rule id). */
  get current(): LabState | undefined {
    return this.state;
  }

  /** Re-reads the state when the file changed; true if it did. */
  sync(): boolean {
    let mtimeMs: number;
    try {
      mtimeMs = statSync(this.file).mtimeMs;
    } catch {
      return false; // the lab went down: keep the last view, records still in flight are named by it
    }
    if (mtimeMs === this.stamp) return false;
    let state: LabState;
    try {
      state = readLabState(this.lab);
    } catch {
      return false; // mid-write or mid-removal: the next sync tries again
    }
    this.stamp = mtimeMs;
    const before = this.state;
    // The change took effect when the lab wrote it; what the first read lists, since the lab was made.
    const at = Math.floor(mtimeMs);
    applyLabState(this.registry, state, before, at, before ? undefined : Date.parse(state.createdAt) || at);
    this.state = state;
    this.updates++;
    return true;
  }
}
