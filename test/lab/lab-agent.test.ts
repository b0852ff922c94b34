// `weir lab up` runs the lab's flow agent: a background `weir agent` process, ready when `up`
// returns, read by `weir observe --lab`, followed by `weir lab observe`, shown by `weir lab status`
// and stopped by `weir lab down`. Everything through the CLI, with real traffic between pods; each
// test has its own lab and store, removed in `finally`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab } from '../../src/lab/lab.js';
import { labDir, labPinRoot, readLabState } from '../../src/lab/state.js';
import { probeLab } from '../../src/lab/probe.js';
import { agentInfoFile, readAgentInfo } from '../../src/agent/discovery.js';
import { stopLabAgent } from '../../src/lab/lab-agent.js';
import type { FlowRow } from '../../src/store/row.js';
import { repoRoot } from '../../src/paths.js';
import { processAlive } from '../../src/process.js';

const run = promisify(execFile);
const CLI = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const labName = (suffix: string) => `tg${process.pid % 10000}${suffix}`;

function requireRoot(): void {
  if (process.getuid?.() !== 0) assert.fail('lab tests need root (network namespaces, BPF): run `sudo npm test`');
}

// d -> b:80 is denied (b admits only a); a -> b:80 is allowed by x/allow-a.
const PODS = `
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: d, namespace: x, labels: {app: d}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 80}]}]
`;

const mapped = (ip: string) => `::ffff:${ip}`;

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A test's lab: CLI with --name, a manifest and a store in a temporary directory. */
function setup(suffix: string) {
  const name = labName(suffix);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-lab-agent-'));
  const pods = path.join(dir, 'pods.yaml');
  writeFileSync(pods, PODS);
  const store = path.join(dir, 'store');
  const cli = (...args: string[]) => run(process.execPath, [CLI, ...args, '--name', name], { timeout: 120_000 });
  const cleanup = async () => {
    await Lab.down(name);
    rmSync(dir, { recursive: true, force: true });
  };
  return { name, dir, pods, store, cli, cleanup };
}

