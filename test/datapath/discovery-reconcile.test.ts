// PodInterfaceReconciler with the real datapath, per CNI style: real BPF programs attached through
// Datapath to the interfaces discovery finds, on real veth layouts inside a network namespace
// playing the node (discovery-rig.ts). Real TCP between pod namespaces goes through the programs
// (their ring-buffer records name the interfaces); a re-created veth is re-attached, a pod that goes
// is detached without leftovers, and interfaces that are not pods are never touched. The
// event-driven, foreign-program and host-interface cases are in discovery-events.test.ts (one file
// each would outgrow the runner's per-file time limit on a busy 2-core machine).
import test from 'node:test';
import assert from 'node:assert/strict';
import { PROGRAMS, TC_HANDLE, TC_PRIORITY } from '../../src/datapath/datapath.js';
import { tcQuery } from '../../src/datapath/libbpf.js';
import * as abi from '../../src/datapath/abi.js';
import { InterfaceDiscovery } from '../../src/datapath/discovery/discovery.js';
import { PodInterfaceReconciler, type Placement } from '../../src/datapath/discovery/reconciler.js';
import { connect, ip, startServer, type LayoutStyle, type PodSpec } from './discovery-layouts.js';
import { PORT, dpod, expectFlow, hook, withRig } from './discovery-rig.js';

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

