// Lock-out safety (issue 8, item 7).
// (a) With failsafes on, no host policy makes the node unreachable on its failsafe ports: random
//     host-protection worlds (test/helpers/host-policy-gen.ts), each made as hostile as possible
//     (a HostEndpoint on the test interface, a deny-everything GlobalNetworkPolicy at a random
//     order and explicit Deny rules for the failsafe ports themselves), compiled by the real
//     compiler and applied to weir.o; every failsafe port, IPv4 and IPv6, must be allowed by the
//     host reference evaluator AND by the host-device programs (BPF_PROG_TEST_RUN), new flow and
//     reply. A control round with failsafes off shows the same worlds do deny those ports.
// (b) `weir lab up` / traffic / `weir lab down` leave the root network namespace as they found it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ClusterState } from '../../src/datastore/cluster.js';
import type { GlobalNetworkPolicy, GlobalRule, HostEndpoint } from '../../src/datastore/host-objects.js';
import { compilePolicy, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { DEFAULT_FAILSAFE_INBOUND, DEFAULT_FAILSAFE_OUTBOUND, FAILSAFES_DISABLED, failsafesFrom, type Failsafes, type FailsafePort } from '../../src/policy/failsafe.js';
import { evaluateHost, type HostPacket, type HostWorld } from '../../src/policy/host-reference.js';
import * as abi from '../../src/datapath/abi.js';
import { TestDatapath, requireBpf } from '../helpers/datapath.js';
import { packet } from '../helpers/packets.js';
import { NODE_IPS, OUTSIDE_IPS, gen, rng, type Gen } from '../helpers/policy-gen.js';
import { NODE, TEST_IFINDEX, TEST_IFNAME, randomHostScenario, randomSelector } from '../helpers/host-policy-gen.js';
import { labDir, labPinRoot } from '../../src/lab/state.js';
import { repoRoot } from '../../src/paths.js';

const SEED = Number(process.env.WEIR_FUZZ_SEED ?? 8007);
const ROUNDS = Number(process.env.WEIR_LOCKOUT_ROUNDS ?? 150); // docs/reliability.md's figure: 300
const OK = 0;
const SHOT = 2;
const PROTO: Record<FailsafePort['protocol'], number> = { TCP: abi.Proto.TCP, UDP: abi.Proto.UDP, SCTP: abi.Proto.SCTP };

const any = (): GlobalRule['source'] => ({ nets: [], notNets: [], ports: [], notPorts: [] });

/** Failsafes on, with a random subset of the default lists (never empty both ways). */
function randomFailsafesOn(g: Gen): Failsafes {
  const pick = (list: string): string => {
    const items = list.split(',').filter(() => g.chance(0.6));
    return (items.length > 0 ? items : [list.split(',')[0]!]).join(',');
  };
  return g.chance(0.4) ? failsafesFrom({}) : failsafesFrom({ inbound: pick(DEFAULT_FAILSAFE_INBOUND), outbound: pick(DEFAULT_FAILSAFE_OUTBOUND) });
}

/** The worst a host policy set can do: deny everything both ways, and name the failsafe ports. */
function hostilePolicies(g: Gen, failsafes: Failsafes, round: number): GlobalNetworkPolicy[] {
  const denyPorts = (list: readonly FailsafePort[]): GlobalRule[] => list.map((f): GlobalRule => ({
    action: 'Deny', protocol: f.protocol, source: any(), destination: { ...any(), ports: [{ from: f.port, to: f.port }] },
  }));
  const inbound = failsafes.inbound.length > 0 ? failsafes.inbound : failsafesFrom({}).inbound;
  const outbound = failsafes.outbound.length > 0 ? failsafes.outbound : failsafesFrom({}).outbound;
  const order = (): { order?: number } => (g.chance(0.2) ? {} : { order: g.int(0, 1000) });
  return [
    {
      kind: 'GlobalNetworkPolicy', name: `lockout-deny-all-${round}`, annotations: {}, ...order(),
      selector: g.chance(0.6) ? { matchLabels: {}, matchExpressions: [] } : randomSelector(g),
      types: ['Ingress', 'Egress'], ingress: [{ action: 'Deny', source: any(), destination: any() }],
      egress: [{ action: 'Deny', source: any(), destination: any() }], applyOnForward: g.chance(0.5),
    },
    {
      kind: 'GlobalNetworkPolicy', name: `lockout-deny-failsafes-${round}`, annotations: {}, ...order(), selector: { matchLabels: {}, matchExpressions: [] },
      types: ['Ingress', 'Egress'], ingress: denyPorts(inbound), egress: denyPorts(outbound), applyOnForward: false,
    },
  ];
}

interface Case {
  readonly direction: 'Ingress' | 'Egress';
  readonly port: FailsafePort;
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
}

function encode(c: Case, reply: boolean): Buffer {
  const [src, dst, sport, dport] = reply ? [c.dst, c.src, c.port.port, c.sport] : [c.src, c.dst, c.sport, c.port.port];
  switch (c.port.protocol) {
    case 'TCP': return packet({ src, dst, l4: { proto: 'tcp', sport, dport, flags: reply ? 0x12 : 0x02 } });
    case 'UDP': return packet({ src, dst, l4: { proto: 'udp', sport, dport } });
    case 'SCTP': return packet({ src, dst, l4: { proto: 'sctp', sport, dport } });
  }
}

test(`failsafe ports stay reachable under any host policy set (reference and datapath; seed ${SEED}, ${ROUNDS} rounds)`, async () => {
  requireBpf();
  const dp = await TestDatapath.load();
  const g = gen(rng(SEED));
  const stats = { rounds: 0, cases: 0, dpRuns: 0, controlDenied: 0, controlCases: 0, reasons: {} as Record<string, number> };
  const failures: string[] = [];
  let sport = 1024;
  try {
    for (let round = 0; round <= ROUNDS && failures.length < 20; round++) {
      // the last round is the control: failsafes off, the same kind of world must deny
      const control = round === ROUNDS;
      const scenario = randomHostScenario(g, round);
      const failsafes = control ? FAILSAFES_DISABLED : randomFailsafesOn(g);
      const covered = scenario.hostEndpoints.some((h) => h.node === NODE && h.interfaceName === TEST_IFNAME);
      const hostEndpoints: HostEndpoint[] = covered ? scenario.hostEndpoints : [...scenario.hostEndpoints, {
        kind: 'HostEndpoint', name: `${NODE}-lockout`, labels: {}, annotations: {}, node: NODE, interfaceName: TEST_IFNAME, expectedIPs: [],
      }];
      // a control world is not in audit mode (that would pass anyway)
      const heps = control ? hostEndpoints.map((h) => ({ ...h, annotations: {} })) : hostEndpoints;
      const globalPolicies = [...(control ? [] : scenario.globalPolicies), ...hostilePolicies(g, failsafes, round)];
      const cluster = new ClusterState(scenario.objects);
      const pods = [...cluster.pods.values()];
      const placed: PlacedPod[] = pods.map((pod) => ({ pod, ips: pod.ips, ifindex: 0 }));
      const compiled = compilePolicy(cluster, placed, new IdAllocator(), {
        hostIps: NODE_IPS,
        host: { node: NODE, hostEndpoints: heps, globalPolicies, failsafes, interfaces: new Map([[TEST_IFNAME, TEST_IFINDEX]]) },
      });
      dp.apply(compiled);
      for (const name of [abi.MapName.ct, abi.MapName.denyRateLimit]) {
        const m = dp.map(name);
        for (const k of [...m.keys()]) m.delete(k);
      }
      dp.drain();
      const world: HostWorld = {
        cluster, placement: new Map(pods.map((p) => [`${p.namespace}/${p.name}`, p.ips])), hostEndpoints: heps, globalPolicies, failsafes, nodeIps: NODE_IPS,
      };
      const ports = control ? { Ingress: failsafesFrom({}).inbound, Egress: failsafesFrom({}).outbound } : { Ingress: failsafes.inbound, Egress: failsafes.outbound };
      stats.rounds++;
      for (const direction of ['Ingress', 'Egress'] as const) {
        for (const port of ports[direction]) {
          for (const fam of [0, 1] as const) {
            const node = NODE_IPS[fam]!;
            const outside = g.pick(OUTSIDE_IPS[fam]);
            sport = sport >= 65000 ? 1024 : sport + 1;
            const c: Case = direction === 'Ingress' ? { direction, port, src: outside, dst: node, sport } : { direction, port, src: node, dst: outside, sport };
            const hp: HostPacket = { src: c.src, dst: c.dst, protocol: PROTO[port.protocol], srcPort: c.sport, dstPort: port.port };
            const ev = evaluateHost(world, { kind: 'host', node: NODE, interfaceName: TEST_IFNAME, direction }, hp);
            const [prog, back] = direction === 'Ingress' ? ['fromHostDev', 'toHostDev'] as const : ['toHostDev', 'fromHostDev'] as const;
            const rc = dp.run(prog, encode(c, false), { ifindex: TEST_IFINDEX });
            stats.dpRuns++;
            const where = `seed ${SEED} round ${round} ${direction} ${port.protocol}:${port.port} ${c.src} -> ${c.dst}`;
            if (control) {
              stats.controlCases++;
              if (ev.verdict === 'deny' && rc === SHOT) stats.controlDenied++;
              else failures.push(`${where}: control (failsafes off) expected deny, reference ${ev.verdict}, datapath rc ${rc}`);
              continue;
            }
            stats.cases++;
            const recs = TestDatapath.flows(dp.drain());
            const reason = recs.length > 0 ? abi.reasonName(recs[recs.length - 1]!.reason) : 'none';
            stats.reasons[reason] = (stats.reasons[reason] ?? 0) + 1;
            if (ev.verdict === 'deny') failures.push(`${where}: the reference denies a failsafe port (${JSON.stringify(ev.decision)})`);
            if (rc !== OK) failures.push(`${where}: the datapath drops a failsafe port (rc ${rc}, reason ${reason})`);
            // the answer must come back too
            const rrc = dp.run(back, encode(c, true), { ifindex: TEST_IFINDEX });
            stats.dpRuns++;
            if (rrc !== OK) failures.push(`${where}: the reply is dropped (rc ${rrc})`);
            dp.drain();
          }
        }
      }
    }
  } finally {
    dp.close();
  }
  console.log(`# figure lockout rounds=${stats.rounds} failsafe_cases=${stats.cases} datapath_runs=${stats.dpRuns} ` +
    `control_denied=${stats.controlDenied}/${stats.controlCases} reasons=${JSON.stringify(stats.reasons)}`);
  assert.deepEqual(failures, [], `failsafe ports lost:\n${failures.join('\n')}`);
  assert.ok(stats.cases > ROUNDS * 4, 'enough cases ran');
  assert.equal(stats.controlDenied, stats.controlCases, 'with failsafes off the hostile set does deny: the test has teeth');
});

// ---- (b) the lab leaves the root netns untouched ------------------------------------------------

const run = promisify(execFile);
const CLI = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
const LAB_CIDRS = ['10.244.', '10.243.0.', 'fd00:10:244:', 'fd00:10:243:'];

interface IfSnap { ifindex: number; ifname: string; mtu: number; flags: string[]; address?: string; master?: string; kind?: string; qdisc?: string }
interface RootSnap {
  netns: string | undefined;
  links: Map<number, IfSnap>;
  /** "ifname addr/prefix" */
  addrs: Set<string>;
  /** routes as JSON (no counters in them) */
  routes: Set<string>;
  /** "dev kind handle parent" */
  qdiscs: Set<string>;
  pins: Set<string>;
}

const json = async (cmd: string, args: string[]): Promise<unknown[]> => JSON.parse((await run(cmd, args, { maxBuffer: 64 << 20 })).stdout || '[]') as unknown[];

/** The namespace's state; netns: a named netns (the check's own control), else the root netns. */
async function snapshot(netns?: string): Promise<RootSnap> {
  const n = netns ? ['-n', netns] : [];
  const links = new Map<number, IfSnap>();
  for (const l of await json('ip', [...n, '-d', '-j', 'link', 'show']) as { ifindex: number; ifname: string; mtu: number; flags: string[]; address?: string; master?: string; linkinfo?: { info_kind?: string }; qdisc?: string }[]) {
    links.set(l.ifindex, { ifindex: l.ifindex, ifname: l.ifname, mtu: l.mtu, flags: [...l.flags].sort(), ...(l.address ? { address: l.address } : {}), ...(l.master ? { master: l.master } : {}), ...(l.linkinfo?.info_kind ? { kind: l.linkinfo.info_kind } : {}), ...(l.qdisc ? { qdisc: l.qdisc } : {}) });
  }
  const addrs = new Set<string>();
  for (const a of await json('ip', [...n, '-j', 'addr', 'show']) as { ifname: string; addr_info: { local: string; prefixlen: number }[] }[]) {
    for (const i of a.addr_info ?? []) addrs.add(`${a.ifname} ${i.local}/${i.prefixlen}`);
  }
  const routes = new Set<string>();
  for (const fam of ['-4', '-6']) {
    for (const r of await json('ip', [...n, fam, '-j', 'route', 'show', 'table', 'all']) as Record<string, unknown>[]) {
      // lifetimes count down by themselves (router advertisements, DHCP): not a change
      delete r.expires;
      delete r.cacheinfo;
      routes.add(JSON.stringify(r));
    }
  }
  const qdiscs = new Set<string>();
  for (const q of await json('tc', [...n, '-j', 'qdisc', 'show']) as { kind: string; handle: string; dev: string; parent?: string; root?: boolean }[]) {
    qdiscs.add(`${q.dev} ${q.kind} ${q.handle} ${q.parent ?? (q.root ? 'root' : '')}`);
  }
  const pins = new Set(!netns && existsSync('/sys/fs/bpf') ? readdirSync('/sys/fs/bpf') : []);
  return { netns, links, addrs, routes, qdiscs, pins };
}

/** tc filters on a root-netns interface that run a BPF program, by program id. */
async function bpfFilterProgIds(dev: string, netns: string | undefined): Promise<number[]> {
  const ids: number[] = [];
  for (const dir of ['ingress', 'egress']) {
    let filters: { options?: { prog?: { id?: number } } }[];
    try {
      filters = await json('tc', [...(netns ? ['-n', netns] : []), '-j', 'filter', 'show', 'dev', dev, dir]) as typeof filters;
    } catch {
      continue; // gone meanwhile (another test's interface), or no clsact
    }
    for (const f of filters) if (f.options?.prog?.id !== undefined) ids.push(f.options.prog.id);
  }
  return ids;
}

/** Everything in `snap` that is the lab's, by the lab's names, addresses and programs. */
async function labTraces(snap: RootSnap, lab: string, progIds: ReadonlySet<number>): Promise<string[]> {
  const out: string[] = [];
  for (const l of snap.links.values()) {
    if (l.ifname.includes(lab)) out.push(`interface ${l.ifname}`);
    for (const id of await bpfFilterProgIds(l.ifname, snap.netns)) if (progIds.has(id)) out.push(`tc filter on ${l.ifname} runs the lab's program ${id}`);
  }
  for (const a of snap.addrs) if (LAB_CIDRS.some((c) => a.split(' ')[1]!.startsWith(c))) out.push(`address ${a}`);
  for (const r of snap.routes) if (LAB_CIDRS.some((c) => r.includes(`"${c}`))) out.push(`route ${r}`);
  for (const q of snap.qdiscs) if (q.split(' ')[0]!.includes(lab)) out.push(`qdisc ${q}`);
  for (const p of snap.pins) if (p.includes(lab)) out.push(`bpffs /sys/fs/bpf/${p}`);
  return out;
}

/** Devices no test makes (lo and the machine's own NICs: no link kind), as they were. */
function machineDevices(snap: RootSnap): Map<number, string> {
  const out = new Map<number, string>();
  for (const l of snap.links.values()) {
    if (l.kind !== undefined && l.ifname !== 'lo') continue;
    const addrs = [...snap.addrs].filter((a) => a.startsWith(`${l.ifname} `)).sort();
    const qdiscs = [...snap.qdiscs].filter((q) => q.startsWith(`${l.ifname} `)).sort();
    const routes = [...snap.routes].filter((r) => r.includes(`"dev":"${l.ifname}"`)).sort();
    out.set(l.ifindex, JSON.stringify({ l, addrs, qdiscs, routes }));
  }
  return out;
}

test('weir lab up / probe / down leaves the root network namespace untouched', async () => {
  if (process.getuid?.() !== 0) assert.fail('lab tests need root (network namespaces, BPF): run `sudo npm test`');
  const lab = `lk${process.pid % 10000}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-lockout-'));
  const file = path.join(dir, 'pods.yaml');
  writeFileSync(file, `apiVersion: v1\nkind: Namespace\nmetadata: {name: lk}\n---\n` +
    `apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: lk, labels: {app: a}}\nspec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}\n---\n` +
    `apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: lk, labels: {app: b}}\nspec: {containers: [{name: c}]}\n`);
  const cli = (...args: string[]) => run(process.execPath, [CLI, ...args], { maxBuffer: 16 << 20 });
  const before = await snapshot();
  let up = false;
  try {
    await cli('lab', 'up', '--name', lab, '-f', file, '--agent-data-dir', path.join(dir, 'flows'));
    up = true;
    assert.ok(existsSync(labPinRoot(lab)), 'the lab pinned its datapath');
    // the lab's programs, by id: none of them may run on a root-netns interface
    const progIds = new Set<number>();
    for (const f of readdirSync(labPinRoot(lab)).filter((f) => f.startsWith('prog_'))) {
      const info = JSON.parse((await run('bpftool', ['-j', 'prog', 'show', 'pinned', path.join(labPinRoot(lab), f)])).stdout) as { id: number };
      progIds.add(info.id);
    }
    assert.ok(progIds.size > 0);
    const probe = JSON.parse((await cli('lab', 'probe', '--name', lab, '--port', '8080', '-o', 'json')).stdout) as { results: { connected: boolean }[] };
    assert.ok(probe.results.some((r) => r.connected), 'traffic flowed in the lab');
    const during = await snapshot();
    // the check itself can see the lab: in the lab's node netns it finds its uplink's address,
    // routes and programs
    const inNode = await labTraces(await snapshot(`weir-${lab}-node`), lab, progIds);
    assert.ok(inNode.some((t) => t.startsWith('tc filter')) && inNode.some((t) => t.startsWith('address ') && t.includes(' 10.243.0.1/')), `control: the lab is seen in its node netns (${inNode.join('; ')})`);
    assert.deepEqual(await labTraces(during, lab, progIds), [], 'while up, nothing of the lab is in the root netns');
    await cli('lab', 'down', '--name', lab);
    up = false;
    const after = await snapshot();
    assert.deepEqual(await labTraces(after, lab, progIds), [], 'after down, nothing of the lab remains in the root netns');
    assert.equal(existsSync(labPinRoot(lab)), false, 'its pin root is gone');
    assert.equal(existsSync(labDir(lab)), false, 'its state directory is gone');
    const netns = (await run('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(`weir-${lab}-`));
    assert.deepEqual(netns, [], 'its namespaces are gone');
    // Other test files create and remove their own things meanwhile: the comparison covers the
    // devices no test makes (lo and the machine's NICs), their addresses, qdiscs and routes.
    const was = machineDevices(before);
    const is = machineDevices(after);
    for (const [ifindex, state] of was) assert.equal(is.get(ifindex), state, `root-netns device ${ifindex} changed`);
    console.log(`# figure lab-root-netns machine_devices=${was.size} links_before=${before.links.size} links_during=${during.links.size} links_after=${after.links.size} lab_traces=0 lab_programs=${progIds.size}`);
  } finally {
    if (up) await cli('lab', 'down', '--name', lab).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});
