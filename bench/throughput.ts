// `npm run bench -- throughput`: iperf3 TCP, pod to pod, through a bare lab network (node netns +
// two pods, no BPF) and through the same topology with Weir's full datapath attached and a
// default-deny + allow-5201 policy in force (bench/throughput-lab.yaml via Lab.up). Runs alternate
// between the two labs (A B, B A, ...) so drift in the machine's speed hits both alike; each
// figure is the median of its runs.
//
// All traffic stays inside the labs' namespaces. Both labs are torn down in `finally`, and on
// Ctrl-C / SIGTERM, with their iperf3 servers.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab } from '../src/lab/lab.js';
import { LabNetwork } from '../src/lab/network.js';
import { labAddress } from '../src/lab/addresses.js';
import { repoRoot } from '../src/paths.js';
import { check, median, onInterrupt, printFinal, requireRoot, round, type Metrics } from './common.js';

export const GOAL_RATIO = 0.95;
export const IPERF_PORT = 5201;
/** A port no rule allows: the negative check that the policy is really enforced. */
const DENIED_PORT = 5202;
const BARE_LAB = 'benchbare';
const WEIR_LAB = 'benchweir';
const MANIFEST = path.join(repoRoot, 'bench', 'throughput-lab.yaml');
const SERVER_KEY = 'bench/iperf-server';
const CLIENT_KEY = 'bench/iperf-client';
const SERVER_READY_TIMEOUT_MS = 5_000;
// iperf3 is not pinned to CPUs (-A): tried on the 2-core machine of docs/performance.md, pinning
// made runs far noisier whenever anything else was busy on the pinned CPU.

export interface ThroughputOptions {
  /** seconds measured per iperf3 run (after `omit` seconds of warm-up that are not counted) */
  seconds: number;
  omit: number;
  /** runs per lab */
  reps: number;
}

export const DEFAULT_OPTIONS: ThroughputOptions = { seconds: 5, omit: 1, reps: 5 };

interface Endpoints {
  name: string;
  serverNs: string;
  clientNs: string;
  serverIp: string;
  server?: ChildProcess;
  gbps: number[];
}

interface Exec { code: number | null; stdout: string; stderr: string }

