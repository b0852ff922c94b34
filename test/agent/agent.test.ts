// End-to-end tests of the flow agent: a real lab (namespaces, veths, the datapath), real traffic,
// the agent reading the lab's ring buffer into an embedded chDB store, and its API. One lab and
// one store for the file (chDB binds one data directory per process), torn down in `finally`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab } from '../../src/lab/lab.js';
import { labPinRoot } from '../../src/lab/state.js';
import { probeLab } from '../../src/lab/probe.js';
import { labNodeName } from '../../src/lab/host-protection.js';
import { runAgent, type Agent } from '../../src/agent/agent.js';
import { agentInfoFile, readAgentInfo } from '../../src/agent/discovery.js';
import type { FlowStore } from '../../src/store/store.js';
import type { FlowRow } from '../../src/store/row.js';
import type { FlowFilter } from '../../src/store/filter.js';
import { repoRoot } from '../../src/paths.js';

const CLI = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');

function requireRoot(): void {
  if (process.getuid?.() !== 0) assert.fail('agent tests need root (network namespaces, BPF): run `sudo npm test`');
}

const LAB = `ta${process.pid % 10000}`;

const PODS = `
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: blue}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a, tier: front}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 81, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: d, namespace: x, labels: {app: d}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-7d4b9c8f6d
  namespace: x
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: 0f4a1a9e-3c55-4d0e-8a5e-6b8d3f2c9e01, controller: true}]
---
apiVersion: v1
kind: Pod
metadata:
  name: web-7d4b9c8f6d-q2x7z
  namespace: x
  labels: {app: web, pod-template-hash: 7d4b9c8f6d}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7d4b9c8f6d, uid: 5b0c1c52-1f6e-4c59-9a3e-0d6f1f7a1c11, controller: true}]
spec: {serviceAccountName: web-sa, containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 80}]}]
`;

const POD_D = `
apiVersion: v1
kind: Pod
metadata: {name: d, namespace: x, labels: {app: d}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
`;

const POD_E = `
apiVersion: v1
kind: Pod
metadata: {name: e, namespace: x, labels: {app: e, role: newcomer}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
`;

const mapped = (ip: string) => (ip.includes(':') ? ip : `::ffff:${ip}`);

/** A store whose inserts fail while `down` (the store unavailable), and whose next insert can
 * succeed but report failure (a lost acknowledgement: the writer must replay it, deduplicated). */
class GatedStore implements FlowStore {
  down = false;
  loseNextAck = false;
  failures = 0;
  constructor(private readonly inner: FlowStore) {}
  get location() { return this.inner.location; }
  get migration() { return this.inner.migration; }
  get client() { return this.inner.client; }
  async insert(rows: readonly FlowRow[], token: string): Promise<void> {
    if (this.down) { this.failures++; throw new Error('store unavailable (test)'); }
    await this.inner.insert(rows, token);
    if (this.loseNextAck) { this.loseNextAck = false; this.failures++; throw new Error('acknowledgement lost (test)'); }
  }
  queryFlows(q: Parameters<FlowStore['queryFlows']>[0]) { return this.inner.queryFlows(q); }
  summary(f: FlowFilter, g: readonly string[], l: number) { return this.inner.summary(f, g, l); }
  count(f?: FlowFilter) { return this.inner.count(f); }
  ping() { return this.inner.ping(); }
  close() { return this.inner.close(); }
}

