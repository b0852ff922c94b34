// Datapath hostile input: at least 100,000 random and mutated frames per run (test/helpers/
// hostile-gen.ts: truncated headers, bad lengths, IPv4 options, IPv6 extension chains, fragments
// first, middle and last, ICMP errors carrying inner headers, zero-length payloads, VLAN tags,
// random bytes) through all four tc programs with BPF_PROG_TEST_RUN, on random host-protection
// worlds (pods, NetworkPolicies, HostEndpoints, GlobalNetworkPolicies, failsafes:
// test/helpers/host-policy-gen.ts) compiled and applied as the agent does.
//
// For every frame and hook, the expected outcome is derived, never read back: the frame's parse
// (test/helpers/packet-model.ts: a tuple, a later fragment, non-IP or malformed with a reason),
// then for a tuple the reference evaluators (src/policy/host-reference.ts, which defers to
// reference.ts for the NetworkPolicy tier) on each side the hook judges. Checked per run: the tc
// action, the DENY or FLOW_START record (its reason and the tuple it reports); per round: that the
// per-reason counters (weir_stats_v2) grew by exactly the expected count of each reason (so their
// sum is the number of runs: no packet unaccounted for), that no record was lost, and that no
// conntrack or deny-cache state was left behind.
//
// Each run is judged on a clean slate: the conntrack entry or deny-cache entry a run creates is
// removed after it (found from the record it made), so conntrack never answers for a packet and
// every denial makes its record. Conntrack on hostile input is not what this test is about.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import { compilePolicy, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { matchesSelector } from '../../src/policy/selector.js';
import { evaluateHost, type HostEvaluation, type HostPacket, type HostWorld, type Subject } from '../../src/policy/host-reference.js';
import * as abi from '../../src/datapath/abi.js';
import { TestDatapath, requireBpf, type ProgramKey } from '../helpers/datapath.js';
import { NODE_IPS, gen, rng } from '../helpers/policy-gen.js';
import { NODE, TEST_IFINDEX, TEST_IFNAME, hostSideExpectation, randomHostPacket, randomHostScenario, type SideExpectation } from '../helpers/host-policy-gen.js';
import { hostileFrame, type HostileFrame } from '../helpers/hostile-gen.js';
import { ethernet, ipv4, ipv6, l4Header, packet } from '../helpers/packets.js';
import { hasPorts, isNdp, parseFrame, type ParsedIp, type ParseOutcome } from '../helpers/packet-model.js';

const SEED = Number(process.env.WEIR_FUZZ_SEED ?? 20261128);
const PACKETS = Number(process.env.WEIR_HOSTILE_PACKETS ?? 100_000);
const PER_ROUND = 500;
/** a run stops early after this many mismatches (each category's first is reported in full) */
const MAX_MISMATCHES = 2000;
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const HOOKS: readonly ProgramKey[] = ['fromPod', 'toPod', 'fromHostDev', 'toHostDev'];

/** One side a hook judges: the reference's subject, and whether it is the host endpoint's. */
interface Side {
  readonly subject: Subject;
  readonly host: boolean;
}

/** What a run must do. */
interface Expect {
  readonly reason: abi.ReasonName;
  readonly action: number;
  /** the record it makes (DENY or FLOW_START), none for passes that judge nothing */
  readonly record?: 'DENY' | 'FLOW_START';
  /** how it was derived, for failures */
  readonly why: string;
}

interface Mismatch {
  readonly category: string;
  readonly detail: string;
}

const hex = (b: Buffer): string => b.toString('hex').replace(/(.{2})/g, '$1 ').trim();

/** The frames that found datapath bugs (seed 20261128), run first whatever the seed, so each fix
 * is held to on every run: from a pod's address `a` to `b` of the same family. */
