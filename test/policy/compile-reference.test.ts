// Differential test of the policy compiler against the reference evaluator: random clusters and
// policy sets (every feature the datapath enforces: selectors, numeric ports, ranges, named ports
// (at egress with ipBlock peers too), protocol-only ports, ipBlock with except, empty peers/ports; test/helpers/policy-gen.ts),
// compiled with compilePolicy, then random packets judged by a plain TypeScript model of the
// datapath's documented lookup (docs/datapath.md, "Per packet at a pod hook", step 4) and by
// src/policy/reference.ts. Verdicts AND attribution (the rule each side names) must agree.
// (test/datapath/differential.test.ts does the same through the BPF programs themselves.)
import test from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import { compilePolicy, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { evaluate, type Decision } from '../../src/policy/reference.js';
import { matchesSelector } from '../../src/policy/selector.js';
import { cidrContainsIp, parseCidr, parseIp } from '../../src/datastore/cidr.js';
import type { IpBlock } from '../../src/datastore/objects.js';
import { DatapathModel, NODE_IPS, gen, randomCluster, randomPacket, rng, type ModelDecision } from '../helpers/policy-gen.js';

const SEED = Number(process.env.WEIR_FUZZ_SEED ?? 20261126);
const ROUNDS = 200;
const PACKETS_PER_ROUND = 25;

/** The rule a reference decision names, as "policy direction[index]", or "" for none. */
export function refRule(d: Decision): string {
  return d.reason === 'policy' ? `${d.rule.policy} ${d.rule.direction}[${d.rule.index}]` : '';
}

function inBlock(b: IpBlock, ip: string): boolean {
  const a = parseIp(ip)!;
  const within = (c: string) => { const p = parseCidr(c); return p !== undefined && cidrContainsIp(p, a); };
  return within(b.cidr) && !b.except.some(within);
}

function modelRule(ids: IdAllocator, d: ModelDecision | undefined): string {
  if (!d || d.ruleId === 0) return '';
  const r = ids.ruleInfo(d.ruleId);
  return r ? `${r.policy} ${r.direction}[${r.index}]` : `unknown rule ${d.ruleId}`;
}

test(`compiled policy with the datapath's lookup gives the reference verdict and attribution (seed ${SEED}; WEIR_FUZZ_SEED=N to replay)`, (t) => {
  t.diagnostic(`seed ${SEED}`);
  console.log(`# compile-vs-reference seed ${SEED}`);
  const g = gen(rng(SEED));
  let cases = 0;
  let attributed = 0;
  // egress allowed by a rule with ipBlock peers and named ports, through a named port; and
  // packets from a pod with such a rule to a pod inside one of its blocks (allowed or not)
  let blockNamed = 0;
  let blockNamedTried = 0;
  const verdicts = { allow: 0, deny: 0, audit: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    // every fourth round: egress rules with ipBlock peers and named ports only
    const objects = randomCluster(g, round, round % 4 === 3);
    const cluster = new ClusterState(objects);
    const pods = [...cluster.pods.values()];
    const placed: PlacedPod[] = pods.map((pod, i) => ({ pod, ips: pod.ips, ifindex: 10 + i }));
    const placement = new Map(pods.map((p) => [`${p.namespace}/${p.name}`, p.ips]));
    const ids = new IdAllocator();
    const model = new DatapathModel(compilePolicy(cluster, placed, ids));
    for (let i = 0; i < PACKETS_PER_ROUND; i++, cases++) {
      const packet = randomPacket(g, pods);
      const want = evaluate(cluster, placement, packet, { nodeIps: NODE_IPS });
      const got = model.judge(packet);
      const verdict = !got.allow ? 'deny' : got.audit ? 'audit' : 'allow';
      verdicts[verdict]++;
      const fail = (what: string) => assert.fail(`seed ${SEED} round ${round} case ${i}: ${what}\n`
        + `packet ${JSON.stringify(packet)}\nreference ${JSON.stringify(want)}\nmodel ${JSON.stringify(got)}\n`
        + `objects ${JSON.stringify(objects, null, 1)}`);
      if (verdict !== want.verdict) fail(`datapath model says ${verdict}, reference says ${want.verdict}`);
      // attribution of every side the datapath judged and allowed (a denied egress stops the packet)
      if (got.egress?.allow && modelRule(ids, got.egress) !== refRule(want.egress)) fail(`egress rule ${modelRule(ids, got.egress)} vs ${refRule(want.egress)}`);
      if (got.ingress?.allow && modelRule(ids, got.ingress) !== refRule(want.ingress)) fail(`ingress rule ${modelRule(ids, got.ingress)} vs ${refRule(want.ingress)}`);
      if (refRule(want.egress) || refRule(want.ingress)) attributed++;
      const srcPod = pods.find((p) => p.ips.includes(packet.src));
      const dstPod = pods.find((p) => p.ips.includes(packet.dst));
      if (srcPod && dstPod && srcPod !== dstPod && [...cluster.policies.values()].some((pol) => pol.namespace === srcPod.namespace
        && pol.policyTypes.includes('Egress') && matchesSelector(pol.podSelector, srcPod.labels)
        && pol.egress.some((r) => r.ports?.some((p) => typeof p.port === 'string')
          && r.peers?.some((p) => p.ipBlock && inBlock(p.ipBlock, packet.dst))))) blockNamedTried++;
      if (want.egress.reason === 'policy') {
        const rule = cluster.policies.get(want.egress.rule.policy)!.egress[want.egress.rule.index]!;
        const dst = pods.find((p) => p.ips.includes(packet.dst));
        if (rule.peers?.some((p) => p.ipBlock) && dst && rule.ports?.some((p) => typeof p.port === 'string' && p.protocol === packet.protocol
          && dst.ports.some((c) => c.name === p.port && c.protocol === p.protocol && c.port === packet.dstPort))) blockNamed++;
      }
    }
  }
  assert.ok(cases >= 5000, `${cases} cases`);
  // Both verdicts and rule attributions must be well represented, or the test proves little.
  assert.ok(verdicts.allow > cases / 10 && verdicts.deny > cases / 10, `verdicts ${JSON.stringify(verdicts)}`);
  t.diagnostic(`verdicts ${JSON.stringify(verdicts)}, ${attributed} cases named a rule, ${blockNamed} egress allowed through a named port of a rule with ipBlock peers (${blockNamedTried} from a pod with such a rule to a pod in its block)`);
  assert.ok(blockNamedTried > 100 && blockNamed > 0, `only ${blockNamedTried} / ${blockNamed} cases exercised named ports with ipBlock peers at egress`);
  assert.ok(attributed > cases / 20, `${attributed} of ${cases} cases named a rule`);
});
