// The reliability tests' rig: a real datapath (its own pin root, `rel-...`), a small cluster
// compiled into it (one server pod; clients allowed and denied by a NetworkPolicy), the endpoint
// registry the agent names flows with, and the pipeline benchmark's real BPF producer
// (bench/pipeline-child.ts: weir_to_pod under BPF_PROG_TEST_RUN in a child process, one new flow
// per run, every run's verdict checked) for floods.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Datapath, MAPS, PROGRAMS } from '../../src/datapath/datapath.js';
import * as abi from '../../src/datapath/abi.js';
import { ClusterState } from '../../src/datastore/cluster.js';
import type { KubeObject, NetworkPolicy, Pod } from '../../src/datastore/objects.js';
import { compilePolicy, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { EndpointRegistry } from '../../src/flows/registry.js';
import { ruleNamer, type RuleNamer } from '../../src/flows/enrich.js';
import { repoRoot } from '../../src/paths.js';
import { tcpPacket, TcpFlag } from '../helpers/packets.js';
import type { ProducerConfig, ProducerPair } from '../../bench/pipeline-child.js';
import { testPinRoot } from '../helpers/pins.js';

export const SERVER_PORT = 8080;
/** BPF_PROG_TEST_RUN's return codes: TC_ACT_OK (allowed), TC_ACT_SHOT (denied) */
export const ALLOWED = 0;
export const DENIED = 2;
const PRODUCER = path.join(repoRoot, 'dist', 'bench', 'pipeline-child.js');
/** IPv4 + TCP: the source port's offset in tcpPacket()'s frame (Ethernet 14 + IPv4 20). */
const SPORT_OFFSET = 34;

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new Error(`${what} loads BPF programs and needs root: run it as root (it fails rather than skips)`);
}

export interface Rig {
  readonly dp: Datapath;
  readonly pinRoot: string;
  readonly registry: EndpointRegistry;
  readonly ruleName: RuleNamer;
  /** allowed pairs first, then denied ones */
  readonly pairs: readonly ProducerPair[];
  readonly allowedClients: readonly string[];
  readonly deniedClients: readonly string[];
  readonly server: string;
  /** a temporary directory for the store and the spool */
  readonly dir: string;
  cleanup(): void;
}

/** rel-srv/server (app=server) admits team=ok pods of any namespace on 8080; rel-a has 4 such
 * clients, rel-b 4 clients of team=other (denied by default deny). */
export async function installRig(name: string): Promise<Rig> {
  const pinRoot = testPinRoot(`rel-${name}`);
  const dir = mkdtempSync(path.join(os.tmpdir(), `rel-${name}-`));
  if (existsSync(pinRoot)) Datapath.uninstall(pinRoot);
  let dp: Datapath | undefined;
  const cleanup = () => {
    try { dp?.close(); } finally {
      Datapath.uninstall(pinRoot);
      rmSync(dir, { recursive: true, force: true });
    }
  };
  try {
    dp = await Datapath.install(pinRoot);
    const server = '10.99.0.1';
    const allowedClients = [1, 2, 3, 4].map((i) => `10.99.1.${i}`);
    const deniedClients = [1, 2, 3, 4].map((i) => `10.99.2.${i}`);
    const objects: KubeObject[] = ['rel-srv', 'rel-a', 'rel-b'].map((ns) => ({ kind: 'Namespace', name: ns, labels: { 'kubernetes.io/metadata.name': ns } }));
    const pod = (namespace: string, podName: string, labels: Record<string, string>, ip: string): Pod =>
      ({ kind: 'Pod', namespace, name: podName, labels, ports: [], ips: [ip] });
    const pods = [
      pod('rel-srv', 'server', { app: 'server' }, server),
      ...allowedClients.map((ip, i) => pod('rel-a', `ok-${i}`, { app: 'client', team: 'ok' }, ip)),
      ...deniedClients.map((ip, i) => pod('rel-b', `other-${i}`, { app: 'client', team: 'other' }, ip)),
    ];
    objects.push(...pods);
    const policy: NetworkPolicy = {
      kind: 'NetworkPolicy', namespace: 'rel-srv', name: 'server-from-ok', annotations: {},
      podSelector: { matchLabels: { app: 'server' }, matchExpressions: [] },
      policyTypes: ['Ingress'], egress: [],
      ingress: [{
        peers: [{ namespaceSelector: { matchLabels: {}, matchExpressions: [] }, podSelector: { matchLabels: { team: 'ok' }, matchExpressions: [] } }],
        ports: [{ protocol: 'TCP', port: SERVER_PORT }],
      }],
    };
    objects.push(policy);
    const placed: PlacedPod[] = pods.map((p) => ({ pod: p, ips: p.ips, ifindex: 0 }));
    const ids = new IdAllocator();
    dp.apply(compilePolicy(new ClusterState(objects), placed, ids));
    const registry = new EndpointRegistry({ node: `rel-${name}-node` });
    const since = Date.now() - 3_600_000;
    for (const o of objects) {
      if (o.kind === 'Namespace') registry.upsertNamespace(o.name, o.labels);
      if (o.kind === 'Pod') registry.upsertPod({ namespace: o.namespace, name: o.name, labels: o.labels, ips: o.ips, node: `rel-${name}-node`, since }, since);
    }
    const pairs: ProducerPair[] = [
      ...allowedClients.map((src) => ({ src, dst: server, dport: SERVER_PORT, expect: ALLOWED })),
      ...deniedClients.map((src) => ({ src, dst: server, dport: SERVER_PORT, expect: DENIED })),
    ];
    return { dp, pinRoot, registry, ruleName: ruleNamer((id) => ids.ruleInfo(id)), pairs, allowedClients, deniedClients, server, dir, cleanup };
  } catch (err) {
    cleanup();
    throw err;
  }
}