function regressionFrames(a4: string, b4: string, a6: string, b6: string): HostileFrame[] {
  const tcp = l4Header({ proto: 'tcp', sport: 40000, dport: 8080, flags: 0x02 });
  const withTags = (frame: Buffer, tags: number): Buffer =>
    Buffer.concat([frame.subarray(0, 12), ...Array.from({ length: tags }, () => Buffer.from([0x81, 0x00, 0x00, 0x00])), frame.subarray(12)]);
  // a header that only fits because of what follows the datagram (link padding)
  const v4Short = ethernet(0x0800, Buffer.concat([ipv4({ src: a4, dst: b4, proto: 6, payload: tcp.subarray(0, 8), totalLength: 28 }), tcp.subarray(8), Buffer.alloc(20)]));
  const v6Short = ethernet(0x86dd, Buffer.concat([ipv6({ src: a6, dst: b6, nextHeader: 17, payload: Buffer.alloc(4), payloadLength: 4 }), Buffer.alloc(20)]));
  const ndpInV4 = packet({ src: '192.0.2.99', dst: b4, l4: { proto: 58, raw: Buffer.from([135, 0, 0, 0, 0, 0, 0, 0]) } });
  return [
    { frame: withTags(packet({ src: a4, dst: b4, l4: { proto: 'tcp', sport: 40000, dport: 8080, flags: 0x02 } }), 3), classes: ['regression', 'vlan-3'] },
    { frame: withTags(packet({ src: a6, dst: b6, l4: { proto: 'udp', sport: 40000, dport: 53 } }), 4), classes: ['regression', 'vlan-3'] },
    { frame: v4Short, classes: ['regression', 'link-padding'] },
    { frame: v6Short, classes: ['regression', 'link-padding'] },
    { frame: ndpInV4, classes: ['regression', 'ndp-in-ipv4'] },
  ];
}