async function rowsOf(store: FlowStore, filter: FlowFilter): Promise<FlowRow[]> {
  return (await store.queryFlows({ filter, limit: 10_000 })).rows;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function runCli(args: string[]): ChildProcess & { done: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdout!.resume();
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
  return Object.assign(child, { done });
}

test('agent: lab traffic -> enriched rows in the store, IP reuse, store outage, the API, the CLI', { timeout: 180_000 }, async () => {
  requireRoot();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-agent-e2e-'));
  const file = (name: string, text: string) => { const p = path.join(dir, name); writeFileSync(p, text); return p; };
  let lab: Lab | undefined;
  let agent: Agent | undefined;
  let cliAgent: ReturnType<typeof runCli> | undefined;
  try {
    lab = (await Lab.up(LAB, [file('pods.yaml', PODS)])).lab;
    const pods = lab.snapshot.pods;
    const [b, d] = [pods['x/b']!, pods['x/d']!];

    // A store that cannot be opened: the CLI exits non-zero with the reason, the lab is unaffected.
    const bad = await runCli(['agent', '--lab', LAB, '--clickhouse-url', 'http://127.0.0.1:1']).done;
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /cannot open the flow store/);
    assert.match(bad.stderr, /keeps enforcing/);
    assert.equal(existsSync(agentInfoFile(LAB)), false, 'no agent.json for an agent that never ran');

    let gate: GatedStore | undefined;
    agent = await runAgent({
      lab: LAB, store: { dataDir: path.join(dir, 'chdb') }, intervalMs: 1000,
      wrapStore: (s) => (gate = new GatedStore(s)),
      spoolDir: path.join(dir, 'spool'), writer: { retry: { initialDelayMs: 50, maxDelayMs: 200 } },
    });
    const store = gate!;
    assert.equal(readAgentInfo(LAB)?.url, agent.url, 'agent.json names the API');
    assert.equal(readAgentInfo(LAB)?.pid, process.pid);

    // Traffic: a -> b:80 allowed (IPv4 and IPv6), d -> b:80 and a -> b:81/UDP denied.
    const probe = (from: string, port: number, protocol: 'TCP' | 'UDP', family: 4 | 6, timeoutMs: number) =>
      probeLab(lab!.snapshot, { from, to: 'x/b', port, protocol, family, timeoutMs });
    const results = await Promise.all([
      probe('x/a', 80, 'TCP', 4, 1500), probe('x/a', 80, 'TCP', 6, 1500),
      probe('x/d', 80, 'TCP', 4, 500), probe('x/d', 80, 'TCP', 6, 500),
      probe('x/web-7d4b9c8f6d-q2x7z', 80, 'TCP', 4, 500),
    ]);
    assert.deepEqual(results.map((r) => r.results[0]!.connected), [true, true, false, false, false]);
    await agent.flush();

    // Workload, service account and node: the pod's ReplicaSet names its Deployment (applied as
    // an object; its name, <deployment>-<pod-template-hash>, would say so too); pods without
    // owners have none and the "default" service account; every lab pod is on the lab node.
    const node = labNodeName(lab.snapshot);
    const webRows = await rowsOf(store, { src: { pod: ['x/web-7d4b9c8f6d-q2x7z'] }, verdict: ['denied'] });
    assert.ok(webRows.length >= 1, 'a denied row from the web pod');
    for (const r of webRows) {
      assert.deepEqual([r.src.workloadKind, r.src.workload, r.src.serviceAccount, r.src.node], ['Deployment', 'web', 'web-sa', node],
        JSON.stringify(r.src));
      assert.deepEqual([r.dst.pod, r.dst.workloadKind, r.dst.workload, r.dst.serviceAccount, r.dst.node], ['b', '', '', 'default', node]);
    }

    const allowed = await rowsOf(store, { src: { pod: ['x/a'] }, dst: { pod: ['x/b'] }, verdict: ['allowed'] });
    const ingress = allowed.filter((r) => r.policy === 'x/allow-a ingress[0]');
    assert.ok(ingress.length >= 1, `an allowed row decided by x/allow-a ingress[0]: ${JSON.stringify(allowed.map((r) => r.policy))}`);
    const fr = ingress[0]!;
    assert.equal(fr.kind, 'flow');
    assert.equal(fr.dst.port, 80);
    assert.equal(fr.protocol, 6);
    assert.deepEqual(fr.src.labels, { app: 'a', tier: 'front' });
    assert.equal(fr.src.namespace, 'x');
    assert.equal(fr.dst.pod, 'b');
    assert.ok(ingress.reduce((n, r) => n + r.connectionsStarted, 0) >= 2, 'both connections (IPv4, IPv6) counted');

    const denied = await rowsOf(store, { src: { pod: ['x/d'] }, verdict: ['denied'] });
    for (const ip of [d.ipv4!, d.ipv6!]) {
      const row = denied.find((r) => r.src.ip === mapped(ip));
      assert.ok(row, `a denied row from d's original address ${ip}: ${JSON.stringify(denied.map((r) => r.src.ip))}`);
      assert.equal(row.kind, 'denied');
      assert.equal(row.dst.ip, mapped(ip.includes(':') ? b.ipv6! : b.ipv4!));
      assert.equal(row.dst.pod, 'b');
      assert.equal(row.dst.port, 80);
      assert.deepEqual(row.src.labels, { app: 'd' });
      assert.equal(row.reason, 'DENY_DEFAULT');
      assert.equal(row.direction, 'ingress');
    }

    // IP reuse: d goes, e comes and gets d's addresses (the lowest free ones). d's rows keep d;
    // e's new rows name e.
    await lab.delete([file('d.yaml', POD_D)]);
    await lab.apply([file('e.yaml', POD_E)]);
    const e = lab.snapshot.pods['x/e']!;
    assert.equal(e.ipv4, d.ipv4, 'e reuses d\'s IPv4 address');
    assert.equal(e.ipv6, d.ipv6, 'e reuses d\'s IPv6 address');
    const reused = await probe('x/e', 80, 'TCP', 4, 500);
    assert.equal(reused.results[0]!.connected, false);
    await agent.flush();
    const byIp = await rowsOf(store, { src: { ip: [d.ipv4!] }, verdict: ['denied'] });
    assert.ok(byIp.some((r) => r.src.pod === 'd'), 'rows before the reuse still name d');
    const eRows = byIp.filter((r) => r.src.pod === 'e');
    assert.ok(eRows.length >= 1, `rows after the reuse name e: ${JSON.stringify(byIp.map((r) => [r.src.pod, r.ts]))}`);
    assert.deepEqual(eRows[0]!.src.labels, { app: 'e', role: 'newcomer' });
    const lastD = Math.max(...byIp.filter((r) => r.src.pod === 'd').map((r) => r.ts));
    assert.ok(eRows.every((r) => r.ts > lastD - 1000), 'e rows are the later ones');

    // The store goes away: rows spool; it comes back: they are replayed, none lost, none doubled
    // (one batch is stored but its acknowledgement lost, so the writer replays it: deduplicated).
    const before = await store.count();
    store.down = true;
    await Promise.all([probe('x/a', 81, 'UDP', 4, 500), probe('x/e', 80, 'TCP', 6, 500)]);
    await agent.flush();
    assert.equal(await store.count(), before, 'nothing reached the store while it was down');
    assert.ok(store.failures > 0, 'the writer tried');
    const spooled = agent.stats().writer;
    assert.ok(spooled.spooled > 0, `rows went to the spool: ${JSON.stringify(spooled)}`);
    const failuresBefore = store.failures;
    store.loseNextAck = true;
    store.down = false;
    await until('the spool replayed', async () => {
      await agent!.flush();
      const w = agent!.stats().writer;
      return w.spoolFiles === 0 && w.buffered === 0 && w.storeUp ? true : undefined;
    }, 20_000);
    const expected = agent.stats().pipeline.rowsOut;
    assert.equal(await store.count(), expected, `every row the pipeline made is stored exactly once (writer before replay: ${JSON.stringify(spooled)}, after: ${JSON.stringify(agent.stats().writer)})`);
    assert.equal(store.failures, failuresBefore + 1, 'one replayed batch was stored but its acknowledgement lost (and replayed again)');
    assert.ok(agent.stats().writer.replayed >= spooled.spooled, `the spool was replayed: ${JSON.stringify(agent.stats().writer)}`);
    const udp = await rowsOf(store, { src: { pod: ['x/a'] }, protocol: [17], verdict: ['denied'] });
    assert.equal(udp.length, 1, 'the UDP denied row stored once');
    assert.equal(udp[0]!.dst.port, 81);

    // The API: a filter over the lab's rows, and the loss counters.
    const api = async (p: string) => {
      const res = await fetch(`${agent!.url}${p}`);
      return { status: res.status, body: await res.json() as Record<string, unknown> };
    };
    const q = await api('/api/v1/flows?namespace=x&verdict=denied&src_label=role%3Dnewcomer');
    assert.equal(q.status, 200);
    const apiRows = q.body.rows as FlowRow[];
    assert.ok(apiRows.length >= 2, 'e\'s denied rows (IPv4 and IPv6)');
    assert.ok(apiRows.every((r) => r.src.pod === 'e' && r.verdict === 'denied'));
    assert.equal((await api('/api/v1/flows?verdict=maybe')).status, 400);
    const stats = await api('/api/v1/stats');
    assert.equal(stats.status, 200);
    const lost = stats.body.lost as Record<string, number>;
    assert.deepEqual(lost, { ring: 0, invalid: 0, pipeline: 0, spool: 0, total: 0, bySource: {} });
    assert.ok((stats.body.source as { records: number }).records > 0);

    await agent.close();
    agent = undefined;
    assert.equal(existsSync(agentInfoFile(LAB)), false, 'agent.json removed on close');

    // `weir agent` as a process: it serves the lab's rows over its API and stops on SIGTERM with 0.
    cliAgent = runCli(['agent', '--lab', LAB, '--data-dir', path.join(dir, 'chdb-cli'), '--interval', '1s', '--token', 'sekret']);
    const info = await until('the CLI agent\'s agent.json', async () => readAgentInfo(LAB), 20_000);
    assert.equal(info.tokenRequired, true);
    await probe('x/e', 80, 'TCP', 4, 500);
    const auth = { headers: { authorization: 'Bearer sekret' } };
    assert.equal((await fetch(`${info.url}/api/v1/flows`)).status, 401, 'the token is required');
    const viaApi = await until('rows from the CLI agent', async () => {
      const res = await fetch(`${info.url}/api/v1/flows?pod=x/e&verdict=denied`, auth);
      const body = await res.json() as { rows: FlowRow[] };
      return body.rows.length > 0 ? body.rows : undefined;
    }, 20_000);
    assert.equal(viaApi[0]!.src.pod, 'e');
    cliAgent.kill('SIGTERM');
    const exit = await cliAgent.done;
    assert.equal(exit.code, 0, `weir agent exits 0 on SIGTERM: ${exit.stderr}`);
    cliAgent = undefined;
    assert.equal(existsSync(agentInfoFile(LAB)), false);

    // The lab goes down under a running agent: it notices and stops (0), its rows flushed.
    cliAgent = runCli(['agent', '--lab', LAB, '--data-dir', path.join(dir, 'chdb-cli')]);
    await until('the second CLI agent\'s agent.json', async () => readAgentInfo(LAB), 20_000);
    lab.close();
    lab = undefined;
    await Lab.down(LAB);
    const gone = await cliAgent.done;
    assert.equal(gone.code, 0, gone.stderr);
    assert.match(gone.stderr, /went down/);
    cliAgent = undefined;
  } finally {
    cliAgent?.kill('SIGKILL');
    await agent?.close().catch(() => undefined);
    lab?.close();
    await Lab.down(LAB);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(existsSync(labPinRoot(LAB)), false, 'pins removed');
});
