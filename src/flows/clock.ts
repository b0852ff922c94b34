// Record time -> wall-clock time. BPF records carry bpf_ktime_get_coarse_ns(): CLOCK_MONOTONIC
// at tick resolution (1-4 ms behind the fine clock). process.hrtime.bigint() reads the same
// clock (fine), so wall = mono + offset, the offset measured by reading both clocks back to back.
// The offset is re-measured every resyncMs so an NTP step or slew of the wall clock is followed;
// records converted across a step may be off by the step until the next measurement.

/** The two clocks, injectable for tests. */
export interface Clocks {
  /** CLOCK_MONOTONIC in ns */
  monoNs(): bigint;
  /** wall-clock UTC ms since the epoch */
  wallMs(): number;
}

export const systemClocks: Clocks = { monoNs: () => process.hrtime.bigint(), wallMs: () => Date.now() };

/** How often the monotonic -> wall offset is measured again. */
export const CLOCK_RESYNC_MS = 60_000;

export class RecordClock {
  /** wall ms - monotonic ms */
  private offsetMs = 0;
  private measuredAtMonoNs = 0n;
  private readonly resyncNs: bigint;

  constructor(readonly clocks: Clocks = systemClocks, resyncMs: number = CLOCK_RESYNC_MS) {
    this.resyncNs = BigInt(Math.max(1, Math.round(resyncMs))) * 1_000_000n;
    this.measure();
  }

  /** Reads both clocks; the monotonic reading is the midpoint of two taken around the wall one. */
  measure(): void {
    const a = this.clocks.monoNs();
    const wall = this.clocks.wallMs();
    const b = this.clocks.monoNs();
    const mid = a + (b - a) / 2n;
    this.offsetMs = wall - Number(mid) / 1e6;
    this.measuredAtMonoNs = b;
  }

  /** Measures again if the last measurement is older than the resync period. */
  resyncIfDue(): boolean {
    if (this.clocks.monoNs() - this.measuredAtMonoNs < this.resyncNs) return false;
    this.measure();
    return true;
  }

  /** UTC ms for a record's ts_ns. Number arithmetic: exact to well below 1 ms for ~100 days of
   * uptime (2^53 ns), which is all the coarse clock offers. */
  toMs(tsNs: bigint): number {
    return Math.round(Number(tsNs) / 1e6 + this.offsetMs);
  }

  /** The current offset (wall ms - monotonic ms), for diagnostics. */
  get offset(): number {
    return this.offsetMs;
  }

  nowMs(): number {
    return this.clocks.wallMs();
  }
}
