// The catalog (src/metrics/catalog.ts) against what the agent really exports: a real lab, the
// agent reading its ring into chDB with /metrics on its API, real traffic (allowed and denied),
// then one scrape. Every series of the scrape is in the catalog with the catalog's type, help and
// labels, every catalog metric is in the scrape, the scrape-time values agree with the datapath's
// own maps, and `promtool check metrics` accepts the exposition.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import promClient from 'prom-client';
import { repoRoot } from '../../src/paths.js';
import { Lab } from '../../src/lab/lab.js';
import { labPinRoot } from '../../src/lab/state.js';
import { probeLab } from '../../src/lab/probe.js';
import { Datapath } from '../../src/datapath/datapath.js';
import { runAgent, METRICS_PATH, type Agent } from '../../src/agent/agent.js';
import { METRICS, OVERFLOW_LABEL_VALUE, specOfSeries, type MetricSpec } from '../../src/metrics/catalog.js';
import { buildRegistry } from '../../src/metrics/registry.js';
import { LabelCap, applyFailureReason, parseLabelCap, parseProtectedPorts, policyLabel, reasonVerdict, rejectedKindLabel } from '../../src/metrics/labels.js';
import { MapCapacityError } from '../../src/datapath/datapath.js';
import { BpfError } from '../../src/datapath/libbpf.js';
import { parseExposition, select, sum } from './exposition.js';

const LAB = `tm${process.pid % 10000}`;

// The lab node with an automatic host endpoint and failsafes off: outside traffic to the node is
// denied by the host's default deny, on SSH (a protected port) as on 9100 ("other").
const NODE = `
apiVersion: v1
kind: Node
metadata:
  name: lab-node
  labels: {role: worker}
  annotations: {lab.weir.dev/ports: "22/TCP,9100/TCP"}
`;

// Three namespaces whose pods take no ingress (default deny) and a client in a fourth: denied
// flows land in x, y and z; with a cap of 2 values per label the third namespace is "other".
const PODS = `
${['c', 'x', 'y', 'z'].map((ns) => `apiVersion: v1
kind: Namespace
metadata: {name: ${ns}}
---
`).join('')}apiVersion: v1
kind: Pod
metadata: {name: client, namespace: c, labels: {app: client}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: open, namespace: c, labels: {app: open}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
${['x', 'y', 'z'].map((ns) => `---
apiVersion: v1
kind: Pod
metadata: {name: srv, namespace: ${ns}, labels: {app: srv}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: ${ns}}
spec: {podSelector: {}, policyTypes: [Ingress]}
`).join('')}`;

function requireRoot(): void {
  if (process.getuid?.() !== 0) assert.fail('this test needs root (network namespaces, BPF): run `sudo npm test`');
}

test('the registry holds exactly the catalog: names, types, help, labels', () => {
  for (const podLabels of [false, true]) {
    const built = buildRegistry({ podLabels });
    const got = built.registry.getMetricsAsArray().map((m) => m.name).sort();
    assert.deepEqual(got, METRICS.map((m) => m.name).sort());
    for (const m of METRICS) {
      const spec: MetricSpec = m;
      assert.deepEqual(built.labelNames(m.name), [...spec.labels, ...(podLabels ? spec.optionalLabels ?? [] : [])], m.name);
    }
  }
  // docs/metrics.md lists every metric with its labels
  const doc = readFileSync(path.join(repoRoot, 'docs', 'metrics.md'), 'utf8');
  for (const m of METRICS) {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${m.name}\` |`));
    assert.ok(row, `docs/metrics.md has a row for ${m.name}`);
    const spec: MetricSpec = m;
    for (const l of [...spec.labels, ...(spec.optionalLabels ?? [])]) assert.ok(row.includes(`\`${l}\``), `docs/metrics.md: ${m.name} label ${l}`);
  }
  // names follow the conventions the catalog promises
  for (const m of METRICS) {
    assert.match(m.name, /^weir_[a-z0-9_]+$/, m.name);
    if (m.type === 'counter') assert.match(m.name, /_total$/, `counter ${m.name} ends in _total`);
    else assert.doesNotMatch(m.name, /_total$/, `${m.type} ${m.name} does not end in _total`);
    if (m.type === 'histogram') assert.match(m.name, /_seconds$/, `histogram ${m.name} names its unit`);
  }
});

