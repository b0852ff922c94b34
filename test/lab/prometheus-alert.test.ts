// End to end: a real Prometheus server (Debian package prometheus) scrapes a real agent reading a
// real lab, evaluates alerts/weir.rules.yaml, and WeirDeniedFlowsHigh goes from inactive to firing
// once lab pods send traffic the lab's policy denies. The rules are the shipped ones with one test
// knob (docs/alerts.md, "Trying the rules"): WeirDeniedFlowsHigh's threshold 100 -> 2 and for: 0s,
// since a lab sends a handful of flows; the expression itself is the shipped one. The agent has
// an API token, so the scrape also shows Prometheus passing the token rule of /metrics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Lab } from '../../src/lab/lab.js';
import { probeLab } from '../../src/lab/probe.js';
import { runAgent, type Agent } from '../../src/agent/agent.js';
import { loadRules, overrideAlerts, rulesToYaml } from '../../src/metrics/rules.js';

const LAB = `tp${process.pid % 10000}`;
const ALERT = 'WeirDeniedFlowsHigh';
const THRESHOLD = 2;
const JOB = 'weir-agent';
const TOKEN = `tok-${process.pid}`;

// x/srv takes no ingress (a policy selects it and allows nothing): x/client -> x/srv is denied.
const PODS = `
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: x, labels: {app: client}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: srv, namespace: x, labels: {app: srv}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate-srv, namespace: x}
spec: {podSelector: {matchLabels: {app: srv}}, policyTypes: [Ingress]}
`;

