// The Kubernetes datastore through the real @kubernetes/client-node against a list/watch API server
// STAND-IN (test/helpers/kube-apiserver.ts): no kube-apiserver can run on this machine, so that
// real HTTP server on 127.0.0.1 speaks the API server's list/watch protocol (resourceVersions,
// ADDED/MODIFIED/DELETED/BOOKMARK, 410 Gone, dropped connections, restarts, 403) and records the
// Events the agent posts. Everything on Weir's side is real: kubeconfig loading, the informers,
// validation, ClusterState, the policy compiler and the flow endpoint registry.
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeApiServerStandIn, selfSignedCert, writeKubeconfig } from '../helpers/kube-apiserver.js';
import { loadKubeConfig, SERVICE_ACCOUNT_DIR } from '../../src/datastore/kubernetes/config.js';
import { KubernetesDatastore } from '../../src/datastore/kubernetes/datastore.js';
import { WATCHED_RESOURCES } from '../../src/datastore/kubernetes/resources.js';
import { ClusterView } from '../../src/datastore/view.js';
import { feedRegistry } from '../../src/datastore/registry-feed.js';
import type { ClusterState } from '../../src/datastore/cluster.js';
import type { DatastoreBatch, Timers } from '../../src/datastore/datastore.js';
import { compilePolicy, EP_ISOLATED_INGRESS, type CompiledDatapath } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { EndpointRegistry } from '../../src/flows/registry.js';

const TOKEN = 'stand-in-token-kubernetes-test';
const NP = 'networkpolicies.networking.k8s.io';

type Obj = Record<string, any>;
const ns = (name: string, labels: Record<string, string> = {}): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { ...labels, 'kubernetes.io/metadata.name': name } }, status: { phase: 'Active' } });
const pod = (namespace: string, name: string, app: string, ip?: string, extra: Obj = {}): Obj => ({
  apiVersion: 'v1', kind: 'Pod',
  metadata: { name, namespace, labels: { app } },
  spec: { nodeName: 'node-1', serviceAccountName: 'default', containers: [{ name: 'c', image: 'x', ports: [{ containerPort: 8080, protocol: 'TCP' }] }], ...extra.spec },
  status: ip ? { phase: 'Running', podIP: ip, podIPs: [{ ip }], ...extra.status } : { phase: 'Pending', ...extra.status },
});
const allowPolicy = (port: number | string): Obj => ({
  apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy',
  metadata: { name: 'allow-frontend', namespace: 'api' },
  spec: { podSelector: { matchLabels: { app: 'orders' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'web' } }, podSelector: { matchLabels: { app: 'frontend' } } }], ports: [{ protocol: 'TCP', port }] }] },
});

const ORDERS_IP = '10.244.1.11';
const FRONTEND_IP = '10.244.1.10';

function seed(api: KubeApiServerStandIn): void {
  for (const n of ['default', 'api', 'web']) api.apply('namespaces', ns(n));
  api.apply('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1', labels: { 'kubernetes.io/hostname': 'node-1' } }, status: { addresses: [{ type: 'InternalIP', address: '192.168.0.1' }] } });
  api.apply('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-2', labels: {} } });
  api.apply('pods', pod('web', 'frontend', 'frontend', FRONTEND_IP));
  api.apply('pods', pod('api', 'orders', 'orders', ORDERS_IP));
  // hostNetwork pods all show the node's address: not endpoints of their own
  api.apply('pods', pod('default', 'exporter-a', 'exporter', '192.168.0.1', { spec: { hostNetwork: true } }));
  api.apply('pods', pod('default', 'exporter-b', 'exporter', '192.168.0.1', { spec: { hostNetwork: true } }));
  api.apply(NP, allowPolicy(8080));
  api.apply('hostendpoints.weir.dev', { apiVersion: 'weir.dev/v1alpha1', kind: 'HostEndpoint', metadata: { name: 'node-1-eth0', labels: { role: 'worker' } }, spec: { node: 'node-1', interfaceName: 'eth0', expectedIPs: ['192.168.0.1'] } });
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Setup {
  api: KubeApiServerStandIn;
  ds: KubernetesDatastore;
  view: ClusterView;
  logs: string[];
  batches: DatastoreBatch[];
  compiled: () => CompiledDatapath;
  delays: number[];
  dir: string;
}

/** Timers that record the delays asked for and run them at most 50 ms later (backoff in tests). */
function recordingTimers(delays: number[]): Timers {
  return {
    setTimeout: (fn, ms) => {
      delays.push(ms);
      return setTimeout(fn, Math.min(ms, 50));
    },
    clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
  };
}