test(`hostile frames get the model's verdict, reason and record at every hook, all counted (seed ${SEED}; WEIR_FUZZ_SEED=N to replay)`, async (t) => {
  requireBpf();
  t.diagnostic(`seed ${SEED}`);
  console.log(`# bpf-hostile seed ${SEED}`);
  const started = process.hrtime.bigint();
  const dp = await TestDatapath.load();
  const mismatches: Mismatch[] = [];
  const stats = { frames: 0, runs: 0, rounds: 0, skippedSelf: 0, wrappedShort: 0 };
  const reasons: Record<string, number> = {};
  const outcomes: Record<string, number> = {};
  const classes: Record<string, number> = {};
  const actions = { pass: 0, drop: 0 };
  const malformedWhy: Record<string, number> = {};
  try {
    const g = gen(rng(SEED));
    for (let round = 0; stats.frames < PACKETS && mismatches.length < MAX_MISMATCHES; round++) {
      stats.rounds++;
      const scenario = randomHostScenario(g, round);
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
      const world: HostWorld = {
        cluster, placement, hostEndpoints: scenario.hostEndpoints, globalPolicies: scenario.globalPolicies, failsafes: scenario.failsafes, nodeIps: NODE_IPS,
      };
      // addresses as the model prints them (abi.canonicalIp) -> pod key
      const podAt = new Map<string, string>();
      for (const [key, ips] of placement) for (const ip of ips) podAt.set(abi.canonicalIp(ip), key);
      const nodeIps = new Set(NODE_IPS.map(abi.canonicalIp));
      const isolated = (key: string, direction: 'Ingress' | 'Egress'): boolean => {
        const pod = cluster.pods.get(key)!;
        return [...cluster.policies.values()].some((np) => np.namespace === pod.namespace && np.policyTypes.includes(direction) && matchesSelector(np.podSelector, pod.labels));
      };
      // is lo (the host interface under test) covered by a host endpoint? (then it polices)
      const loPoliced = evaluateHost(world, { kind: 'host', node: NODE, interfaceName: TEST_IFNAME, direction: 'Ingress' }, { src: '192.0.2.1', dst: '192.0.2.2', protocol: 6, srcPort: 1, dstPort: 1 }).decision.reason !== 'not-policed';
      const memo = new Map<string, SideExpectation & { verdict: HostEvaluation['verdict'] }>();
      const judge = (subject: Subject, hp: HostPacket) => {
        const k = JSON.stringify([subject, hp]);
        let v = memo.get(k);
        if (!v) {
          const ev = evaluateHost(world, subject, hp);
          memo.set(k, (v = { ...hostSideExpectation(ev), verdict: ev.verdict }));
        }
        return v;
      };

      /** The sides a hook judges for a parsed packet (docs/datapath.md; as the global differential test). */
      const sidesAt = (hook: ProgramKey, p: ParsedIp): Side[] | 'not-local' | 'self' => {
        const src = podAt.get(p.src);
        const dst = podAt.get(p.dst);
        const starHost = (direction: 'Ingress' | 'Egress'): Side => ({ subject: { kind: 'host', node: NODE, interfaceName: '*', direction }, host: true });
        switch (hook) {
          case 'fromPod':
            if (!src) return 'not-local';
            if (src === dst) return 'self';
            return [{ subject: { kind: 'pod', pod: src, direction: 'Egress' }, host: false }, ...(nodeIps.has(p.dst) ? [starHost('Ingress')] : [])];
          case 'toPod':
            if (!dst) return 'not-local';
            if (src === dst) return 'self';
            return [...(nodeIps.has(p.src) ? [starHost('Egress')] : []), { subject: { kind: 'pod', pod: dst, direction: 'Ingress' }, host: false }];
          case 'fromHostDev':
            return [{ subject: { kind: 'host', node: NODE, interfaceName: TEST_IFNAME, direction: 'Ingress', ...(nodeIps.has(p.dst) ? {} : { forwarded: true }) }, host: true }];
          default:
            return [{ subject: { kind: 'host', node: NODE, interfaceName: TEST_IFNAME, direction: 'Egress', ...(nodeIps.has(p.src) ? {} : { forwarded: true }) }, host: true }];
        }
      };

      const expectAt = (hook: ProgramKey, parsed: ParseOutcome): Expect | 'self' => {
        const hostDev = hook === 'fromHostDev' || hook === 'toHostDev';
        if (parsed.kind === 'non-ip') return { reason: 'PASS_NON_IP', action: TC_ACT_OK, why: `non-IP EtherType 0x${parsed.etherType.toString(16)}` };
        if (parsed.kind === 'ip' && isNdp(parsed)) return { reason: 'PASS_NDP', action: TC_ACT_OK, why: `ICMPv6 ${parsed.icmpType}` };
        // a host device without a host endpoint classifies and counts, nothing more
        if (hostDev && !loPoliced) return { reason: 'ALLOW_UNPOLICED', action: TC_ACT_OK, why: 'no host endpoint covers lo' };
        if (parsed.kind === 'malformed') return { reason: 'DROP_MALFORMED', action: TC_ACT_SHOT, why: parsed.why };
        const sides = sidesAt(hook, parsed);
        if (sides === 'self') return 'self';
        if (sides === 'not-local') {
          return hook === 'fromPod'
            ? { reason: 'DROP_SPOOFED', action: TC_ACT_SHOT, record: 'DENY', why: `source ${parsed.src} is no local pod` }
            : { reason: 'ALLOW_UNPOLICED', action: TC_ACT_OK, why: `destination ${parsed.dst} is no local pod` };
        }
        const ports = hasPorts(parsed.proto) && !parsed.laterFragment;
        const hp: HostPacket = { src: parsed.src, dst: parsed.dst, protocol: parsed.proto, ...(ports ? { srcPort: parsed.sport, dstPort: parsed.dport } : {}) };
        const judged: { side: Side; want: SideExpectation; verdict: string }[] = [];
        for (const side of sides) {
          const j = judge(side.subject, hp);
          let want: SideExpectation = j;
          // the datapath names ALLOW_NOT_ISOLATED first where no NetworkPolicy isolates the pod
          if (want.reason === 'ALLOW_HOST' && side.subject.kind === 'pod' && !isolated(side.subject.pod, side.subject.direction)) want = { ...want, reason: 'ALLOW_NOT_ISOLATED' };
          judged.push({ side, want, verdict: j.verdict });
          if (j.verdict === 'deny') break;
        }
        const why = `${JSON.stringify(hp)}${parsed.laterFragment ? ' (later fragment)' : ''}: ${judged.map((j) => `${j.side.subject.kind}/${'pod' in j.side.subject ? j.side.subject.pod : j.side.subject.interfaceName} ${j.side.subject.direction} ${j.verdict} ${j.want.reason} ${j.want.rule}`).join('; ')}`;
        const denied = judged.find((j) => j.verdict === 'deny');
        if (denied) return { reason: denied.want.reason as abi.ReasonName, action: TC_ACT_SHOT, record: 'DENY', why };
        const policed = judged.filter((j) => j.want.reason !== 'ALLOW_UNPOLICED');
        const audit = judged.some((j) => j.verdict === 'audit');
        const host = policed.find((j) => j.side.host);
        const reason = (audit ? 'AUDIT' : (host ?? judged.find((j) => !j.side.host) ?? judged.at(-1)!).want.reason) as abi.ReasonName;
        // a later fragment is judged statelessly: no flow, no FLOW_START
        return { reason, action: TC_ACT_OK, ...(parsed.laterFragment || policed.length === 0 ? {} : { record: 'FLOW_START' as const }), why };
      };

      const before = dp.allStats();
      const lostBefore = dp.counter('EVENTS_LOST');
      const expectedReasons: Record<string, number> = {};
      let runsThisRound = 0;
      const pinned = round === 0 ? regressionFrames(pods[0]!.ips[0]!, pods.at(-1)!.ips[0]!, pods[0]!.ips[1]!, pods.at(-1)!.ips[1]!) : [];
      for (let i = 0; i < PER_ROUND && stats.frames < PACKETS && mismatches.length < MAX_MISMATCHES; i++) {
        const hf = i < pinned.length ? pinned[i]! : hostileFrame(g, randomHostPacket(g, pods));
        let frame = hf.frame;
        // BPF_PROG_TEST_RUN refuses an untagged IP frame shorter than its IP header (EINVAL); a
        // VLAN tag, which the kernel does not look into, gets the same cut-short header through
        const et = frame.readUInt16BE(12);
        if ((et === 0x0800 && frame.length < 34) || (et === 0x86dd && frame.length < 54)) {
          frame = Buffer.concat([frame.subarray(0, 12), Buffer.from([0x81, 0x00, 0x00, 0x07]), frame.subarray(12)]);
          stats.wrappedShort++;
        }
        const parsed = parseFrame(frame);
        stats.frames++;
        for (const c of hf.classes) classes[c] = (classes[c] ?? 0) + 1;
        const outcome = parsed.kind === 'ip' ? (parsed.laterFragment ? 'later-fragment' : parsed.icmpError ? 'icmp-error' : isNdp(parsed) ? 'ndp' : 'tuple') : parsed.kind;
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        const outcomeLabel = parsed.kind === 'malformed' ? `malformed: ${parsed.why.replace(/ \(.*/, '').replace(/\d+/g, 'N')}` : outcome;
        if (parsed.kind === 'malformed') {
          const w = parsed.why.replace(/\d+/g, 'N');
          malformedWhy[w] = (malformedWhy[w] ?? 0) + 1;
        }
        for (const hook of HOOKS) {
          const want = expectAt(hook, parsed);
          if (want === 'self') {
            stats.skippedSelf++;
            continue;
          }
          const where = `seed ${SEED} round ${round} frame ${i} ${hook}`;
          const fail = (category: string, got: string) => mismatches.push({
            category: `${hook}: ${category} [${outcomeLabel}]`,
            detail: `${where}\n  frame (${frame.length} bytes) ${hex(frame)}\n  classes ${hf.classes.join(', ')}\n  model ${JSON.stringify(parsed)}\n  want ${want.reason} action ${want.action} record ${want.record ?? '(none)'}: ${want.why}\n  got ${got}`,
          });
          let rc: number;
          try {
            rc = dp.run(hook, frame, hook === 'fromHostDev' || hook === 'toHostDev' ? { ifindex: TEST_IFINDEX } : {});
          } catch (e) {
            fail('refused by BPF_PROG_TEST_RUN', (e as Error).message);
            continue;
          }
          stats.runs++;
          runsThisRound++;
          expectedReasons[want.reason] = (expectedReasons[want.reason] ?? 0) + 1;
          reasons[want.reason] = (reasons[want.reason] ?? 0) + 1;
          actions[rc === TC_ACT_SHOT ? 'drop' : 'pass']++;
          const recs = TestDatapath.flows(dp.drain()).filter((r) => r.type === 'DENY' || r.type === 'FLOW_START');
          // leave nothing behind: the flow or the deny-cache entry the run made, by the tuple it reported
          for (const r of recs) {
            const key = abi.encodeCtKey({ saddr: r.saddr, daddr: r.daddr, sport: r.sport, dport: r.dport, proto: r.proto });
            dp.map(r.type === 'FLOW_START' ? abi.MapName.ct : abi.MapName.denyRateLimit).delete(key);
          }
          const gotRecs = recs.map((r) => `${r.type} ${abi.reasonName(r.reason)} ${r.saddr} ${r.daddr} ${r.sport} ${r.dport} ${r.proto}`);
          const wantRecs = want.record && parsed.kind === 'ip'
            ? [`${want.record} ${want.reason} ${parsed.src} ${parsed.dst} ${parsed.sport} ${parsed.dport} ${parsed.proto}`]
            : [];
          if (rc !== want.action) fail(`action ${rc} want ${want.action} (${want.reason})`, `action ${rc}, records ${JSON.stringify(gotRecs)}`);
          else if (gotRecs.join('\n') !== wantRecs.join('\n')) fail(`records want[${wantRecs.map((r) => r.split(' ').slice(0, 2).join(' ')).join(',')}] got[${gotRecs.map((r) => r.split(' ').slice(0, 2).join(' ')).join(',')}]`, `action ${rc}, records ${JSON.stringify(gotRecs)} want ${JSON.stringify(wantRecs)}`);
        }
      }
      // the round's accounting: every run counted under exactly the expected reason
      const after = dp.allStats();
      const delta: Record<string, number> = {};
      let counted = 0;
      for (const [name, n] of Object.entries(after)) {
        const d = Number(n - (before[name] ?? 0n));
        if (d) delta[name] = d;
        counted += d;
      }
      const sortObj = (o: Record<string, number>) => JSON.stringify(Object.fromEntries(Object.entries(o).sort()));
      if (counted !== runsThisRound || sortObj(delta) !== sortObj(expectedReasons)) {
        mismatches.push({ category: 'round accounting', detail: `seed ${SEED} round ${round}: ${runsThisRound} runs, counters grew by ${counted}\n  want ${sortObj(expectedReasons)}\n  got  ${sortObj(delta)}` });
      }
      const lost = dp.counter('EVENTS_LOST') - lostBefore;
      if (lost !== 0n) mismatches.push({ category: 'lost records', detail: `seed ${SEED} round ${round}: ${lost} records lost` });
      for (const name of [abi.MapName.ct, abi.MapName.denyRateLimit]) {
        const m = dp.map(name);
        const left = [...m.keys()];
        if (left.length) {
          mismatches.push({ category: `state left in ${name}`, detail: `seed ${SEED} round ${round}: ${left.length} entries, e.g. ${JSON.stringify(abi.decodeCtKey(left[0]!))}` });
          for (const k of left) m.delete(k);
        }
      }
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    t.diagnostic(`${stats.frames} frames, ${stats.runs} program runs in ${seconds.toFixed(1)} s (${stats.rounds} policy worlds; ${stats.skippedSelf} pod-to-itself runs skipped; ${stats.wrappedShort} short frames VLAN-tagged for the test run)`);
    t.diagnostic(`actions ${JSON.stringify(actions)}`);
    t.diagnostic(`outcomes ${JSON.stringify(outcomes)}`);
    t.diagnostic(`reasons ${JSON.stringify(Object.fromEntries(Object.entries(reasons).sort((a, b) => b[1] - a[1])))}`);
    t.diagnostic(`malformed ${JSON.stringify(Object.fromEntries(Object.entries(malformedWhy).sort((a, b) => b[1] - a[1])))}`);
    t.diagnostic(`classes ${JSON.stringify(Object.fromEntries(Object.entries(classes).sort((a, b) => b[1] - a[1])))}`);
    if (mismatches.length > 0) {
      const byCategory = new Map<string, Mismatch[]>();
      for (const m of mismatches) {
        let l = byCategory.get(m.category);
        if (!l) byCategory.set(m.category, (l = []));
        l.push(m);
      }
      const summary = [...byCategory].map(([c, l]) => `${l.length} x ${c}`).join('\n');
      const first = [...byCategory.values()].map((l) => l[0]!.detail).join('\n\n');
      assert.fail(`${mismatches.length} mismatches (a run stops at ${MAX_MISMATCHES}) between the BPF programs and the model:\n${summary}\n\nfirst of each:\n\n${first}`);
    }
    // the run must have exercised what it claims to
    assert.ok(stats.frames >= PACKETS, `${stats.frames} frames`);
    for (const o of ['tuple', 'malformed', 'non-ip', 'later-fragment', 'icmp-error', 'ndp']) assert.ok((outcomes[o] ?? 0) >= PACKETS / 500, `only ${outcomes[o] ?? 0} frames parsed as ${o}: ${JSON.stringify(outcomes)}`);
    const enough = Math.max(1, Math.floor(PACKETS / 2000));
    for (const r of ['DROP_MALFORMED', 'DROP_SPOOFED', 'PASS_NON_IP', 'PASS_NDP', 'ALLOW_UNPOLICED', 'DENY_DEFAULT', 'ALLOW_POLICY', 'ALLOW_GLOBAL', 'DENY_POLICY', 'DENY_HOST_DEFAULT', 'ALLOW_FORWARDED', 'AUDIT']) {
      assert.ok((reasons[r] ?? 0) >= enough, `only ${reasons[r] ?? 0} runs with reason ${r}: ${JSON.stringify(reasons)}`);
    }
    for (const c of ['truncate-boundary', 'truncate-inside', 'ipv4-tot-len', 'ipv4-ihl', 'ipv6-plen', 'tcp-doff', 'udp-len', 'ext-len', 'ipv4-options', 'ext-chain', 'fragment-first', 'fragment-middle', 'fragment-last', 'icmp-error', 'icmp-error-inner-truncated', 'zero-payload', 'vlan-1', 'vlan-2', 'vlan-3', 'random-bytes', 'link-padding', 'l4-past-1024', 'ndp-in-ipv4', 'ext-chain-9', 'odd-proto-58']) {
      assert.ok((classes[c] ?? 0) >= enough, `only ${classes[c] ?? 0} frames of class ${c}`);
    }
  } finally {
    dp.close();
  }
});
