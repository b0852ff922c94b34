// Differential test of the policy compiler against the reference evaluator: random clusters and
// policy sets (only features the datapath enforces today: pod/namespace selectors, numeric ports,
// protocol-only ports, empty peers/ports), compiled with compilePolicy, then random packets judged
// by a plain TypeScript model of the datapath's documented lookup (docs/datapath.md, "Per packet
// at a pod hook", steps 2 and 4) and by src/policy/reference.ts. Verdicts must agree.
// (The BPF-level differential test, with BPF_PROG_TEST_RUN, checks the programs themselves.)
import test from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import type { KubeObject, L4Protocol, LabelSelector, NetworkPolicy, Pod, PolicyPeer, PolicyPort, PolicyRule, PolicyType } from '../../src/datastore/objects.js';
import { compilePolicy, policyEntryKey, type CompiledDatapath, type EndpointEntry, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { evaluate, type Packet, type PacketProtocol } from '../../src/policy/reference.js';
import { EndpointFlag, Identity, Proto } from '../../src/datapath/abi.js';

const SEED = Number(process.env.WEIR_FUZZ_SEED ?? 20261126);
const ROUNDS = 120;
const PACKETS_PER_ROUND = 25;
const NODE_IPS = ['10.9.255.1', 'fd09::ff01'];
const OUTSIDE_IPS = ['192.0.2.7', '2001:db8::7'];

/** mulberry32: small, seedable, good enough to pick test cases. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Gen {
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
  int(lo: number, hi: number): number;
}

function gen(next: () => number): Gen {
  return {
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
    chance: (p) => next() < p,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
  };
}

const NAMESPACES = ['x', 'y', 'z'];
const LABEL_KEYS = ['app', 'tier', 'team'];
const LABEL_VALUES = ['a', 'b', 'c'];
const PORTS = [53, 80, 81];

function randomLabels(g: Gen): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of LABEL_KEYS) if (g.chance(0.5)) out[k] = g.pick(LABEL_VALUES);
  return out;
}

function randomSelector(g: Gen): LabelSelector {
  const matchLabels: Record<string, string> = {};
  if (g.chance(0.5)) matchLabels[g.pick(LABEL_KEYS)] = g.pick(LABEL_VALUES);
  const matchExpressions = g.chance(0.4)
    ? [g.pick([
      { key: g.pick(LABEL_KEYS), operator: 'In' as const, values: [g.pick(LABEL_VALUES), g.pick(LABEL_VALUES)] },
      { key: g.pick(LABEL_KEYS), operator: 'NotIn' as const, values: [g.pick(LABEL_VALUES)] },
      { key: g.pick(LABEL_KEYS), operator: 'Exists' as const, values: [] },
      { key: g.pick(LABEL_KEYS), operator: 'DoesNotExist' as const, values: [] },
    ])]
    : [];
  return { matchLabels, matchExpressions };
}

function randomPeer(g: Gen): PolicyPeer {
  switch (g.int(0, 2)) {
    case 0: return { podSelector: randomSelector(g) };
    case 1: return { namespaceSelector: randomSelector(g) };
    default: return { podSelector: randomSelector(g), namespaceSelector: randomSelector(g) };
  }
}

function randomPort(g: Gen): PolicyPort {
  const protocol = g.pick<L4Protocol>(['TCP', 'UDP', 'SCTP']);
  return g.chance(0.3) ? { protocol } : { protocol, port: g.pick(PORTS) };
}

function randomRule(g: Gen): PolicyRule {
  return {
    ...(g.chance(0.75) ? { peers: Array.from({ length: g.int(1, 2) }, () => randomPeer(g)) } : {}),
    ...(g.chance(0.7) ? { ports: Array.from({ length: g.int(1, 2) }, () => randomPort(g)) } : {}),
  };
}

function randomCluster(g: Gen, round: number): KubeObject[] {
  const objects: KubeObject[] = [];
  let n = 1;
  for (const ns of NAMESPACES) {
    objects.push({ kind: 'Namespace', name: ns, labels: { ...randomLabels(g), 'kubernetes.io/metadata.name': ns } });
    for (let i = 0; i < g.int(1, 3); i++, n++) {
      objects.push({ kind: 'Pod', namespace: ns, name: `p${i}`, labels: randomLabels(g), ports: [], ips: [`10.9.0.${n}`, `fd09::${n}`] } satisfies Pod);
    }
  }
  for (let i = 0; i < g.int(0, 4); i++) {
    const policyTypes = g.pick<PolicyType[]>([['Ingress'], ['Egress'], ['Ingress', 'Egress']]);
    const policy: NetworkPolicy = {
      kind: 'NetworkPolicy', namespace: g.pick(NAMESPACES), name: `r${round}-p${i}`, annotations: {},
      podSelector: g.chance(0.3) ? { matchLabels: {}, matchExpressions: [] } : randomSelector(g),
      policyTypes,
      ingress: Array.from({ length: g.int(0, 2) }, () => randomRule(g)),
      egress: Array.from({ length: g.int(0, 2) }, () => randomRule(g)),
    };
    objects.push(policy);
  }
  return objects;
}

const PROTO: Record<PacketProtocol, number> = { TCP: Proto.TCP, UDP: Proto.UDP, SCTP: Proto.SCTP, ICMP: Proto.ICMP, ICMPv6: Proto.ICMPV6 };

/** The datapath's decision for one endpoint and direction, as docs/datapath.md step 4 describes it. */
function decide(dp: CompiledDatapath, ep: EndpointEntry, direction: 0 | 1, peer: number, proto: number, dport: number): boolean {
  const ingress = direction === 0;
  if (!(ep.flags & (ingress ? EndpointFlag.ISOLATED_INGRESS : EndpointFlag.ISOLATED_EGRESS))) return true; // ALLOW_NOT_ISOLATED
  if (peer === Identity.HOST) return true; // ALLOW_HOST
  const has = (peerIdentity: number, p: number, port: number) =>
    dp.policy.has(policyEntryKey({ identity: ep.identity, peerIdentity, proto: p, port, direction }));
  const lookup = (peerIdentity: number): boolean => {
    if (proto === Proto.TCP || proto === Proto.UDP || proto === Proto.SCTP) {
      if (dport !== 0 && has(peerIdentity, proto, dport)) return true;
      if (has(peerIdentity, proto, 0)) return true;
    }
    return has(peerIdentity, Proto.ANY, 0);
  };
  if ((ep.flags & (ingress ? EndpointFlag.PEER_RULES_INGRESS : EndpointFlag.PEER_RULES_EGRESS)) && lookup(peer)) return true;
  if ((ep.flags & (ingress ? EndpointFlag.ANY_RULES_INGRESS : EndpointFlag.ANY_RULES_EGRESS)) && peer !== Identity.ANY && lookup(Identity.ANY)) return true;
  return false; // DENY_DEFAULT
}

function simulateDatapath(dp: CompiledDatapath, p: Packet): 'allow' | 'deny' {
  const src = dp.endpoints.get(p.src);
  const dst = dp.endpoints.get(p.dst);
  // A pod's traffic to itself stays inside its network namespace: no hook sees it.
  if (src && dst && src.key === dst.key) return 'allow';
  const identityOf = (ip: string) => dp.endpoints.get(ip)?.identity ?? (NODE_IPS.includes(ip) ? Identity.HOST : Identity.WORLD);
  const proto = PROTO[p.protocol];
  const dport = p.dstPort ?? 0;
  // FROM_POD polices the source's egress; TO_POD the destination's ingress (a non-local
  // destination is ALLOW_UNPOLICED there).
  if (src && !decide(dp, src, 1, identityOf(p.dst), proto, dport)) return 'deny';
  if (dst && !decide(dp, dst, 0, identityOf(p.src), proto, dport)) return 'deny';
  return 'allow';
}

function randomPacket(g: Gen, pods: readonly Pod[]): Packet {
  const v6 = g.chance(0.3);
  const addr = (): string => {
    const r = g.int(0, 9);
    if (r === 0) return NODE_IPS[v6 ? 1 : 0]!;
    if (r === 1) return OUTSIDE_IPS[v6 ? 1 : 0]!;
    return g.pick(pods).ips[v6 ? 1 : 0]!;
  };
  const protocol = g.pick<PacketProtocol>(['TCP', 'UDP', 'SCTP', v6 ? 'ICMPv6' : 'ICMP']);
  const src = addr();
  const dst = addr();
  return protocol.startsWith('ICMP') ? { src, dst, protocol } : { src, dst, protocol, dstPort: g.pick([...PORTS, 443]) };
}

test(`compiled policy with the datapath's lookup gives the reference verdict (seed ${SEED}; WEIR_FUZZ_SEED=N to replay)`, (t) => {
  t.diagnostic(`seed ${SEED}`);
  console.log(`# compile-vs-reference seed ${SEED}`);
  const g = gen(rng(SEED));
  let cases = 0;
  const verdicts = { allow: 0, deny: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const objects = randomCluster(g, round);
    const cluster = new ClusterState(objects);
    const pods = [...cluster.pods.values()];
    const placed: PlacedPod[] = pods.map((pod, i) => ({ pod, ips: pod.ips, ifindex: 10 + i }));
    const placement = new Map(pods.map((p) => [`${p.namespace}/${p.name}`, p.ips]));
    const dp = compilePolicy(cluster, placed, new IdAllocator());
    for (let i = 0; i < PACKETS_PER_ROUND; i++, cases++) {
      const packet = randomPacket(g, pods);
      const want = evaluate(cluster, placement, packet, { nodeIps: NODE_IPS });
      const got = simulateDatapath(dp, packet);
      verdicts[got]++;
      if (got !== want.verdict) {
        assert.fail(`seed ${SEED} round ${round} case ${i}: datapath model says ${got}, reference says ${want.verdict}\n`
          + `packet ${JSON.stringify(packet)}\nreference ${JSON.stringify(want)}\n`
          + `objects ${JSON.stringify(objects, null, 1)}`);
      }
    }
  }
  assert.ok(cases >= 2000, `${cases} cases`);
  // Both verdicts must be well represented, or the test proves little.
  assert.ok(verdicts.allow > cases / 10 && verdicts.deny > cases / 10, `verdicts ${JSON.stringify(verdicts)}`);
});
