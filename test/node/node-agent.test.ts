// The node agent end to end: the real `weir agent --datastore ...` process inside a network
// namespace playing a Calico-style node (pods are namespaces behind cali* veths, names "wna-"),
// real BPF programs, real TCP between pods. With a directory of manifests: nothing applied before a
// good view, policy enforced once ready, a policy edit enforced, pod churn (an address handed to a
// new pod on a new veth) attributed right in the stored flows, an invalid policy refused with the
// last good one kept, enforcement left in place on SIGTERM, `weir node uninstall` removing it. With
// the Kubernetes datastore against the API server stand-in (reached from the node netns through a
// forwarder): not ready and nothing applied before the initial list, then enforcement, then a
// policy update through the API. Everything is removed in finally.
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { connect, ip, sh, startServer } from '../datapath/discovery-layouts.js';
import { requireBpf } from '../helpers/datapath.js';
import { KubeApiServerStandIn, selfSignedCert, writeKubeconfig } from '../helpers/kube-apiserver.js';
import { startNetnsForwarder, startUnixRelay, type Stoppable } from '../helpers/netns-forwarder.js';
import { NodeRig, allowFrom, eventually, namespace, nodeObject, pod } from './rig.js';

const NS = 'wna';

/** The program ids at Weir's tc hooks of an interface of the node. */
async function progIds(node: string, ifname: string): Promise<number[]> {
  const ids: number[] = [];
  for (const d of ['ingress', 'egress']) {
    const rows = JSON.parse(await sh('tc', ['-n', node, '-j', 'filter', 'show', 'dev', ifname, d]) || '[]') as Array<{ options?: { prog?: { id?: number } } }>;
    for (const r of rows) if (r.options?.prog?.id !== undefined) ids.push(r.options.prog.id);
  }
  return ids.sort();
}
const PORT = 8080;

type Row = { ts: number; start: number; connectionsStarted: number; verdict: string; src: { pod: string; ip: string }; dst: { pod: string } };

async function flows(rig: NodeRig, query: string): Promise<Row[]> {
  const r = await rig.get(`/api/v1/flows?${query}&limit=1000`);
  assert.equal(r.status, 200, r.body);
  return (JSON.parse(r.body) as { rows: Row[] }).rows;
}

/** Waits until `from` reaching srv gives `want` (enforcement is asynchronous to the file edit). */
async function expectReach(rig: NodeRig, from: string, to: string, want: boolean, why: string): Promise<void> {
  await eventually(`${from} -> ${to}:${PORT} ${want ? 'allowed' : 'denied'} (${why})`, async () => (await connect(rig.layout.podNetns(from), to, PORT, 1_500)) === want, 30_000, 100);
}

