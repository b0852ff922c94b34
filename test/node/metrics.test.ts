// The node agent's own metrics, end to end: the real `weir agent --datastore files` process in a
// Calico-style node netns (names "wnm-", subnet 10.97), real BPF. Once ready, /metrics says the
// datastore's one source synced and connected, a policy apply succeeded (with its compile timed)
// and none failed; every series it exports is in the catalog. Then an invalid NetworkPolicy file
// is written: the files datastore refuses its file, and weir_datastore_objects_rejected_total
// {kind="File"} goes from 0 to 1 while the valid policy stays applied. Everything is removed
// in finally.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { requireBpf } from '../helpers/datapath.js';
import { specOfSeries } from '../../src/metrics/catalog.js';
import { parseExposition, select, sum, type Exposition } from '../metrics/exposition.js';
import { NodeRig, allowFrom, eventually, namespace, nodeObject, pod } from './rig.js';

const NS = 'wnm';

async function scrape(rig: NodeRig): Promise<{ body: string; metrics: Exposition }> {
  const r = await rig.get('/metrics');
  assert.equal(r.status, 200, r.body);
  return { body: r.body, metrics: parseExposition(r.body) };
}

test('node agent /metrics: datastore health, policy applies, an invalid policy counted as rejected', { timeout: 300_000 }, async () => {
  requireBpf();
  const rig = new NodeRig('wnm', 'calico', 97);
  const node = rig.node;
  const ip = { a: '10.97.0.11', srv: '10.97.0.20' };
  try {
    await rig.create();
    await rig.layout.addPod({ name: 'a', ifname: 'caliwnma', v4: ip.a });
    await rig.layout.addPod({ name: 'srv', ifname: 'caliwnmsrv', v4: ip.srv });
    rig.write('node.yaml', [nodeObject(node)]);
    rig.write('ns.yaml', [namespace(NS)]);
    rig.write('pods.yaml', [pod(NS, 'a', 'a', ip.a, node), pod(NS, 'srv', 'srv', ip.srv, node)]);
    rig.write('policy.yaml', [allowFrom(NS, 'srv-ingress', 'srv', ['a'])]);
    const startedAt = Date.now() / 1000;

    const agent = await rig.startAgent(['--datastore', 'files', '--manifests', rig.manifests, '--cni', 'calico']);
    await eventually('/readyz 200', () => rig.ready(), 60_000);

    const { body, metrics: ready } = await scrape(rig);
    assert.deepEqual(select(ready, 'weir_datastore_synced').map((s) => [s.labels.source, s.value]), [['files', 1]], 'the directory synced');
    assert.deepEqual(select(ready, 'weir_datastore_connected').map((s) => [s.labels.source, s.value]), [['files', 1]], 'the directory is readable');
    assert.equal(select(ready, 'weir_datastore_reconnects_total', { source: 'files' }).length, 1);
    assert.ok(sum(select(ready, 'weir_policy_applies_total')) >= 1, 'a policy apply succeeded');
    assert.equal(sum(select(ready, 'weir_policy_last_apply_failed')), 0);
    const appliedAt = sum(select(ready, 'weir_policy_last_apply_success_timestamp_seconds'));
    assert.ok(appliedAt >= startedAt - 1 && appliedAt <= Date.now() / 1000 + 1, `last apply at ${appliedAt}, the agent started at ${startedAt}`);
    assert.ok(sum(select(ready, 'weir_policy_compile_duration_seconds_count')) >= 1, 'the node agent\'s compiles are timed');
    assert.equal(sum(select(ready, 'weir_policy_compile_errors_total')), 0);
    // every failure reason and every kind exists at 0, so the first one is an increase
    assert.deepEqual(select(ready, 'weir_policy_apply_failures_total').map((s) => [s.labels.reason, s.value]).sort(),
      [['compile', 0], ['datapath', 0], ['map_capacity', 0], ['other', 0]]);
    assert.deepEqual(select(ready, 'weir_datastore_objects_rejected_total', { kind: 'File' }).map((s) => s.value), [0]);
    assert.equal(sum(select(ready, 'weir_datastore_objects_rejected_total')), 0, 'nothing refused yet');
    // every series is the catalog's, with its labels; Prometheus's linter accepts the scrape
    for (const s of ready.samples) {
      const spec = specOfSeries(s.name);
      assert.ok(spec, `series ${s.name} is not in src/metrics/catalog.ts`);
      assert.deepEqual(Object.keys(s.labels).sort(), [...spec.labels, ...(s.name.endsWith('_bucket') ? ['le'] : [])].sort(), `labels of ${s.name}`);
    }
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    assert.ok(!lint.error, `promtool (Debian package prometheus): ${lint.error?.message}`);
    assert.equal(lint.status, 0, `promtool check metrics: ${lint.stdout}${lint.stderr}`);
    const applies = sum(select(ready, 'weir_policy_applies_total'));

    // an invalid NetworkPolicy in a file of its own: the file is refused and counted, nothing else moves
    rig.writeRaw('bad-policy.yaml', JSON.stringify({ ...allowFrom(NS, 'bad', 'srv', ['a']), spec: { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ ports: [{ port: 'not a port!' }] }] } }) + '\n');
    await eventually('weir_datastore_objects_rejected_total{kind="File"} 1', async () => {
      const { metrics } = await scrape(rig);
      return sum(select(metrics, 'weir_datastore_objects_rejected_total', { kind: 'File' })) === 1;
    }, 30_000);
    const { metrics: after } = await scrape(rig);
    assert.equal(sum(select(after, 'weir_datastore_objects_rejected_total')), 1, 'only the bad file was refused');
    assert.equal(sum(select(after, 'weir_datastore_synced', { source: 'files' })), 1, 'still synced');
    assert.equal(sum(select(after, 'weir_policy_last_apply_failed')), 0, 'a refused object is no failed apply');
    assert.equal(sum(select(after, 'weir_policy_apply_failures_total')), 0);
    assert.ok(sum(select(after, 'weir_policy_applies_total')) >= applies);
    assert.match(agent.log(), /rejected File bad-policy\.yaml .*not a port/);
    assert.equal(await rig.ready(), true, 'the agent stays ready with the last good policy');

    assert.equal(await agent.stop(), 0, `the agent exits cleanly on SIGTERM: ${agent.log()}`);
  } finally {
    await rig.destroy();
  }
});
