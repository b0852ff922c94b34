// Id lifetimes on the node agent's compile path (compileNode, then releaseIds after the apply, as
// node-agent.ts applyPolicy does): under pod churn the allocator and ids.json stay as large as the
// live cluster plus what left within the grace period, ids of pods still present never change,
// and identity numbers stop below FIRST_CIDR_CLASS with a clear, counted error.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClusterState } from '../../src/datastore/cluster.js';
import type { KubeObject, Pod } from '../../src/datastore/objects.js';
import { compileNode, ID_GRACE_MS, releaseIds, type NodePolicySettings } from '../../src/node/compile.js';
import { IDS_FILE, loadIds, saveIds } from '../../src/node/ids-file.js';
import { IdAllocator, IdentitySpaceExhausted } from '../../src/policy/ids.js';
import { failsafesFrom } from '../../src/policy/failsafe.js';
import { FIRST_CIDR_CLASS, Identity } from '../../src/datapath/abi.js';
import type { Placement } from '../../src/datapath/discovery/reconciler.js';

const NODE = 'churn-node';
const SETTINGS: NodePolicySettings = { node: NODE, autoHostEndpoints: false, failsafes: failsafesFrom({}) };
const NODE_IPS = ['10.77.255.1'];

/** Pod number n: half on this node; its labels carry a rollout hash that changes every 50 pods,
 * so label sets (identities) churn too, not only endpoints. */
function podOf(n: number): Pod {
  return {
    kind: 'Pod', namespace: `ns${n % 3}`, name: `p${n}`, labels: { app: `a${n % 7}`, 'pod-template-hash': `h${Math.floor(n / 50)}` },
    ports: [], ips: [`10.77.${(n >> 8) & 255}.${n & 255}`], nodeName: n % 2 === 0 ? NODE : 'elsewhere',
  };
}

const namespaces: KubeObject[] = [0, 1, 2].map((i) => ({ kind: 'Namespace', name: `ns${i}`, labels: {} }));
const policy: KubeObject = {
  kind: 'NetworkPolicy', namespace: 'ns0', name: 'from-a1', annotations: {},
  podSelector: { matchLabels: {}, matchExpressions: [] }, policyTypes: ['Ingress'],
  ingress: [{ peers: [{ podSelector: { matchLabels: { app: 'a1' }, matchExpressions: [] } }] }], egress: [],
};

function placements(cluster: ClusterState): Map<string, Placement> {
  const out = new Map<string, Placement>();
  let i = 100;
  for (const p of cluster.pods.values()) {
    if (p.nodeName === NODE) out.set(`${p.namespace}/${p.name}`, { ifindex: i++, ifname: `veth${i}`, via: 'route' });
  }
  return out;
}

