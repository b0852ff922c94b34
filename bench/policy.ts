// `npm run bench -- policy`: what policy costs as it grows. A cluster of 1,000 pods is compiled
// with 1, 100 and 10,000 NetworkPolicies through the real pipeline (datastore -> compiler ->
// Datapath.apply into a loaded weir.o), then:
//  - per-packet cost of the policy path: new flows (a fresh source port per run, so conntrack never
//    answers) into a pod isolated by policy 0, allowed by its rule, and from a pod no rule allows
//    (denied), under BPF_PROG_TEST_RUN, against the no-op program measured the same way (repeat=1);
//    the identity-keyed design should make 10,000 policies cost what 1 costs;
//  - the time to compile and apply 10,000 policies over 1,000 pods;
//  - the latency from a policy change to the datapath enforcing it: a policy's port changes, the
//    set is recompiled and applied, and the new port is checked to pass (and the old to be denied).
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { BpfObject } from '../src/datapath/libbpf.js';
import * as abi from '../src/datapath/abi.js';
import { Datapath, PROGRAMS } from '../src/datapath/datapath.js';
import { ClusterState } from '../src/datastore/cluster.js';
import type { KubeObject, NetworkPolicy, Pod } from '../src/datastore/objects.js';
import { compilePolicy, type PlacedPod } from '../src/policy/compile.js';
import { IdAllocator } from '../src/policy/ids.js';
import { labAddress } from '../src/lab/addresses.js';
import { bpfObjectPath } from '../src/paths.js';
import { RingBufferReader } from '../src/datapath/libbpf.js';
import { tcpPacket, TcpFlag } from '../test/helpers/packets.js';
import { check, median, onInterrupt, printFinal, requireRoot, round, singles, type Metrics } from './common.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
export const GOALS = { ratio10kVs1: 1.15, policyPath: 4, compileApply10kS: 2, updateP99Ms: 100 } as const;

const PODS = 1000;
const NAMESPACES = 20;
const APPS = 50;
const POLICY_COUNTS = [1, 100, 10_000] as const;
const BASE_PORT = 1000;

interface Options { singles: number; updates: number }
const DEFAULT_OPTIONS: Options = { singles: 5000, updates: 50 };
const QUICK_OPTIONS: Options = { singles: 1000, updates: 15 };

/** 1,000 pods in 20 namespaces with 50 app labels. Pod i is (ns-(i%20), a(i%50)), so a namespace
 * holds the apps congruent to it mod 10: 100 (namespace, app) identities. */
function pods(): { objects: KubeObject[]; placed: PlacedPod[] } {
  const objects: KubeObject[] = [];
  for (let n = 0; n < NAMESPACES; n++) {
    objects.push({ kind: 'Namespace', name: `ns-${n}`, labels: { 'kubernetes.io/metadata.name': `ns-${n}`, team: `t${n % 5}` } });
  }
  const placed: PlacedPod[] = [];
  for (let i = 0; i < PODS; i++) {
    const a = labAddress(i + 10);
    const pod: Pod = {
      kind: 'Pod', namespace: `ns-${i % NAMESPACES}`, name: `pod-${i}`,
      labels: { app: `a${i % APPS}` }, ports: [], ips: [a.ipv4, a.ipv6],
    };
    objects.push(pod);
    placed.push({ pod, ips: pod.ips, ifindex: 0 });
  }
  return { objects, placed };
}

/** Policy j: pods app=a(j%50) in ns-(j%20) accept app=a((j+10)%50) of their namespace on one port
 * (BASE_PORT + j, unless `port` is given), so 10,000 policies make 10,000 distinct keys. */
function policy(j: number, port?: number): NetworkPolicy {
  return {
    kind: 'NetworkPolicy', namespace: `ns-${j % NAMESPACES}`, name: `p-${j}`, annotations: {},
    podSelector: { matchLabels: { app: `a${j % APPS}` }, matchExpressions: [] },
    policyTypes: ['Ingress'], egress: [],
    ingress: [{
      peers: [{ podSelector: { matchLabels: { app: `a${(j + 10) % APPS}` }, matchExpressions: [] } }],
      ports: [{ protocol: 'TCP', port: port ?? BASE_PORT + j }],
    }],
  };
}

/** Pod i sits in ns-(i%20) with app a(i%50): the first pod with the wanted pair. */
function podWith(ns: number, app: number): number {
  for (let i = 0; i < PODS; i++) if (i % NAMESPACES === ns && i % APPS === app) return i;
  throw new Error(`no pod in ns-${ns} with app a${app}`);
}

