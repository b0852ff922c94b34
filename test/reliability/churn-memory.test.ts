// The agent's per-pod state under pod churn (issue 8, item 5): 10k pods added and removed in
// waves, addresses reused across waves, through the in-process parts that keep state per pod:
// the datastore (ClusterState) and the compiler with its id allocator, the EndpointRegistry
// (address history) and the flow aggregator (a FLOW_START and a FLOW_END per pod, flushed per
// wave). The heap, measured after forced GCs, must come back near its baseline once the
// registry's retention window has passed, and the registry's history must be bounded by that
// window (by time, not count) while keeping "who held this address when the packet flowed"
// right for records up to the window's age.
// The measurement runs in a child `node --expose-gc` (this file with --churn-worker).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ClusterState } from '../../src/datastore/cluster.js';
import { parseManifestText } from '../../src/datastore/manifest.js';
import type { KubeObject, Pod } from '../../src/datastore/objects.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { DEFAULT_RETENTION_MS, EndpointRegistry } from '../../src/flows/registry.js';
import { Aggregator } from '../../src/flows/aggregate.js';
import { enricher, ruleNamer } from '../../src/flows/enrich.js';
import { Direction, Hook, Proto, Reason, Verdict, type FlowEvent } from '../../src/datapath/abi.js';

const WAVES = 10;
const PER_WAVE = 1000;
/** addresses: fewer than pods churned, so every address is reused by later waves */
const POOL = 1500;
const WAVE_MS = 30_000;
const AGG_INTERVAL_MS = 5_000;
/** after churn, heap within this of the baseline */
const HEAP_BOUND_BYTES = 8 * 1024 * 1024;
const DEPLOYMENTS = 20;

interface Figures {
  heapBaseline: number;
  heapPeak: number;
  heapAfterChurn: number;
  heapAfterRetention: number;
  podsChurned: number;
  intervalsAtPeak: number;
  intervalsAfterChurn: number;
  intervalsAfterRetention: number;
  addressesAfterRetention: number;
  registryPodsAfter: number;
  identities: number;
  endpointIds: number;
  flowsTrackedAfter: number;
  rowsFlushed: number;
  attributionChecks: number;
  attributionWrong: number;
}

const ipOf = (n: number): string => `10.50.${Math.floor(n / 250)}.${(n % 250) + 1}`;
const slot = (n: number): number => ((n % POOL) + POOL) % POOL;

