// InterfaceDiscovery on real node layouts of each veth CNI style, each inside its own network
// namespace playing the node (names start with "wdsc-", removed in finally): every pod's host-side
// interface is found by the style's evidence (routes, bridge neighbours + FDB, veth peers) and
// nothing else is, whatever decoys sit beside them.
import test from 'node:test';
import assert from 'node:assert/strict';
import { InterfaceDiscovery, type DiscoveryPod, type DiscoveryResult } from '../../src/datapath/discovery/discovery.js';
import { resolveStyle } from '../../src/datapath/discovery/styles.js';
import { connect, ip, NodeLayout, removeLeftovers, type LayoutStyle } from './discovery-layouts.js';
import { requireBpf } from '../helpers/datapath.js';

const PREFIX = 'wdsc';

const pod = (name: string, ...ips: string[]): DiscoveryPod => ({ namespace: 'default', name, ips });

async function withLayout(tag: string, style: LayoutStyle, subnet: number, fn: (l: NodeLayout) => Promise<void>): Promise<void> {
  requireBpf(); // root: namespaces and veths
  const layout = new NodeLayout(`${PREFIX}-${tag}`, style, subnet);
  await removeLeftovers(layout.prefix);
  try {
    await layout.create();
    await fn(layout);
  } finally {
    await layout.destroy();
  }
}

/** found as key -> "ifname via", notFound as key -> reason, for whole-result comparisons */
function summary(r: DiscoveryResult): { found: Record<string, string>; notFound: Record<string, string> } {
  return {
    found: Object.fromEntries([...r.found].map(([k, f]) => [k, `${f.ifname} ${f.via}`])),
    notFound: Object.fromEntries([...r.notFound].map(([k, n]) => [k, n.reason])),
  };
}

async function checkIfindexes(l: NodeLayout, r: DiscoveryResult): Promise<void> {
  for (const f of r.found.values()) assert.equal(f.ifindex, await l.ifindex(f.ifname), `${f.ifname}: the ifindex in the node netns`);
}

