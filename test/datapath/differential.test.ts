// BPF-level differential test: random clusters, policy sets and packets (test/helpers/policy-gen.ts:
// IPv4/IPv6, TCP/UDP/SCTP/ICMP, port ranges, named ports, ipBlock with except, world and node
// addresses) compiled with the real compiler, applied to a loaded weir.o through the same
// encoding and slot flip as Datapath.apply, then every packet run through weir_from_pod (the
// source pod's egress) and weir_to_pod (the destination pod's ingress) with BPF_PROG_TEST_RUN.
// The verdict of each hook and the rule its record names must equal src/policy/reference.ts.
// Every packet has a tuple no earlier packet had, so conntrack and the deny cache never answer.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import { compilePolicy, type CompiledDatapath, type EndpointEntry, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { evaluate, type Decision, type Packet } from '../../src/policy/reference.js';
import * as abi from '../../src/datapath/abi.js';
import { TestDatapath, requireBpf } from '../helpers/datapath.js';
import { packet } from '../helpers/packets.js';
import { NODE_IPS, gen, randomCluster, randomPacket, rng } from '../helpers/policy-gen.js';

const SEED = Number(process.env.WEIR_FUZZ_SEED ?? 20261127);
const ROUNDS = 800;
const PACKETS_PER_ROUND = 30;
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

function refRule(d: Decision): string {
  return d.reason === 'policy' ? `${d.rule.policy} ${d.rule.direction}[${d.rule.index}]` : '';
}

/** The node's addresses as host endpoints: the datapath allows a pod and its node (ALLOW_HOST). */
function withNode(dp: CompiledDatapath): CompiledDatapath {
  const endpoints = new Map<string, EndpointEntry>(dp.endpoints);
  for (const ip of NODE_IPS) endpoints.set(ip, { key: 'node', id: 0, identity: abi.Identity.HOST, ifindex: 0, flags: 0 });
  return { ...dp, endpoints };
}

let nextPort = 1024;
/** A packet whose tuple no earlier case used (source port / ICMP id from one counter). A packet
 * without dstPort is a later fragment (judged without ports, never tracked). */
function encode(p: Packet): Buffer {
  const sport = nextPort++;
  if (nextPort > 65535) throw new Error('more cases than unique source ports');
  const frag = p.dstPort === undefined ? { fragOffset: 8, ...(p.src.includes(':') ? { ipv6Ext: [{ type: 44 as const, fragOffset: 8 }] } : {}) } : {};
  switch (p.protocol) {
    case 'TCP': return packet({ src: p.src, dst: p.dst, l4: { proto: 'tcp', sport, dport: p.dstPort ?? 1, flags: 0x02 }, ...frag });
    case 'UDP': return packet({ src: p.src, dst: p.dst, l4: { proto: 'udp', sport, dport: p.dstPort ?? 1 }, ...frag });
    case 'SCTP': return packet({ src: p.src, dst: p.dst, l4: { proto: 'sctp', sport, dport: p.dstPort ?? 1 }, ...frag });
    case 'ICMP': return packet({ src: p.src, dst: p.dst, l4: { proto: 'icmp', type: 8, id: sport } });
    case 'ICMPv6': return packet({ src: p.src, dst: p.dst, l4: { proto: 'icmpv6', type: 128, id: sport } });
  }
}

