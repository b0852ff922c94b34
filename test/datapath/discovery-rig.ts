// The rig of the reconciler tests (discovery-reconcile.test.ts, discovery-events.test.ts): a
// network namespace playing the node with a CNI-style veth layout (names start with "wdrc-<tag>",
// pins under /sys/fs/bpf/weir-test-wdrc-<pid>-*, all removed in finally), the real datapath
// installed, its ring read, and the endpoint map compiled from the reconciler's placements as the
// agent would.
import assert from 'node:assert/strict';
import { Datapath, MAPS } from '../../src/datapath/datapath.js';
import { RingBufferReader } from '../../src/datapath/libbpf.js';
import * as abi from '../../src/datapath/abi.js';

import { ClusterState } from '../../src/datastore/cluster.js';
import type { Pod } from '../../src/datastore/objects.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { podKey, type DiscoveryPod } from '../../src/datapath/discovery/discovery.js';
import { type Placement } from '../../src/datapath/discovery/reconciler.js';
import { connect, NodeLayout, removeLeftovers, type BuiltPod, type LayoutStyle } from './discovery-layouts.js';
import { requireBpf } from '../helpers/datapath.js';
import { testPinRoot } from '../helpers/pins.js';

const PREFIX = 'wdrc';
export const PORT = 8080;

/** Everything one scenario needs, torn down in finally. */
export interface Rig {
  layout: NodeLayout;
  dp: Datapath;
  records: abi.FlowEvent[];
  reader: RingBufferReader;
  /** compiles the endpoint map from the pods and their placements, as the agent would */
  apply: (pods: readonly DiscoveryPod[], placements: ReadonlyMap<string, Placement>) => void;
  drain: () => abi.FlowEvent[];
}

export async function withRig(tag: string, style: LayoutStyle, subnet: number, fn: (rig: Rig) => Promise<void>): Promise<void> {
  requireBpf();
  const layout = new NodeLayout(`${PREFIX}-${tag}`, style, subnet);
  await removeLeftovers(layout.prefix);
  const pinRoot = testPinRoot(`weir-test-${PREFIX}`);
  let dp: Datapath | undefined;
  let reader: RingBufferReader | undefined;
  try {
    await layout.create();
    dp = await Datapath.install(pinRoot);
    const records: abi.FlowEvent[] = [];
    reader = new RingBufferReader(dp.map(MAPS.events), (batch) => {
      for (const raw of batch) {
        const r = abi.decodeRecord(raw);
        if (r.type !== 'LOST' && r.type !== 'INVALID') records.push(r);
      }
    }).unref();
    const ids = new IdAllocator();
    const d = dp;
    const rd = reader;
    const apply = (pods: readonly DiscoveryPod[], placements: ReadonlyMap<string, Placement>): void => {
      const objects: Pod[] = pods.map((p) => ({ kind: 'Pod', namespace: p.namespace, name: p.name, labels: { app: p.name }, ports: [], ips: p.ips }));
      const cluster = new ClusterState(objects);
      const placed = pods.filter((p) => placements.has(podKey(p)))
        .map((p) => ({ pod: cluster.pods.get(podKey(p))!, ips: p.ips, ifindex: placements.get(podKey(p))!.ifindex }));
      d.apply(compilePolicy(cluster, placed, ids));
    };
    const drain = (): abi.FlowEvent[] => {
      rd.consume();
      return records.splice(0);
    };
    await fn({ layout, dp, records, reader, apply, drain });
  } finally {
    reader?.close();
    dp?.close();
    await layout.destroy();
    Datapath.uninstall(pinRoot);
  }
}

export const dpod = (p: BuiltPod): DiscoveryPod => ({ namespace: 'default', name: p.name, ips: [p.v4, ...(p.v6 ? [p.v6] : [])] });
export const hook = (r: abi.FlowEvent): string => abi.hookName(r.hook);

/** A TCP connection a -> b: it must succeed, and the programs on both veths must have judged it. */
export async function expectFlow(rig: Rig, from: BuiltPod, to: BuiltPod, dst: string, fromIf: number, toIf: number): Promise<void> {
  rig.drain();
  assert.ok(await connect(from.netns, dst, PORT), `${from.name} -> ${to.name} [${dst}]:${PORT} connects`);
  const recs = rig.drain().filter((r) => r.daddr === dst && r.dport === PORT);
  const at = recs.map((r) => `${r.type} ${hook(r)} ${r.ifindex} ${abi.reasonName(r.reason)}`);
  assert.ok(recs.some((r) => r.type === 'FLOW_START' && hook(r) === 'FROM_POD' && r.ifindex === fromIf), `a FROM_POD record on ${from.ifname} (${fromIf}): ${at.join('; ')}`);
  assert.ok(recs.some((r) => r.type === 'FLOW_START' && hook(r) === 'TO_POD' && r.ifindex === toIf), `a TO_POD record on ${to.ifname} (${toIf}): ${at.join('; ')}`);
}

