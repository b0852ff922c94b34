// PodInterfaceReconciler with the real datapath: driven by ip monitor events alone; never touching
// programs, qdiscs and filters it did not make; host interfaces (discovery-rig.ts for the rig).
import test from 'node:test';
import assert from 'node:assert/strict';
import { Datapath, PROGRAMS, TC_HANDLE, TC_PRIORITY } from '../../src/datapath/datapath.js';
import { BpfObject, tcAttach, tcQuery } from '../../src/datapath/libbpf.js';
import { bpfObjectPath } from '../../src/paths.js';
import { InterfaceDiscovery, type DiscoveryPod } from '../../src/datapath/discovery/discovery.js';
import { PodInterfaceReconciler } from '../../src/datapath/discovery/reconciler.js';
import { sh, startServer } from './discovery-layouts.js';
import { PORT, dpod, expectFlow, withRig } from './discovery-rig.js';

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
      // one pass sees the old veth replaced (re-created), unless a pass ran in between, with b's
      // old veth gone and the new one not there yet (then: gone, and attached anew)
      const after = rec.counters();
      assert.ok(after.recreated === 1 || (after.gone === 1 && after.attached === 3), `re-created or gone and attached again: ${JSON.stringify(after)}`);
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
