// Following a store: each poll returns the rows that matched the filter and were not returned
// before, oldest first. The writer inserts in batches, and an aggregated row's `ts` is the end of
// its interval, so a row can land a little after rows with a later `ts`: every poll looks back
// `settleMs` before the newest row seen and drops rows it already returned (remembered for that
// window), so late rows are delivered once and nothing twice.
import type { FlowRow } from '../store/row.js';
import { MAX_LIMIT, type FlowFilter } from '../store/filter.js';
import type { FlowSource } from './source.js';

/** how far back each poll looks before the newest row seen */
export const DEFAULT_SETTLE_MS = 60_000;
/** pages one poll reads at most (MAX_LIMIT rows each); a burst larger than that is cut short */
export const MAX_PAGES_PER_POLL = 10;

export interface FollowOptions {
  /** rows before this are never returned (default: now) */
  readonly startMs?: number;
  readonly settleMs?: number;
  readonly now?: () => number;
}

/** A row's identity for "returned before": the whole row (rows are immutable once stored). */
function rowKey(row: FlowRow): string {
  return JSON.stringify(row);
}

export class StoreFollower {
  private readonly start: number;
  private readonly settleMs: number;
  private newest: number;
  private readonly seen = new Map<string, number>();

  constructor(private readonly source: FlowSource, private readonly filter: FlowFilter, opts: FollowOptions = {}) {
    this.start = opts.startMs ?? filter.since ?? (opts.now ?? Date.now)();
    this.settleMs = opts.settleMs ?? DEFAULT_SETTLE_MS;
    this.newest = this.start;
  }

  /** Marks rows as already delivered (e.g. the `--last N` rows printed before following). */
  markSeen(rows: readonly FlowRow[]): void {
    for (const r of rows) {
      this.seen.set(rowKey(r), r.ts);
      if (r.ts > this.newest) this.newest = r.ts;
    }
  }

  /** The rows new since the last poll, oldest first. */
  async poll(): Promise<FlowRow[]> {
    const since = Math.max(this.start, this.newest - this.settleMs, this.filter.since ?? -Infinity);
    const filter: FlowFilter = { ...this.filter, since };
    const fresh: FlowRow[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_PAGES_PER_POLL; page++) {
      const res = await this.source.queryFlows({ filter, limit: MAX_LIMIT, ...(cursor ? { cursor } : {}) });
      for (const r of res.rows) {
        const key = rowKey(r);
        if (this.seen.has(key)) continue;
        this.seen.set(key, r.ts);
        fresh.push(r);
      }
      cursor = res.nextCursor;
      if (!cursor || res.rows.length === 0) break;
    }
    for (const r of fresh) if (r.ts > this.newest) this.newest = r.ts;
    const horizon = this.newest - this.settleMs;
    for (const [k, ts] of this.seen) if (ts < horizon) this.seen.delete(k);
    return fresh.sort((a, b) => a.ts - b.ts);
  }
}
