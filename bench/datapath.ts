// `npm run bench -- datapath`: nanoseconds per packet of Weir's tc programs under
// BPF_PROG_TEST_RUN, against a no-op tc program (bpf/build/noop.o) measured the same way.
//
// The figures are the kernel's own: BPF_PROG_TEST_RUN times its loop of `repeat` runs and reports
// the average (duration), so no syscall or JavaScript cost is in them. Cases run interleaved round
// by round (noop, established, ..., noop, established, ...) so that a noisy moment on the machine
// hits every case alike; each figure is the median of its rounds.
//
// A repeated packet is the same packet every time, which suits paths whose cost does not change
// after the first packet (an established flow; a denied flow, denied afresh every time). A new
// flow that policy allows is different: its first packet creates the conntrack entry, and every
// later copy is "established". That path is measured with many runs of repeat=1, each with its own
// source port, and compared with the no-op measured in the same repeat=1 way, since a single run
// carries the timer's fixed cost (tens of ns) that a long loop amortises away.
import { BpfObject, type BpfProgram } from '../src/datapath/libbpf.js';
import * as abi from '../src/datapath/abi.js';
import { bpfObjectPath } from '../src/paths.js';
import { TestDatapath, tcp } from '../test/helpers/datapath.js';
import { tcpPacket, TcpFlag } from '../test/helpers/packets.js';
import { check, median, onInterrupt, printFinal, requireRoot, round, type Metrics } from './common.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

/** Goals, as multiples of the no-op program's ns/packet. */
export const GOALS = { established: 2.5, policyPath: 4 } as const;

export interface DatapathBenchOptions {
  /** runs per BPF_PROG_TEST_RUN call for the repeated cases */
  repeat: number;
  /** rounds (calls) per repeated case; the figure is their median */
  rounds: number;
  /** single runs (distinct flows) for the allow-new case and its no-op comparison */
  singles: number;
}

export const DEFAULT_OPTIONS: DatapathBenchOptions = { repeat: 2_000_000, rounds: 7, singles: 20_000 };

// The cast: a client pod allowed to reach a server pod on TCP 80, and an isolated pod with no rule.
const CLIENT = abi.Identity.FIRST_DYNAMIC;
const SERVER = abi.Identity.FIRST_DYNAMIC + 1;
const LONER = abi.Identity.FIRST_DYNAMIC + 2;
const ADDR = {
  client4: '10.0.0.1', server4: '10.0.0.2', loner4: '10.0.0.3',
  client6: 'fd00::1', server6: 'fd00::2',
} as const;
const PORT = 80;
const ESTABLISHED_SPORT = 50_000;
/** Source ports of the allow-new flows: FIRST_NEW_SPORT + i (kept clear of ESTABLISHED_SPORT). */
const FIRST_NEW_SPORT = 10_000;
/** The ring buffer (8 MiB) holds ~60,000 flow records; drain well before it could fill. */
const DRAIN_EVERY = 1_000;

interface RepeatedCase {
  name: string;
  prog: BpfProgram;
  data: Buffer;
  expectRetval: number;
  /** the stats reason every run must be counted under (none for the no-op) */
  reason?: abi.ReasonName;
  rounds: number[];
}

async function runRepeated(dp: TestDatapath, c: RepeatedCase, repeat: number): Promise<void> {
  const before = c.reason ? dp.stat(c.reason).packets : 0n;
  const r = await c.prog.testRunAsync({ data: c.data, repeat, dataOutSize: 0 });
  check(r.retval === c.expectRetval,
    `${c.name}: the program returned ${r.retval}, expected ${c.expectRetval} (stats: ${JSON.stringify(stringify(dp.allStats()))})`);
  if (c.reason) {
    const delta = dp.stat(c.reason).packets - before;
    check(delta === BigInt(repeat),
      `${c.name}: ${delta} packets counted under ${c.reason}, expected ${repeat} (stats: ${JSON.stringify(stringify(dp.allStats()))})`);
  }
  c.rounds.push(r.durationNs);
}

function stringify(o: Record<string, bigint>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v.toString()]));
}

/** Kernel-reported ns of `n` single runs; `packetFor(i)` gives run i's packet. */
function runSingles(prog: BpfProgram, n: number, packetFor: (i: number) => Buffer, expectRetval: number,
  name: string, between?: (i: number) => void): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = prog.testRun({ data: packetFor(i), repeat: 1, dataOutSize: 0 });
    check(r.retval === expectRetval, `${name}: run ${i} returned ${r.retval}, expected ${expectRetval}`);
    out.push(r.durationNs);
    between?.(i);
  }
  return out;
}