test('calico: cali* veths with /32 and /128 routes; decoys and bad evidence are refused with reasons', async () => {
  await withLayout('cal', 'calico', 61, async (l) => {
    await l.addPod({ name: 'a', ifname: 'cali1a2b3c4d5e6', v4: '10.61.0.10', v6: 'fd00:61::10' });
    await l.addPod({ name: 'b', ifname: 'cali7f8e9d0c1b2', v4: '10.61.0.11', v6: 'fd00:61::11' });
    // decoys: a cali* veth without a route, a stray veth whose peer holds a non-pod address, a
    // bridge, a bridge named cali* routed to pod d's address, pod e's address routed to a veth*
    await l.addStrayVeth('calidecoy00', 'decoy0');
    await l.addStrayVeth('vethstray1', 'stray1', '10.61.0.99/32');
    await ip(l.node, 'link', 'add', 'br-decoy', 'type', 'bridge');
    await ip(l.node, 'link', 'add', 'calibr0', 'type', 'bridge');
    await ip(l.node, 'link', 'set', 'calibr0', 'up');
    await ip(l.node, 'route', 'add', '10.61.0.13/32', 'dev', 'calibr0');
    await l.addStrayVeth('vethstray2', 'stray2');
    await ip(l.node, 'route', 'add', '10.61.0.14/32', 'dev', 'vethstray2');
    // pod i: its IPv4 and IPv6 addresses routed to two different cali* veths
    await l.addStrayVeth('caliconf1', 'conf1');
    await l.addStrayVeth('caliconf2', 'conf2');
    await ip(l.node, 'route', 'add', '10.61.0.18/32', 'dev', 'caliconf1');
    await ip(l.node, '-6', 'route', 'add', 'fd00:61::18/128', 'dev', 'caliconf2');

    const d = new InterfaceDiscovery({ netns: l.node, style: 'calico' });
    const r = await d.discover([
      pod('a', '10.61.0.10', 'fd00:61::10'), pod('b', '10.61.0.11', 'FD00:61:0::11'), pod('d', '10.61.0.13'),
      pod('e', '10.61.0.14'), pod('f', '10.61.0.15'), pod('g'), pod('i', '10.61.0.18', 'fd00:61::18'),
    ]);
    assert.deepEqual(summary(r), {
      found: { 'default/a': 'cali1a2b3c4d5e6 route', 'default/b': 'cali7f8e9d0c1b2 route' },
      notFound: { 'default/d': 'not-veth', 'default/e': 'name-mismatch', 'default/f': 'no-evidence', 'default/g': 'no-ips', 'default/i': 'conflict' },
    });
    await checkIfindexes(l, r);
    assert.match(r.notFound.get('default/d')!.detail, /calibr0 \(bridge/);
    assert.match(r.notFound.get('default/i')!.detail, /caliconf1.*caliconf2/);

    // IPv6 alone: a pod known only by its /128
    const v6 = await d.discover([pod('a6', 'fd00:61::10')]);
    assert.deepEqual(summary(v6).found, { 'default/a6': 'cali1a2b3c4d5e6 route' });

    // one interface, two pods: neither gets it
    const shared = await d.discover([pod('a', '10.61.0.10'), pod('twin', 'fd00:61::10')]);
    assert.deepEqual(summary(shared), { found: {}, notFound: { 'default/a': 'shared', 'default/twin': 'shared' } });

    // the same node under another style's names finds nothing, and says why
    const wrong = await new InterfaceDiscovery({ netns: l.node, style: 'cilium' }).discover([pod('a', '10.61.0.10')]);
    assert.equal(wrong.notFound.get('default/a')?.reason, 'name-mismatch');
  });
});

test('cilium: lxc* with endpoint routes, and without them through the veth peer; lxc_health is never a pod', async () => {
  await withLayout('cil', 'cilium', 62, async (l) => {
    await l.addPod({ name: 'a', ifname: 'lxc9a8b7c6d5e4f', v4: '10.62.0.10', v6: 'fd00:62::10' });
    await l.addPod({ name: 'b', ifname: 'lxc1b2c3d4e5f60', v4: '10.62.0.11', v6: 'fd00:62::11', routes: false });
    await l.addStrayVeth('lxc_health', 'health', '10.62.0.250/32');
    await ip(l.node, 'link', 'add', 'cilium_host', 'type', 'veth', 'peer', 'name', 'cilium_net');
    await ip(l.node, 'addr', 'add', '10.62.0.1/32', 'dev', 'cilium_host');
    await ip(l.node, 'link', 'set', 'cilium_net', 'up');
    await ip(l.node, 'link', 'set', 'cilium_host', 'up');
    await ip(l.node, 'route', 'add', '10.62.0.0/24', 'dev', 'cilium_host', 'src', '10.62.0.1');
    await l.addStrayVeth('lxcdecoy0000', 'decoy0', '10.62.0.77/32');

    const d = new InterfaceDiscovery({ netns: l.node, style: 'cilium' });
    const r = await d.discover([pod('a', '10.62.0.10', 'fd00:62::10'), pod('b', '10.62.0.11', 'fd00:62::11'), pod('health', '10.62.0.250')]);
    assert.deepEqual(summary(r), {
      found: { 'default/a': 'lxc9a8b7c6d5e4f route', 'default/b': 'lxc1b2c3d4e5f60 peer' },
      notFound: { 'default/health': 'no-evidence' },
    });
    await checkIfindexes(l, r);

    // a pod's netns named by the caller: only that netns is read, and a wrong one finds nothing
    const hinted = await d.discover([{ ...pod('b', '10.62.0.11'), netns: l.podNetns('b') }]);
    assert.deepEqual(summary(hinted).found, { 'default/b': 'lxc1b2c3d4e5f60 peer' });
    const wrongNs = await d.discover([{ ...pod('b', '10.62.0.11'), netns: l.podNetns('decoy0') }]);
    assert.equal(wrongNs.notFound.get('default/b')?.reason, 'no-evidence');
  });
});

test('flannel/bridge: veth* ports of cni0 found through neighbour + FDB once traffic flowed, else through the peer', async () => {
  await withLayout('fla', 'flannel', 63, async (l) => {
    const a = await l.addPod({ name: 'a', ifname: 'veth1a2b3c4d', v4: '10.63.0.10' });
    const b = await l.addPod({ name: 'b', ifname: 'veth5e6f7a8b', v4: '10.63.0.11' });
    await l.addPod({ name: 'c', ifname: 'veth9c0d1e2f', v4: '10.63.0.12' });
    // a port of cni0 that is nobody's pod, which also talks to the node (a neighbour entry of its own)
    const stray = await l.addStrayVeth('vethdecoy1', 'decoy1', '10.63.0.99/24');
    await ip(l.node, 'link', 'set', 'vethdecoy1', 'master', 'cni0');
    await ip(l.node, 'link', 'add', 'br-decoy', 'type', 'bridge');

    const d = new InterfaceDiscovery({ netns: l.node, style: 'flannel' });
    const pods = [pod('a', '10.63.0.10'), pod('b', '10.63.0.11'), pod('c', '10.63.0.12')];
    // before any traffic: the bridge knows no pod; the peers do
    const before = await d.discover(pods);
    assert.deepEqual(summary(before).found, { 'default/a': 'veth1a2b3c4d peer', 'default/b': 'veth5e6f7a8b peer', 'default/c': 'veth9c0d1e2f peer' });

    // one packet each towards the gateway: the node learns the neighbour, the bridge the MAC
    for (const ns of [a.netns, b.netns, stray]) await connect(ns, l.gateway4, 9, 1_000);
    const neigh = JSON.parse(await ip(l.node, '-j', 'neigh', 'show', 'dev', 'cni0')) as Array<{ dst: string }>;
    assert.ok(neigh.some((n) => n.dst === '10.63.0.10') && neigh.some((n) => n.dst === '10.63.0.99'), 'the traffic populated the neighbour table');
    const after = await d.discover([...pods, pod('x', '10.63.0.200')]);
    assert.deepEqual(summary(after), {
      found: { 'default/a': 'veth1a2b3c4d neighbour', 'default/b': 'veth5e6f7a8b neighbour', 'default/c': 'veth9c0d1e2f peer' },
      notFound: { 'default/x': 'no-evidence' },
    });
    await checkIfindexes(l, after);

    // neighbour evidence alone (no peer fallback), as a custom style on the same bridge
    const strict = new InterfaceDiscovery({ netns: l.node, style: { name: 'bridge-only', prefixes: ['veth'], bridges: ['cni0'], evidence: ['neighbour'] } });
    assert.deepEqual(summary(await strict.discover(pods)), {
      found: { 'default/a': 'veth1a2b3c4d neighbour', 'default/b': 'veth5e6f7a8b neighbour' },
      notFound: { 'default/c': 'no-evidence' },
    });
  });
});

test('kindnet (ptp): veth* with the gateway address and a host-scoped /32 route per pod', async () => {
  await withLayout('kin', 'kindnet', 64, async (l) => {
    await l.addPod({ name: 'a', ifname: 'veth0a1b2c3d', v4: '10.64.0.10' });
    await l.addPod({ name: 'b', ifname: 'veth4e5f6a7b', v4: '10.64.0.11' });
    // a veth with the gateway address too, but no pod route, and a peer address that is no pod's
    await l.addStrayVeth('vethdecoy2', 'decoy2', '10.64.0.98/24');
    await ip(l.node, 'addr', 'add', `${l.gateway4}/32`, 'dev', 'vethdecoy2');
    const routes = await ip(l.node, 'route', 'show', '10.64.0.10');
    assert.match(routes, /dev veth0a1b2c3d scope host/);

    const r = await new InterfaceDiscovery({ netns: l.node, style: 'kindnet' }).discover([pod('a', '10.64.0.10'), pod('b', '10.64.0.11')]);
    assert.deepEqual(summary(r), { found: { 'default/a': 'veth0a1b2c3d route', 'default/b': 'veth4e5f6a7b route' }, notFound: {} });
    await checkIfindexes(l, r);
  });
});

test('auto: one node with calico, cilium and ptp-named pods finds each by its own evidence', async () => {
  await withLayout('aut', 'calico', 65, async (l) => {
    await l.addPod({ name: 'a', ifname: 'cali00aa11bb22c', v4: '10.65.0.10', v6: 'fd00:65::10' });
    await l.addPod({ name: 'b', ifname: 'lxc00aa11bb22cc', v4: '10.65.0.11', routes: false });
    await l.addPod({ name: 'c', ifname: 'veth00aa11bb', v4: '10.65.0.12' });
    await l.addStrayVeth('wdscdecoy', 'decoy', '10.65.0.13/32'); // a veth no style names
    const r = await new InterfaceDiscovery({ netns: l.node, style: 'auto' }).discover([
      pod('a', '10.65.0.10', 'fd00:65::10'), pod('b', '10.65.0.11'), pod('c', '10.65.0.12'), pod('d', '10.65.0.13'),
    ]);
    assert.deepEqual(summary(r), {
      found: { 'default/a': 'cali00aa11bb22c route', 'default/b': 'lxc00aa11bb22cc peer', 'default/c': 'veth00aa11bb route' },
      notFound: { 'default/d': 'no-evidence' },
    });
  });
});

test('bad options and pods are refused with the field named', async () => {
  assert.throws(() => new InterfaceDiscovery({ style: 'weave' as 'auto' }), /style: "weave" is not a CNI style/);
  assert.throws(() => new InterfaceDiscovery({ style: { prefixes: [] } }), /style\.prefixes: expected a non-empty array/);
  assert.throws(() => new InterfaceDiscovery({ style: { prefixes: ['cali', 'a/b'] } }), /style\.prefixes\[1\]: "a\/b" is not an interface name/);
  assert.throws(() => new InterfaceDiscovery({ style: { prefixes: ['w'], evidence: ['arp' as 'route'] } }), /style\.evidence\[0\]: "arp"/);
  assert.throws(() => new InterfaceDiscovery({ style: 'calico', netns: '../etc' }), /netns: "\.\.\/etc" is not a network namespace name/);
  assert.equal(resolveStyle({ prefixes: ['w'] }).evidence.join(','), 'route,peer');
  const d = new InterfaceDiscovery({ style: 'calico', netns: 'wdsc-absent' });
  await Promise.all([
    assert.rejects(d.discover([pod('a', '10.0.0.300')]), /pods\[0\]\.ips\[0\]: "10\.0\.0\.300" is not an IPv4 or IPv6 address/),
    assert.rejects(d.discover([{ namespace: '', name: 'x', ips: [] }]), /pods\[0\]\.namespace/),
    assert.rejects(d.discover([pod('a'), pod('a')]), /pods: default\/a is listed twice/),
    assert.rejects(d.discover([{ ...pod('a'), netns: 'x y' }]), /pods\[0\]\.netns/),
    // a node netns that does not exist: the command and its complaint
    assert.rejects(d.discover([pod('a', '10.0.0.1')]), /ip -n wdsc-absent .*wdsc-absent/),
  ]);
});