test('node agent with a manifest directory: sync, enforce, edit, pod churn, invalid policy, SIGTERM, uninstall', { timeout: 300_000 }, async () => {
  requireBpf();
  const rig = new NodeRig('wna', 'calico', 91);
  const node = rig.node;
  const ip = { a: '10.91.0.11', b: '10.91.0.12', d: '10.91.0.14', srv: '10.91.0.20' };
  let server: { stop: () => Promise<void> } | undefined;
  try {
    await rig.create();
    await rig.layout.addPod({ name: 'a', ifname: 'caliwnaa', v4: ip.a });
    await rig.layout.addPod({ name: 'b', ifname: 'caliwnab', v4: ip.b });
    await rig.layout.addPod({ name: 'd', ifname: 'caliwnad', v4: ip.d });
    await rig.layout.addPod({ name: 'srv', ifname: 'caliwnasrv', v4: ip.srv });
    server = await startServer(rig.layout.podNetns('srv'), PORT);
    const pods = (extra: object[] = []) => [pod(NS, 'a', 'a', ip.a, node), pod(NS, 'b', 'b', ip.b, node), pod(NS, 'd', 'd', ip.d, node), pod(NS, 'srv', 'srv', ip.srv, node), ...extra];
    // the namespace is missing at first: the view is inconsistent, so nothing may be applied
    rig.write('node.yaml', [nodeObject(node)]);
    rig.write('pods.yaml', pods());
    rig.write('policy.yaml', [allowFrom(NS, 'srv-ingress', 'srv', ['a'])]);

    const agent = await rig.startAgent(['--datastore', 'files', '--manifests', rig.manifests, '--cni', 'calico']);
    const before = await rig.get('/readyz');
    assert.equal(before.status, 503, before.body);
    assert.match(before.body, /inconsistent|not reconciled|no policy/);
    assert.equal(await connect(rig.layout.podNetns('d'), ip.srv, PORT), true, 'before a good view nothing is enforced');
    assert.deepEqual((await rig.layout.tcState('caliwnasrv')).filters, 0, 'nothing attached before a good view');

    rig.write('ns.yaml', [namespace(NS)]);
    await eventually('/readyz 200', () => rig.ready(), 30_000);
    for (const v of ['caliwnaa', 'caliwnab', 'caliwnad', 'caliwnasrv']) assert.equal((await rig.layout.tcState(v)).filters, 2, `${v}: Weir's programs attached`);
    assert.equal(await connect(rig.layout.podNetns('a'), ip.srv, PORT), true, 'a -> srv is allowed');
    assert.equal(await connect(rig.layout.podNetns('d'), ip.srv, PORT), false, 'd -> srv is denied');
    assert.equal(await connect(rig.layout.podNetns('b'), ip.srv, PORT), false, 'b -> srv is denied');

    // editing the policy file changes enforcement
    rig.write('policy.yaml', [allowFrom(NS, 'srv-ingress', 'srv', ['b', 'c'])]);
    await expectReach(rig, 'b', ip.srv, true, 'policy now allows b');
    await expectReach(rig, 'a', ip.srv, false, 'policy no longer allows a');
    assert.equal(await connect(rig.layout.podNetns('d'), ip.srv, PORT), false, 'd -> srv still denied');

    // pod churn: a goes, c comes with a's address on a new veth; c is allowed (app=c), which needs
    // the agent to have found and attached c's interface and compiled it in
    await eventually('a\'s denied attempts stored', async () => (await flows(rig, 'src_pod=wna/a&verdict=denied')).length > 0, 20_000, 500);
    rig.write('pods.yaml', pods().filter((p) => (p as { metadata: { name: string } }).metadata.name !== 'a'));
    await rig.layout.deleteVeth('caliwnaa');
    await rig.layout.deletePod('a');
    await new Promise((r) => setTimeout(r, 1_500)); // a's deletion reaches the agent first, as it would
    const churnAt = Date.now();
    await rig.layout.addPod({ name: 'c', ifname: 'caliwnac2', v4: ip.a });
    rig.write('pods.yaml', pods([pod(NS, 'c', 'c', ip.a, node)]).filter((p) => (p as { metadata: { name: string } }).metadata.name !== 'a'));
    await expectReach(rig, 'c', ip.srv, true, 'c, on a\'s old address, is allowed as c');
    assert.equal((await rig.layout.tcState('caliwnac2')).filters, 2, 'c\'s new veth has Weir\'s programs');
    // allowed flows are stored at the end of their aggregation interval, after c's denied attempts
    await eventually('c\'s allowed flows stored', async () => (await flows(rig, 'src_pod=wna/c')).some((r) => r.verdict === 'allowed'), 30_000, 500);
    const byIp = await flows(rig, `src_ip=${ip.a}`);
    const ofC = await flows(rig, 'src_pod=wna/c');
    // flows a started (its connections, its denied attempts), not conntrack's later reports of a
    // connection of a's still open
    const ofA = (await flows(rig, 'src_pod=wna/a')).filter((r) => r.connectionsStarted > 0 || r.verdict === 'denied');
    // (attempts c made before its veth was attached and compiled in meet srv as an unknown peer:
    // denied, and named c all the same)
    assert.ok(ofC.some((r) => r.verdict === 'allowed') && ofC.every((r) => r.dst.pod === 'srv'), JSON.stringify(ofC));
    // a flow is named after whoever held the address when it started (a connection of a's that
    // conntrack still reports as live afterwards stays a's)
    assert.ok(ofA.length > 0 && ofA.every((r) => r.start < churnAt), `every flow named after a started before the churn (${churnAt}): ${JSON.stringify(ofA.filter((r) => r.start >= churnAt))}`);
    assert.ok(ofC.every((r) => r.start >= churnAt), `every flow named after c started after the churn: ${JSON.stringify(ofC.filter((r) => r.start < churnAt))}`);
    // in between (a gone, c not yet in the datastore) the address is nobody's: world
    assert.ok(byIp.every((r) => ['a', 'c', ''].includes(r.src.pod)), JSON.stringify(byIp));

    // an invalid policy file is refused whole; the last good policy stays enforced
    rig.writeRaw('policy.yaml', JSON.stringify({ ...allowFrom(NS, 'srv-ingress', 'srv', ['d']), spec: { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ ports: [{ port: 'not a port!' }] }] } }) + '\n');
    await eventually('the agent logs the rejection', async () => /rejected .*policy\.yaml|policy\.yaml.*(invalid|not)/i.test(agent.log()), 20_000);
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(await connect(rig.layout.podNetns('d'), ip.srv, PORT), false, 'd -> srv still denied after the invalid file');
    assert.equal(await connect(rig.layout.podNetns('b'), ip.srv, PORT), true, 'b -> srv still allowed after the invalid file');
    assert.equal(await rig.ready(), true, 'still ready: the last good policy is enforced');

    // SIGTERM: the agent stops; its programs and pins stay and keep enforcing
    assert.equal(await agent.stop(), 0, agent.log());
    assert.ok(existsSync(path.join(rig.pinRoot)), 'pins stay');
    assert.equal((await rig.layout.tcState('caliwnasrv')).filters, 2, 'programs stay attached');
    assert.equal(await connect(rig.layout.podNetns('d'), ip.srv, PORT), false, 'd -> srv denied with the agent stopped');
    assert.equal(await connect(rig.layout.podNetns('b'), ip.srv, PORT), true, 'b -> srv allowed with the agent stopped');

    // uninstall: filters off every interface, pins gone, nothing enforced
    const out = await rig.uninstall();
    assert.match(out, /detached from 4 interface/, out);
    assert.equal(existsSync(rig.pinRoot), false);
    for (const v of ['caliwnab', 'caliwnac2', 'caliwnad', 'caliwnasrv']) assert.deepEqual(await rig.layout.tcState(v), { qdiscs: (await rig.layout.tcState(v)).qdiscs.filter((q) => q !== 'clsact'), filters: 0 }, v);
    assert.equal(await connect(rig.layout.podNetns('d'), ip.srv, PORT), true, 'd -> srv reaches after uninstall');
  } finally {
    await server?.stop();
    await rig.destroy();
  }
});

