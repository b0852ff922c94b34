// `npm run bench -- host`: what host protection costs per packet. Through the real pipeline
// (datastore objects -> compiler with host options -> Datapath.apply into a loaded weir.o), under
// BPF_PROG_TEST_RUN, single runs against the no-op program measured the same way:
//  - a new flow from an outside address to the host entering a policed interface
//    (weir_from_host_dev), allowed by the LAST rule of a global tier of 1, 10 and 100 rules (the
//    walk is linear in the rules before the match: this is its worst case);
//  - the same flow to a failsafe port (decided before any policy);
//  - an established packet of a host flow (conntrack only, no walk);
//  - a new pod-to-pod flow at the destination's weir_to_pod, with no global policy and with one
//    selecting the pod whose only rule is Pass (the global tier's cost in front of NetworkPolicy).
// Test runs happen on lo (ifindex 1), so lo is the policed interface here.
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { BpfObject, RingBufferReader, type BpfProgram } from '../src/datapath/libbpf.js';
import * as abi from '../src/datapath/abi.js';
import { Datapath, PROGRAMS } from '../src/datapath/datapath.js';
import { ClusterState } from '../src/datastore/cluster.js';
import type { KubeObject, Pod } from '../src/datastore/objects.js';
import type { GlobalNetworkPolicy, GlobalRule, HostEndpoint } from '../src/datastore/host-objects.js';
import { compilePolicy, type PlacedPod } from '../src/policy/compile.js';
import { DEFAULT_FAILSAFES } from '../src/policy/failsafe.js';
import { IdAllocator } from '../src/policy/ids.js';
import { tcpPacket, TcpFlag } from '../test/helpers/packets.js';
import { bpfObjectPath } from '../src/paths.js';
import { check, median, onInterrupt, printFinal, requireRoot, round, singles, type Metrics } from './common.js';

const TC_ACT_OK = 0;
const NODE = 'bench-node';
const NODE_IP = '10.243.0.1';
const CLIENT = '192.0.2.100';
const SERVICE_PORT = 9100;
const RULE_COUNTS = [1, 10, 100] as const;

interface Options { singles: number }
const DEFAULT_OPTIONS: Options = { singles: 5000 };
const QUICK_OPTIONS: Options = { singles: 1000 };

const anyEntity = { nets: [], notNets: [], ports: [], notPorts: [] } as const;

/** n rules: n-1 Deny rules for other sources (never matching), then Allow TCP SERVICE_PORT. */
function hostPolicy(n: number): GlobalNetworkPolicy {
  const rules: GlobalRule[] = [];
  for (let i = 0; i < n - 1; i++) {
    rules.push({ action: 'Deny', protocol: 'TCP', source: { ...anyEntity, nets: [`203.0.113.${i % 250}/32`] }, destination: { ...anyEntity, ports: [{ from: 1000 + i, to: 1000 + i }] } });
  }
  rules.push({ action: 'Allow', protocol: 'TCP', source: anyEntity, destination: { ...anyEntity, ports: [{ from: SERVICE_PORT, to: SERVICE_PORT }] } });
  return {
    kind: 'GlobalNetworkPolicy', name: `host-${n}`, annotations: {}, order: 10,
    selector: { matchLabels: { role: 'node' }, matchExpressions: [] },
    types: ['Ingress'], ingress: rules, egress: [], applyOnForward: false,
  };
}

const passPods: GlobalNetworkPolicy = {
  kind: 'GlobalNetworkPolicy', name: 'pass-pods', annotations: {}, order: 5,
  selector: { matchLabels: { app: 'server' }, matchExpressions: [] },
  types: ['Ingress'], ingress: [{ action: 'Pass', source: anyEntity, destination: anyEntity }], egress: [], applyOnForward: false,
};

const hep: HostEndpoint = {
  kind: 'HostEndpoint', name: `${NODE}-lo`, labels: { role: 'node' }, annotations: {}, node: NODE, interfaceName: 'lo', expectedIPs: [NODE_IP],
};

function pods(): { objects: KubeObject[]; placed: PlacedPod[]; server: string; client: string } {
  const ns: KubeObject = { kind: 'Namespace', name: 'bench', labels: { 'kubernetes.io/metadata.name': 'bench' } };
  const server: Pod = { kind: 'Pod', namespace: 'bench', name: 'server', labels: { app: 'server' }, ports: [], ips: ['10.244.0.10'] };
  const client: Pod = { kind: 'Pod', namespace: 'bench', name: 'client', labels: { app: 'client' }, ports: [], ips: ['10.244.0.11'] };
  return { objects: [ns, server, client], placed: [server, client].map((pod) => ({ pod, ips: pod.ips, ifindex: 0 })), server: '10.244.0.10', client: '10.244.0.11' };
}