function baseObjects(): KubeObject[] {
  const problems: unknown[] = [];
  const yaml = ['a', 'b', 'c'].map((ns) => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${ns}}\n---\n` +
    `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: ${ns}}\n` +
    `spec: {podSelector: {matchLabels: {tier: web}}, ingress: [{from: [{podSelector: {}}], ports: [{port: 8080}]}]}\n---\n`).join('');
  const loaded = parseManifestText(yaml, 'churn.yaml', problems as never);
  if (problems.length) throw new Error(`bad test manifest: ${JSON.stringify(problems)}`);
  return loaded.map((l) => l.object);
}

function podOf(wave: number, i: number, ip: string): Pod {
  const dep = i % DEPLOYMENTS;
  // a rollout per wave: a new pod-template-hash, hence a new label set (identity) per wave
  return {
    kind: 'Pod', namespace: ['a', 'b', 'c'][dep % 3]!, name: `d${dep}-w${wave}-${i}`,
    labels: { app: `d${dep}`, tier: dep % 2 ? 'web' : 'db', 'pod-template-hash': `h${wave}` },
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], ips: [ip], serviceAccount: 'default', nodeName: 'n1',
  };
}

function flowEvent(type: FlowEvent['type'], src: string, dst: string, sport: number, tsNs: bigint): FlowEvent {
  return {
    type, cpu: 0, tsNs, startNs: tsNs, saddr: src, daddr: dst, sport, dport: 8080, proto: Proto.TCP, family: 4,
    direction: type === 'FLOW_END' ? Direction.BOTH : Direction.INGRESS, verdict: Verdict.ALLOW, reason: Reason.ALLOW_POLICY,
    hook: type === 'FLOW_END' ? Hook.GC : Hook.TO_POD, tcpFlags: 0, ifindex: 1, srcEp: 0, dstEp: 0, srcIdentity: 0, dstIdentity: 0,
    egressRuleId: 0, ingressRuleId: 0, count: 1, forwardRuleId: 0, packetsFwd: 3n, bytesFwd: 300n, packetsRev: 2n, bytesRev: 200n,
  };
}

function heap(): number {
  const gc = (globalThis as { gc?: () => void }).gc!;
  for (let i = 0; i < 4; i++) gc();
  return process.memoryUsage().heapUsed;
}

function churn(): Figures {
  const t0 = Date.UTC(2026, 10, 26, 12);
  let now = t0;
  // the monotonic clock of records: ns since t0
  const toMs = (ns: bigint): number => t0 + Number(ns / 1_000_000n);
  const nsAt = (ms: number): bigint => BigInt(ms - t0) * 1_000_000n;
  const state = new ClusterState(baseObjects());
  const ids = new IdAllocator();
  const registry = new EndpointRegistry({ node: 'n1' });
  const agg = new Aggregator({ enricher: enricher(registry, ruleNamer((id) => ids.ruleInfo(id))), toMs, startMs: t0 });
  let rows = 0;
  let intervalsAtPeak = 0;
  let heapPeak = 0;
  const checks: { ip: string; atMs: number; pod: string }[] = [];

  const compile = (): void => {
    const placed = [...state.pods.values()].map((pod) => ({ pod, ips: pod.ips, ifindex: 7 }));
    compilePolicy(state, placed, ids);
  };
  const flushTo = (endMs: number): void => {
    for (let t = now + AGG_INTERVAL_MS; t <= endMs; t += AGG_INTERVAL_MS) {
      rows += agg.flush(t).length;
      registry.expire(t); // as the pipeline does at every interval's end
    }
    now = endMs;
  };
  const wave = (w: number, measure: boolean): void => {
    const pods: Pod[] = [];
    for (let i = 0; i < PER_WAVE; i++) pods.push(podOf(w, i, ipOf(slot(w * PER_WAVE + i))));
    state.apply(pods);
    for (const p of pods) registry.upsertPod({ namespace: p.namespace, name: p.name, labels: p.labels, ips: p.ips, node: 'n1' }, now);
    compile();
    // one flow into every pod while it lives, and its end
    const client = ipOf(POOL + slot(w)); // outside the pool: the world
    for (const [i, p] of pods.entries()) agg.add(flowEvent('FLOW_START', client, p.ips[0]!, 10000 + i, nsAt(now + 1000)));
    for (const [i, p] of pods.entries()) agg.add(flowEvent('FLOW_END', client, p.ips[0]!, 10000 + i, nsAt(now + 2000)));
    // remember who held a few addresses now, to ask again after they were reused
    for (let i = 0; i < PER_WAVE; i += 97) checks.push({ ip: pods[i]!.ips[0]!, atMs: now + 1500, pod: pods[i]!.name });
    flushTo(now + WAVE_MS / 2);
    if (measure) {
      intervalsAtPeak = Math.max(intervalsAtPeak, registry.stats().intervals);
      heapPeak = Math.max(heapPeak, heap());
    }
    state.delete(pods);
    for (const p of pods) {
      registry.deletePod(p.namespace, p.name, now);
      ids.releaseEndpoint(`${p.namespace}/${p.name}`); // as the lab does when a pod goes
    }
    compile();
    flushTo(now + WAVE_MS / 2);
  };

  // warm-up (code compiled, caches at their size), then the baseline
  wave(-1, false);
  flushTo(now + DEFAULT_RETENTION_MS + 60_000);
  checks.length = 0;
  const heapBaseline = heap();
  for (let w = 0; w < WAVES; w++) wave(w, true);
  // Attribution as of the packet's time, within the retention window: the address has had
  // other holders since, the record still names the pod that held it then.
  let wrong = 0;
  const recent = checks.filter((c) => now - c.atMs < DEFAULT_RETENTION_MS);
  for (const c of recent) if (registry.lookup(c.ip, c.atMs)?.pod !== c.pod) wrong++;
  const intervalsAfterChurn = registry.stats().intervals;
  const heapAfterChurn = heap();
  flushTo(now + DEFAULT_RETENTION_MS + 60_000);
  const st = registry.stats();
  const idState = ids.toJSON();
  return {
    heapBaseline, heapPeak, heapAfterChurn, heapAfterRetention: heap(), podsChurned: WAVES * PER_WAVE,
    intervalsAtPeak, intervalsAfterChurn, intervalsAfterRetention: st.intervals, addressesAfterRetention: st.addresses, registryPodsAfter: st.pods,
    identities: Object.keys(idState.identities).length, endpointIds: Object.keys(idState.endpoints).length,
    flowsTrackedAfter: agg.stats().flowsTracked, rowsFlushed: rows, attributionChecks: recent.length, attributionWrong: wrong,
  };
}

if (process.argv.includes('--churn-worker')) {
  process.stdout.write(`${JSON.stringify(churn())}\n`);
} else {
  test(`pod churn (${WAVES} waves x ${PER_WAVE} pods, ${POOL} addresses reused): bounded registry, heap back to baseline`, async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--churn-worker'], { maxBuffer: 1 << 20, timeout: 240_000 });
    const f = JSON.parse(stdout.trim().split('\n').pop()!) as Figures;
    const mb = (n: number): string => (n / 1048576).toFixed(1);
    console.log(`# figure churn pods=${f.podsChurned} heap_baseline=${mb(f.heapBaseline)}MB heap_peak=${mb(f.heapPeak)}MB ` +
      `heap_after_churn=${mb(f.heapAfterChurn)}MB heap_after_retention=${mb(f.heapAfterRetention)}MB ` +
      `registry_intervals peak=${f.intervalsAtPeak} after_churn=${f.intervalsAfterChurn} after_retention=${f.intervalsAfterRetention} ` +
      `identities=${f.identities} endpoint_ids=${f.endpointIds} flows_tracked=${f.flowsTrackedAfter} rows=${f.rowsFlushed} ` +
      `attribution=${f.attributionChecks - f.attributionWrong}/${f.attributionChecks}`);
    assert.equal(f.attributionWrong, 0, 'records within the retention window name the pod that held the address then');
    assert.ok(f.attributionChecks > 0);
    // bounded by time: the window (10 min) holds at most the pods of the last 10 min of churn ...
    const perWindow = Math.ceil(DEFAULT_RETENTION_MS / WAVE_MS) * PER_WAVE;
    assert.ok(f.intervalsAtPeak <= perWindow + PER_WAVE, `registry history within the window's churn (${f.intervalsAtPeak} <= ${perWindow + PER_WAVE})`);
    // ... and nothing once the window has passed with no pod left
    assert.equal(f.registryPodsAfter, 0);
    assert.equal(f.intervalsAfterRetention, 0, 'every closed interval expired');
    assert.equal(f.addressesAfterRetention, 0);
    assert.equal(f.flowsTrackedAfter, 0, 'the aggregator tracks no ended flow');
    assert.equal(f.endpointIds, 0, 'released endpoint ids');
    assert.ok(f.heapAfterRetention - f.heapBaseline < HEAP_BOUND_BYTES,
      `heap after churn ${mb(f.heapAfterRetention)}MB within ${mb(HEAP_BOUND_BYTES)}MB of the baseline ${mb(f.heapBaseline)}MB`);
  });
}
