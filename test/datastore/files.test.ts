// The files datastore on a real temporary directory: fs.watch, atomic replaces, bad edits, removed
// files, the periodic rescan, and the view compiled by the real policy compiler.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, symlinkSync, mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FileDatastore, FILES_SOURCE } from '../../src/datastore/files.js';
import { ClusterView } from '../../src/datastore/view.js';
import type { DatastoreBatch } from '../../src/datastore/datastore.js';
import type { ClusterState } from '../../src/datastore/cluster.js';
import { compilePolicy, EP_ISOLATED_INGRESS, type CompiledDatapath } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';

const PODS = `
apiVersion: v1
kind: Namespace
metadata: {name: api}
---
apiVersion: v1
kind: Namespace
metadata: {name: web}
---
apiVersion: v1
kind: Pod
metadata: {name: orders, namespace: api, labels: {app: orders}}
spec: {containers: [{name: c}]}
status: {podIP: 10.244.2.11}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: web, labels: {app: frontend}}
spec: {containers: [{name: c}]}
status: {podIP: 10.244.2.10}
`;

const policy = (port: number | string): string => `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-frontend, namespace: api}
spec:
  podSelector: {matchLabels: {app: orders}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: web}}}]
    ports: [{protocol: TCP, port: ${typeof port === 'number' ? port : JSON.stringify(port)}}]
`;

async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function compile(state: ClusterState): CompiledDatapath {
  const placed = [...state.pods.values()].map((p, i) => ({ pod: p, ips: p.ips, ifindex: 200 + i }));
  return compilePolicy(state, placed, new IdAllocator());
}

function allowedPorts(out: CompiledDatapath, from: string, to: string): number[] {
  const src = out.endpoints.get(from)!.identity;
  const dst = out.endpoints.get(to)!.identity;
  return [...out.policy.values()].filter((e) => e.identity === dst && e.peer === src && e.direction === 0).map((e) => e.port).sort();
}