export interface Produced {
  readonly runs: number;
  readonly ms: number;
  /** runs whose verdict was not the pair's `expect` */
  readonly mismatches: number;
  readonly cpuMs: number;
}

/** The benchmark's producer in a child process (on CPU `cpu` when given: a LOST record is
 * written by the next reservation on the CPU whose reservations failed). */
export function runProducer(cfg: ProducerConfig, cpu?: number): Promise<Produced> {
  const node = [process.execPath, PRODUCER, 'producer', JSON.stringify(cfg)];
  const [cmd, ...args] = cpu === undefined ? node : ['taskset', '-c', String(cpu), ...node];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) { reject(new Error(`producer exited ${code}: ${err.trim()}`)); return; }
      resolve(JSON.parse(out.trim().split('\n').pop()!) as Produced);
    });
  });
}

/** In-process producer for steady load: `runs` new flows over the pairs from `sport` on (each
 * run its own source port, so its own flow); returns the runs whose verdict was wrong. */
export class LoadGenerator {
  private readonly packets: Buffer[];
  private next = 0;
  offered = 0;
  allowed = 0;
  denied = 0;
  mismatches = 0;

  constructor(private readonly rig: Rig, private readonly firstSport = 1024) {
    this.packets = rig.pairs.map((p) => tcpPacket(p.src, p.dst, firstSport, p.dport, TcpFlag.SYN));
  }

  run(runs: number): void {
    const prog = this.rig.dp.program(PROGRAMS.toPod);
    const n = this.rig.pairs.length;
    for (let i = 0; i < runs; i++) {
      const k = this.next % n;
      const sport = this.firstSport + Math.floor(this.next / n);
      if (sport > 65_535) throw new Error('LoadGenerator: out of source ports');
      this.next++;
      const pkt = this.packets[k]!;
      pkt.writeUInt16BE(sport, SPORT_OFFSET);
      const r = prog.testRun({ data: pkt, dataOutSize: 0 });
      this.offered++;
      if (this.rig.pairs[k]!.expect === ALLOWED) this.allowed++;
      else this.denied++;
      if (r.retval !== this.rig.pairs[k]!.expect) this.mismatches++;
    }
  }
}

/** The datapath's event counters (weir_counters_v1), summed over CPUs. */
export function kernelCounters(dp: Datapath): { sent: number; lost: number } {
  const c = dp.counters();
  return { sent: Number(c.get('EVENTS_SENT') ?? 0n), lost: Number(c.get('EVENTS_LOST') ?? 0n) };
}

/** Failed reservations not yet reported by a LOST record (weir_lost_pend_v1), over CPUs. */
export function pendingLost(dp: Datapath): number {
  const raw = dp.map(MAPS.lostPending).lookup(abi.encodeIndexKey(0));
  return raw ? Number(abi.sumPerCpuU64(raw)) : 0;
}

/** Packets per verdict reason (weir_stats_v2), summed over CPUs. */
export function reasonPackets(dp: Datapath): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [reason, s] of dp.reasonStats()) out[reason] = Number(s.packets);
  return out;
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms: number, stepMs = 50): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