export async function benchDatapath(opts: DatapathBenchOptions = DEFAULT_OPTIONS): Promise<Metrics> {
  requireRoot('the datapath benchmark');
  check(opts.singles <= ESTABLISHED_SPORT - FIRST_NEW_SPORT, `singles: at most ${ESTABLISHED_SPORT - FIRST_NEW_SPORT}`);
  let noopObj: BpfObject | undefined;
  let dp: TestDatapath | undefined;
  const teardown = (): void => {
    noopObj?.close();
    dp?.close();
  };
  const unhook = onInterrupt(teardown);
  try {
    // noop.o has no maps, so nothing is pinned. weir.o pins its maps by name (LIBBPF_PIN_BY_NAME);
    // TestDatapath gives it a pin root of its own under /sys/fs/bpf and removes it on close.
    noopObj = BpfObject.open(bpfObjectPath('noop'));
    await noopObj.load();
    const noop = noopObj.program('weir_noop');
    dp = await TestDatapath.load();
    const fromPod = dp.obj.program(abi.ProgramName.fromPod);

    // Seed: ifindex 0 = no sending-interface check (BPF_PROG_TEST_RUN runs on lo).
    for (const [ip4, ip6] of [[ADDR.client4, ADDR.client6], [ADDR.server4, ADDR.server6]] as const) {
      const isClient = ip4 === ADDR.client4;
      for (const ip of [ip4, ip6]) {
        dp.pod(ip, { id: isClient ? 1 : 2, identity: isClient ? CLIENT : SERVER, isolate: isClient ? 'egress' : 'ingress' });
      }
    }
    dp.pod(ADDR.loner4, { id: 3, identity: LONER, isolate: 'egress' });
    dp.allowEgress(CLIENT, SERVER, tcp(PORT), 1);
    dp.allowIngress(SERVER, CLIENT, tcp(PORT), 2);

    // Established flows: the SYN opens the flow (allowed by rule 1), then ACKs are repeated.
    const est4 = tcpPacket(ADDR.client4, ADDR.server4, ESTABLISHED_SPORT, PORT, TcpFlag.ACK);
    const est6 = tcpPacket(ADDR.client6, ADDR.server6, ESTABLISHED_SPORT, PORT, TcpFlag.ACK);
    for (const [src, dst] of [[ADDR.client4, ADDR.server4], [ADDR.client6, ADDR.server6]] as const) {
      const syn = tcpPacket(src, dst, ESTABLISHED_SPORT, PORT, TcpFlag.SYN);
      check(dp.run('fromPod', syn) === TC_ACT_OK, `the SYN ${src} -> ${dst}:${PORT} allowed by rule 1 was dropped`);
      const ct = dp.ct({ saddr: src, daddr: dst, sport: ESTABLISHED_SPORT, dport: PORT, proto: abi.Proto.TCP });
      check(ct && ct.egressRuleId === 1, `no conntrack entry (egress rule 1) for ${src} -> ${dst}:${PORT} after its SYN`);
    }
    // The policy path: a new flow from an isolated pod without rules, denied afresh every time.
    const deny4 = tcpPacket(ADDR.loner4, ADDR.server4, ESTABLISHED_SPORT, PORT, TcpFlag.SYN);

    const cases: RepeatedCase[] = [
      { name: 'noop', prog: noop, data: est4, expectRetval: TC_ACT_OK, rounds: [] },
      { name: 'established IPv4', prog: fromPod, data: est4, expectRetval: TC_ACT_OK, reason: 'ALLOW_ESTABLISHED', rounds: [] },
      { name: 'established IPv6', prog: fromPod, data: est6, expectRetval: TC_ACT_OK, reason: 'ALLOW_ESTABLISHED', rounds: [] },
      { name: 'policy path (default deny)', prog: fromPod, data: deny4, expectRetval: TC_ACT_SHOT, reason: 'DENY_DEFAULT', rounds: [] },
    ];
    console.log(`datapath: BPF_PROG_TEST_RUN, ${opts.rounds} rounds x ${opts.repeat.toLocaleString('en')} runs per case, ` +
      `${est4.length}-byte IPv4 / ${est6.length}-byte IPv6 TCP packets, kernel-reported ns/packet`);
    for (let round = 0; round < opts.rounds; round++) {
      for (const c of cases) await runRepeated(dp, c, opts.repeat);
    }
    const [noopC, est4C, est6C, denyC] = cases as [RepeatedCase, RepeatedCase, RepeatedCase, RepeatedCase];
    for (const c of cases) {
      console.log(`  ${c.name.padEnd(28)} median ${median(c.rounds).toFixed(1).padStart(6)} ns   rounds: ${c.rounds.join(' ')}`);
    }

    // New flows allowed by a rule: one run each, a distinct source port each (a new conntrack
    // entry and a FLOW_START record every time). The no-op runs the same packets the same way.
    const newPkt = (i: number): Buffer => tcpPacket(ADDR.client4, ADDR.server4, FIRST_NEW_SPORT + i, PORT, TcpFlag.SYN);
    const packets = Array.from({ length: opts.singles }, (_, i) => newPkt(i));
    const allowBefore = dp.stat('ALLOW_POLICY').packets;
    const createdBefore = dp.counter('CT_CREATED');
    const lostBefore = dp.counter('EVENTS_LOST');
    dp.drain();
    // Interleave in blocks, as above, so both halves see the same machine.
    const noopSingles: number[] = [];
    const allowSingles: number[] = [];
    const BLOCK = DRAIN_EVERY;
    for (let start = 0; start < opts.singles; start += BLOCK) {
      const n = Math.min(BLOCK, opts.singles - start);
      noopSingles.push(...runSingles(noop, n, (i) => packets[start + i]!, TC_ACT_OK, 'noop (single runs)'));
      allowSingles.push(...runSingles(fromPod, n, (i) => packets[start + i]!, TC_ACT_OK, 'policy allow, new flow'));
      dp.drain();
    }
    const allowed = dp.stat('ALLOW_POLICY').packets - allowBefore;
    const created = dp.counter('CT_CREATED') - createdBefore;
    const lost = dp.counter('EVENTS_LOST') - lostBefore;
    check(allowed === BigInt(opts.singles), `policy allow, new flow: ${allowed} packets counted ALLOW_POLICY, expected ${opts.singles}`);
    check(created === BigInt(opts.singles), `policy allow, new flow: ${created} conntrack entries created, expected ${opts.singles}`);
    const noopSingle = median(noopSingles);
    const allowNew = median(allowSingles);
    console.log(`  single runs (repeat=1), ${opts.singles.toLocaleString('en')} distinct flows, median of runs:`);
    console.log(`  ${'noop'.padEnd(28)} median ${noopSingle.toFixed(1).padStart(6)} ns`);
    console.log(`  ${'policy allow, new flow'.padEnd(28)} median ${allowNew.toFixed(1).padStart(6)} ns` +
      (lost > 0n ? `   (${lost} flow records lost to a full ring buffer)` : ''));

    const noopNs = median(noopC.rounds);
    const estNs = median(est4C.rounds);
    const est6Ns = median(est6C.rounds);
    const denyNs = median(denyC.rounds);
    const ratio = (x: number, base: number): number => x / base;
    const verdict = (r: number, goal: number): string => `${r.toFixed(2)}x the no-op (goal <= ${goal}x: ${r <= goal ? 'met' : 'NOT met'})`;
    console.log('');
    console.log(`  established IPv4       ${verdict(ratio(estNs, noopNs), GOALS.established)}`);
    console.log(`  established IPv6       ${verdict(ratio(est6Ns, noopNs), GOALS.established)}`);
    console.log(`  policy path (deny)     ${verdict(ratio(denyNs, noopNs), GOALS.policyPath)}`);
    console.log(`  policy allow, new flow ${ratio(allowNew, noopSingle).toFixed(2)}x the single-run no-op ` +
      `(+${(allowNew - noopSingle).toFixed(0)} ns per new flow; no goal, informational)`);

    return {
      noop_ns: round(noopNs, 1),
      established_ns: round(estNs, 1),
      established_v6_ns: round(est6Ns, 1),
      policy_path_ns: round(denyNs, 1),
      noop_single_ns: round(noopSingle, 1),
      policy_allow_new_ns: round(allowNew, 1),
      established_ratio: round(ratio(estNs, noopNs)),
      established_v6_ratio: round(ratio(est6Ns, noopNs)),
      policy_path_ratio: round(ratio(denyNs, noopNs)),
      policy_allow_new_ratio: round(ratio(allowNew, noopSingle)),
      established_goal_met: ratio(estNs, noopNs) <= GOALS.established,
      policy_path_goal_met: ratio(denyNs, noopNs) <= GOALS.policyPath,
      repeat: opts.repeat,
      rounds: opts.rounds,
      singles: opts.singles,
      events_lost: Number(lost),
    };
  } finally {
    teardown();
    unhook();
  }
}

export async function main(args: readonly string[]): Promise<void> {
  const opts = { ...DEFAULT_OPTIONS };
  if (args.includes('--quick')) Object.assign(opts, { repeat: 200_000, rounds: 3, singles: 2_000 });
  printFinal('datapath', await benchDatapath(opts));
}
