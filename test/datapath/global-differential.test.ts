// BPF-level differential test of host protection: random worlds (test/helpers/host-policy-gen.ts:
// pods, namespaces and NetworkPolicies, HostEndpoints of this node and others, GlobalNetworkPolicies
// with every action and condition, failsafe settings) compiled by the real compiler with
// CompileOptions.host, applied to a loaded weir.o as Datapath.apply does, then every packet run
// through the hooks that see it, as on a node:
//   pod -> pod        weir_from_pod (source pod's egress), weir_to_pod (destination's ingress)
//   pod -> node       weir_from_pod: the pod's egress, then the host's ingress ("*" endpoint)
//   node -> pod       weir_to_pod: the host's egress ("*"), then the pod's ingress
//   pod -> outside    weir_from_pod, then weir_to_host_dev (forwarded egress of the interface)
//   outside -> pod    weir_from_host_dev (forwarded ingress), then weir_to_pod
//   outside -> node   weir_from_host_dev (the host's own ingress)
//   node -> outside   weir_to_host_dev (the host's own egress)
//   outside -> outside weir_from_host_dev (forwarded ingress), then weir_to_host_dev (forwarded
//                      egress): a flow forwarded in and out through policed interfaces.
// The host interface under test is lo (ifindex 1), where BPF_PROG_TEST_RUN runs packets. Each
// side's verdict, reason, deciding rule and Log rules must be what src/policy/host-reference.ts
// (evaluateHost) says. Every packet has a tuple no earlier packet of its round had (either way),
// and conntrack and the deny cache are emptied between rounds, so neither ever answers for a
// packet: only a packet's own earlier hooks (the flow as it crosses the node).
import test from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import { compilePolicy, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { matchesSelector } from '../../src/policy/selector.js';
import { evaluateHost, formatHostDecision, type HostEvaluation, type HostPacket, type HostWorld, type Subject } from '../../src/policy/host-reference.js';
import * as abi from '../../src/datapath/abi.js';
import { TestDatapath, requireBpf, type ProgramKey } from '../helpers/datapath.js';
import { packet } from '../helpers/packets.js';
import { NODE_IPS, gen, rng } from '../helpers/policy-gen.js';
import {
  NODE, TEST_IFINDEX, TEST_IFNAME, hostSideExpectation, randomHostPacket, randomHostScenario, ruleName, type DrawnPacket, type HostScenario, type SideExpectation,
} from '../helpers/host-policy-gen.js';

const SEED = Number(process.env.WEIR_FUZZ_SEED ?? 20261126);
const ROUNDS = Number(process.env.WEIR_FUZZ_ROUNDS ?? 1500);
const PACKETS_PER_ROUND = 40;
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const MAX_LOGS = 4; // WEIR_GLOBAL_MAX_LOGS

/** One side judged at a hook: the subject, the record field its rule goes in. */
interface Side {
  readonly subject: Subject;
  /** record direction of this side's decision */
  readonly dir: 0 | 1;
  /** which rule-id field of the records names its rule */
  readonly field: 'egressRuleId' | 'ingressRuleId' | 'forwardRuleId';
  /** a host endpoint's side (its reason is the flow's when the hook also judges a pod) */
  readonly host: boolean;
}

interface Leg {
  readonly prog: ProgramKey;
  readonly sides: readonly Side[];
}

const podEgress = (pod: string): Side => ({ subject: { kind: 'pod', pod, direction: 'Egress' }, dir: 1, field: 'egressRuleId', host: false });
const podIngress = (pod: string): Side => ({ subject: { kind: 'pod', pod, direction: 'Ingress' }, dir: 0, field: 'ingressRuleId', host: false });
const hostSide = (interfaceName: string, direction: 'Ingress' | 'Egress', forwarded: boolean): Side => ({
  subject: { kind: 'host', node: NODE, interfaceName, direction, ...(forwarded ? { forwarded } : {}) },
  dir: direction === 'Ingress' ? 0 : 1,
  field: forwarded ? 'forwardRuleId' : direction === 'Ingress' ? 'ingressRuleId' : 'egressRuleId',
  host: true,
});

/** The hooks a packet crosses on the node, in order. */
function legsOf(src: string | undefined, dst: string | undefined, p: DrawnPacket): Leg[] | undefined {
  const place = (ip: string, pod: string | undefined) => (pod ? 'pod' : NODE_IPS.includes(ip) ? 'node' : 'outside');
  const s = place(p.src, src);
  const d = place(p.dst, dst);
  if (s === 'pod' && d === 'pod') return [{ prog: 'fromPod', sides: [podEgress(src!)] }, { prog: 'toPod', sides: [podIngress(dst!)] }];
  if (s === 'pod' && d === 'node') return [{ prog: 'fromPod', sides: [podEgress(src!), hostSide('*', 'Ingress', false)] }];
  if (s === 'node' && d === 'pod') return [{ prog: 'toPod', sides: [hostSide('*', 'Egress', false), podIngress(dst!)] }];
  if (s === 'pod') return [{ prog: 'fromPod', sides: [podEgress(src!)] }, { prog: 'toHostDev', sides: [hostSide(TEST_IFNAME, 'Egress', true)] }];
  if (d === 'pod') return [{ prog: 'fromHostDev', sides: [hostSide(TEST_IFNAME, 'Ingress', true)] }, { prog: 'toPod', sides: [podIngress(dst!)] }];
  if (s === 'outside' && d === 'node') return [{ prog: 'fromHostDev', sides: [hostSide(TEST_IFNAME, 'Ingress', false)] }];
  if (s === 'node' && d === 'outside') return [{ prog: 'toHostDev', sides: [hostSide(TEST_IFNAME, 'Egress', false)] }];
  if (s === 'outside' && d === 'outside') {
    const legs: Leg[] = [{ prog: 'fromHostDev', sides: [hostSide(TEST_IFNAME, 'Ingress', true)] }];
    legs.push({ prog: 'toHostDev', sides: [hostSide(TEST_IFNAME, 'Egress', true)] });
    return legs;
  }
  return undefined; // node to node
}

let nextId = 1;
/** The packet's tuple as conntrack keys it (ports 0 without ports, the ICMP id in both). */
function tupleOf(p: DrawnPacket, fragment: boolean, icmpId: number): [string, string] {
  const ports = p.proto === 1 || p.proto === 58 ? [icmpId, icmpId] : fragment || p.srcPort === undefined ? [0, 0] : [p.srcPort, p.dstPort!];
  return [`${p.src}|${p.dst}|${ports[0]}|${ports[1]}|${p.proto}`, `${p.dst}|${p.src}|${ports[1]}|${ports[0]}|${p.proto}`];
}

function encode(p: DrawnPacket, fragment: boolean, icmpId: number): Buffer {
  const v6 = p.src.includes(':');
  const frag = fragment ? { fragOffset: 8, ...(v6 ? { ipv6Ext: [{ type: 44 as const, fragOffset: 8 }] } : {}) } : {};
  switch (p.proto) {
    case 6: return packet({ src: p.src, dst: p.dst, l4: { proto: 'tcp', sport: p.srcPort!, dport: p.dstPort!, flags: 0x02 }, ...frag });
    case 17: return packet({ src: p.src, dst: p.dst, l4: { proto: 'udp', sport: p.srcPort!, dport: p.dstPort! }, ...frag });
    case 132: return packet({ src: p.src, dst: p.dst, l4: { proto: 'sctp', sport: p.srcPort!, dport: p.dstPort! }, ...frag });
    case 1: return packet({ src: p.src, dst: p.dst, l4: { proto: 'icmp', type: 8, id: icmpId } });
    case 58: return packet({ src: p.src, dst: p.dst, l4: { proto: 'icmpv6', type: 128, id: icmpId } });
    default: return packet({ src: p.src, dst: p.dst, l4: { proto: p.proto, raw: Buffer.alloc(8) } });
  }
}

interface Mismatch {
  readonly category: string;
  readonly detail: string;
}

test(`BPF host protection gives the reference verdict, reason, rule and Log records on random worlds (seed ${SEED}; WEIR_FUZZ_SEED=N to replay)`, async (t) => {
  requireBpf();
  t.diagnostic(`seed ${SEED}`);
  console.log(`# bpf-global-differential seed ${SEED}`);
  const dp = await TestDatapath.load();
  const mismatches: Mismatch[] = [];
  const stats = { cases: 0, runs: 0, skipped: 0, fragments: 0, logs: 0, attributed: 0 };
  const reasons: Record<string, number> = {};
  const legKinds: Record<string, number> = {};
  try {
    const g = gen(rng(SEED));
    for (let round = 0; round < ROUNDS && mismatches.length < 40; round++) {
      const scenario: HostScenario = randomHostScenario(g, round);
      const cluster = new ClusterState(scenario.objects);
      const pods = [...cluster.pods.values()];
      const placed: PlacedPod[] = pods.map((pod) => ({ pod, ips: pod.ips, ifindex: 0 }));
      const placement = new Map(pods.map((p) => [`${p.namespace}/${p.name}`, p.ips]));
      const ids = new IdAllocator();
      const compiled = compilePolicy(cluster, placed, ids, {
        hostIps: NODE_IPS,
        host: { node: NODE, hostEndpoints: scenario.hostEndpoints, globalPolicies: scenario.globalPolicies, failsafes: scenario.failsafes, interfaces: new Map([[TEST_IFNAME, TEST_IFINDEX]]) },
      });
      dp.apply(compiled);
      // a clean slate: no flow or cached denial of an earlier round answers for a packet
      for (const name of [abi.MapName.ct, abi.MapName.denyRateLimit]) {
        const m = dp.map(name);
        for (const k of [...m.keys()]) m.delete(k);
      }
      dp.drain();
      const world: HostWorld = {
        cluster, placement, hostEndpoints: scenario.hostEndpoints, globalPolicies: scenario.globalPolicies, failsafes: scenario.failsafes, nodeIps: NODE_IPS,
      };
      const podAt = (ip: string): string | undefined => {
        for (const [key, ips] of placement) if (ips.includes(ip)) return key;
        return undefined;
      };
      const isolated = (key: string, direction: 'Ingress' | 'Egress'): boolean => {
        const pod = cluster.pods.get(key)!;
        return [...cluster.policies.values()].some((np) => np.namespace === pod.namespace && np.policyTypes.includes(direction) && matchesSelector(np.podSelector, pod.labels));
      };
      const used = new Set<string>();
      for (let i = 0; i < PACKETS_PER_ROUND; i++) {
        const p = randomHostPacket(g, pods);
        const src = podAt(p.src);
        const dst = podAt(p.dst);
        if (src !== undefined && src === dst) continue; // a pod to itself: no hook sees it
        const legs = legsOf(src, dst, p);
        if (!legs) continue;
        const fragment = p.dstPort !== undefined && g.chance(0.05);
        const icmpId = nextId++ & 0xffff;
        const [fwd, rev] = tupleOf(p, fragment, icmpId);
        if (used.has(fwd) || used.has(rev)) {
          stats.skipped++;
          continue;
        }
        used.add(fwd);
        stats.cases++;
        const hp: HostPacket = {
          src: p.src, dst: p.dst, protocol: p.proto,
          ...(p.srcPort !== undefined && !fragment ? { srcPort: p.srcPort, dstPort: p.dstPort! } : {}),
        };
        const data = encode(p, fragment, icmpId);
        const where = `seed ${SEED} round ${round} case ${i}`;
        const describe = (): string =>
          `packet ${JSON.stringify({ ...hp, fragment })}\n` +
          `host endpoints ${JSON.stringify(scenario.hostEndpoints)}\nglobal policies ${JSON.stringify(scenario.globalPolicies)}\n` +
          `failsafes ${JSON.stringify(scenario.failsafes)}\nobjects ${JSON.stringify(scenario.objects)}`;
        // earlier legs' rule fields, which conntrack carries into the next leg's records
        const carried: Partial<Record<Side['field'], string>> = {};
        for (const [legIndex, leg] of legs.entries()) {
          // e.g. "fromPod:podE+hostI", "fromHostDev:hostIf" (f: forwarded)
          const kind = `${leg.prog}:${leg.sides.map((s) => `${s.subject.kind}${s.subject.direction[0]}${s.subject.kind === 'host' && s.subject.forwarded ? 'f' : ''}`).join('+')}`;
          legKinds[kind] = (legKinds[kind] ?? 0) + 1;
          const judged: { side: Side; ev: HostEvaluation; want: SideExpectation }[] = [];
          for (const side of leg.sides) {
            const ev = evaluateHost(world, side.subject, hp);
            let want = hostSideExpectation(ev);
            // NetworkPolicy allows a pod and its node under ALLOW_HOST where it isolates the pod;
            // where none does, the datapath names that first (the reference says "node" either way)
            if (want.reason === 'ALLOW_HOST' && side.subject.kind === 'pod' && !isolated(side.subject.pod, side.subject.direction)) want = { ...want, reason: 'ALLOW_NOT_ISOLATED' };
            judged.push({ side, ev, want });
            if (ev.verdict === 'deny') break;
          }
          const denied = judged.find((j) => j.ev.verdict === 'deny');
          const policed = judged.filter((j) => j.ev.decision.reason !== 'not-policed');
          const rc = dp.run(leg.prog, data, leg.prog === 'fromHostDev' || leg.prog === 'toHostDev' ? { ifindex: TEST_IFINDEX } : {});
          stats.runs++;
          const recs = TestDatapath.flows(dp.drain());
          const got: string[] = [];
          const want: string[] = [];
          want.push(`action ${denied ? TC_ACT_SHOT : TC_ACT_OK}`);
          got.push(`action ${rc}`);
          // the main record
          const main = recs.filter((r) => r.type === 'FLOW_START' || r.type === 'DENY');
          let wantMain: string;
          if (denied) {
            const fields = Object.fromEntries(judged.map((j) => [j.side.field, j.want.rule]));
            wantMain = `DENY ${denied.want.reason} dir ${denied.side.dir} ${JSON.stringify({ ...carried, ...fields })}`;
          } else if (policed.length === 0 || fragment) {
            wantMain = '(none)';
          } else {
            const audit = judged.some((j) => j.ev.verdict === 'audit');
            // the host endpoint's reason when it judged the flow, else the pod's
            const host = judged.find((j) => j.side.host && j.ev.decision.reason !== 'not-policed');
            const reason = audit ? 'AUDIT' : (host ?? judged.find((j) => !j.side.host) ?? judged.at(-1)!).want.reason;
            const fields = Object.fromEntries(judged.map((j) => [j.side.field, j.want.rule]));
            wantMain = `FLOW_START ${audit ? 'AUDIT' : 'ALLOW'} ${reason} ${JSON.stringify({ ...carried, ...fields })}`;
          }
          const fieldsOf = (r: abi.FlowEvent, keys: readonly string[]) =>
            JSON.stringify(Object.fromEntries(keys.map((k) => [k, ruleName(ids, r[k as Side['field']])])));
          const keysOf = (s: string) => (s.includes('{') ? Object.keys(JSON.parse(s.slice(s.indexOf('{'))) as object) : []);
          const gotMain = main.length === 0 ? '(none)' : main.map((r) => r.type === 'DENY'
            ? `DENY ${abi.reasonName(r.reason)} dir ${r.direction} ${fieldsOf(r, keysOf(wantMain))}`
            : `FLOW_START ${abi.verdictName(r.verdict)} ${abi.reasonName(r.reason)} ${fieldsOf(r, keysOf(wantMain))}`).join(' / ');
          want.push(wantMain);
          got.push(gotMain);
          // Log records, per side in order
          // (each with its side's verdict; the datapath keeps the first WEIR_GLOBAL_MAX_LOGS)
          const wantLogs = judged.flatMap((j) => j.want.logs.slice(0, MAX_LOGS).map((l) => `LOG dir ${j.side.dir} ${l} ${j.ev.verdict.toUpperCase()}`));
          const gotLogs = recs.filter((r) => r.type === 'LOG').map((r) =>
            `LOG dir ${r.direction} ${ruleName(ids, r.direction === 1 ? r.egressRuleId : r.ingressRuleId)} ${abi.verdictName(r.verdict)}`);
          // the records name both ends: a pod's identity, HOST for the node, WORLD for the rest
          const identityOf = (ip: string): number => {
            const e = compiled.endpoints.get(ip);
            return NODE_IPS.includes(ip) ? abi.Identity.HOST : e && e.identity !== abi.Identity.WORLD ? e.identity : abi.Identity.WORLD;
          };
          if (wantMain !== '(none)') {
            want.push(`identities ${identityOf(p.src)} -> ${identityOf(p.dst)}`);
            got.push(...main.map((r) => `identities ${r.srcIdentity} -> ${r.dstIdentity}`));
          }
          want.push(...wantLogs);
          got.push(...gotLogs);
          stats.logs += gotLogs.length;
          if (want.join('\n') !== got.join('\n')) {
            const sideText = judged.map((j) => `  ${JSON.stringify(j.side.subject)}: ${j.ev.verdict} ${formatHostDecision(j.ev.decision)}` +
              `${j.ev.wouldDeny ? ` (would deny: ${formatHostDecision(j.ev.wouldDeny)})` : ''} logs ${JSON.stringify(j.want.logs)}`).join('\n');
            mismatches.push({
              category: `${leg.prog} want[${wantMain.split(' {')[0]}] got[${gotMain.split(' {')[0]}]${want.length !== got.length || wantLogs.join() !== gotLogs.join() ? ' logs' : ''}`,
              detail: `${where} leg ${legIndex} (${leg.prog})\nwant:\n  ${want.join('\n  ')}\ngot:\n  ${got.join('\n  ')}\nreference:\n${sideText}\n${describe()}`,
            });
            break;
          }
          for (const j of judged) {
            const r = `${j.side.host ? 'host' : 'pod'}:${j.want.reason}`;
            reasons[r] = (reasons[r] ?? 0) + 1;
            if (j.want.rule) stats.attributed++;
          }
          if (fragment) stats.fragments++;
          if (denied) break;
          for (const j of judged) carried[j.side.field] = j.want.rule;
          // a later fragment, or an unpoliced host device, leaves no flow behind: the next hook
          // judges it as a new flow, with nothing carried
          if (fragment || policed.length === 0) for (const k of Object.keys(carried)) delete carried[k as Side['field']];
        }
      }
    }
    t.diagnostic(`${JSON.stringify(stats)}`);
    t.diagnostic(`reasons ${JSON.stringify(reasons)}`);
    t.diagnostic(`legs ${JSON.stringify(legKinds)}`);
    if (mismatches.length > 0) {
      const byCategory = new Map<string, Mismatch[]>();
      for (const m of mismatches) {
        let l = byCategory.get(m.category);
        if (!l) byCategory.set(m.category, (l = []));
        l.push(m);
      }
      const summary = [...byCategory].map(([c, l]) => `${l.length} x ${c}`).join('\n');
      const first = [...byCategory.values()].map((l) => l[0]!.detail).join('\n\n-----\n\n');
      assert.fail(`${mismatches.length} mismatches (stopped at 40) between the BPF programs and evaluateHost:\n${summary}\n\nfirst of each:\n\n${first}`);
    }
    // the run must have exercised what it claims to
    assert.ok(stats.cases >= ROUNDS * 30, `${stats.cases} cases`);
    for (const r of ['host:ALLOW_FAILSAFE', 'host:ALLOW_GLOBAL', 'host:DENY_POLICY', 'host:DENY_END_OF_TIER', 'host:DENY_HOST_DEFAULT', 'host:ALLOW_FORWARDED',
      'pod:ALLOW_GLOBAL', 'pod:DENY_POLICY', 'pod:DENY_END_OF_TIER', 'pod:ALLOW_POLICY', 'pod:DENY_DEFAULT', 'pod:ALLOW_NOT_ISOLATED', 'pod:ALLOW_HOST', 'host:AUDIT', 'pod:AUDIT']) {
      assert.ok((reasons[r] ?? 0) >= 20, `only ${reasons[r] ?? 0} decisions ${r}: ${JSON.stringify(reasons)}`);
    }
    assert.ok(stats.logs >= 100, `${stats.logs} LOG records`);
  } finally {
    dp.close();
  }
});