function exec(file: string, args: readonly string[], timeoutMs: number): Promise<Exec> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? (err as unknown as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** iperf3 -s in the server pod; resolves once it listens. */
async function startServer(ep: Endpoints): Promise<void> {
  // `ip netns exec` execs iperf3 in place, so the child's pid is iperf3's.
  const child = spawn('ip', ['netns', 'exec', ep.serverNs, 'iperf3', '-s', '-p', String(IPERF_PORT)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  ep.server = child;
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const deadline = Date.now() + SERVER_READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${ep.name}: iperf3 server exited (${child.exitCode}): ${stderr.trim()}`);
    const r = await exec('ip', ['netns', 'exec', ep.serverNs, 'ss', '-Hltn', `sport = :${IPERF_PORT}`], 5_000);
    if (r.code === 0 && r.stdout.trim() !== '') return;
    await sleep(50);
  }
  throw new Error(`${ep.name}: iperf3 server not listening on ${IPERF_PORT} after ${SERVER_READY_TIMEOUT_MS} ms`);
}

async function stopServer(ep: Endpoints): Promise<void> {
  const child = ep.server;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(2_000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

interface IperfResult { gbps: number; retransmits: number }

async function iperf(ep: Endpoints, opts: ThroughputOptions, port = IPERF_PORT): Promise<IperfResult> {
  const args = ['netns', 'exec', ep.clientNs, 'iperf3', '-c', ep.serverIp, '-p', String(port),
    '-t', String(opts.seconds), '-O', String(opts.omit), '-J', '--connect-timeout', '2000'];
  const r = await exec('ip', args, (opts.seconds + opts.omit + 20) * 1000);
  let j: { error?: string; end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } } };
  try {
    j = JSON.parse(r.stdout) as typeof j;
  } catch {
    throw new Error(`${ep.name}: iperf3 -c ${ep.serverIp}:${port} (exit ${r.code}) printed no JSON: ${(r.stdout + r.stderr).trim().slice(0, 400)}`);
  }
  if (j.error || r.code !== 0) throw new Error(`${ep.name}: iperf3 -c ${ep.serverIp}:${port} failed (exit ${r.code}): ${j.error ?? r.stderr.trim()}`);
  const bps = j.end?.sum_received?.bits_per_second;
  check(typeof bps === 'number' && bps > 0, `${ep.name}: iperf3 reported no received throughput`);
  return { gbps: bps / 1e9, retransmits: j.end?.sum_sent?.retransmits ?? 0 };
}

function reasonDelta(before: Map<string, { packets: bigint }>, after: Map<string, { packets: bigint }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) {
    const d = v.packets - (before.get(k)?.packets ?? 0n);
    if (d > 0n) out[k] = Number(d);
  }
  return out;
}

export async function benchThroughput(opts: ThroughputOptions = DEFAULT_OPTIONS): Promise<Metrics> {
  requireRoot('the throughput benchmark');
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'weir-bench-'));
  const bareNet = new LabNetwork({ lab: BARE_LAB, stateDir });
  let lab: Lab | undefined;
  const sides: Endpoints[] = [];
  // One teardown, whoever asks first (finally or a signal); the other awaits the same promise, so
  // the process never exits halfway through it.
  let tearingDown: Promise<void> | undefined;
  const teardown = (): Promise<void> => (tearingDown ??= tearDownAll());
  const tearDownAll = async (): Promise<void> => {
    await Promise.all(sides.map((s) => stopServer(s)));
    lab?.close();
    await Lab.down(WEIR_LAB).catch((e: Error) => console.error(`bench: ${WEIR_LAB} teardown: ${e.message}`));
    await bareNet.destroy().catch((e: Error) => console.error(`bench: ${BARE_LAB} teardown: ${e.message}`));
    rmSync(stateDir, { recursive: true, force: true });
  };
  const unhook = onInterrupt(teardown);
  try {
    // Leftovers of an interrupted earlier run carry our names: clear them first.
    await Lab.down(WEIR_LAB);
    await bareNet.destroy();

    console.log(`throughput: iperf3 TCP pod to pod, ${opts.reps} runs of ${opts.seconds} s (+${opts.omit} s warm-up) per lab, alternating`);
    // (a) bare: the same topology as a lab, nothing attached.
    await bareNet.createNode();
    const bareServer = labAddress(10);
    const bs = await bareNet.addPod({ key: SERVER_KEY, ...bareServer, ports: [] });
    const bc = await bareNet.addPod({ key: CLIENT_KEY, ...labAddress(11), ports: [] });
    const bare: Endpoints = { name: `bare (${BARE_LAB})`, serverNs: bs.netns, clientNs: bc.netns, serverIp: bareServer.ipv4, gbps: [] };
    sides.push(bare);

    // (b) Weir: datapath attached to both pods' veths, policy compiled into its maps.
    const up = await Lab.up(WEIR_LAB, [MANIFEST]);
    lab = up.lab;
    const ps = lab.snapshot.pods[SERVER_KEY];
    const pc = lab.snapshot.pods[CLIENT_KEY];
    check(ps?.ipv4 && pc, `lab ${WEIR_LAB} has no pods ${SERVER_KEY} and ${CLIENT_KEY}`);
    const weir: Endpoints = { name: `weir (${WEIR_LAB})`, serverNs: ps.netns, clientNs: pc.netns, serverIp: ps.ipv4, gbps: [] };
    sides.push(weir);

    await startServer(bare);
    await startServer(weir);

    // The policy must really be in force: a port no rule allows is dropped by default deny.
    const statsBefore = lab.dp.reasonStats();
    const denied = await iperf(weir, { seconds: 1, omit: 0, reps: 1 }, DENIED_PORT).then(() => false, () => true);
    const denyDelta = reasonDelta(statsBefore, lab.dp.reasonStats());
    check(denied && (denyDelta.DENY_DEFAULT ?? 0) > 0,
      `${weir.name}: a connection to port ${DENIED_PORT}, which no rule allows, was not denied by default deny ` +
      `(connected: ${!denied}, verdicts: ${JSON.stringify(denyDelta)})`);
    console.log(`  policy check: client -> server:${DENIED_PORT} denied (${JSON.stringify(denyDelta)})`);

    const runStats = lab.dp.reasonStats();
    const retrans: Record<string, number> = { bare: 0, weir: 0 };
    for (let rep = 0; rep < opts.reps; rep++) {
      const order = rep % 2 === 0 ? [bare, weir] : [weir, bare];
      for (const ep of order) {
        const r = await iperf(ep, opts);
        ep.gbps.push(r.gbps);
        retrans[ep === bare ? 'bare' : 'weir']! += r.retransmits;
        console.log(`  run ${rep + 1} ${ep.name.padEnd(20)} ${r.gbps.toFixed(2).padStart(6)} Gbit/s  (${r.retransmits} retransmits)`);
      }
    }
    const verdicts = reasonDelta(runStats, lab.dp.reasonStats());
    console.log(`  weir verdicts during the runs (packets): ${JSON.stringify(verdicts)}`);
    check((verdicts.ALLOW_POLICY ?? 0) > 0 && (verdicts.ALLOW_ESTABLISHED ?? 0) > 0,
      `${weir.name}: iperf3 traffic did not go through Weir's policy and conntrack paths (verdicts: ${JSON.stringify(verdicts)})`);
    const dropped = Object.entries(verdicts).filter(([k]) => k.startsWith('DENY') || k.startsWith('DROP'));
    if (dropped.length) console.log(`  note: Weir dropped packets during the runs: ${JSON.stringify(Object.fromEntries(dropped))}`);

    const bareGbps = median(bare.gbps);
    const weirGbps = median(weir.gbps);
    const ratio = weirGbps / bareGbps;
    // Run-to-run spread, (max - min) / median: when it is larger than |1 - ratio|, the ratio is
    // within this machine's noise and one run of the bench cannot tell the two apart.
    const spread = (xs: number[]): number => (Math.max(...xs) - Math.min(...xs)) / median(xs);
    const bareSpread = spread(bare.gbps);
    const weirSpread = spread(weir.gbps);
    console.log('');
    console.log(`  run-to-run spread (max-min)/median: bare ${(bareSpread * 100).toFixed(0)}%, weir ${(weirSpread * 100).toFixed(0)}%` +
      (Math.max(bareSpread, weirSpread) > Math.abs(1 - ratio) ? ' - larger than the difference measured: treat the ratio as noise-bound' : ''));
    console.log(`  bare ${bareGbps.toFixed(2)} Gbit/s, weir ${weirGbps.toFixed(2)} Gbit/s (medians): ` +
      `ratio ${ratio.toFixed(3)} (goal >= ${GOAL_RATIO}: ${ratio >= GOAL_RATIO ? 'met' : 'NOT met'})`);
    return {
      bare_gbps: round(bareGbps),
      weir_gbps: round(weirGbps),
      ratio: round(ratio, 3),
      goal_met: ratio >= GOAL_RATIO,
      bare_spread: round(bareSpread, 3),
      weir_spread: round(weirSpread, 3),
      bare_runs_gbps: bare.gbps.map((g) => round(g)).join(' '),
      weir_runs_gbps: weir.gbps.map((g) => round(g)).join(' '),
      bare_retransmits: retrans.bare!,
      weir_retransmits: retrans.weir!,
      weir_dropped_packets: dropped.reduce((a, [, n]) => a + n, 0),
      seconds: opts.seconds,
      reps: opts.reps,
    };
  } finally {
    await teardown();
    unhook();
  }
}

export async function main(args: readonly string[]): Promise<void> {
  const opts = { ...DEFAULT_OPTIONS };
  if (args.includes('--quick')) Object.assign(opts, { seconds: 2, omit: 1, reps: 1 });
  printFinal('throughput', await benchThroughput(opts));
}