test('CLI: lab up starts the flow agent; observe reads denied flows from it; lab observe follows its stream; status shows it; down stops it', { timeout: 240_000 }, async () => {
  requireRoot();
  const t = setup('a');
  let agentPid: number | undefined;
  try {
    const up = await t.cli('lab', 'up', '-f', t.pods, '--agent-data-dir', t.store, '--agent-interval', '1s');
    const m = /^flow agent: pid (\d+), API (http:\/\/127\.0\.0\.1:\d+), store (\S+), log (\S+)$/m.exec(up.stdout);
    assert.ok(m, `lab up names its agent: ${up.stdout}`);
    agentPid = Number(m[1]);
    const url = m[2]!;
    assert.equal(m[3], t.store);
    assert.equal(m[4], path.join(labDir(t.name), 'agent.log'));

    // A process of its own, running `weir agent --lab NAME`, ready: agent.json names it, /readyz answers.
    assert.ok(processAlive(agentPid), 'the agent process runs after lab up returned');
    assert.notEqual(agentPid, process.pid);
    const argv = readFileSync(`/proc/${agentPid}/cmdline`, 'utf8').split('\0');
    assert.deepEqual(argv.slice(argv.indexOf('agent'), argv.indexOf('agent') + 3), ['agent', '--lab', t.name]);
    const info = readAgentInfo(t.name);
    assert.equal(info?.pid, agentPid);
    assert.equal(info?.url, url);
    assert.equal((await fetch(`${url}/readyz`)).status, 200);

    // weir lab observe follows the agent's stream while traffic flows.
    const observer = spawn(process.execPath, [CLI, 'lab', 'observe', '--json', '--duration', '8', '--name', t.name], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    observer.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    observer.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const observed = new Promise<number | null>((resolve) => observer.on('exit', (code) => resolve(code)));
    await until('lab observe to follow the agent', async () => (/through its flow agent/.test(err) ? true : undefined), 10_000);
    await new Promise((r) => setTimeout(r, 1000)); // its stream request reaches the agent

    // Real traffic: d -> b denied, a -> b allowed.
    const state = readLabState(t.name);
    const [a, b, d] = [state.pods['x/a']!, state.pods['x/b']!, state.pods['x/d']!];
    const denied = await probeLab(state, { from: 'x/d', to: 'x/b', port: 80, protocol: 'TCP', timeoutMs: 500 });
    assert.equal(denied.results[0]!.connected, false, 'x/allow-a keeps x/d out');
    const allowed = await probeLab(state, { from: 'x/a', to: 'x/b', port: 80, protocol: 'TCP', timeoutMs: 1500 });
    assert.equal(allowed.results[0]!.connected, true);

    // weir observe --lab NAME: the denied flow from the store, through the agent's API, with the
    // pods' names and their original addresses.
    const deniedRows = await until('the denied row in the store', async () => {
      const { stdout } = await run(process.execPath, [CLI, 'observe', '--lab', t.name, '--verdict', 'denied', '-o', 'json'], { timeout: 60_000 });
      const rows = (JSON.parse(stdout) as FlowRow[]).filter((r) => r.src.pod === 'd' && r.dst.pod === 'b');
      return rows.length > 0 ? rows : undefined;
    });
    const row = deniedRows[0]!;
    assert.deepEqual([row.kind, row.verdict, row.src.namespace, row.src.pod, row.dst.namespace, row.dst.pod, row.dst.port, row.protocol],
      ['denied', 'denied', 'x', 'd', 'x', 'b', 80, 6]);
    assert.equal(row.src.ip, mapped(d.ipv4!), 'the original source address');
    assert.equal(row.dst.ip, mapped(b.ipv4!), 'the original destination address');
    const table = await run(process.execPath, [CLI, 'observe', '--lab', t.name, '--verdict', 'denied'], { timeout: 60_000 });
    assert.match(table.stdout, /DENIED\s+x\/d\s+x\/b\s+80\/TCP/);

    // What lab observe printed: the agent's rows (one JSON row per line), the denied one and the
    // allowed flow aggregated with its rule.
    assert.equal(await observed, 0, `lab observe ended after --duration: ${err}`);
    const streamed = out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as FlowRow);
    assert.ok(streamed.some((r) => r.verdict === 'denied' && r.src.pod === 'd' && r.dst.pod === 'b' && r.src.ip === mapped(d.ipv4!)),
      `lab observe streamed the denied row (got ${streamed.map((r) => `${r.verdict} ${r.src.pod}->${r.dst.pod}`).join(', ')})`);
    const agg = streamed.find((r) => r.verdict === 'allowed' && r.src.pod === 'a' && r.dst.pod === 'b');
    assert.ok(agg, 'lab observe streamed the allowed flow');
    assert.equal(agg.policy, 'x/allow-a ingress[0]');
    assert.ok(agg.connectionsStarted >= 1);
    assert.ok(streamed.every((r) => r.src.ip !== mapped(a.ipv4!) || r.verdict !== 'allowed'), 'allowed rows are aggregates, without addresses');

    // weir lab status: the agent, its API and its counters.
    const status = await t.cli('lab', 'status');
    assert.match(status.stdout, new RegExp(`^FLOW AGENT\\n  running: pid ${agentPid}, API ${url.replace(/\./g, '\\.')}, store ${t.store}$`, 'm'));
    const counters = /rows written (\d+), events lost (\d+)/.exec(status.stdout);
    assert.ok(counters, status.stdout);
    assert.ok(Number(counters[1]) >= 2, 'rows written counted');
    assert.equal(Number(counters[2]), 0, 'nothing lost');

    // weir lab down stops the agent, removes agent.json and the pins; twice is fine.
    const down = await t.cli('lab', 'down');
    assert.match(down.stdout, new RegExp(`^stopped the flow agent \\(pid ${agentPid}\\)$`, 'm'));
    assert.match(down.stdout, /is down/);
    assert.equal(processAlive(agentPid), false, 'no agent process');
    assert.equal(existsSync(agentInfoFile(t.name)), false, 'no agent.json');
    assert.equal(existsSync(labPinRoot(t.name)), false, 'no pins');
    assert.equal(existsSync(labDir(t.name)), false, 'no lab directory');
    const again = await t.cli('lab', 'down');
    assert.match(again.stdout, /was not up/);
    assert.doesNotMatch(again.stdout, /stopped the flow agent/);
    // The store outlives the lab: observe reads it directly now.
    const after = await run(process.execPath, [CLI, 'observe', '--data-dir', t.store, '--verdict', 'denied'], { timeout: 60_000 });
    assert.match(after.stdout, /DENIED\s+x\/d\s+x\/b/);
  } finally {
    await t.cleanup();
    if (agentPid !== undefined && processAlive(agentPid)) { process.kill(agentPid, 'SIGKILL'); assert.fail('the agent outlived the lab'); }
  }
});