test('10k pods added and removed: ids and ids.json stay bounded, ids of present pods never change', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-ids-churn-'));
  try {
    const cluster = new ClusterState([...namespaces, policy]);
    let ids = loadIds(dir);
    const LIVE = 200; // pods alive at once
    const STEP = 100; // pods created and deleted per step
    const STEP_MS = 60_000; // one step a minute: the grace (5 min) covers 5 steps
    const TOTAL = 10_000;
    const graceSteps = Math.ceil(ID_GRACE_MS / STEP_MS);
    let now = Date.parse('2026-11-26T00:00:00Z');
    let created = 0;
    const live: number[] = [];
    const seen = new Map<string, { endpoint: number; identity: number }>(); // pod -> ids while it lives
    let maxFile = 0;
    let maxEndpoints = 0;
    let maxIdentities = 0;
    let releasedTotal = 0;
    let fileAfterWarmup = 0;
    for (let step = 0; created < TOTAL; step++) {
      const add: Pod[] = [];
      while (live.length + add.length < LIVE + (step === 0 ? 0 : STEP) && created < TOTAL) add.push(podOf(created++));
      const gone = step === 0 ? [] : live.splice(0, Math.min(STEP, live.length));
      cluster.apply(add);
      if (gone.length > 0) cluster.delete(gone.map(podOf));
      live.push(...add.map((p) => Number(p.name.slice(1))));

      const out = compileNode(cluster, placements(cluster), new Map(), NODE_IPS, ids, SETTINGS);
      const r = releaseIds(ids, now);
      releasedTotal += r.endpoints + r.identities;
      saveIds(dir, ids);
      // a restart now and then: the state (grace clocks included) comes back from ids.json
      if (step % 17 === 16) ids = loadIds(dir);

      // every live pod is in the endpoint map; its ids are the ones it has had all along
      for (const n of live) {
        const p = podOf(n);
        const e = out.endpoints.get(p.ips[0]!);
        assert.ok(e, `step ${step}: ${p.name} has an endpoint`);
        assert.equal(e.key, `${p.namespace}/${p.name}`);
        assert.equal((e.flags & 1) !== 0, p.nodeName === NODE, `${p.name}: LOCAL iff on this node`);
        const had = seen.get(e.key);
        if (had) assert.deepEqual({ endpoint: e.id, identity: e.identity }, had, `step ${step}: ${e.key} kept its ids`);
        else seen.set(e.key, { endpoint: e.id, identity: e.identity });
        assert.ok(e.identity >= Identity.FIRST_DYNAMIC && e.identity < FIRST_CIDR_CLASS);
      }
      for (const n of gone) seen.delete(`${podOf(n).namespace}/${podOf(n).name}`);

      const sizes = ids.sizes();
      maxEndpoints = Math.max(maxEndpoints, sizes.endpoints);
      maxIdentities = Math.max(maxIdentities, sizes.identities);
      const bytes = statSync(path.join(dir, IDS_FILE)).size;
      maxFile = Math.max(maxFile, bytes);
      if (step === graceSteps + 2) fileAfterWarmup = bytes;
      now += STEP_MS;
    }
    // live pods plus those gone within the grace (graceSteps steps of STEP pods, one more for the
    // step that reaches the grace exactly)
    const bound = LIVE + STEP * (graceSteps + 1);
    assert.ok(maxEndpoints <= bound, `endpoint ids held peaked at ${maxEndpoints} > ${bound}`);
    // label sets: live hashes (LIVE/50 + STEP/50 + 1 per namespace x app) plus those in their grace
    const labelBound = 3 * 7 * Math.ceil(bound / 50 + 1);
    assert.ok(maxIdentities <= labelBound, `identities held peaked at ${maxIdentities} > ${labelBound}`);
    assert.ok(releasedTotal >= TOTAL - bound, `released ${releasedTotal} ids`);
    // ids.json stopped growing after the grace filled up
    assert.ok(maxFile <= fileAfterWarmup * 1.5, `ids.json peaked at ${maxFile} bytes, ${fileAfterWarmup} after warm-up`);
    const state = JSON.parse(readFileSync(path.join(dir, IDS_FILE), 'utf8')) as { endpoints: object; unused: { endpoints: object } };
    assert.ok(Object.keys(state.endpoints).length <= bound);
    assert.ok(Object.keys(state.unused.endpoints).length <= STEP * (graceSteps + 1));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an id used again within the grace keeps its number; one gone past the grace is forgotten', () => {
  const ids = new IdAllocator();
  ids.beginUse();
  const a = ids.endpoint('ns/a');
  const ia = ids.identity('L1');
  ids.releaseUnused(0, 1000);
  ids.beginUse(); // a is gone at 10
  assert.deepEqual(ids.releaseUnused(10, 1000), { identities: 0, endpoints: 0 });
  ids.beginUse(); // back at 500: same numbers, the grace clock starts over
  assert.equal(ids.endpoint('ns/a'), a);
  assert.equal(ids.identity('L1'), ia);
  ids.releaseUnused(500, 1000);
  ids.beginUse(); // gone again at 600 ...
  ids.releaseUnused(600, 1000);
  ids.beginUse(); // ... still held at 1599
  assert.deepEqual(ids.releaseUnused(1599, 1000), { identities: 0, endpoints: 0 });
  ids.beginUse(); // ... forgotten at 1600
  assert.deepEqual(ids.releaseUnused(1600, 1000), { identities: 1, endpoints: 1 });
  assert.deepEqual(ids.sizes(), { identities: 0, endpoints: 0 });
  // and it comes back as something new: numbers are never reused
  ids.beginUse();
  assert.notEqual(ids.endpoint('ns/a'), a);
  assert.notEqual(ids.identity('L1'), ia);
  assert.throws(() => ids.releaseUnused(Number.NaN, 1), /releaseUnused: nowMs NaN is not a time/);
  assert.throws(() => { ids.beginUse(); ids.releaseUnused(0, -1); }, /graceMs -1/);
  assert.throws(() => new IdAllocator().releaseUnused(0, 1), /beginUse\(\) was not called/);
});

test('identity numbers stop below FIRST_CIDR_CLASS: a clear, counted error, and the compile fails', () => {
  const fresh = new IdAllocator().toJSON();
  const ids = new IdAllocator({ ...fresh, next: { ...fresh.next, identity: FIRST_CIDR_CLASS - 1 } });
  assert.equal(ids.identity('last'), FIRST_CIDR_CLASS - 1);
  assert.throws(() => ids.identity('one-too-many'), (err: unknown) => err instanceof IdentitySpaceExhausted
    && /identity: no number left below 16777216 \(the CIDR class ids\) for label set one-too-many/.test(err.message));
  assert.equal(ids.identitiesRefused, 1);
  assert.equal(ids.identity('last'), FIRST_CIDR_CLASS - 1, 'existing identities still resolve');
  // through the node's compile path
  const cluster = new ClusterState([...namespaces, podOf(0), podOf(1)]);
  assert.throws(() => compileNode(cluster, placements(cluster), new Map(), NODE_IPS, ids, SETTINGS), IdentitySpaceExhausted);
  assert.equal(ids.identitiesRefused, 2);
});

test('ids.json: a damaged "unused" record is refused with the file named', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-ids-unused-'));
  try {
    const ids = new IdAllocator();
    saveIds(dir, ids);
    const file = path.join(dir, IDS_FILE);
    const state = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    state.unused = 'yesterday';
    writeFileSync(file, JSON.stringify(state));
    assert.throws(() => loadIds(dir), new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: unused: not the agent's id state`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