export async function benchPolicy(opts: Options): Promise<Metrics> {
  requireRoot('the policy benchmark');
  const pinRoot = mkdtempSync(path.join('/sys/fs/bpf', 'weir-bench-policy-'));
  let dp: Datapath | undefined;
  let noopObj: BpfObject | undefined;
  let reader: RingBufferReader | undefined;
  const teardown = (): void => {
    reader?.close();
    dp?.close();
    noopObj?.close();
    Datapath.uninstall(pinRoot);
  };
  const unhook = onInterrupt(teardown);
  try {
    noopObj = BpfObject.open(bpfObjectPath('noop'));
    await noopObj.load();
    const noop = noopObj.program('weir_noop');
    dp = await Datapath.install(pinRoot);
    const toPod = dp.program(PROGRAMS.toPod);
    // Records of new flows go to the ring; drain it so it never fills (losses would skew nothing
    // here, but a full ring is not the path being measured).
    reader = new RingBufferReader(dp.map(abi.MapName.events), () => undefined);
    const drain = () => { reader!.consume(); };

    const { objects: podObjects, placed } = pods();
    // Policy 0 (ns-0, app a0, from a10 on port BASE_PORT): server, allowed client, denied client.
    const server = labAddress(podWith(0, 0) + 10).ipv4;
    const client = labAddress(podWith(0, 10) + 10).ipv4;
    const stranger = labAddress(podWith(0, 20) + 10).ipv4;
    const ids = new IdAllocator();
    const compileApply = (policies: NetworkPolicy[]): number => {
      const t0 = process.hrtime.bigint();
      const cluster = new ClusterState([...podObjects, ...policies]);
      const compiled = compilePolicy(cluster, placed, ids);
      dp!.apply(compiled);
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };

    const metrics: Metrics = {};
    const perCount: Record<number, { allow: number; deny: number; noop: number; keys: number }> = {};
    let sport = 1024;
    for (const count of POLICY_COUNTS) {
      const policies = Array.from({ length: count }, (_, j) => policy(j));
      const ms = compileApply(policies);
      // the active copy of the (double-buffered) policy state
      const keys = [...dp.slotMap('policy', dp.generation() & 1).keys()].length;
      console.log(`${String(count).padStart(6)} policies: compiled and applied in ${ms.toFixed(0)} ms (${keys} policy keys)`);
      if (count === 10_000) metrics.compile_apply_10k_s = round(ms / 1000, 3);

      // Interleave blocks so noise hits all three alike.
      const allow: number[] = [], deny: number[] = [], base: number[] = [];
      const block = 500;
      for (let done = 0; done < opts.singles; done += block) {
        const n = Math.min(block, opts.singles - done);
        base.push(...singles(noop, n, () => tcpPacket(client, server, 1, BASE_PORT), TC_ACT_OK, 'no-op', drain));
        allow.push(...singles(toPod, n, () => tcpPacket(client, server, (sport = sport >= 65000 ? 1024 : sport + 1), BASE_PORT, TcpFlag.SYN), TC_ACT_OK, `${count} policies, allowed new flow`, drain));
        deny.push(...singles(toPod, n, () => tcpPacket(stranger, server, (sport = sport >= 65000 ? 1024 : sport + 1), BASE_PORT, TcpFlag.SYN), TC_ACT_SHOT, `${count} policies, denied new flow`, drain));
      }
      perCount[count] = { allow: median(allow), deny: median(deny), noop: median(base), keys };
      const p = perCount[count]!;
      console.log(`        new flow allowed ${p.allow} ns, denied ${p.deny} ns, no-op (single runs) ${p.noop} ns`);
    }

    const one = perCount[1]!, tenK = perCount[10_000]!;
    metrics.noop_single_ns = tenK.noop;
    metrics.policy_allow_1_ns = one.allow;
    metrics.policy_allow_100_ns = perCount[100]!.allow;
    metrics.policy_allow_10k_ns = tenK.allow;
    metrics.policy_deny_10k_ns = tenK.deny;
    metrics.policy_path_ns = tenK.deny;
    metrics.policy_path_ratio = round(tenK.deny / tenK.noop);
    metrics.ratio_10k_vs_1 = round(tenK.allow / one.allow, 3);
    metrics.ratio_10k_vs_1_deny = round(tenK.deny / one.deny, 3);

    // Update latency: move policy 0 to a port no other policy uses, recompile the whole set, apply,
    // then check that the datapath enforces the new port and no longer the previous one.
    const latencies: number[] = [];
    let policies = Array.from({ length: 10_000 }, (_, j) => policy(j));
    const UPDATE_PORT = 20_000; // above every BASE_PORT + j
    for (let u = 1; u <= opts.updates; u++) {
      policies = [policy(0, UPDATE_PORT + u), ...policies.slice(1)];
      const ms = compileApply(policies);
      const next = () => (sport = sport >= 65000 ? 1024 : sport + 1);
      check(toPod.testRun({ data: tcpPacket(client, server, next(), UPDATE_PORT + u, TcpFlag.SYN), dataOutSize: 0 }).retval === TC_ACT_OK,
        `after update ${u}: port ${UPDATE_PORT + u} should be allowed`);
      if (u > 1) {
        check(toPod.testRun({ data: tcpPacket(client, server, next(), UPDATE_PORT + u - 1, TcpFlag.SYN), dataOutSize: 0 }).retval === TC_ACT_SHOT,
          `after update ${u}: port ${UPDATE_PORT + u - 1} should be denied again`);
      }
      latencies.push(ms);
      drain();
    }
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)]!;
    metrics.update_p50_ms = round(median(latencies), 1);
    metrics.update_p99_ms = round(p99, 1);

    console.log('');
    console.log(`policy path (new denied flow, 10k policies): ${tenK.deny} ns = ${metrics.policy_path_ratio}x the no-op (goal <= ${GOALS.policyPath}x)`);
    console.log(`10k vs 1 policy, allowed new flow: ${metrics.ratio_10k_vs_1}x (goal <= ${GOALS.ratio10kVs1}x); denied: ${metrics.ratio_10k_vs_1_deny}x`);
    console.log(`compile + apply 10k policies over ${PODS} pods: ${metrics.compile_apply_10k_s} s (goal <= ${GOALS.compileApply10kS} s)`);
    console.log(`policy change -> enforced: p50 ${metrics.update_p50_ms} ms, p99 ${metrics.update_p99_ms} ms over ${opts.updates} changes (goal p99 <= ${GOALS.updateP99Ms} ms)`);
    return metrics;
  } finally {
    teardown();
    unhook();
  }
}

export async function main(args: readonly string[]): Promise<void> {
  const metrics = await benchPolicy(args.includes('--quick') ? QUICK_OPTIONS : DEFAULT_OPTIONS);
  printFinal('policy', metrics);
}
