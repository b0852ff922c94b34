// BPF-level differential test with pods on other nodes: random clusters and policy sets
// (test/helpers/policy-gen.ts) where a random share of the pods run elsewhere. They are compiled
// as the node agent compiles them (remotePods: peers only), applied to a loaded weir.o, and
// every packet runs through the hooks this node has for it: weir_from_pod when its source is a
// local pod, weir_to_pod when its destination is. Each verdict, and the rule its record names,
// must equal src/policy/reference.ts, which knows every pod of the cluster wherever it runs.
// A packet between two remote pods meets no pod hook here: its destination's TO_POD must not
// police it (ALLOW_UNPOLICED).
import test from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import { compilePolicy, type CompiledDatapath, type EndpointEntry, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { evaluate, type Decision, type Packet } from '../../src/policy/reference.js';
import * as abi from '../../src/datapath/abi.js';
import type { Pod } from '../../src/datastore/objects.js';
import { TestDatapath, requireBpf } from '../helpers/datapath.js';
import { packet } from '../helpers/packets.js';
import { NODE_IPS, gen, randomCluster, randomPacket, rng } from '../helpers/policy-gen.js';

const SEED = Number(process.env.WEIR_FUZZ_SEED ?? 20261126);
const ROUNDS = 500;
const PACKETS_PER_ROUND = 30;
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

function refRule(d: Decision): string {
  return d.reason === 'policy' ? `${d.rule.policy} ${d.rule.direction}[${d.rule.index}]` : '';
}

function withNode(dp: CompiledDatapath): CompiledDatapath {
  const endpoints = new Map<string, EndpointEntry>(dp.endpoints);
  for (const ip of NODE_IPS) endpoints.set(ip, { key: 'node', id: 0, identity: abi.Identity.HOST, ifindex: 0, flags: 0 });
  return { ...dp, endpoints };
}

let nextPort = 1024;
function encode(p: Packet): Buffer {
  const sport = nextPort++;
  if (nextPort > 65535) throw new Error('more cases than unique source ports');
  switch (p.protocol) {
    case 'TCP': return packet({ src: p.src, dst: p.dst, l4: { proto: 'tcp', sport, dport: p.dstPort ?? 1, flags: 0x02 } });
    case 'UDP': return packet({ src: p.src, dst: p.dst, l4: { proto: 'udp', sport, dport: p.dstPort ?? 1 } });
    case 'SCTP': return packet({ src: p.src, dst: p.dst, l4: { proto: 'sctp', sport, dport: p.dstPort ?? 1 } });
    case 'ICMP': return packet({ src: p.src, dst: p.dst, l4: { proto: 'icmp', type: 8, id: sport } });
    case 'ICMPv6': return packet({ src: p.src, dst: p.dst, l4: { proto: 'icmpv6', type: 128, id: sport } });
  }
}

test(`with remote pods, the local hooks give the reference verdict and attribution (seed ${SEED}; WEIR_FUZZ_SEED=N to replay)`, async (t) => {
  requireBpf();
  const dp = await TestDatapath.load();
  try {
    const g = gen(rng(SEED));
    const counts = { cases: 0, fromPod: 0, toPod: 0, remotePeer: 0, remoteToRemote: 0, allow: 0, deny: 0, attributed: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const objects = randomCluster(g, round);
      const cluster = new ClusterState(objects);
      const pods = [...cluster.pods.values()];
      // about 40% of the pods run on another node; at least one stays here
      const remote = new Set<Pod>(pods.filter(() => g.chance(0.4)));
      if (remote.size === pods.length) remote.delete(pods[0]!);
      const placed: PlacedPod[] = pods.filter((p) => !remote.has(p)).map((pod) => ({ pod, ips: pod.ips, ifindex: 0 }));
      // the reference knows every pod wherever it runs
      const placement = new Map(pods.map((p) => [`${p.namespace}/${p.name}`, p.ips]));
      const ids = new IdAllocator();
      const compiled = withNode(compilePolicy(cluster, placed, ids, { remotePods: [...remote] }));
      dp.apply(compiled);
      const ruleName = (id: number): string => {
        if (id === 0) return '';
        const r = ids.ruleInfo(id);
        return r ? `${r.policy} ${r.direction}[${r.index}]` : `unknown rule ${id}`;
      };
      const isLocal = (e: EndpointEntry | undefined): boolean => e !== undefined && (e.flags & abi.EndpointFlag.LOCAL) !== 0;
      const isRemote = (e: EndpointEntry | undefined): boolean => e !== undefined && e.key !== 'node' && !isLocal(e);
      for (let i = 0; i < PACKETS_PER_ROUND; i++) {
        const p = randomPacket(g, pods);
        const src = compiled.endpoints.get(p.src);
        const dst = compiled.endpoints.get(p.dst);
        if (src && dst && src.key === dst.key) continue;
        const want = evaluate(cluster, placement, p, { nodeIps: NODE_IPS });
        const data = encode(p);
        const fail = (what: string) => assert.fail(`seed ${SEED} round ${round} case ${i}: ${what}\npacket ${JSON.stringify(p)}\n`
          + `remote ${JSON.stringify([...remote].map((r) => `${r.namespace}/${r.name}`))}\nreference ${JSON.stringify(want)}\nobjects ${JSON.stringify(objects, null, 1)}`);
        counts.cases++;
        if (isRemote(src) && isRemote(dst)) {
          // neither end is ours: TO_POD (were it to see it) does not police it
          counts.remoteToRemote++;
          const rc = dp.run('toPod', data);
          dp.drain();
          if (rc !== TC_ACT_OK) fail(`toPod returned ${rc} for traffic between two remote pods`);
          continue;
        }
        if (isRemote(src) || isRemote(dst)) counts.remotePeer++;
        const hook = (prog: 'fromPod' | 'toPod', d: Decision): boolean => {
          const rc = dp.run(prog, data);
          counts[prog]++;
          const recs = TestDatapath.flows(dp.drain());
          const allowed = d.verdict !== 'deny';
          if (rc !== (allowed ? TC_ACT_OK : TC_ACT_SHOT)) fail(`${prog} returned ${rc}, reference says ${d.verdict}`);
          const rec = recs.find((r) => r.type === (allowed ? 'FLOW_START' : 'DENY'));
          if (!rec) fail(`${prog}: no ${allowed ? 'FLOW_START' : 'DENY'} record (got ${JSON.stringify(recs.map((r) => r.type))})`);
          const named = ruleName(prog === 'fromPod' ? rec!.egressRuleId : rec!.ingressRuleId);
          if (named !== refRule(d)) fail(`${prog} named rule "${named}", reference "${refRule(d)}"`);
          if ((d.verdict === 'audit') !== (abi.verdictName(rec!.verdict) === 'AUDIT')) fail(`${prog} record verdict ${abi.verdictName(rec!.verdict)}, reference ${d.verdict}`);
          // the peer carries its identity (a remote pod's, not WORLD)
          const peer = prog === 'fromPod' ? dst : src;
          const peerIdentity = prog === 'fromPod' ? rec!.dstIdentity : rec!.srcIdentity;
          if (isRemote(peer) && peerIdentity !== peer!.identity) fail(`${prog} record names peer identity ${peerIdentity}, want ${peer!.identity}`);
          if (named) counts.attributed++;
          return allowed;
        };
        // this node's hooks only: the source's egress if it is ours, the destination's ingress if
        // it is ours (each judged by the reference's decision for that side)
        let passed = true;
        if (isLocal(src)) passed = hook('fromPod', want.egress);
        if (passed && isLocal(dst)) passed = hook('toPod', want.ingress);
        counts[passed ? 'allow' : 'deny']++;
      }
    }
    t.diagnostic(JSON.stringify(counts));
    assert.ok(counts.remotePeer >= 3000, `${counts.remotePeer} cases between a local and a remote pod`);
    assert.ok(counts.allow > counts.cases / 10 && counts.deny > counts.cases / 10, JSON.stringify(counts));
    assert.ok(counts.attributed > counts.cases / 20, JSON.stringify(counts));
  } finally {
    dp.close();
  }
});
