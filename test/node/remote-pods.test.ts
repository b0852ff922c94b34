// The node agent and pods of other nodes: the real `weir agent --datastore files` in a Calico-style
// node netns ("wrm-"). Pods r1 and r2 are namespaces behind cali* veths of this node's layout, but
// the manifests place them on another node (spec.nodeName "elsewhere"): the agent must not attach
// to their veths (they are not its pods), and must still know them as peers, so a podSelector rule
// that selects r1 admits it at srv's ingress and one that does not select r2 denies it. Without
// remote endpoints r1 would be the world and denied too. Everything is removed in finally.
import test from 'node:test';
import assert from 'node:assert/strict';
import { connect, startServer } from '../datapath/discovery-layouts.js';
import { requireBpf } from '../helpers/datapath.js';
import { NodeRig, allowFrom, eventually, namespace, nodeObject, pod } from './rig.js';

const NS = 'wrm';
const PORT = 8080;

test('node agent: a pod of another node is a peer a podSelector selects; its veth is not attached', { timeout: 300_000 }, async () => {
  requireBpf();
  const rig = new NodeRig('wrm', 'calico', 98);
  const node = rig.node;
  const ip = { srv: '10.98.0.20', local: '10.98.0.11', r1: '10.98.0.31', r2: '10.98.0.32' };
  let server: { stop: () => Promise<void> } | undefined;
  try {
    await rig.create();
    await rig.layout.addPod({ name: 'srv', ifname: 'caliwrmsrv', v4: ip.srv });
    await rig.layout.addPod({ name: 'l', ifname: 'caliwrml', v4: ip.local });
    await rig.layout.addPod({ name: 'r1', ifname: 'caliwrmr1', v4: ip.r1 });
    await rig.layout.addPod({ name: 'r2', ifname: 'caliwrmr2', v4: ip.r2 });
    server = await startServer(rig.layout.podNetns('srv'), PORT);
    rig.write('cluster.yaml', [
      namespace(NS), nodeObject(node), nodeObject('elsewhere'),
      pod(NS, 'srv', 'srv', ip.srv, node), pod(NS, 'l', 'other', ip.local, node),
      pod(NS, 'r1', 'client', ip.r1, 'elsewhere'), pod(NS, 'r2', 'stranger', ip.r2, 'elsewhere'),
      allowFrom(NS, 'srv-ingress', 'srv', ['client']),
    ]);
    const agent = await rig.startAgent(['--datastore', 'files', '--manifests', rig.manifests, '--cni', 'calico']);
    await eventually('/readyz 200', () => rig.ready(), 30_000);
    // only this node's pods have Weir's programs; the other node's pods' veths are left alone
    assert.equal((await rig.layout.tcState('caliwrmsrv')).filters, 2);
    assert.equal((await rig.layout.tcState('caliwrml')).filters, 2);
    assert.equal((await rig.layout.tcState('caliwrmr1')).filters, 0, 'r1 (another node\'s pod) is not attached');
    assert.equal((await rig.layout.tcState('caliwrmr2')).filters, 0, 'r2 (another node\'s pod) is not attached');

    assert.equal(await connect(rig.layout.podNetns('r1'), ip.srv, PORT), true, 'r1 (app=client, remote) reaches srv: the rule selects it');
    assert.equal(await connect(rig.layout.podNetns('r2'), ip.srv, PORT), false, 'r2 (app=stranger, remote) is denied');
    assert.equal(await connect(rig.layout.podNetns('l'), ip.srv, PORT), false, 'l (app=other, local) is denied');

    // relabelled (the datastore changes r2's labels): now selected
    rig.write('cluster.yaml', [
      namespace(NS), nodeObject(node), nodeObject('elsewhere'),
      pod(NS, 'srv', 'srv', ip.srv, node), pod(NS, 'l', 'other', ip.local, node),
      pod(NS, 'r1', 'client', ip.r1, 'elsewhere'), pod(NS, 'r2', 'client', ip.r2, 'elsewhere'),
      allowFrom(NS, 'srv-ingress', 'srv', ['client']),
    ]);
    await eventually('r2 allowed once its labels match', async () => connect(rig.layout.podNetns('r2'), ip.srv, PORT, 1_500), 30_000, 200);
    assert.equal((await rig.layout.tcState('caliwrmr2')).filters, 0, 'still not attached');
    assert.match(agent.log(), /applied policy/);
  } finally {
    await server?.stop();
    await rig.destroy();
  }
});