function requireRoot(): void {
  if (process.getuid?.() !== 0) assert.fail('this test needs root (network namespaces, BPF): run `sudo npm test`');
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs: number, log: () => string): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}; prometheus said:\n${log().slice(-3000)}`);
    await sleep(250);
  }
}

interface PromAlert { labels: Record<string, string>; state: string }
interface PromRule { name: string; type: string; state?: string; health: string; lastEvaluation: string }

test('a real Prometheus scrapes the agent and WeirDeniedFlowsHigh goes from inactive to firing after denied lab traffic', { timeout: 240_000 }, async (t) => {
  requireRoot();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-prom-alert-'));
  let lab: Lab | undefined;
  let agent: Agent | undefined;
  let prom: ChildProcess | undefined;
  let promLog = '';
  try {
    const manifest = path.join(dir, 'pods.yaml');
    writeFileSync(manifest, PODS);
    lab = (await Lab.up(LAB, [manifest])).lab;
    agent = await runAgent({ lab: LAB, store: { dataDir: path.join(dir, 'chdb') }, intervalMs: 1000, spoolDir: path.join(dir, 'spool'), token: TOKEN });
    // /metrics under the API's token rule: Prometheus sends it (authorization below)
    assert.equal((await fetch(`${agent.url}/metrics`)).status, 401, '/metrics without the token');
    const target = new URL(agent.url!).host;

    const rulesFile = path.join(dir, 'weir.rules.yaml');
    writeFileSync(rulesFile, rulesToYaml(overrideAlerts(loadRules(), { [ALERT]: { for: '0s', threshold: THRESHOLD } })));
    const config = path.join(dir, 'prometheus.yml');
    writeFileSync(config, [
      'global: {scrape_interval: 1s, evaluation_interval: 1s}',
      `rule_files: [${JSON.stringify(rulesFile)}]`,
      `scrape_configs: [{job_name: ${JOB}, metrics_path: /metrics, authorization: {credentials: ${JSON.stringify(TOKEN)}}, static_configs: [{targets: [${JSON.stringify(target)}]}]}]`,
      '',
    ].join('\n'));
    const port = await freePort();
    const promUrl = `http://127.0.0.1:${port}`;
    prom = spawn('prometheus', [
      `--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    const spawned = prom;
    spawned.stdout!.on('data', (d: Buffer) => { promLog += d.toString(); });
    spawned.stderr!.on('data', (d: Buffer) => { promLog += d.toString(); });
    const exited = new Promise<never>((_, reject) => {
      spawned.once('error', (e) => reject(new Error(`cannot run prometheus (Debian package prometheus): ${e.message}`)));
      spawned.once('exit', (code) => reject(new Error(`prometheus exited (${code}):\n${promLog.slice(-3000)}`)));
    });
    exited.catch(() => undefined);
    const api = async <T>(p: string): Promise<T> => {
      const res = await Promise.race([fetch(`${promUrl}${p}`), exited]);
      const body = await res.json() as { status: string; data: T };
      if (body.status !== 'success') throw new Error(`${p}: ${JSON.stringify(body)}`);
      return body.data;
    };
    const query = (q: string) => api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(`/api/v1/query?query=${encodeURIComponent(q)}`);
    const alertRule = async () => (await api<{ groups: { rules: PromRule[] }[] }>('/api/v1/rules')).groups.flatMap((g) => g.rules).find((r) => r.name === ALERT);
    const active = async () => (await api<{ alerts: PromAlert[] }>('/api/v1/alerts')).alerts.filter((a) => a.labels.alertname === ALERT);
    const log = () => promLog;

    // Prometheus up, scraping the agent, and the agent ready by its own metric.
    await until('prometheus ready', async () => ((await fetch(`${promUrl}/-/ready`)).ok ? true : undefined), 60_000, log);
    await until('the agent scraped and ready', async () => {
      const r = await query(`weir_agent_ready{job="${JOB}"} == 1 and on (instance) up{job="${JOB}"} == 1`);
      return r.result.length === 1 ? true : undefined;
    }, 60_000, log);

    // Before traffic: the rule is evaluated (after the agent was up) and inactive, nothing active.
    const scrapedAt = Date.now();
    const before = await until('the alert rule evaluated after the first scrape', async () => {
      const r = await alertRule();
      return r && Date.parse(r.lastEvaluation) > scrapedAt + 1000 ? r : undefined;
    }, 30_000, log);
    assert.equal(before.health, 'ok');
    assert.equal(before.state, 'inactive');
    assert.deepEqual(await active(), []);
    const noDenied = await query('weir_policy_verdicts_total{verdict="denied"}');
    assert.deepEqual(noDenied.result, [], 'no denied flows counted yet');

    // Denied traffic between lab pods, in waves a few scrapes apart: the first wave creates the
    // series, the later ones are its increase.
    const probe = () => probeLab(lab!.snapshot, { from: 'x/client', to: 'x/srv', port: 80, protocol: 'TCP', family: 4, timeoutMs: 300 });
    const deadline = Date.now() + 90_000;
    let firing: PromAlert | undefined;
    let waves = 0;
    while (!firing) {
      assert.ok(Date.now() < deadline, `${ALERT} did not fire after ${waves} waves of denied flows; rule: ${JSON.stringify(await alertRule())}; prometheus said:\n${promLog.slice(-3000)}`);
      const r = await probe();
      assert.equal(r.results[0]!.connected, false, 'x/client -> x/srv:80 is denied');
      waves++;
      await sleep(1000);
      firing = (await active()).find((a) => a.state === 'firing');
    }
    t.diagnostic(`firing after ${waves} denied flows`);
    assert.equal(firing.labels.namespace, 'x');
    assert.equal(firing.labels.severity, 'warning');
    assert.ok(waves > THRESHOLD, `it took more than ${THRESHOLD} denied flows (${waves})`);
    assert.equal((await alertRule())?.state, 'firing');

    // What Prometheus scraped: the counter by namespace and policy, and no pod label by default.
    const denied = await query('weir_policy_verdicts_total{verdict="denied"}');
    assert.deepEqual(denied.result.map((s) => [s.metric.namespace, s.metric.policy]), [['x', 'none']]);
    assert.ok(Number(denied.result[0]!.value[1]) > THRESHOLD);
    assert.deepEqual((await query('weir_flows_total{pod!=""}')).result, [], 'no pod label without --metrics-pod-labels');
  } finally {
    if (prom && prom.exitCode === null && prom.signalCode === null) {
      const p = prom;
      const gone = new Promise<void>((resolve) => p.once('exit', () => resolve()));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(t);
    }
    await agent?.close().catch(() => undefined);
    lab?.close();
    await Lab.down(LAB);
    rmSync(dir, { recursive: true, force: true });
  }
});