test(`BPF programs give the reference verdict and attribution on random policy sets (seed ${SEED}; WEIR_FUZZ_SEED=N to replay)`, async (t) => {
  requireBpf();
  t.diagnostic(`seed ${SEED}`);
  console.log(`# bpf-differential seed ${SEED}`);
  const dp = await TestDatapath.load();
  try {
    const g = gen(rng(SEED));
    let cases = 0;
    let runs = 0;
    let attributed = 0;
    let fragments = 0;
    const verdicts = { allow: 0, deny: 0, audit: 0 };
    const protocols: Record<string, number> = {};
    for (let round = 0; round < ROUNDS; round++) {
      const objects = randomCluster(g, round);
      const cluster = new ClusterState(objects);
      const pods = [...cluster.pods.values()];
      // ifindex 0: BPF_PROG_TEST_RUN runs on lo, so no sending-interface check
      const placed: PlacedPod[] = pods.map((pod) => ({ pod, ips: pod.ips, ifindex: 0 }));
      const placement = new Map(pods.map((p) => [`${p.namespace}/${p.name}`, p.ips]));
      const ids = new IdAllocator();
      const compiled = withNode(compilePolicy(cluster, placed, ids));
      dp.apply(compiled);
      const ruleName = (id: number): string => {
        if (id === 0) return '';
        const r = ids.ruleInfo(id);
        return r ? `${r.policy} ${r.direction}[${r.index}]` : `unknown rule ${id}`;
      };
      for (let i = 0; i < PACKETS_PER_ROUND; i++) {
        const drawn = randomPacket(g, pods);
        // some TCP/UDP/SCTP packets as later fragments: no ports, so only rules covering every
        // port of the protocol apply (the reference's "unknown port")
        const fragment = drawn.dstPort !== undefined && g.chance(0.05);
        const p: Packet = fragment ? { src: drawn.src, dst: drawn.dst, protocol: drawn.protocol } : drawn;
        const src = compiled.endpoints.get(p.src);
        const dst = compiled.endpoints.get(p.dst);
        if (src && dst && src.key === dst.key) continue; // a pod to itself: no hook sees it
        cases++;
        protocols[p.protocol] = (protocols[p.protocol] ?? 0) + 1;
        const want = evaluate(cluster, placement, p, { nodeIps: NODE_IPS });
        const data = encode(p);
        const fail = (what: string) => assert.fail(`seed ${SEED} round ${round} case ${i}: ${what}\n`
          + `packet ${JSON.stringify(p)}\nreference ${JSON.stringify(want)}\nobjects ${JSON.stringify(objects, null, 1)}`);
        const hook = (prog: 'fromPod' | 'toPod', d: Decision): boolean => {
          const rc = dp.run(prog, data);
          runs++;
          const recs = TestDatapath.flows(dp.drain());
          const allowed = d.verdict !== 'deny'; // audit passes
          if (rc !== (allowed ? TC_ACT_OK : TC_ACT_SHOT)) fail(`${prog} returned ${rc}, reference says ${d.verdict}`);
          if (fragment) {
            fragments++;
            return allowed; // judged statelessly: an allowed later fragment makes no record
          }
          const rec = recs.find((r) => r.type === (allowed ? 'FLOW_START' : 'DENY'));
          if (!rec) fail(`${prog}: no ${allowed ? 'FLOW_START' : 'DENY'} record (got ${JSON.stringify(recs.map((r) => r.type))})`);
          const named = ruleName(prog === 'fromPod' ? rec!.egressRuleId : rec!.ingressRuleId);
          if (named !== refRule(d)) fail(`${prog} named rule "${named}", reference "${refRule(d)}"`);
          if (!allowed && abi.reasonName(rec!.reason) !== 'DENY_DEFAULT') fail(`${prog} deny reason ${abi.reasonName(rec!.reason)}`);
          // audit: passes, and the record says it would have been denied
          if ((d.verdict === 'audit') !== (abi.verdictName(rec!.verdict) === 'AUDIT')) fail(`${prog} record verdict ${abi.verdictName(rec!.verdict)}, reference ${d.verdict}`);
          if (d.verdict === 'audit' && abi.reasonName(rec!.reason) !== 'AUDIT') fail(`${prog} audit reason ${abi.reasonName(rec!.reason)}`);
          if (named) attributed++;
          return allowed;
        };
        // the source pod's egress first (FROM_POD), then, if it passed, the destination's ingress
        let passed = true;
        if (src && src.key !== 'node') passed = hook('fromPod', want.egress);
        if (passed && dst && dst.key !== 'node') passed = hook('toPod', want.ingress);
        verdicts[!passed ? 'deny' : want.verdict === 'audit' ? 'audit' : 'allow']++;
        if (passed !== (want.verdict !== 'deny')) fail(`datapath ${passed ? 'passes' : 'drops'} it, reference verdict ${want.verdict}`);
      }
    }
    t.diagnostic(`${cases} cases, ${runs} program runs, verdicts ${JSON.stringify(verdicts)}, ${attributed} rule attributions, ${fragments} later-fragment runs, protocols ${JSON.stringify(protocols)}`);
    assert.ok(cases >= 10_000, `${cases} cases`);
    assert.ok(verdicts.allow > cases / 10 && verdicts.deny > cases / 10, `verdicts ${JSON.stringify(verdicts)}`);
    assert.ok(attributed > cases / 20, `${attributed} attributions`);
  } finally {
    dp.close();
  }
});

test('apply waits for running programs, writes only the inactive slot, and flips the generation after its last write', async () => {
  requireBpf();
  const dp = await TestDatapath.load();
  try {
    const g = gen(rng(7));
    const cluster = new ClusterState(randomCluster(g, 0));
    const placed: PlacedPod[] = [...cluster.pods.values()].map((pod) => ({ pod, ips: pod.ips, ifindex: 0 }));
    const { applyCompiled } = await import('../../src/datapath/datapath.js');
    const log: string[] = [];
    const spy = (name: string) => {
      const m = dp.map(name);
      return new Proxy(m, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver) as unknown;
          if ((prop === 'update' || prop === 'delete') && typeof v === 'function') {
            return (...args: unknown[]) => { log.push(name); return (v as (...a: unknown[]) => unknown).apply(target, args); };
          }
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    };
    const gen0 = dp.generation();
    const flip = () => { log.push('flip'); return dp.bumpGeneration(); };
    const { waitForPrograms } = await import('../../src/datapath/datapath.js');
    const barrier = () => { log.push('barrier'); waitForPrograms((name) => dp.map(name)); };
    const stats = applyCompiled(spy, () => dp.generation(), flip, compilePolicy(cluster, placed, new IdAllocator()), undefined, barrier);
    assert.ok(stats.endpointsWritten > 0);
    const next = (gen0 + 1) & 1;
    const inactive = new Set((['endpoints', 'policy', 'prange', 'ipcache'] as const).map((k) => abi.slotMapName(k, next)));
    assert.equal(log[0], 'barrier', 'no program still uses the inactive slot when its rewrite starts');
    assert.equal(log.at(-1), 'flip', 'the generation is written last');
    assert.equal(log.filter((l) => l === 'flip').length, 1);
    for (const l of log.slice(1, -1)) assert.ok(inactive.has(l), `wrote ${l}, which is in the active slot`);
    assert.equal(dp.generation() & 1, next, 'the filled slot is now in force');
    // the same state again: nothing to write, no flip
    log.length = 0;
    applyCompiled(spy, () => dp.generation(), flip, compilePolicy(cluster, placed, new IdAllocator()), undefined, barrier);
    assert.deepEqual(log, []);
  } finally {
    dp.close();
  }
});