test('label values: caps, policies, reasons, knobs', () => {
  const cap = new LabelCap(2);
  assert.deepEqual(['a', 'b', 'c', 'a', 'd'].map((v) => cap.value(v)), ['a', 'b', OVERFLOW_LABEL_VALUE, 'a', OVERFLOW_LABEL_VALUE]);
  assert.equal(policyLabel('x/allow-a ingress[0]'), 'x/allow-a');
  assert.equal(policyLabel('gnp/deny-ssh ingress[0] Deny'), 'gnp/deny-ssh');
  assert.equal(policyLabel(''), 'none');
  assert.deepEqual(['DENY_POLICY', 'ALLOW_ESTABLISHED', 'DROP_SPOOFED', 'PASS_NDP', 'AUDIT', 'UNKNOWN'].map(reasonVerdict), ['deny', 'allow', 'drop', 'pass', 'audit', 'unknown']);
  assert.throws(() => parseLabelCap('0'), /--metrics-max-label-values: "0" must be an integer/);
  assert.throws(() => parseProtectedPorts('tcp:22,http:80'), /--metrics-protected-ports: entry 2 "http:80"/);
  // a node agent's labels: rejected kinds stay a fixed set; apply failures by what threw
  assert.deepEqual(['NetworkPolicy', 'File', 'Secret', ''].map(rejectedKindLabel), ['NetworkPolicy', 'File', OVERFLOW_LABEL_VALUE, OVERFLOW_LABEL_VALUE]);
  const compileError = new Error('spec.ingress[0]: bad');
  const fromCompile = (e: object) => e === compileError;
  assert.deepEqual([
    new MapCapacityError('weir_policy_v3_0', 'policy', 100, 64, 1), compileError, new BpfError('BpfMap.update', 7, 'E2BIG'), new Error('saving ids.json'), 'a string',
  ].map((e) => applyFailureReason(e, fromCompile)), ['map_capacity', 'compile', 'datapath', 'other', 'other']);
});