test('node agent with the Kubernetes datastore: nothing before the initial list, then enforcement and updates', { timeout: 300_000 }, async () => {
  requireBpf();
  const rig = new NodeRig('wnk', 'calico', 92);
  const node = rig.node;
  const ip = { a: '10.92.0.11', b: '10.92.0.12', srv: '10.92.0.20' };
  const TOKEN = 'wna-token';
  const NP = 'networkpolicies.networking.k8s.io';
  // HTTPS, as every API server (the client refuses plain HTTP); TLS runs end to end through the
  // forwarder, so the certificate for 127.0.0.1 fits the address the agent dials in its netns
  const tls = selfSignedCert(rig.dir);
  const api = new KubeApiServerStandIn({ token: TOKEN, tls });
  const stops: Stoppable[] = [];
  let server: { stop: () => Promise<void> } | undefined;
  try {
    await rig.create();
    await rig.layout.addPod({ name: 'a', ifname: 'caliwnka', v4: ip.a });
    await rig.layout.addPod({ name: 'b', ifname: 'caliwnkb', v4: ip.b });
    await rig.layout.addPod({ name: 'srv', ifname: 'caliwnksrv', v4: ip.srv });
    server = await startServer(rig.layout.podNetns('srv'), PORT);
    await api.start();
    const sock = path.join(rig.dir, 'apiserver.sock');
    stops.push(await startUnixRelay(sock, '127.0.0.1', api.port));
    stops.push(await startNetnsForwarder(node, 6443, sock));
    const kubeconfig = path.join(rig.dir, 'kubeconfig');
    writeKubeconfig(kubeconfig, 'https://127.0.0.1:6443', TOKEN, tls.certFile);

    api.apply('namespaces', namespace(NS));
    api.apply('nodes', nodeObject(node));
    for (const [name, addr] of Object.entries(ip)) api.apply('pods', pod(NS, name, name, addr, node));
    api.apply(NP, allowFrom(NS, 'srv-ingress', 'srv', ['a']));
    api.forbid('list', NP); // the initial list cannot complete

    const agent = await rig.startAgent(['--datastore', 'kubernetes', '--kubeconfig', kubeconfig, '--cni', 'calico']);
    await new Promise((r) => setTimeout(r, 2_000));
    const before = await rig.get('/readyz');
    assert.equal(before.status, 503, before.body);
    assert.match(before.body, /has not synced/);
    assert.equal(await connect(rig.layout.podNetns('b'), ip.srv, PORT), true, 'nothing enforced before the initial list');
    assert.equal((await rig.layout.tcState('caliwnksrv')).filters, 0, 'nothing attached before the initial list');

    api.allow('list', NP); // the datastore retries with backoff
    await eventually('/readyz 200', () => rig.ready(), 60_000, 500).catch((err: Error) => { throw new Error(`${err.message}\n${agent.log()}`); });
    assert.equal(await connect(rig.layout.podNetns('a'), ip.srv, PORT), true, 'a -> srv allowed');
    assert.equal(await connect(rig.layout.podNetns('b'), ip.srv, PORT), false, 'b -> srv denied');

    api.apply(NP, allowFrom(NS, 'srv-ingress', 'srv', ['b']));
    await expectReach(rig, 'b', ip.srv, true, 'the update through the API allows b');
    await expectReach(rig, 'a', ip.srv, false, 'the update through the API no longer allows a');

    // an invalid policy through the API: refused (with an Event on it), the last good one stays
    api.apply(NP, { ...allowFrom(NS, 'srv-ingress', 'srv', ['a']), spec: { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ ports: [{ port: 'not a port!' }] }] } });
    await eventually('an Event on the refused policy', async () => api.events.some((e) => e.involvedObject?.name === 'srv-ingress' && e.reason === 'InvalidPolicy'), 20_000);
    assert.equal(await connect(rig.layout.podNetns('b'), ip.srv, PORT), true, 'b still allowed (the last good policy)');
    assert.equal(await connect(rig.layout.podNetns('a'), ip.srv, PORT), false, 'a still denied (the last good policy)');
    assert.equal(await agent.stop(), 0, agent.log());
  } finally {
    for (const s of stops.reverse()) await s.stop().catch(() => undefined);
    await api.stop();
    await server?.stop();
    await rig.destroy();
  }
});