// One certificate for the file's stand-ins: API servers speak HTTPS (the library refuses plain
// HTTP unless TLS verification is off), and the kubeconfig names the CA.
const certDir = mkdtempSync(path.join(tmpdir(), 'weir-k8s-cert-'));
const TLS = selfSignedCert(certDir);
test.after(() => rmSync(certDir, { recursive: true, force: true }));

async function setup(t: TestContext, opts: {
  before?: (api: KubeApiServerStandIn) => void; start?: boolean; nodeName?: string;
  /** default 0 (none): recordingTimers would run a resync every 50 ms in tests about other things */
  resyncMs?: number; timers?: (delays: number[]) => Timers;
} = {}): Promise<Setup> {
  const dir = mkdtempSync(path.join(tmpdir(), 'weir-k8s-ds-'));
  const api = new KubeApiServerStandIn({ token: TOKEN, tls: TLS });
  seed(api);
  opts.before?.(api);
  await api.start();
  const kubeconfig = path.join(dir, 'kubeconfig');
  writeKubeconfig(kubeconfig, api.url, TOKEN, TLS.certFile);
  const { kubeConfig, source } = loadKubeConfig({ kubeconfig });
  assert.equal(source, 'kubeconfig-flag');
  const logs: string[] = [];
  const delays: number[] = [];
  const ds = new KubernetesDatastore({
    kubeConfig, log: (level, m) => logs.push(`${level}: ${m}`), timers: (opts.timers ?? recordingTimers)(delays), initialBackoffMs: 20, maxBackoffMs: 320,
    resyncMs: opts.resyncMs ?? 0,
  });
  const batches: DatastoreBatch[] = [];
  ds.on('change', (b) => batches.push(b));
  let last: CompiledDatapath | undefined;
  const view = new ClusterView(ds, {
    nodeName: opts.nodeName ?? 'node-1',
    log: (level, m) => logs.push(`${level}: ${m}`),
    compile: (state) => { last = compile(state); },
  });
  t.after(async () => {
    view.close();
    await ds.stop();
    await api.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  if (opts.start !== false) {
    await ds.start();
    await ds.whenSynced();
  }
  return { api, ds, view, logs, batches, compiled: () => last!, delays, dir };
}

/** The real compiler on the view: every pod placed (as on one node), ids fresh. */
function compile(state: ClusterState): CompiledDatapath {
  const placed = [...state.pods.values()].filter((p) => p.ips.length > 0).map((p, i) => ({ pod: p, ips: p.ips, ifindex: 100 + i }));
  return compilePolicy(state, placed, new IdAllocator());
}

/** Ports the compiled policy lets `from` reach on `to` (TCP, ingress of `to`). */
function allowedPorts(out: CompiledDatapath, from: string, to: string): number[] {
  const src = out.endpoints.get(from)!.identity;
  const dst = out.endpoints.get(to)!.identity;
  return [...out.policy.values()].filter((e) => e.identity === dst && e.peer === src && e.direction === 0 && e.proto === 6).map((e) => e.port).sort();
}

const isolated = (out: CompiledDatapath, ip: string): boolean => (out.endpoints.get(ip)!.flags & EP_ISOLATED_INGRESS) !== 0;

test('initial sync then enforce: the compiled policy isolates orders and allows frontend on 8080', async (t) => {
  const s = await setup(t);
  assert.equal(s.ds.synced, true);
  const h = s.ds.health();
  assert.equal(h.synced, true);
  assert.deepEqual(Object.keys(h.sources).sort(), WATCHED_RESOURCES.map((r) => (r.group ? `${r.resource}.${r.group}` : r.resource)).sort());
  for (const [name, src] of Object.entries(h.sources)) {
    assert.equal(src.synced, true, name);
    assert.equal(src.relists, 0, name);
    assert.equal(src.rejected, 0, name);
  }
  // one batch: the whole view, built-in list items without apiVersion/kind included
  assert.equal(s.batches.length, 1);
  assert.equal(s.batches[0]!.initial, true);
  const kinds = s.batches[0]!.upserts.map((o) => o.kind).sort();
  assert.deepEqual(kinds, ['HostEndpoint', 'Namespace', 'Namespace', 'Namespace', 'NetworkPolicy', 'Node', 'Node', 'Pod', 'Pod', 'Pod', 'Pod']);
  const st = s.view.status();
  assert.equal(st.ready, true);
  assert.equal(st.compiles, 1);
  assert.deepEqual(st.problems, []);
  // only this node's Node in ClusterState; hostNetwork pods hold no address
  assert.deepEqual([...s.view.state.nodes.keys()], ['node-1']);
  assert.deepEqual(s.view.state.pods.get('default/exporter-a')!.ips, []);
  assert.equal(s.view.state.hostEndpoints.get('node-1-eth0')!.interfaceName, 'eth0');
  const out = s.compiled();
  assert.equal(isolated(out, ORDERS_IP), true, 'orders is selected by api/allow-frontend');
  assert.equal(isolated(out, FRONTEND_IP), false);
  assert.deepEqual(allowedPorts(out, FRONTEND_IP, ORDERS_IP), [8080]);
  // what went over the wire: paged lists, then watches with bookmarks from the list's version
  const lists = s.api.requests.filter((r) => r.method === 'GET' && r.query.watch === undefined);
  const watches = s.api.requests.filter((r) => r.query.watch === 'true');
  assert.equal(lists.length, WATCHED_RESOURCES.length);
  assert.ok(lists.every((r) => r.query.limit === '500'));
  assert.ok(watches.every((r) => r.query.allowWatchBookmarks === 'true' && Number(r.query.resourceVersion) > 0), JSON.stringify(watches));
  assert.deepEqual(s.api.events, [], 'nothing was rejected');
});

test('not synced: nothing is delivered or compiled until every resource has listed; 403 names the verb and resource', async (t) => {
  const errors: string[] = [];
  const s = await setup(t, { start: false, before: (api) => api.forbid('list', 'jobs.batch') });
  s.ds.on('error', (e) => errors.push(e.message));
  await s.ds.start();
  await waitFor(() => Object.values(s.ds.health().sources).filter((x) => x.synced).length === WATCHED_RESOURCES.length - 1, 'the other resources to list');
  await waitFor(() => errors.length >= 2, 'a retry of the forbidden list');
  assert.equal(s.ds.synced, false);
  assert.deepEqual(s.ds.objects(), []);
  assert.equal(s.batches.length, 0);
  assert.equal(s.view.status().ready, false);
  assert.equal(s.view.status().compiles, 0);
  const jobs = s.ds.health().sources['jobs.batch']!;
  assert.equal(jobs.synced, false);
  assert.match(jobs.lastError!, /^cannot list jobs\.batch at cluster scope: forbidden/);
  assert.match(errors[0]!, /cannot list jobs\.batch at cluster scope: forbidden \(API server: jobs\.batch is forbidden: User "system:serviceaccount:weir:weir" cannot list resource "jobs" in API group "batch" at the cluster scope\)/);
  assert.ok(s.logs.some((l) => l.includes('cannot list jobs.batch at cluster scope: forbidden') && l.includes('retrying in')), s.logs.join('\n'));
  // granted: the retry lists, and only now is anything compiled
  s.api.allow('list', 'jobs.batch');
  await s.ds.whenSynced();
  assert.equal(s.view.status().compiles, 1);
  assert.equal(s.ds.health().sources['jobs.batch']!.lastError, undefined);
  assert.deepEqual(allowedPorts(s.compiled(), FRONTEND_IP, ORDERS_IP), [8080]);
});

test('403 on watch: "cannot watch networkpolicies.networking.k8s.io at cluster scope: forbidden"', async (t) => {
  const errors: string[] = [];
  const s = await setup(t, { start: false, before: (api) => api.forbid('watch', NP) });
  s.ds.on('error', (e) => errors.push(e.message));
  await s.ds.start();
  await waitFor(() => errors.length > 0, 'the watch error');
  assert.match(errors[0]!, /^cannot watch networkpolicies\.networking\.k8s\.io at cluster scope: forbidden; the agent's ClusterRole needs verb "watch" on networkpolicies\.networking\.k8s\.io$/);
  // the list worked: the view is complete and enforced, the watch keeps being retried
  await s.ds.whenSynced();
  assert.deepEqual(allowedPorts(s.compiled(), FRONTEND_IP, ORDERS_IP), [8080]);
  s.api.allow('watch', NP);
  await waitFor(() => s.api.openWatches(NP) === 1, 'the watch once allowed');
  s.api.apply(NP, allowPolicy(9090));
  await waitFor(() => s.view.status().compiles === 2, 'the update through the new watch');
  assert.deepEqual(allowedPorts(s.compiled(), FRONTEND_IP, ORDERS_IP), [9090]);
});

test('policy update and delete reach the compiled policy', async (t) => {
  const s = await setup(t);
  s.api.apply(NP, allowPolicy(9090));
  await waitFor(() => s.view.status().compiles === 2, 'the update');
  assert.deepEqual(allowedPorts(s.compiled(), FRONTEND_IP, ORDERS_IP), [9090]);
  const b = s.batches.at(-1)!;
  assert.equal(b.initial, false);
  assert.deepEqual(b.upserts.map((o) => `${o.kind} ${o.name}`), ['NetworkPolicy allow-frontend']);
  // a pod status change Weir does not read makes no batch (no recompile)
  const orders = s.api.get('pods', 'api', 'orders')!;
  s.api.apply('pods', { ...orders, status: { ...orders.status, conditions: [{ type: 'Ready', status: 'True' }] } });
  s.api.delete(NP, 'api', 'allow-frontend');
  await waitFor(() => s.view.status().compiles === 3, 'the delete');
  assert.equal(s.batches.at(-1)!.deletes.length, 1);
  assert.equal(s.batches.at(-1)!.upserts.length, 0, 'the pod condition change delivered nothing');
  assert.equal(isolated(s.compiled(), ORDERS_IP), false, 'no policy selects orders any more');
});

test('pod churn and IP reuse: the registry names whoever held the address at the time; a brief double claim keeps the last good view', async (t) => {
  const s = await setup(t);
  let now = 1_000;
  const registry = new EndpointRegistry({ node: 'node-1' });
  // the registry follows the datastore from the first batch; it was delivered before this
  // subscription, so it starts from the current view (as an agent subscribing first would)
  for (const o of s.ds.objects()) if (o.kind === 'Pod') registry.upsertPod({ namespace: o.namespace, name: o.name, labels: o.labels, ips: o.ips }, now);
  feedRegistry(s.ds, registry, () => now);
  const n = s.batches.length;
  // a new pod is scheduled (no address yet), then gets one: two batches
  now = 2_000;
  s.api.apply('pods', pod('api', 'orders-2', 'orders'));
  await waitFor(() => s.batches.length === n + 1, 'the pending pod');
  now = 3_000;
  // the kubelet recycles orders' address for orders-2 before orders' delete is final: for a moment
  // two pods claim it, which ClusterState refuses; the last good view stays in force
  s.api.apply('pods', pod('api', 'orders-2', 'orders', ORDERS_IP));
  await waitFor(() => s.batches.length === n + 2, 'the address of orders-2');
  const st = s.view.status();
  assert.equal(st.rejectedViews, 1);
  assert.match(st.problems.join('\n'), /Pod api\/(orders|orders-2): status\.podIPs: "10\.244\.1\.11" is already the address of Pod api\/orders/);
  assert.equal(s.view.state.pods.get('api/orders-2')!.ips.length, 0, 'the last good view: orders-2 without its address');
  assert.ok(s.logs.some((l) => l.includes('enforcing the last good set')), s.logs.join('\n'));
  now = 4_000;
  s.api.delete('pods', 'api', 'orders');
  await waitFor(() => s.batches.length === n + 3, 'the delete of orders');
  assert.deepEqual(s.view.status().problems, [], 'consistent again');
  assert.equal(s.view.state.pods.has('api/orders'), false);
  assert.deepEqual(s.view.state.pods.get('api/orders-2')!.ips, [ORDERS_IP]);
  // the compiled endpoint is now orders-2's, still isolated by the policy (same labels)
  const ep = s.compiled().endpoints.get(ORDERS_IP)!;
  assert.equal(ep.key, 'api/orders-2');
  assert.equal(isolated(s.compiled(), ORDERS_IP), true);
  // attribution by time: orders until orders-2 took the address (3000), then orders-2
  assert.equal(registry.lookup(ORDERS_IP, 1_500)?.pod, 'orders');
  assert.equal(registry.lookup(ORDERS_IP, 2_999)?.pod, 'orders');
  assert.equal(registry.lookup(ORDERS_IP, 3_000)?.pod, 'orders-2');
  assert.equal(registry.lookup(ORDERS_IP, 5_000)?.pod, 'orders-2', 'the late delete of orders does not release orders-2');
  // a pod that finished keeps showing its released address: it holds none
  now = 6_000;
  s.api.apply('pods', pod('api', 'orders-2', 'orders', ORDERS_IP, { status: { phase: 'Succeeded' } }));
  await waitFor(() => s.batches.length === n + 4, 'the finished pod');
  assert.deepEqual(s.view.state.pods.get('api/orders-2')!.ips, []);
  assert.equal(registry.lookup(ORDERS_IP, 6_000), undefined);
  assert.equal(registry.lookup(ORDERS_IP, 5_999)?.pod, 'orders-2');
});

test('watch expiry: 410 Gone -> relist, and changes made meanwhile (deletes included) are not lost', async (t) => {
  const s = await setup(t);
  // keep the pods watch away while the cluster changes and the history is compacted
  s.api.forbid('watch', 'pods');
  s.api.dropWatches({ resource: 'pods' });
  await waitFor(() => s.ds.health().sources.pods!.lastError !== undefined, 'the pods watch to fail');
  s.api.delete('pods', 'web', 'frontend');
  s.api.apply('pods', pod('web', 'frontend-2', 'frontend', '10.244.1.20'));
  s.api.compact();
  s.api.allow('watch', 'pods');
  await waitFor(() => s.ds.health().sources.pods!.relists === 1, 'the relist');
  await waitFor(() => s.view.state.pods.has('web/frontend-2') && !s.view.state.pods.has('web/frontend'), 'the relisted view');
  assert.ok(s.api.requests.some((r) => r.query.watch === 'true' && r.path === '/api/v1/pods' && Number(r.query.resourceVersion) < s.api.resourceVersion - 1),
    'the client first tried to resume from its old resourceVersion');
  // the relist is one batch: the delete and the add together
  const b = s.batches.at(-1)!;
  assert.deepEqual(b.deletes.map((o) => o.name), ['frontend']);
  assert.deepEqual(b.upserts.map((o) => o.name), ['frontend-2']);
  assert.deepEqual(allowedPorts(s.compiled(), '10.244.1.20', ORDERS_IP), [8080]);
  assert.equal(s.compiled().endpoints.has(FRONTEND_IP), false);
  // bookmarks keep the resourceVersion fresh: after one, a compaction does not force a relist
  await waitFor(() => s.api.openWatches('pods') === 1, 'the pods watch again');
  s.api.apply('namespaces', ns('other'));
  await waitFor(() => s.view.state.namespaces.has('other'), 'the namespace');
  s.api.bookmark();
  await new Promise((r) => setTimeout(r, 100));
  s.api.compact();
  s.api.dropWatches({ resource: 'pods' });
  await waitFor(() => s.api.openWatches('pods') === 1, 'the pods watch to resume');
  assert.equal(s.ds.health().sources.pods!.relists, 1, 'resumed from the bookmark, no second relist');
});

test('API server restart: reconnect with capped exponential backoff and converge (history kept, then lost)', async (t) => {
  const s = await setup(t);
  await s.api.stop();
  // while it is down, the cluster changes (the objects are in etcd)
  s.api.apply('pods', pod('web', 'frontend-3', 'frontend', '10.244.1.30'));
  s.api.apply(NP, allowPolicy(7070));
  s.delays.length = 0;
  await waitFor(() => s.ds.health().sources.pods!.connected === false, 'the disconnect');
  await new Promise((r) => setTimeout(r, 600)); // several failed reconnects
  const podsDelays = s.delays.filter((d) => d >= 20);
  assert.ok(podsDelays.includes(20) && podsDelays.includes(40) && podsDelays.includes(80) && podsDelays.includes(160) && podsDelays.includes(320), JSON.stringify(s.delays));
  assert.ok(Math.max(...s.delays) <= 320, `capped: ${JSON.stringify(s.delays)}`);
  assert.match(s.ds.health().sources.pods!.lastError!, /^cannot watch pods: /);
  assert.equal(s.view.status().ready, true, 'the last view stays in force while disconnected');
  await s.api.start(s.api.port);
  await waitFor(() => s.view.state.pods.has('web/frontend-3') && s.view.state.policies.get('api/allow-frontend')?.ingress[0]?.ports?.[0]?.port === 7070, 'convergence');
  assert.deepEqual(allowedPorts(s.compiled(), '10.244.1.30', ORDERS_IP), [7070]);
  const h = s.ds.health().sources;
  assert.equal(h.pods!.relists, 0, 'resumed from its resourceVersion: the history was kept');
  assert.ok(h.pods!.reconnects >= 1);
  assert.equal(h.pods!.lastError, undefined);
  // a restart that loses the watch history: 410, relist, converge
  await waitFor(() => s.api.openWatches() === WATCHED_RESOURCES.length, 'all watches back');
  await s.api.stop();
  s.api.delete('pods', 'web', 'frontend-3');
  await s.api.restart({ keepHistory: false });
  await waitFor(() => !s.view.state.pods.has('web/frontend-3'), 'the delete seen through the relist');
  assert.ok(s.ds.health().sources.pods!.relists >= 1);
  assert.equal(s.compiled().endpoints.has('10.244.1.30'), false);
});

test('dropped connections: clean close and reset both resume the watch, no update lost', async (t) => {
  const s = await setup(t);
  assert.equal(s.api.dropWatches({ resource: NP }), 1);
  await waitFor(() => s.api.openWatches(NP) === 1, 'the re-watch after a clean close');
  s.api.apply(NP, allowPolicy(8081));
  await waitFor(() => s.view.status().compiles === 2, 'the update');
  assert.equal(s.api.dropWatches({ resource: NP, abrupt: true }), 1);
  s.api.apply(NP, allowPolicy(8082)); // made while the client is reconnecting: replayed from history
  await waitFor(() => s.view.status().compiles === 3, 'the update after a reset');
  assert.deepEqual(allowedPorts(s.compiled(), FRONTEND_IP, ORDERS_IP), [8082]);
  const h = s.ds.health().sources[NP]!;
  assert.ok(h.reconnects >= 2, JSON.stringify(h));
  assert.equal(h.relists, 0);
});

test('periodic resync: events the watch lost are repaired at the next resync, in one batch; a resync that finds nothing delivers nothing; a failed one is retried', async (t) => {
  // The resync timers are held until the test fires them (one per resource), so "before the next
  // resync" is a fact, not a race; backoff timers run as in the other tests.
  const RESYNC_MS = 1_234;
  const held = new Set<{ fn: () => void }>();
  const s = await setup(t, {
    resyncMs: RESYNC_MS,
    timers: (delays) => {
      const base = recordingTimers(delays);
      return {
        setTimeout: (fn, ms) => {
          if (ms !== RESYNC_MS) return base.setTimeout(fn, ms);
          const h = { fn };
          held.add(h);
          return h;
        },
        clearTimeout: (h) => (held.has(h as { fn: () => void }) ? held.delete(h as { fn: () => void }) : base.clearTimeout(h)),
      };
    },
  });
  const N = WATCHED_RESOURCES.length;
  const fire = (): void => {
    const due = [...held];
    held.clear();
    for (const h of due) h.fn();
  };
  const sources = () => s.ds.health().sources;
  const all = (f: (h: ReturnType<typeof sources>[string]) => boolean) => Object.values(sources()).every(f);
  assert.equal(held.size, N, 'one resync scheduled per resource');
  assert.ok(all((h) => h.resyncs === 0 && h.resyncRepairs === 0));

  // three pod changes the watch never sees: an add, a change Weir reads, a delete
  s.api.apply('pods', pod('web', 'frontend-2', 'frontend', '10.244.1.20'), { silent: true });
  const frontend = s.api.get('pods', 'web', 'frontend')!;
  s.api.apply('pods', { ...frontend, metadata: { ...frontend.metadata, labels: { app: 'frontend', tier: 'web' } } }, { silent: true });
  s.api.delete('pods', 'default', 'exporter-b', { silent: true });
  // the watch is alive (a later pod arrives), yet the view is wrong
  s.api.apply('pods', pod('web', 'late', 'late', '10.244.1.40'));
  await waitFor(() => s.view.state.pods.has('web/late'), 'a visible pod after the lost events');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(s.view.state.pods.has('web/frontend-2'), false, 'the lost add is not in the view before the resync');
  assert.equal(s.view.state.pods.get('web/frontend')!.labels.tier, undefined);
  assert.equal(s.view.state.pods.has('default/exporter-b'), true);
  assert.equal(s.compiled().endpoints.has('10.244.1.20'), false);

  const before = s.batches.length;
  fire();
  await waitFor(() => all((h) => h.resyncs === 1), 'the first resync of every resource');
  await waitFor(() => s.view.state.pods.has('web/frontend-2'), 'the repaired view');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(s.view.state.pods.get('web/frontend')!.labels.tier, 'web');
  assert.equal(s.view.state.pods.has('default/exporter-b'), false);
  assert.deepEqual(allowedPorts(s.compiled(), '10.244.1.20', ORDERS_IP), [8080], 'the repair reaches the compiler');
  const repairs = s.batches.slice(before);
  assert.equal(repairs.length, 1, `one batch: ${JSON.stringify(repairs)}`);
  assert.equal(repairs[0]!.initial, false);
  assert.deepEqual(repairs[0]!.upserts.map((o) => `${(o as { namespace?: string }).namespace}/${o.name}`).sort(), ['web/frontend', 'web/frontend-2']);
  assert.deepEqual(repairs[0]!.deletes.map((o) => `${(o as { namespace?: string }).namespace}/${o.name}`), ['default/exporter-b']);
  assert.equal(sources().pods!.resyncRepairs, 3);
  assert.ok(Object.entries(sources()).every(([n, h]) => n === 'pods' || h.resyncRepairs === 0), JSON.stringify(sources()));
  assert.ok(s.logs.some((l) => l === 'warn: pods: resync repaired 3 object(s) the watch missed (2 added or changed, 1 deleted)'), s.logs.join('\n'));

  // the next resync finds the list equal to the view: nothing delivered, nothing logged
  await waitFor(() => held.size === N, 'the next resyncs scheduled');
  const quiet = s.batches.length;
  const logsBefore = s.logs.length;
  fire();
  await waitFor(() => all((h) => h.resyncs === 2), 'the second resync of every resource');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(s.batches.length, quiet, 'no batch from a resync with nothing to repair');
  assert.equal(sources().pods!.resyncRepairs, 3);
  assert.deepEqual(s.logs.slice(logsBefore).filter((l) => l.includes('resync')), []);

  // a resync whose list fails is logged and counted, and the next period tries again
  await waitFor(() => held.size === N, 'the third resyncs scheduled');
  s.api.forbid('list', 'pods');
  s.api.delete('pods', 'web', 'late', { silent: true });
  fire();
  await waitFor(() => sources().pods!.resyncFailures === 1, 'the failed resync');
  assert.equal(sources().pods!.resyncs, 2);
  assert.ok(s.logs.some((l) => /^warn: cannot list pods.*forbidden.*; resync pods again in 1234 ms$/.test(l)), s.logs.join('\n'));
  assert.equal(s.view.state.pods.has('web/late'), true);
  await waitFor(() => held.size === N, 'the resyncs scheduled after the failure');
  s.api.allow('list', 'pods');
  fire();
  await waitFor(() => !s.view.state.pods.has('web/late'), 'the repair after the failure');
  assert.equal(sources().pods!.resyncRepairs, 4);
  assert.equal(s.view.status().ready, true);
});

test('malformed and unknown-version objects are skipped with a log line, an Event and a counter; the last valid version stays', async (t) => {
  const s = await setup(t, {
    before: (api) => {
      // already there at the first list: a pod whose label value is not a label value
      api.apply('pods', { ...pod('api', 'bad-labels', 'x', '10.244.1.99'), metadata: { name: 'bad-labels', namespace: 'api', labels: { app: 'not a label!' } } });
    },
  });
  assert.equal(s.batches[0]!.rejected.length, 1);
  assert.deepEqual(s.batches[0]!.rejected[0], {
    kind: 'Pod', namespace: 'api', name: 'bad-labels', source: 'pods',
    problems: ['metadata.labels.app: "not a label!": must be empty or up to 63 characters [A-Za-z0-9-_.] starting and ending alphanumeric'],
  });
  assert.equal(s.view.state.pods.has('api/bad-labels'), false);
  // an update that breaks a valid policy: skipped, the last valid version stays enforced
  s.api.apply(NP, allowPolicy('http-x!'));
  // a custom resource of a version Weir does not read
  s.api.rawEvent('hostendpoints.weir.dev', 'ADDED', { apiVersion: 'weir.dev/v1beta9', kind: 'HostEndpoint', metadata: { name: 'future', uid: 'u-1', resourceVersion: '999' }, spec: {} });
  // not an object at all
  s.api.rawEvent('pods', 'ADDED', { kind: 'Pod', metadata: null });
  await waitFor(() => s.api.events.length === 3, 'three Events');
  await waitFor(() => s.ds.health().sources[NP]!.rejected === 1 && s.ds.health().sources.pods!.rejected === 2, 'the counters');
  assert.equal(s.ds.health().sources['hostendpoints.weir.dev']!.rejected, 1);
  const byName = (n: string) => s.api.events.find((e) => e.involvedObject.name === n)!;
  const np = byName('allow-frontend');
  assert.equal(np.reason, 'InvalidPolicy');
  assert.equal(np.type, 'Warning');
  assert.equal(np.metadata.namespace, 'api');
  assert.equal(np.involvedObject.kind, 'NetworkPolicy');
  assert.equal(np.involvedObject.apiVersion, 'networking.k8s.io/v1');
  assert.ok(np.involvedObject.uid);
  assert.match(np.message, /keeping its last valid version.*spec\.ingress\[0\]\.ports\[0\]\.port: "http-x!": is neither a port number nor a port name/);
  const hep = byName('future');
  assert.equal(hep.reason, 'InvalidObject');
  assert.equal(hep.metadata.namespace, 'default', 'cluster-scoped objects: Events in default');
  assert.match(hep.message, /apiVersion: "weir\.dev\/v1beta9": unknown version; Weir reads HostEndpoint as weir\.dev\/v1alpha1 from hostendpoints\.weir\.dev/);
  assert.equal(byName('bad-labels').reason, 'InvalidObject');
  assert.ok(s.logs.some((l) => /skipped NetworkPolicy api\/allow-frontend .*spec\.ingress\[0\]\.ports\[0\]\.port/.test(l)), s.logs.join('\n'));
  assert.ok(s.logs.some((l) => l.includes('skipped Pod (unnamed)') && l.includes('without metadata.name')), s.logs.join('\n'));
  assert.deepEqual(allowedPorts(s.compiled(), FRONTEND_IP, ORDERS_IP), [8080], 'the last valid policy is still compiled');
  assert.equal(s.view.status().rejectedObjects, 4);
  // still alive and following: a fix goes through
  s.api.apply(NP, allowPolicy(8443));
  await waitFor(() => allowedPorts(s.compiled(), FRONTEND_IP, ORDERS_IP)[0] === 8443, 'the fixed policy');
  // a relist re-delivers the bad pod, but one Event per object version is enough
  s.api.compact();
  s.api.dropWatches({ resource: 'pods' });
  await waitFor(() => s.ds.health().sources.pods!.relists === 1, 'the relist');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(s.api.events.filter((e) => e.involvedObject.name === 'bad-labels').length, 1);
});

test('an Event that cannot be created (no RBAC for events) is logged, and enforcement goes on', async (t) => {
  const s = await setup(t, { before: (api) => api.forbid('create', 'events') });
  s.api.apply(NP, allowPolicy('bad port!'));
  await waitFor(() => s.logs.some((l) => l.includes('could not record Event InvalidPolicy on NetworkPolicy api/allow-frontend')), 'the log line');
  assert.ok(s.logs.some((l) => l.includes('cannot create events at cluster scope: forbidden')), s.logs.join('\n'));
  assert.deepEqual(allowedPorts(s.compiled(), FRONTEND_IP, ORDERS_IP), [8080]);
});

test('configuration: --kubeconfig, $KUBECONFIG, and in-cluster (service account token and CA, over HTTPS)', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'weir-k8s-config-'));
  const saved = { ...process.env };
  t.after(() => {
    for (const k of ['KUBECONFIG', 'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'HOME']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
    rmSync(dir, { recursive: true, force: true });
  });
  assert.throws(() => loadKubeConfig({ kubeconfig: path.join(dir, 'missing') }), /--kubeconfig: ".*missing": no such file/);
  const tls = TLS;
  const api = new KubeApiServerStandIn({ token: 'in-cluster-token', tls });
  seed(api);
  await api.start();
  t.after(() => api.stop());

  // in-cluster: the service account files under a root prefix (the library's loadFromCluster(pathPrefix))
  const root = path.join(dir, 'root');
  const sa = path.join(root, SERVICE_ACCOUNT_DIR);
  mkdirSync(sa, { recursive: true });
  writeFileSync(path.join(sa, 'token'), 'in-cluster-token');
  writeFileSync(path.join(sa, 'ca.crt'), tls.cert);
  writeFileSync(path.join(sa, 'namespace'), 'weir');
  delete process.env.KUBECONFIG;
  process.env.HOME = dir; // no ~/.kube/config
  process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
  process.env.KUBERNETES_SERVICE_PORT = String(api.port);
  const inCluster = loadKubeConfig({ inClusterRoot: root });
  assert.equal(inCluster.source, 'in-cluster');
  assert.equal(inCluster.server, `https://127.0.0.1:${api.port}`);
  const ds = new KubernetesDatastore({ kubeConfig: inCluster.kubeConfig, events: null, log: () => undefined });
  t.after(() => ds.stop());
  await ds.start();
  await ds.whenSynced(); // the token was sent (401 otherwise) and the CA verified the server
  assert.ok(ds.objects().some((o) => o.kind === 'Pod' && o.name === 'orders'));

  // --kubeconfig wins over the in-cluster environment
  const file = path.join(dir, 'explicit.yaml');
  writeKubeconfig(file, api.url, 'in-cluster-token', tls.certFile);
  assert.equal(loadKubeConfig({ kubeconfig: file, inClusterRoot: root }).source, 'kubeconfig-flag');
  // outside a cluster: $KUBECONFIG
  delete process.env.KUBERNETES_SERVICE_HOST;
  delete process.env.KUBERNETES_SERVICE_PORT;
  assert.throws(() => loadKubeConfig({ inClusterRoot: root }), /no Kubernetes configuration: not in a cluster .* pass --kubeconfig/);
  process.env.KUBECONFIG = file;
  const def = loadKubeConfig({ inClusterRoot: root });
  assert.equal(def.source, 'default-kubeconfig');
  assert.equal(def.server, api.url);
  const ds2 = new KubernetesDatastore({ kubeConfig: def.kubeConfig, events: null, log: () => undefined });
  t.after(() => ds2.stop());
  await ds2.start();
  await ds2.whenSynced();
  assert.equal(ds2.objects().length, ds.objects().length);
});
