// Differential test of the policy compiler against the reference evaluator: random clusters and
// policy sets (every feature the datapath enforces: selectors, numeric ports, ranges, named ports,
// protocol-only ports, ipBlock with except, empty peers/ports; test/helpers/policy-gen.ts),
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
import { DatapathModel, NODE_IPS, gen, randomCluster, randomPacket, rng, type ModelDecision } from '../helpers/policy-gen.js';

const SEED = Number(process.env.WEIR_FUZZ_SEED ?? 20261126);
const ROUNDS = 200;
const PACKETS_PER_ROUND = 25;

/** The rule a reference decision names, as "policy direction[index]", or "" for none. */
export function refRule(d: Decision): string {
  return d.reason === 'policy' ? `${d.rule.policy} ${d.rule.direction}[${d.rule.index}]` : '';
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
  const verdicts = { allow: 0, deny: 0, audit: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const objects = randomCluster(g, round);
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
    }
  }
  assert.ok(cases >= 5000, `${cases} cases`);
  // Both verdicts and rule attributions must be well represented, or the test proves little.
  assert.ok(verdicts.allow > cases / 10 && verdicts.deny > cases / 10, `verdicts ${JSON.stringify(verdicts)}`);
  t.diagnostic(`verdicts ${JSON.stringify(verdicts)}, ${attributed} cases named a rule`);
  assert.ok(attributed > cases / 20, `${attributed} of ${cases} cases named a rule`);
});