test('a live agent\'s /metrics: every series in the catalog and every catalog metric in it, values from the datapath', { timeout: 180_000 }, async () => {
  requireRoot();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-metrics-catalog-'));
  let lab: Lab | undefined;
  let agent: Agent | undefined;
  let dp: Datapath | undefined;
  try {
    const manifest = path.join(dir, 'pods.yaml');
    writeFileSync(manifest, PODS);
    const node = path.join(dir, 'node.yaml');
    writeFileSync(node, NODE);
    lab = (await Lab.up(LAB, [node, manifest], { autoHostEndpoints: true, failsafes: { disabled: true } })).lab;
    agent = await runAgent({
      lab: LAB, store: { dataDir: path.join(dir, 'chdb') }, intervalMs: 1000, spoolDir: path.join(dir, 'spool'),
      metrics: { podLabels: true, maxLabelValues: 2 },
    });

    const probe = (to: string, timeoutMs: number) => probeLab(lab!.snapshot, { from: 'c/client', to, port: 80, protocol: 'TCP', family: 4, timeoutMs });
    // one at a time, so x and y are the first two namespaces the cap keeps
    const results = [];
    for (const to of ['c/open', 'x/srv', 'y/srv', 'z/srv']) results.push((await probe(to, to === 'c/open' ? 1500 : 400)).results[0]!.connected);
    assert.deepEqual(results, [true, false, false, false], 'client -> open allowed, -> x/y/z srv denied');
    for (const port of [22, 9100]) {
      const r = await probeLab(lab.snapshot, { from: 'world', to: 'host', port, protocol: 'TCP', family: 4, timeoutMs: 400 });
      assert.equal(r.results[0]!.connected, false, `world -> host:${port} denied (failsafes off, host default deny)`);
    }
    await agent.flush();

    const res = await fetch(`${agent.url}${METRICS_PATH}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), promClient.register.contentType);
    const body = await res.text();
    const scrape = parseExposition(body);

    // every series in the catalog, with the catalog's labels
    for (const s of scrape.samples) {
      const spec = specOfSeries(s.name);
      assert.ok(spec, `series ${s.name} is not in src/metrics/catalog.ts`);
      const want = [...spec.labels, ...(spec.optionalLabels ?? []), ...(s.name.endsWith('_bucket') ? ['le'] : [])].sort();
      assert.deepEqual(Object.keys(s.labels).sort(), want, `labels of ${s.name}`);
    }
    // every catalog metric in the scrape, with its type and help
    for (const m of METRICS) {
      assert.equal(scrape.types.get(m.name), m.type, `# TYPE of ${m.name}`);
      assert.equal(scrape.help.get(m.name), m.help, `# HELP of ${m.name}`);
    }
    const unlabelled = METRICS.filter((m) => m.labels.length === 0).map((m) => m.name);
    for (const name of unlabelled) {
      const spec = specOfSeries(name)!;
      const series = spec.type === 'histogram' ? `${name}_count` : name;
      assert.equal(select(scrape, series).length, 1, `${series} has its one series`);
    }

    // rows: denied flows into x and y by name, z past the cap; pods named (the knob is on)
    const denied = select(scrape, 'weir_policy_verdicts_total', { verdict: 'denied' });
    assert.deepEqual(denied.map((s) => s.labels.namespace).sort(), ['other', 'x', 'y'], JSON.stringify(denied));
    assert.ok(denied.every((s) => s.value >= 1 && s.labels.policy === 'none'), 'default deny: policy "none"');
    assert.deepEqual(select(scrape, 'weir_flows_total', { verdict: 'denied', namespace: 'x' }).map((s) => s.labels.pod), ['x/srv']);
    assert.ok(sum(select(scrape, 'weir_flow_rows_total', { kind: 'denied' })) >= 3);
    assert.ok(sum(select(scrape, 'weir_store_write_duration_seconds_count')) >= 1, 'store inserts timed');
    assert.ok(sum(select(scrape, 'weir_store_rows_written_total')) >= 3);
    assert.equal(sum(select(scrape, 'weir_agent_ready')), 1);
    assert.equal(sum(select(scrape, 'weir_store_up')), 1);
    assert.equal(sum(select(scrape, 'weir_endpoints', { kind: 'pod' })), 5);
    assert.ok(sum(select(scrape, 'weir_endpoints', { kind: 'host_interface' })) >= 1, 'the uplink is a protected host interface');
    // denies to the node: SSH by port, 9100 as "other"; the other protected ports exist at 0
    assert.ok(sum(select(scrape, 'weir_host_denied_total', { source_kind: 'world', protocol: 'tcp', port: '22' })) >= 1, 'world -> host:22');
    assert.ok(sum(select(scrape, 'weir_host_denied_total', { source_kind: 'world', protocol: 'tcp', port: 'other' })) >= 1, 'world -> host:9100');
    assert.equal(sum(select(scrape, 'weir_host_denied_total', { source_kind: 'world', protocol: 'tcp', port: '6443' })), 0);
    assert.equal(select(scrape, 'weir_host_denied_total', { port: '9100' }).length, 0, 'unprotected ports get no label of their own');

    // scrape-time values: what the datapath's own maps say now (no traffic since the flush)
    dp = Datapath.open(labPinRoot(LAB));
    for (const [reason, v] of dp.reasonStats()) {
      if (v.packets === 0n) continue;
      assert.equal(sum(select(scrape, 'weir_datapath_packets_total', { reason })), Number(v.packets), `packets of ${reason}`);
    }
    assert.ok(sum(select(scrape, 'weir_datapath_packets_total', { verdict: 'deny' })) >= 3, 'denied SYNs counted by the datapath');
    assert.equal(sum(select(scrape, 'weir_ringbuf_events_sent_total')), Number(dp.counters().get('EVENTS_SENT') ?? 0n));
    const slot = dp.generation() & 1;
    const endpoints = dp.slotMap('endpoints', slot);
    assert.equal(sum(select(scrape, 'weir_bpf_map_entries', { map: 'endpoints' })), [...endpoints.keys()].length);
    assert.equal(sum(select(scrape, 'weir_bpf_map_capacity', { map: 'ct' })), dp.map('weir_ct_v3').maxEntries);
    assert.ok(sum(select(scrape, 'weir_bpf_map_entries', { map: 'ct' })) >= 1, 'the allowed connection is tracked');

    // the exposition passes Prometheus's own linter
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    assert.ok(!lint.error, `promtool (Debian package prometheus): ${lint.error?.message}`);
    assert.equal(lint.status, 0, `promtool check metrics: ${lint.stdout}${lint.stderr}`);
  } finally {
    dp?.close();
    await agent?.close().catch(() => undefined);
    lab?.close();
    await Lab.down(LAB);
    rmSync(dir, { recursive: true, force: true });
  }
});
