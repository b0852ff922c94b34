// PodInterfaceReconciler with the real datapath: real BPF programs attached through Datapath to the
// interfaces discovery finds, on real veth layouts of each CNI style inside a network namespace
// playing the node (names start with "wdrc-", pins under /sys/fs/bpf/weir-test-wdrc-<pid>-*, all
// removed in finally). Real TCP between pod namespaces goes through the programs (their ring-buffer
// records name the interfaces); a re-created veth is re-attached, a pod that goes is detached
// without leftovers, and interfaces that are not pods are never touched.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Datapath, MAPS, PROGRAMS, TC_HANDLE, TC_PRIORITY } from '../../src/datapath/datapath.js';
import { BpfObject, RingBufferReader, tcAttach, tcQuery } from '../../src/datapath/libbpf.js';
import * as abi from '../../src/datapath/abi.js';
import { bpfObjectPath } from '../../src/paths.js';
import { ClusterState } from '../../src/datastore/cluster.js';
import type { Pod } from '../../src/datastore/objects.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { InterfaceDiscovery, podKey, type DiscoveryPod } from '../../src/datapath/discovery/discovery.js';
import { PodInterfaceReconciler, type Placement } from '../../src/datapath/discovery/reconciler.js';
import { connect, ip, sh, NodeLayout, removeLeftovers, startServer, type BuiltPod, type LayoutStyle, type PodSpec } from './discovery-layouts.js';
import { requireBpf } from '../helpers/datapath.js';

const PREFIX = 'wdrc';
const PORT = 8080;
let pins = 0;

/** Everything one scenario needs, torn down in finally. */
interface Rig {
  layout: NodeLayout;
  dp: Datapath;
  records: abi.FlowEvent[];
  reader: RingBufferReader;
  /** compiles the endpoint map from the pods and their placements, as the agent would */
  apply: (pods: readonly DiscoveryPod[], placements: ReadonlyMap<string, Placement>) => void;
  drain: () => abi.FlowEvent[];
}