export async function benchHost(opts: Options): Promise<Metrics> {
  requireRoot('the host benchmark');
  const pinRoot = mkdtempSync(path.join('/sys/fs/bpf', 'weir-bench-host-'));
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
    const fromHostDev = dp.program(PROGRAMS.fromHostDev);
    const toPod = dp.program(PROGRAMS.toPod);
    reader = new RingBufferReader(dp.map(abi.MapName.events), () => undefined);
    const drain = () => { reader!.consume(); };
    const { objects, placed, server, client } = pods();
    const ids = new IdAllocator();
    const apply = (policies: GlobalNetworkPolicy[]): void => {
      const cluster = new ClusterState(objects);
      dp!.apply(compilePolicy(cluster, placed, ids, {
        hostIps: [NODE_IP],
        host: { node: NODE, hostEndpoints: [hep], globalPolicies: policies, failsafes: DEFAULT_FAILSAFES, interfaces: new Map([['lo', 1]]) },
      }));
    };
    let sport = 1024;
    const next = () => (sport = sport >= 65000 ? 1024 : sport + 1);
    const metrics: Metrics = {};
    const measure = (prog: BpfProgram, packetFor: () => Buffer, what: string): { ns: number; noop: number } => {
      const runs: number[] = [], base: number[] = [];
      for (let done = 0; done < opts.singles; done += 500) {
        const n = Math.min(500, opts.singles - done);
        base.push(...singles(noop, n, () => tcpPacket(CLIENT, NODE_IP, 1, SERVICE_PORT), TC_ACT_OK, 'no-op', drain));
        runs.push(...singles(prog, n, packetFor, TC_ACT_OK, what, drain));
      }
      return { ns: median(runs), noop: median(base) };
    };

    for (const n of RULE_COUNTS) {
      apply([hostPolicy(n)]);
      const r = measure(fromHostDev, () => tcpPacket(CLIENT, NODE_IP, next(), SERVICE_PORT, TcpFlag.SYN), `new host flow, ${n} rules`);
      metrics[`host_new_flow_${n}_rules_ns`] = r.ns;
      metrics[`host_new_flow_${n}_rules_ratio`] = round(r.ns / r.noop);
      console.log(`new flow to the host, allowed by rule ${n} of ${n}: ${r.ns} ns = ${round(r.ns / r.noop)}x the no-op (${r.noop} ns)`);
    }
    const fs = measure(fromHostDev, () => tcpPacket(CLIENT, NODE_IP, next(), 22, TcpFlag.SYN), 'new failsafe flow');
    metrics.host_failsafe_ratio = round(fs.ns / fs.noop);
    console.log(`new flow to a failsafe port (tcp/22): ${fs.ns} ns = ${metrics.host_failsafe_ratio}x the no-op`);
    const est = tcpPacket(CLIENT, NODE_IP, 999, SERVICE_PORT, TcpFlag.SYN);
    check(fromHostDev.testRun({ data: est, dataOutSize: 0 }).retval === TC_ACT_OK, 'opening the established host flow');
    const e = measure(fromHostDev, () => tcpPacket(CLIENT, NODE_IP, 999, SERVICE_PORT, TcpFlag.ACK), 'established host flow');
    metrics.host_established_ratio = round(e.ns / e.noop);
    console.log(`established packet of a host flow: ${e.ns} ns = ${metrics.host_established_ratio}x the no-op`);

    apply([]);
    const plain = measure(toPod, () => tcpPacket(client, server, next(), 80, TcpFlag.SYN), 'new pod flow, no global policy');
    apply([passPods]);
    const passed = measure(toPod, () => tcpPacket(client, server, next(), 80, TcpFlag.SYN), 'new pod flow, global Pass');
    metrics.pod_new_flow_ns = plain.ns;
    metrics.pod_new_flow_global_pass_ns = passed.ns;
    metrics.pod_global_tier_overhead_ratio = round(passed.ns / plain.ns);
    console.log(`new pod flow: ${plain.ns} ns without global policies, ${passed.ns} ns behind a global Pass rule (${metrics.pod_global_tier_overhead_ratio}x)`);
    return metrics;
  } finally {
    teardown();
    unhook();
  }
}

export async function main(args: readonly string[]): Promise<void> {
  const metrics = await benchHost(args.includes('--quick') ? QUICK_OPTIONS : DEFAULT_OPTIONS);
  printFinal('host', metrics);
}