async function setup(t: TestContext, files: Record<string, string>, opts: { watch?: boolean; rescanMs?: number } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'weir-files-ds-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  const logs: string[] = [];
  const ds = new FileDatastore({ dir, debounceMs: 20, rescanMs: opts.rescanMs ?? 60_000, ...(opts.watch === false ? { watch: false } : {}), log: (l, m) => logs.push(`${l}: ${m}`) });
  const batches: DatastoreBatch[] = [];
  ds.on('change', (b) => batches.push(b));
  let last: CompiledDatapath | undefined;
  const view = new ClusterView(ds, { compile: (s) => { last = compile(s); }, log: (l, m) => logs.push(`${l}: ${m}`) });
  t.after(async () => {
    view.close();
    await ds.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await ds.start();
  await ds.whenSynced();
  return { dir, ds, view, logs, batches, compiled: () => last! };
}

test('initial scan then enforce; an atomic replace (write + rename) is picked up', async (t) => {
  const s = await setup(t, { '10-pods.yaml': PODS, '20-policy.yaml': policy(8080), 'README.txt': 'not a manifest', '.swap.yaml': 'garbage: [' });
  assert.equal(s.ds.synced, true);
  assert.equal(s.batches.length, 1);
  assert.equal(s.batches[0]!.initial, true);
  assert.equal(s.batches[0]!.upserts.length, 5);
  assert.equal(s.view.status().compiles, 1);
  assert.deepEqual(allowedPorts(s.compiled(), '10.244.2.10', '10.244.2.11'), [8080]);
  assert.ok((s.compiled().endpoints.get('10.244.2.11')!.flags & EP_ISOLATED_INGRESS) !== 0);
  // an editor's save: write a temporary file, rename it over the original
  const tmp = path.join(s.dir, '.20-policy.yaml.tmp');
  writeFileSync(tmp, policy(9090));
  renameSync(tmp, path.join(s.dir, '20-policy.yaml'));
  await waitFor(() => s.view.status().compiles === 2, 'the replaced file');
  assert.deepEqual(allowedPorts(s.compiled(), '10.244.2.10', '10.244.2.11'), [9090]);
  assert.deepEqual(s.batches.at(-1)!.upserts.map((o) => `${o.kind} ${o.name}`), ['NetworkPolicy allow-frontend'], 'only what changed');
  assert.deepEqual(s.ds.health().sources[FILES_SOURCE], { synced: true, connected: true, relists: 0, reconnects: 0, rejected: 0 });
});

test('a bad edit is rejected with file and field; the file\'s last valid objects stay; the fix applies', async (t) => {
  const s = await setup(t, { '10-pods.yaml': PODS, '20-policy.yaml': policy(8080) });
  writeFileSync(path.join(s.dir, '20-policy.yaml'), policy('http-x!'));
  await waitFor(() => s.batches.length === 2, 'the rejection');
  const b = s.batches[1]!;
  assert.deepEqual(b.upserts, []);
  assert.equal(b.rejected.length, 1);
  const file = path.join(s.dir, '20-policy.yaml');
  assert.equal(b.rejected[0]!.source, file);
  assert.match(b.rejected[0]!.problems[0]!, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: document 1: NetworkPolicy api/allow-frontend: spec\\.ingress\\[0\\]\\.ports\\[0\\]\\.port: "http-x!": is neither a port number nor a port name`));
  assert.equal(s.ds.health().sources[FILES_SOURCE]!.rejected, 1);
  assert.deepEqual(s.ds.rejectedFiles().map((f) => f.file), [file]);
  assert.ok(s.logs.some((l) => l.includes(`rejected ${file} (keeping its last valid objects)`)), s.logs.join('\n'));
  assert.equal(s.view.status().compiles, 1, 'nothing new to compile');
  assert.deepEqual(allowedPorts(s.compiled(), '10.244.2.10', '10.244.2.11'), [8080]);
  // YAML that does not parse: the same
  writeFileSync(file, 'kind: NetworkPolicy\n  bad: [indent');
  await waitFor(() => s.batches.length === 3, 'the second rejection');
  assert.match(s.batches[2]!.rejected[0]!.problems[0]!, /document 1: YAML syntax/);
  assert.equal(s.ds.objects().filter((o) => o.kind === 'NetworkPolicy').length, 1);
  writeFileSync(file, policy(8443));
  await waitFor(() => s.view.status().compiles === 2, 'the fix');
  assert.deepEqual(allowedPorts(s.compiled(), '10.244.2.10', '10.244.2.11'), [8443]);
  assert.deepEqual(s.ds.rejectedFiles(), []);
});

test('a removed file takes its objects; an object defined by two files is refused in the later one', async (t) => {
  const s = await setup(t, { '10-pods.yaml': PODS, '20-policy.yaml': policy(8080) });
  writeFileSync(path.join(s.dir, '30-copy.yaml'), policy(7070));
  await waitFor(() => s.batches.length === 2, 'the duplicate');
  assert.match(s.batches[1]!.rejected[0]!.problems[0]!, /30-copy\.yaml: document 1: NetworkPolicy api\/allow-frontend: metadata\.name: "allow-frontend": duplicate: .* is also defined in .*20-policy\.yaml/);
  assert.deepEqual(allowedPorts(s.compiled(), '10.244.2.10', '10.244.2.11'), [8080]);
  unlinkSync(path.join(s.dir, '20-policy.yaml'));
  // the first file is gone: the copy is no longer a duplicate and takes over
  await waitFor(() => allowedPorts(s.compiled(), '10.244.2.10', '10.244.2.11')[0] === 7070, 'the copy');
  unlinkSync(path.join(s.dir, '30-copy.yaml'));
  await waitFor(() => s.ds.objects().every((o) => o.kind !== 'NetworkPolicy'), 'the delete');
  assert.deepEqual(s.batches.at(-1)!.deletes.map((o) => o.name), ['allow-frontend']);
  assert.equal((s.compiled().endpoints.get('10.244.2.11')!.flags & EP_ISOLATED_INGRESS), 0);
});

test('an inconsistent view (a pod in a namespace no file defines) keeps the last good state until it is complete', async (t) => {
  const s = await setup(t, { '10-pods.yaml': PODS });
  writeFileSync(path.join(s.dir, '40-more.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: ops}\nspec: {containers: [{name: c}]}\n');
  await waitFor(() => s.view.status().rejectedViews === 1, 'the refused view');
  assert.match(s.view.status().problems[0]!, /Pod ops\/x: metadata\.namespace: "ops" does not exist/);
  assert.equal(s.view.state.pods.has('ops/x'), false);
  assert.equal(s.view.state.pods.has('api/orders'), true, 'the last good state is still in force');
  assert.equal(s.view.status().compiles, 1, 'and nothing was compiled from the refused view');
  writeFileSync(path.join(s.dir, '05-ns.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: ops}\n');
  await waitFor(() => s.view.state.pods.has('ops/x'), 'the completed view');
  assert.deepEqual(s.view.status().problems, []);
});

test('without fs.watch the periodic rescan finds changes; ConfigMap-style symlinked files are read', async (t) => {
  // a ConfigMap volume: ..data -> ..2026_01/ and top-level symlinks into ..data
  const s = await setup(t, { '10-pods.yaml': PODS }, { watch: false, rescanMs: 50 });
  const gen = path.join(s.dir, '..2026_01');
  mkdirSync(gen);
  writeFileSync(path.join(gen, 'policy.yaml'), policy(6060));
  symlinkSync('..2026_01', path.join(s.dir, '..data'));
  symlinkSync(path.join('..data', 'policy.yaml'), path.join(s.dir, 'policy.yaml'));
  await waitFor(() => s.ds.objects().some((o) => o.kind === 'NetworkPolicy'), 'the rescan');
  assert.deepEqual(allowedPorts(s.compiled(), '10.244.2.10', '10.244.2.11'), [6060]);
  assert.ok(s.ds.health().sources[FILES_SOURCE]!.relists >= 1, 'counted as a rescan that found a change');
});

test('a missing directory is an error naming it', async () => {
  const ds = new FileDatastore({ dir: '/nonexistent/weir-policies' });
  await assert.rejects(ds.start(), /policy directory "\/nonexistent\/weir-policies": no such directory/);
  await ds.stop();
});