async function withRig(tag: string, style: LayoutStyle, subnet: number, fn: (rig: Rig) => Promise<void>): Promise<void> {
  requireBpf();
  const layout = new NodeLayout(`${PREFIX}-${tag}`, style, subnet);
  await removeLeftovers(layout.prefix);
  const pinRoot = `/sys/fs/bpf/weir-test-${PREFIX}-${process.pid}-${++pins}`;
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

const dpod = (p: BuiltPod): DiscoveryPod => ({ namespace: 'default', name: p.name, ips: [p.v4, ...(p.v6 ? [p.v6] : [])] });
const hook = (r: abi.FlowEvent): string => abi.hookName(r.hook);

/** A TCP connection a -> b: it must succeed, and the programs on both veths must have judged it. */
async function expectFlow(rig: Rig, from: BuiltPod, to: BuiltPod, dst: string, fromIf: number, toIf: number): Promise<void> {
  rig.drain();
  assert.ok(await connect(from.netns, dst, PORT), `${from.name} -> ${to.name} [${dst}]:${PORT} connects`);
  const recs = rig.drain().filter((r) => r.daddr === dst && r.dport === PORT);
  const at = recs.map((r) => `${r.type} ${hook(r)} ${r.ifindex} ${abi.reasonName(r.reason)}`);
  assert.ok(recs.some((r) => r.type === 'FLOW_START' && hook(r) === 'FROM_POD' && r.ifindex === fromIf), `a FROM_POD record on ${from.ifname} (${fromIf}): ${at.join('; ')}`);
  assert.ok(recs.some((r) => r.type === 'FLOW_START' && hook(r) === 'TO_POD' && r.ifindex === toIf), `a TO_POD record on ${to.ifname} (${toIf}): ${at.join('; ')}`);
}

const STYLES: Array<{ style: LayoutStyle; subnet: number; a: PodSpec; b: PodSpec; decoy: string }> = [
  { style: 'calico', subnet: 71, a: { name: 'a', ifname: 'cali0011223344a', v4: '10.71.0.10', v6: 'fd00:71::10' }, b: { name: 'b', ifname: 'cali0011223344b', v4: '10.71.0.11', v6: 'fd00:71::11' }, decoy: 'calidecoy' },
  // (Cilium with endpoint routes: without them only Cilium's own BPF would forward to the pod;
  // discovery through the peer alone is in discovery.test.ts)
  { style: 'cilium', subnet: 72, a: { name: 'a', ifname: 'lxc0011223344aa', v4: '10.72.0.10', v6: 'fd00:72::10' }, b: { name: 'b', ifname: 'lxc0011223344bb', v4: '10.72.0.11' }, decoy: 'lxcdecoy' },
  { style: 'flannel', subnet: 73, a: { name: 'a', ifname: 'veth001122aa', v4: '10.73.0.10' }, b: { name: 'b', ifname: 'veth001122bb', v4: '10.73.0.11' }, decoy: 'vethdecoy' },
  { style: 'kindnet', subnet: 74, a: { name: 'a', ifname: 'veth001122aa', v4: '10.74.0.10' }, b: { name: 'b', ifname: 'veth001122bb', v4: '10.74.0.11' }, decoy: 'vethdecoy' },
];

for (const { style, subnet, a: aSpec, b: bSpec, decoy } of STYLES) {
  test(`${style}: attach to discovered pods, real traffic through the programs, re-creation, detach without leftovers`, async () => {
    await withRig(style.slice(0, 3), style, subnet, async (rig) => {
      const { layout } = rig;
      const a = await layout.addPod(aSpec);
      const b = await layout.addPod(bSpec);
      // decoys: a veth named like a pod's with no pod behind it, a bridge, and lo
      await layout.addStrayVeth(decoy, 'decoy', `10.${subnet}.0.99/32`);
      await ip(layout.node, 'link', 'add', 'br-decoy', 'type', 'bridge');
      if (style === 'flannel') {
        await ip(layout.node, 'link', 'set', decoy, 'master', 'cni0');
        // one packet each to the gateway: the bridge's neighbour + FDB evidence
        for (const p of [a, b]) await connect(p.netns, layout.gateway4, 9, 1_000);
      }
      const pods = [dpod(a), dpod(b)];
      let autoApply = true;
      const changes: Array<Map<string, Placement>> = [];
      const rec = new PodInterfaceReconciler({
        discovery: new InterfaceDiscovery({ netns: layout.node, style }),
        datapath: rig.dp,
        onPlacementsChanged: (placements) => {
          changes.push(new Map(placements));
          if (autoApply) rig.apply(pods, placements);
        },
      });
      rec.setPods(pods);
      await rec.resync();
      const aIf = await layout.ifindex(a.ifname);
      let bIf = await layout.ifindex(b.ifname);
      assert.deepEqual(rec.attachments().map((x) => `${x.key} ${x.ifname} ${x.ifindex}`).sort(), [`default/a ${a.ifname} ${aIf}`, `default/b ${b.ifname} ${bIf}`]);
      assert.equal(rec.counters().attached, 2);
      assert.deepEqual(rec.unresolved(), new Map());
      // Weir's programs, at Weir's priority/handle, on both hooks of both veths
      for (const ifindex of [aIf, bIf]) {
        assert.deepEqual(tcQuery({ ifindex, netns: `/run/netns/${layout.node}`, direction: 'ingress', priority: TC_PRIORITY, handle: TC_HANDLE }), { progId: rig.dp.program(PROGRAMS.fromPod).id });
        assert.deepEqual(tcQuery({ ifindex, netns: `/run/netns/${layout.node}`, direction: 'egress', priority: TC_PRIORITY, handle: TC_HANDLE }), { progId: rig.dp.program(PROGRAMS.toPod).id });
      }
      for (const other of [decoy, 'br-decoy', 'lo', ...(style === 'flannel' ? ['cni0'] : [])]) {
        const tc = await layout.tcState(other);
        assert.ok(!tc.qdiscs.includes('clsact') && tc.filters === 0, `${other} untouched: ${JSON.stringify(tc)}`);
      }

      const server = await startServer(b.netns, PORT);
      try {
        await expectFlow(rig, a, b, b.v4, aIf, bIf);
        if (a.v6 && b.v6) await expectFlow(rig, a, b, b.v6, aIf, bIf);

        // b's veth deleted and made again (same name, new ifindex): a new attachment there
        await layout.deleteVeth(b.ifname);
        await layout.addVeth(b);
        if (style === 'flannel') {
          // b's new eth0 has a new MAC: the bridge and a must learn it, as after any re-creation
          await connect(b.netns, layout.gateway4, 9, 1_000);
          await ip(a.netns, 'neigh', 'flush', 'dev', 'eth0');
        }
        autoApply = false;
        await rec.resync();
        const newBIf = await layout.ifindex(b.ifname);
        assert.notEqual(newBIf, bIf);
        assert.equal(rec.placements().get('default/b')?.ifindex, newBIf);
        assert.equal(rec.counters().recreated, 1);
        assert.equal(rec.counters().gone, 1, 'the old veth went with its filters');
        assert.deepEqual(tcQuery({ ifindex: newBIf, netns: `/run/netns/${layout.node}`, direction: 'ingress', priority: TC_PRIORITY, handle: TC_HANDLE }), { progId: rig.dp.program(PROGRAMS.fromPod).id });
        // the endpoint map still names b's old veth: the program now on the new one drops b's
        // replies as spoofed, which shows it runs there, and why the agent must recompile
        rig.drain();
        assert.equal(await connect(a.netns, b.v4, PORT, 1_000), false, 'the stale endpoint map blocks b');
        const spoofed = rig.drain().filter((r) => r.type === 'DENY' && abi.reasonName(r.reason) === 'DROP_SPOOFED');
        assert.ok(spoofed.some((r) => r.ifindex === newBIf && hook(r) === 'FROM_POD'), 'dropped as spoofed on the new veth');
        rig.apply(pods, rec.placements());
        bIf = newBIf;
        await expectFlow(rig, a, b, b.v4, aIf, bIf);
      } finally {
        await server.stop();
      }
      assert.equal(changes.length, 2, 'placements changed twice: first attach, re-creation');

      // a leaves the desired set while its veth is still there: detached, nothing left behind
      rec.setPods([dpod(b)]);
      await rec.resync();
      assert.deepEqual(await layout.tcState(a.ifname), { qdiscs: ['noqueue'], filters: 0 });
      assert.equal(rec.counters().detached, 1);
      assert.deepEqual([...rec.placements().keys()], ['default/b']);
      // b's pod goes (CNI DEL: its veth, then its netns): the attachment is dropped, counted as gone
      await layout.deleteVeth(b.ifname);
      await layout.deletePod('b');
      await rec.resync();
      assert.deepEqual(rec.attachments(), []);
      assert.equal(rec.counters().gone, 2);
      await rec.stop();
      const c = rec.counters();
      assert.deepEqual({ attached: c.attached, detached: c.detached, recreated: c.recreated, errors: c.errors }, { attached: 3, detached: 1, recreated: 1, errors: 0 });
    });
  });
}

test('event driven: ip monitor events re-attach a re-created (and renamed) veth and pick up new pods, with no periodic pass', async () => {
  await withRig('evt', 'calico', 75, async (rig) => {
    const { layout } = rig;
    const a = await layout.addPod({ name: 'a', ifname: 'cali11aa22bb33c', v4: '10.75.0.10', v6: 'fd00:75::10' });
    const b = await layout.addPod({ name: 'b', ifname: 'cali11aa22bb33d', v4: '10.75.0.11', v6: 'fd00:75::11' });
    let pods = [dpod(a), dpod(b)];
    const errors: Error[] = [];
    const rec = new PodInterfaceReconciler({
      discovery: new InterfaceDiscovery({ netns: layout.node, style: 'calico' }),
      datapath: rig.dp,
      resyncIntervalMs: 600_000, // only events (and setPods) drive it here
      debounceMs: 50,
      onPlacementsChanged: (placements) => rig.apply(pods, placements),
      onError: (e) => errors.push(e),
    });
    rec.setPods(pods);
    await rec.start();
    const server = await startServer(b.netns, PORT);
    try {
      assert.equal(rec.counters().attached, 2);
      await expectFlow(rig, a, b, b.v6!, await layout.ifindex(a.ifname), await layout.ifindex(b.ifname));
      const passes = rec.counters().resyncs;

      // b's veth replaced by one with another name (the CNI re-ran): nobody calls resync
      await layout.deleteVeth(b.ifname);
      const b2 = { ...b, ifname: 'cali99ff88ee77d' };
      await layout.addVeth(b2, b.netns);
      const b2If = await layout.ifindex(b2.ifname);
      await until(() => rec.placements().get('default/b')?.ifindex === b2If, 'b re-attached on its new veth');
      assert.ok(rec.counters().resyncs > passes && rec.counters().events > 0);
      assert.equal(rec.placements().get('default/b')?.ifname, b2.ifname);
      assert.equal(rec.counters().recreated, 1);
      await expectFlow(rig, a, b2, b.v4, await layout.ifindex(a.ifname), b2If);

      // a new pod: setPods, and its interface arriving later (events)
      const cSpec = { name: 'c', ifname: 'cali11aa22bb33e', v4: '10.75.0.12' };
      pods = [...pods, { namespace: 'default', name: 'c', ips: [cSpec.v4] }];
      rec.setPods(pods);
      await until(() => rec.unresolved().get('default/c')?.reason === 'no-evidence', 'c wanted, not there yet');
      const c = await layout.addPod(cSpec);
      await until(() => rec.placements().has('default/c'), 'c attached once its veth and route exist');
      await expectFlow(rig, c, b2, b.v4, await layout.ifindex(c.ifname), b2If);

      // a's pod deleted: its attachment goes
      await layout.deletePod('a');
      pods = pods.filter((p) => p.name !== 'a');
      rec.setPods(pods);
      await until(() => !rec.placements().has('default/a'), 'a dropped');
    } finally {
      await server.stop();
      await rec.stop();
    }
    assert.deepEqual(errors, []);
    assert.equal(rec.counters().monitorRestarts, 0);
  });
});

test('never touches what it did not attach: a foreign program at Weir\'s slot is refused, a foreign qdisc and filter survive detach, restarts adopt', async () => {
  await withRig('own', 'calico', 76, async (rig) => {
    const { layout } = rig;
    const a = await layout.addPod({ name: 'a', ifname: 'cali22bb33cc44a', v4: '10.76.0.10' });
    const b = await layout.addPod({ name: 'b', ifname: 'cali22bb33cc44b', v4: '10.76.0.11' });
    const c = await layout.addPod({ name: 'c', ifname: 'cali22bb33cc44c', v4: '10.76.0.12' });
    const ns = `/run/netns/${layout.node}`;
    const foreign = BpfObject.open(bpfObjectPath('noop'));
    try {
      await foreign.load();
      const noop = foreign.program('weir_noop');
      // someone else's program at Weir's own priority/handle on a's ingress
      tcAttach({ ifname: a.ifname, netns: ns, direction: 'ingress', program: noop, priority: TC_PRIORITY, handle: TC_HANDLE });
      // someone else's clsact qdisc and filter (another priority) on b
      tcAttach({ ifname: b.ifname, netns: ns, direction: 'ingress', program: noop, priority: 7, handle: 7 });

      const pods = [a, b, c].map(dpod);
      const rec = new PodInterfaceReconciler({ discovery: new InterfaceDiscovery({ netns: layout.node, style: 'calico' }), datapath: rig.dp });
      rec.setPods(pods);
      await rec.resync();
      assert.deepEqual([...rec.placements().keys()].sort(), ['default/b', 'default/c']);
      assert.equal(rec.unresolved().get('default/a')?.reason, 'foreign-program');
      assert.match(rec.unresolved().get('default/a')!.detail, /weir_noop/);
      assert.deepEqual(tcQuery({ ifname: a.ifname, netns: ns, direction: 'ingress', priority: TC_PRIORITY, handle: TC_HANDLE }), { progId: noop.id }, 'a\'s foreign program left in place');
      assert.equal(tcQuery({ ifname: a.ifname, netns: ns, direction: 'egress', priority: TC_PRIORITY, handle: TC_HANDLE }), undefined, 'nothing of ours on a');
      assert.equal(rec.counters().notFound['foreign-program'], 1);
      const byKey = new Map(rec.attachments().map((x) => [x.key, x]));
      assert.equal(byKey.get('default/b')?.createdQdisc, false, 'b\'s qdisc was there before us');
      assert.equal(byKey.get('default/c')?.createdQdisc, true);

      // a filter of ours removed behind our back: repaired on the next pass
      await sh('tc', ['-n', layout.node, 'filter', 'del', 'dev', c.ifname, 'egress', 'pref', String(TC_PRIORITY)]);
      await rec.resync();
      assert.equal(rec.counters().repaired, 1);
      assert.deepEqual(tcQuery({ ifname: c.ifname, netns: ns, direction: 'egress', priority: TC_PRIORITY, handle: TC_HANDLE }), { progId: rig.dp.program(PROGRAMS.toPod).id });

      // a second reconciler (an agent restart) adopts what the first attached, attaching nothing
      const reopened = Datapath.open(rig.dp.pinRoot);
      try {
        const again = new PodInterfaceReconciler({ discovery: new InterfaceDiscovery({ netns: layout.node, style: 'calico' }), datapath: reopened });
        again.setPods(pods);
        await again.resync();
        assert.deepEqual({ attached: again.counters().attached, adopted: again.counters().adopted }, { attached: 0, adopted: 2 });
        assert.deepEqual(again.attachments().map((x) => `${x.key} ${x.adopted}`).sort(), ['default/b true', 'default/c true']);
        await again.stop();
      } finally {
        reopened.close();
      }

      // every pod goes from the desired set: ours detached; b keeps its foreign qdisc and filter,
      // c (our qdisc) is left with none, a is as it was
      rec.setPods([]);
      await rec.resync();
      assert.equal(rec.counters().detached, 2);
      assert.deepEqual(await layout.tcState(b.ifname), { qdiscs: ['noqueue', 'clsact'], filters: 1 });
      assert.deepEqual(tcQuery({ ifname: b.ifname, netns: ns, direction: 'ingress', priority: 7, handle: 7 }), { progId: noop.id });
      assert.deepEqual(await layout.tcState(c.ifname), { qdiscs: ['noqueue'], filters: 0 });
      assert.deepEqual(tcQuery({ ifname: a.ifname, netns: ns, direction: 'ingress', priority: TC_PRIORITY, handle: TC_HANDLE }), { progId: noop.id });
      await rec.stop();
    } finally {
      foreign.close();
    }
  });
});

test('host interfaces: attached by exact name with the host-device programs, re-attached when re-created; a pod veth is refused as one', async () => {
  await withRig('hst', 'calico', 77, async (rig) => {
    const { layout } = rig;
    const a = await layout.addPod({ name: 'a', ifname: 'cali33cc44dd55a', v4: '10.77.0.10' });
    await layout.addStrayVeth('uplink0', 'world');
    const ns = `/run/netns/${layout.node}`;
    const rec = new PodInterfaceReconciler({
      discovery: new InterfaceDiscovery({ netns: layout.node, style: 'calico' }),
      datapath: rig.dp,
      hostInterfaces: ['uplink0', 'absent0', a.ifname],
    });
    rec.setPods([dpod(a)]);
    await rec.resync();
    const up = await layout.ifindex('uplink0');
    assert.deepEqual(rec.hostPlacements(), new Map([['uplink0', up]]));
    assert.deepEqual(tcQuery({ ifindex: up, netns: ns, direction: 'ingress', priority: TC_PRIORITY, handle: TC_HANDLE }), { progId: rig.dp.program(PROGRAMS.fromHostDev).id });
    assert.equal(rec.unresolved().get('host:absent0')?.reason, 'no-interface');
    assert.equal(rec.unresolved().get(`host:${a.ifname}`)?.reason, 'is-pod-interface');
    assert.deepEqual(tcQuery({ ifname: a.ifname, netns: ns, direction: 'ingress', priority: TC_PRIORITY, handle: TC_HANDLE }), { progId: rig.dp.program(PROGRAMS.fromPod).id }, 'the pod keeps its pod programs');

    await layout.deleteVeth('uplink0');
    await layout.addStrayVeth('uplink0', 'world2');
    await rec.resync();
    const up2 = await layout.ifindex('uplink0');
    assert.deepEqual(rec.hostPlacements(), new Map([['uplink0', up2]]));
    assert.equal(rec.counters().recreated, 1);
    await rec.stop({ detach: true });
    assert.deepEqual(await layout.tcState('uplink0'), { qdiscs: ['noqueue'], filters: 0 });
    assert.deepEqual(await layout.tcState(a.ifname), { qdiscs: ['noqueue'], filters: 0 });
    assert.deepEqual(rec.attachments(), []);
  });
});

test('bad reconciler options are refused with the field named', async () => {
  const discovery = new InterfaceDiscovery({ style: 'calico', netns: 'wdrc-absent' });
  assert.throws(() => new PodInterfaceReconciler({ discovery, datapath: undefined as unknown as Datapath }), /datapath: required/);
  await withRig('opt', 'calico', 78, async (rig) => {
    assert.throws(() => new PodInterfaceReconciler({ discovery, datapath: rig.dp, hostInterfaces: ['ok', 'bad/name'] }), /hostInterfaces\[1\]: "bad\/name"/);
    assert.throws(() => new PodInterfaceReconciler({ discovery, datapath: rig.dp, resyncIntervalMs: 0 }), /resyncIntervalMs: expected a positive number/);
    assert.throws(() => new PodInterfaceReconciler({ discovery, datapath: rig.dp, debounceMs: -1 }), /debounceMs/);
    const rec = new PodInterfaceReconciler({ discovery, datapath: rig.dp });
    assert.throws(() => rec.setPods([{ namespace: 'default', name: 'a', ips: ['10.0.0.1', 'nope'] }]), /pods\[0\]\.ips\[1\]: "nope" is not an IPv4 or IPv6 address/);
    assert.throws(() => rec.setPods({} as DiscoveryPod[]), /pods: expected an array of pods/);
    // a node netns that does not exist: the pass fails and says which command on which netns
    rec.setPods([]);
    await assert.rejects(rec.resync(), /wdrc-absent/);
    await rec.stop({ detach: true });
  });
});

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
