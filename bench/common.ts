// Shared by the benchmarks: statistics, the final JSON line, and teardown that also runs on
// Ctrl-C / SIGTERM. Benchmarks measure; they never assert speed. They do fail (throw, non-zero
// exit) when the thing measured did not work, since a fast broken datapath measures nothing.
import type { BpfProgram } from '../src/datapath/libbpf.js';

/** The median of a non-empty list (mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Rounds to `digits` decimals (for the JSON line; the human lines format their own). */
export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export type Metrics = Record<string, number | string | boolean>;

/** The last line of every bench: exactly {"bench":"<name>","metrics":{...}}. */
export function printFinal(bench: string, metrics: Metrics): void {
  console.log(JSON.stringify({ bench, metrics }));
}

/** Throws with `message` unless `cond` holds: a benchmark whose subject misbehaves must not report. */
export function check(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(`bench: ${message}`);
}

export function requireRoot(what: string): void {
  if (typeof process.geteuid === 'function' && process.geteuid() !== 0) {
    throw new Error(`${what} loads BPF programs and creates network namespaces: run it as root`);
  }
}

// ---- teardown on signals ------------------------------------------------------------------------

type Cleanup = () => Promise<void> | void;
const cleanups = new Set<Cleanup>();
let signalsHooked = false;
let interrupted: number | undefined;

/** The exit status a signal asked for (130 SIGINT, 143 SIGTERM), once one arrived. */
export function interruptedExitCode(): number | undefined {
  return interrupted;
}

/**
 * Registers a teardown that must run even if the process is interrupted. Callers still run it
 * themselves in `finally` (and then unregister it with the returned function); on SIGINT/SIGTERM
 * every registered teardown runs, then the process exits 130/143.
 */
export function onInterrupt(fn: Cleanup): () => void {
  cleanups.add(fn);
  if (!signalsHooked) {
    signalsHooked = true;
    for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      process.on(sig, () => {
        if (interrupted !== undefined) return; // a second Ctrl-C while tearing down: keep tearing down
        interrupted = code;
        console.error(`\nbench: ${sig}, tearing down...`);
        void (async () => {
          for (const c of [...cleanups].reverse()) {
            try {
              await c();
            } catch (e) {
              console.error(`bench: teardown failed: ${(e as Error).message}`);
            }
          }
          process.exit(code);
        })();
      });
    }
  }
  return () => {
    cleanups.delete(fn);
  };
}

/** n single BPF_PROG_TEST_RUN runs (repeat 1) of `prog`, one packet each, every one checked to
 * return `expect`; their durations. `drain` empties the ring buffer every 1,000 runs. */
export function singles(prog: BpfProgram, n: number, packetFor: (i: number) => Buffer, expect: number, what: string, drain: () => void): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = prog.testRun({ data: packetFor(i), repeat: 1, dataOutSize: 0 });
    check(r.retval === expect, `${what}: run ${i} returned ${r.retval}, expected ${expect}`);
    out.push(r.durationNs);
    if (i % 1000 === 999) drain();
  }
  return out;
}
