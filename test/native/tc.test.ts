// tc (clsact) attach/query/detach/destroy on a veth pair inside a network namespace created for
// the test, through the netns option (the calling thread enters the namespace and comes back).
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { BpfError, BpfObject, ifindexOf, tcAttach, tcDestroyHook, tcDetach, tcQuery } from '../../src/datapath/libbpf.js';
import { bpfObject, ipIn, withNetns } from './helpers.js';

const ownNetns = () => fs.readlinkSync('/proc/thread-self/ns/net');

test('tc attach, query, replace, detach and destroy inside a netns', async () => {
  const obj = BpfObject.open(bpfObject('progs'));
  try {
    await obj.load();
    const a = obj.program('ret_const');
    const b = obj.program('count_len');
    const before = ownNetns();
    await withNetns((name, ns) => {
      ipIn(name, 'link', 'add', 'wtn0', 'type', 'veth', 'peer', 'name', 'wtn1');
      ipIn(name, 'link', 'set', 'wtn0', 'up');

      const links = JSON.parse(ipIn(name, '-j', 'link', 'show', 'wtn0')) as Array<{ ifindex: number }>;
      assert.equal(ifindexOf('wtn0', ns), links[0]!.ifindex);
      assert.equal(ifindexOf('wtn0', name), links[0]!.ifindex, 'a bare name means /run/netns/<name>');
      assert.throws(() => ifindexOf('wtn-nope', ns), (e: unknown) => e instanceof BpfError && e.code === 'ENODEV');
      assert.equal(ownNetns(), before, 'back in our own namespace');

      assert.equal(tcQuery({ netns: ns, ifname: 'wtn0', direction: 'ingress' }), undefined, 'no clsact yet');
      assert.equal(tcDetach({ netns: ns, ifname: 'wtn0', direction: 'ingress' }), false);

      tcAttach({ netns: ns, ifname: 'wtn0', direction: 'ingress', program: a });
      assert.equal(ownNetns(), before);
      assert.deepEqual(tcQuery({ netns: ns, ifname: 'wtn0', direction: 'ingress' }), { progId: a.id });
      assert.equal(tcQuery({ netns: ns, ifname: 'wtn0', direction: 'egress' }), undefined);
      assert.match(execFileSync('tc', ['-n', name, 'filter', 'show', 'dev', 'wtn0', 'ingress'], { encoding: 'utf8' }),
        /ret_const.*direct-action|direct-action.*ret_const|ret_const/);

      // attaching again at the same priority/handle replaces
      tcAttach({ netns: ns, ifname: 'wtn0', direction: 'ingress', program: b });
      assert.deepEqual(tcQuery({ netns: ns, ifname: 'wtn0', direction: 'ingress' }), { progId: b.id });
      // by ifindex and by fd, at another priority, on egress
      const ifindex = ifindexOf('wtn0', ns);
      tcAttach({ netns: ns, ifindex, direction: 'egress', program: a.fd, priority: 5, handle: 3 });
      assert.deepEqual(tcQuery({ netns: ns, ifindex, direction: 'egress', priority: 5, handle: 3 }), { progId: a.id });
      assert.equal(tcQuery({ netns: ns, ifindex, direction: 'egress' }), undefined, 'priority 1 is empty');

      assert.equal(tcDetach({ netns: ns, ifname: 'wtn0', direction: 'ingress' }), true);
      assert.equal(tcDetach({ netns: ns, ifname: 'wtn0', direction: 'ingress' }), false);
      assert.equal(tcQuery({ netns: ns, ifname: 'wtn0', direction: 'ingress' }), undefined);
      assert.deepEqual(tcQuery({ netns: ns, ifindex, direction: 'egress', priority: 5, handle: 3 }), { progId: a.id });

      tcDestroyHook({ netns: ns, ifname: 'wtn0' });
      assert.equal(tcQuery({ netns: ns, ifindex, direction: 'egress', priority: 5, handle: 3 }), undefined);
      assert.doesNotMatch(ipIn(name, 'link', 'show', 'wtn0'), /clsact/);
      assert.doesNotMatch(execFileSync('tc', ['-n', name, 'qdisc', 'show', 'dev', 'wtn0'], { encoding: 'utf8' }), /clsact/);
      tcDestroyHook({ netns: ns, ifname: 'wtn0' }); // absent: fine

      // errors name the device and namespace, and still come back to our namespace
      assert.throws(() => tcAttach({ netns: ns, ifname: 'wtn-nope', direction: 'ingress', program: a }),
        (e: unknown) => e instanceof BpfError && e.code === 'ENODEV' && /wtn-nope/.test(e.message) && e.message.includes(ns));
      assert.throws(() => tcAttach({ netns: '/run/netns/wtn-absent', ifname: 'lo', direction: 'ingress', program: a }),
        (e: unknown) => e instanceof BpfError && e.code === 'ENOENT');
      assert.equal(ownNetns(), before);
      // the host namespace never saw the veth
      assert.throws(() => ifindexOf('wtn0'), (e: unknown) => e instanceof BpfError && e.code === 'ENODEV');
    });
  } finally {
    obj.close();
  }
});

test('tc argument errors are TypeErrors', () => {
  bpfObject('progs');
  assert.throws(() => tcQuery({ direction: 'ingress' }), TypeError);
  assert.throws(() => tcQuery({ ifname: 'lo', direction: 'sideways' as 'ingress' }), TypeError);
  assert.throws(() => tcAttach({ ifname: 'lo', direction: 'ingress', program: 3, priority: 70000 }), TypeError);
});