test('CLI: lab up --no-agent starts none; lab observe reads the ring, one record per line', { timeout: 120_000 }, async () => {
  requireRoot();
  const t = setup('b');
  try {
    const up = await t.cli('lab', 'up', '-f', t.pods, '--no-agent', '--agent-data-dir', t.store);
    assert.match(up.stdout, /is up: 3 pods/);
    assert.doesNotMatch(up.stdout, /flow agent/);
    assert.equal(existsSync(agentInfoFile(t.name)), false, 'no agent.json');
    assert.equal(existsSync(t.store), false, 'no store');
    const status = await t.cli('lab', 'status');
    assert.match(status.stdout, /^FLOW AGENT\n {2}not running/m);

    const observing = t.cli('lab', 'observe', '--json', '--duration', '3');
    await new Promise((r) => setTimeout(r, 1000));
    await probeLab(readLabState(t.name), { from: 'x/d', to: 'x/b', port: 80, protocol: 'TCP', timeoutMs: 500 });
    const { stdout, stderr } = await observing;
    assert.match(stderr, /from its ring buffer/);
    const records = stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; verdict?: string; src?: { name?: string }; dst?: { name?: string } });
    assert.ok(records.some((r) => r.type === 'deny' && r.src?.name === 'x/d' && r.dst?.name === 'x/b'),
      `a DENY record from the ring (got ${records.map((r) => r.type).join(' ')})`);
    const down = await t.cli('lab', 'down');
    assert.doesNotMatch(down.stdout, /stopped the flow agent/);
  } finally {
    await t.cleanup();
  }
});

test('CLI: an agent that cannot open its store fails lab up with its reason; the lab enforces policy; down cleans up', { timeout: 120_000 }, async () => {
  requireRoot();
  const t = setup('c');
  try {
    const notADir = path.join(t.dir, 'file');
    writeFileSync(notADir, 'not a directory');
    const up = await t.cli('lab', 'up', '-f', t.pods, '--agent-data-dir', path.join(notADir, 'store')).then(
      () => assert.fail('lab up succeeded without its agent'), (e: { code: number; stdout: string; stderr: string }) => e);
    assert.equal(up.code, 1);
    assert.match(up.stdout, /is up: 3 pods/);
    assert.match(up.stderr, /is up and enforces policy, but its flow agent did not start: cannot open the flow store .*ENOTDIR/);
    assert.match(up.stderr, /weir lab down/);
    assert.equal(readAgentInfo(t.name), undefined);
    assert.equal(existsSync(path.join(labDir(t.name), 'agent.pid')), false, 'no agent to stop');
    assert.match(readFileSync(path.join(labDir(t.name), 'agent.log'), 'utf8'), /cannot open the flow store/, 'the agent\'s log');
    // The datapath enforces without it.
    const state = readLabState(t.name);
    assert.equal((await probeLab(state, { from: 'x/d', to: 'x/b', port: 80, protocol: 'TCP', timeoutMs: 500 })).results[0]!.connected, false);
    assert.equal((await probeLab(state, { from: 'x/a', to: 'x/b', port: 80, protocol: 'TCP', timeoutMs: 1500 })).results[0]!.connected, true);
    const down = await t.cli('lab', 'down');
    assert.match(down.stdout, /is down/);
    assert.equal(existsSync(labPinRoot(t.name)), false);
  } finally {
    await t.cleanup();
  }
});

test('down stops the agent of a half-gone lab; one that ignores SIGTERM is killed; agent.json goes with it', { timeout: 120_000 }, async () => {
  requireRoot();
  const t = setup('d');
  let agentPid: number | undefined;
  try {
    const up = await t.cli('lab', 'up', '-f', t.pods, '--agent-data-dir', t.store);
    agentPid = Number(/^flow agent: pid (\d+)/m.exec(up.stdout)?.[1]);
    assert.ok(processAlive(agentPid));
    // A stopped process leaves SIGTERM pending: only SIGKILL ends it.
    process.kill(agentPid, 'SIGSTOP');
    // Half gone: the state file is lost (a failed teardown); pins, namespaces and the agent remain.
    rmSync(path.join(labDir(t.name), 'state.json'));
    const t0 = Date.now();
    assert.deepEqual(await stopLabAgent(t.name, 1_000), [agentPid]);
    assert.ok(Date.now() - t0 >= 1_000, 'SIGTERM first, SIGKILL after the timeout');
    assert.equal(processAlive(agentPid), false, 'no agent process');
    assert.equal(existsSync(agentInfoFile(t.name)), false, 'a killed agent\'s agent.json is removed');
    assert.deepEqual(await stopLabAgent(t.name), [], 'twice is fine');
    const down = await t.cli('lab', 'down');
    assert.match(down.stdout, /is down/, 'its pins were still there');
    assert.equal(existsSync(labDir(t.name)), false);
    assert.equal(existsSync(labPinRoot(t.name)), false);
  } finally {
    if (agentPid !== undefined && processAlive(agentPid)) process.kill(agentPid, 'SIGKILL');
    await t.cleanup();
  }
});