test('node agent host protection: --auto-host-endpoints puts the host programs on the node\'s uplink only; failsafes and global policies apply', { timeout: 300_000 }, async () => {
  requireBpf();
  const rig = new NodeRig('wnh', 'calico', 94);
  const node = rig.node;
  const NODE_IP = '10.94.1.1';
  const servers: { stop: () => Promise<void> }[] = [];
  try {
    await rig.create();
    await rig.layout.addPod({ name: 'p', ifname: 'caliwnhp', v4: '10.94.0.11' });
    // the node's uplink to an outside network ("world"): a veth, as a kind node's eth0 is
    const world = await rig.layout.addStrayVeth('uplink0', 'world', '10.94.1.100/24');
    await ip(node, 'addr', 'add', `${NODE_IP}/24`, 'dev', 'uplink0');
    for (const port of [22, 9100, 9200]) servers.push(await startServer(node, port));
    assert.equal(await connect(world, NODE_IP, 9100), true, 'the node serves 9100 before Weir');

    rig.write('objects.yaml', [namespace(NS), { ...nodeObject(node), metadata: { name: node, labels: { role: 'worker' } } }, pod(NS, 'p', 'p', '10.94.0.11', node)]);
    const agent = await rig.startAgent(['--datastore', 'files', '--manifests', rig.manifests, '--cni', 'calico', '--auto-host-endpoints']);
    await eventually('/readyz 200', () => rig.ready(), 30_000);
    assert.equal((await rig.layout.tcState('uplink0')).filters, 2, 'host programs on the uplink');
    assert.equal((await rig.layout.tcState('caliwnhp')).filters, 2, 'pod programs on the pod veth');
    assert.equal((await rig.layout.tcState('lo')).filters, 0, 'nothing on lo');
    assert.match(agent.log(), /attached to .*uplink0/);
    assert.equal(await connect(world, NODE_IP, 9100), false, 'the node is default-deny with a host endpoint and no policy');
    assert.equal(await connect(world, NODE_IP, 22), true, 'failsafe tcp:22 stays open');

    rig.writeRaw('gnp.yaml', [
      'apiVersion: weir.dev/v1alpha1', 'kind: GlobalNetworkPolicy', 'metadata: {name: allow-9100}',
      'spec:', '  selector: {matchLabels: {role: worker}}', '  ingress: [{action: Allow, protocol: TCP, destination: {ports: [9100]}}]', '',
    ].join('\n'));
    await eventually('world -> node:9100 allowed by the global policy', () => connect(world, NODE_IP, 9100, 1_500), 30_000, 100);
    assert.equal(await connect(world, NODE_IP, 9200), false, 'world -> node:9200 still denied');

    // SIGKILL and a restart as in the agent's image (no bpftool): the host and pod attachments are
    // Weir's programs of the earlier process, recognised by name and tag, and adopted, not refused
    const ids = { uplink: await progIds(node, 'uplink0'), pod: await progIds(node, 'caliwnhp') };
    await agent.kill();
    const again = await rig.startAgent(['--datastore', 'files', '--manifests', rig.manifests, '--cni', 'calico', '--auto-host-endpoints'], { withoutBpftool: true });
    await eventually('/readyz 200 after the restart', () => rig.ready(), 30_000);
    assert.match(again.log(), /adopted 2 from an earlier agent/, again.log());
    assert.doesNotMatch(again.log(), /foreign-program/, again.log());
    assert.deepEqual({ uplink: await progIds(node, 'uplink0'), pod: await progIds(node, 'caliwnhp') }, ids, 'the same programs stay attached');
    assert.equal(await connect(world, NODE_IP, 9100), true, 'world -> node:9100 allowed after the restart');
    assert.equal(await connect(world, NODE_IP, 9200), false, 'world -> node:9200 denied after the restart');
    assert.equal(await again.stop(), 0, again.log());
  } finally {
    for (const s of servers) await s.stop();
    await rig.destroy();
  }
});
