// Flow summaries: rows grouped by columns or labels, with flows, packets and bytes per group, the
// largest by bytes first (the top talkers), and the totals. A summary reads the coarsest table
// that answers it, as Akvorado picks among its resolutions: the per-hour or per-minute rollup when
// every column the request filters or groups on is a rollup dimension, the raw `flows` table
// otherwise. The answer says which table it read (`source`), at which resolution, and the time
// range that table's buckets really covered.
//
// The rule, for a request the rollups can answer (tables tried coarsest first: flows_1h,
// flows_1m, flows):
// 1. A table is a candidate when it still holds the start of the range: `since` is at or after
//    now minus its retention (TTL only ever drops rows older than that, so those rows are all
//    there). Without `since` (everything kept), or when no table holds `since`, the table kept
//    longest answers: the most complete answer there is.
// 2. Among candidates, the coarsest whose buckets either fall exactly on `since` and `until`
//    (then its answer is the raw answer, from far fewer rows), or are at most 1/60 of the range
//    long (MIN_BUCKETS_PER_RANGE).
// 3. The raw table is always exact, so when it holds the range and no rollup qualified, it
//    answers; when it does not hold the range, the finest rollup that does.
// The trade-off is the resolution of the edges: a rollup bucket that straddles `since` or `until`
// is counted whole (the edges are widened outward to whole buckets, never narrowed), so the
// answer may include up to one bucket of extra traffic at each end; rule 2 bounds that to 1/60
// of the range each side. `since=1h` reads the minute table (widened by under a minute),
// `since=7d` the hour table, `since=15m` (unaligned) the raw rows; ranges on whole minutes or
// hours read the rollups and are exact. `source.since`/`source.until` are the widened edges.

import type { ClickHouseClient } from '@clickhouse/client';
import type { FlowFilter } from './filter.js';
import { DEFAULT_RETENTION, FLOWS_TABLE, HOUR_TABLE, MINUTE_TABLE, ROLLUP_DIMENSIONS, type Retention } from './schema.js';
import { tableRetention } from './migrations.js';
import { FilterError, Params, buildWhere, filterColumns, parseGroupBy, type GroupSpec } from './sql.js';

export const MAX_SUMMARY_LIMIT = 1000;
/** a rollup with unaligned edges answers only ranges at least this many of its buckets long */
export const MIN_BUCKETS_PER_RANGE = 60;

const DAY_MS = 86_400_000;
/** how long the tables' retention, read back from their TTLs, is trusted before it is read again */
export const RETENTION_CACHE_MS = 60_000;
const NUMERIC_GROUPS = new Set(['src_port', 'dst_port', 'protocol']);
const ROLLUP_COLUMNS: ReadonlySet<string> = new Set(['ts', ...ROLLUP_DIMENSIONS.map(([c]) => c)]);

export type SummaryTable = typeof FLOWS_TABLE | typeof MINUTE_TABLE | typeof HOUR_TABLE;

export interface SummarySource {
  readonly table: SummaryTable;
  /** bucket length: 60 (flows_1m), 3600 (flows_1h), 0.001 (raw rows: millisecond times) */
  readonly resolutionSeconds: number;
  /** how long the table keeps rows */
  readonly retentionDays: number;
  /** the range the answer covers (UTC ms): the request's edges widened to whole buckets; absent
   * when the request had none */
  readonly since?: number;
  readonly until?: number;
  /** why this table, in words */
  readonly reason: string;
}

export interface SummaryGroup {
  /** one entry per group_by entry; a label the row does not have is null */
  readonly key: Readonly<Record<string, string | number | null>>;
  /** rows: aggregated flows, denied/audit/log records */
  readonly flows: number;
  /** both directions */
  readonly packets: number;
  readonly bytes: number;
}

export interface Summary {
  readonly groupBy: readonly string[];
  /** the top `limit` groups by bytes, then packets, then rows: grouped by source, the top talkers */
  readonly groups: readonly SummaryGroup[];
  /** over every matching row, not only the groups returned */
  readonly total: { readonly flows: number; readonly packets: number; readonly bytes: number };
  readonly source: SummarySource;
}

export interface SummaryOptions {
  /** what each table keeps; default: read back from the tables' TTLs (cached a minute) */
  readonly retention?: Retention;
  /** UTC ms; default Date.now() */
  readonly now?: number;
  /** read this table whatever the rule says (tests, diagnostics); refused when it lacks a column */
  readonly table?: SummaryTable;
  /** a SETTINGS clause the queries end with (the store's READ_SETTINGS on chDB); default none */
  readonly readSettings?: string;
}

interface Table {
  readonly table: SummaryTable;
  readonly resolutionMs: number;
  readonly unit: string;
  readonly days: (r: Retention) => number;
}

/** coarsest first */
const TABLES: readonly Table[] = [
  { table: HOUR_TABLE, resolutionMs: 3_600_000, unit: 'hours', days: (r) => r.hourDays },
  { table: MINUTE_TABLE, resolutionMs: 60_000, unit: 'minutes', days: (r) => r.minuteDays },
  { table: FLOWS_TABLE, resolutionMs: 1, unit: 'milliseconds', days: (r) => r.rawDays },
];
const RAW = TABLES[2]!;

/** Why only the raw table can answer (the first column the rollups lack), or undefined. */
export function rollupBlocker(filter: FlowFilter, specs: readonly GroupSpec[]): string | undefined {
  for (const s of specs) {
    if ('key' in s) return `group_by ${s.name}: labels are kept in the raw table only`;
    if (!ROLLUP_COLUMNS.has(s.column)) return `group_by ${s.name}: not a rollup dimension`;
  }
  for (const [field, columns] of filterColumns(filter)) {
    const missing = columns.find((c) => !ROLLUP_COLUMNS.has(c));
    if (missing !== undefined) return `filter ${field} reads ${missing}, not a rollup dimension`;
  }
  return undefined;
}

function source(t: Table, retention: Retention, filter: FlowFilter, reason: string): SummarySource {
  const res = t.resolutionMs;
  return {
    table: t.table,
    resolutionSeconds: res / 1000,
    retentionDays: t.days(retention),
    ...(filter.since !== undefined ? { since: Math.floor(filter.since / res) * res } : {}),
    ...(filter.until !== undefined ? { until: Math.ceil(filter.until / res) * res } : {}),
    reason,
  };
}

/** The table a summary reads, by the rule at the top of this file. Pure: tested on its own. */
export function chooseSource(
  filter: FlowFilter,
  groupBy: readonly string[],
  opts: { readonly retention?: Retention; readonly now?: number } = {},
): SummarySource {
  const retention = opts.retention ?? DEFAULT_RETENTION;
  const now = opts.now ?? Date.now();
  const blocker = rollupBlocker(filter, parseGroupBy(groupBy));
  if (blocker !== undefined) return source(RAW, retention, filter, blocker);
  const longest = TABLES.reduce((a, b) => (b.days(retention) > a.days(retention) ? b : a));
  const since = filter.since;
  if (since === undefined) return source(longest, retention, filter, `no since: the table kept longest (${longest.days(retention)} days)`);
  const holding = TABLES.filter((t) => since >= now - t.days(retention) * DAY_MS);
  if (holding.length === 0) return source(longest, retention, filter, `since is older than any table keeps: the table kept longest (${longest.days(retention)} days)`);
  const span = (filter.until ?? now) - since;
  const onEdge = (t: Table, v: number | undefined): boolean => v === undefined || v % t.resolutionMs === 0;
  for (const t of holding) {
    if (t === RAW) return source(t, retention, filter, 'raw rows, exact: no rollup keeping the range has buckets on its edges or short enough for it');
    if (onEdge(t, since) && onEdge(t, filter.until)) return source(t, retention, filter, `since and until are on whole ${t.unit}: exact`);
    if (t.resolutionMs * MIN_BUCKETS_PER_RANGE <= span) {
      return source(t, retention, filter, `edges widened to whole ${t.unit} (at most 1/${MIN_BUCKETS_PER_RANGE} of the range each)`);
    }
  }
  const finest = holding[holding.length - 1]!;
  return source(finest, retention, filter, `since is older than the raw table keeps: the finest rollup that keeps it, edges widened to whole ${finest.unit}`);
}

const retentions = new WeakMap<ClickHouseClient, { at: number; retention: Promise<Retention> }>();

/** The tables' retention from their TTLs, read at most once a minute per client. */
function cachedRetention(client: ClickHouseClient): Promise<Retention> {
  const now = Date.now();
  const hit = retentions.get(client);
  if (hit && now - hit.at < RETENTION_CACHE_MS) return hit.retention;
  const retention = tableRetention(client, { database: '' });
  retentions.set(client, { at: now, retention });
  // a failed read is not kept: the next summary asks again
  retention.catch(() => { if (retentions.get(client)?.retention === retention) retentions.delete(client); });
  return retention;
}

/** The SQL of one group_by entry; label keys become query parameters. */
function groupExpr(s: GroupSpec, p: Params): { group: string; select: string } {
  if ('key' in s) {
    const k = p.add('String', s.key);
    // null (not '') when the row has no such label: '' is a valid label value of its own
    const e = `if(mapContains(${s.labels}, ${k}), ${s.labels}[${k}], NULL)`;
    return { group: e, select: e };
  }
  // s.column passed parseGroupBy's allow-list: a column name of ours
  return { group: s.column, select: `toString(${s.column})` };
}

export async function summarize(
  client: ClickHouseClient,
  filter: FlowFilter,
  groupBy: readonly string[],
  limit: number,
  opts: SummaryOptions = {},
): Promise<Summary> {
  const specs = parseGroupBy(groupBy);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SUMMARY_LIMIT) {
    throw new FilterError('limit', `${JSON.stringify(limit)} is not a whole number from 1 to ${MAX_SUMMARY_LIMIT}`);
  }
  // a malformed filter (a bad time included) is refused before any arithmetic on it
  buildWhere(filter);
  const retention = opts.retention ?? (await cachedRetention(client));
  let src = chooseSource(filter, groupBy, { retention, ...(opts.now !== undefined ? { now: opts.now } : {}) });
  if (opts.table !== undefined && opts.table !== src.table) {
    const t = TABLES.find((x) => x.table === opts.table);
    if (!t) throw new Error(`summary: ${JSON.stringify(opts.table)} is not a flow table`);
    const blocker = rollupBlocker(filter, specs);
    if (t !== RAW && blocker !== undefined) throw new Error(`summary: ${t.table} cannot answer: ${blocker}`);
    src = source(t, retention, filter, 'asked for');
  }
  const raw = src.table === FLOWS_TABLE;
  const p = new Params();
  // a rollup bucket's ts is its start: the widened edges select exactly the buckets that overlap
  // the asked range
  const where = buildWhere(raw ? filter : { ...filter, since: src.since, until: src.until }, p);
  const exprs = specs.map((s) => groupExpr(s, p));
  // aliases that are no column name (an alias named like a column would stand for it in WHERE,
  // and `sum(flows) AS flows` would nest aggregates on a rollup)
  const keys = exprs.map((e, i) => `${e.select} AS k${i}`).join(', ');
  const measures = `${raw ? 'count()' : 'sum(flows)'} AS n_flows, sum(packets_fwd + packets_rev) AS n_packets, sum(bytes_fwd + bytes_rev) AS n_bytes`;
  const groupCols = exprs.map((e) => e.group).join(', ');
  // rollups are SummingMergeTree: parts not merged yet hold several rows per key, so every
  // reader sums (never reads a rollup row as final)
  const [groupsRs, totalRs] = await Promise.all([
    client.query({
      query: `SELECT ${keys}, ${measures} FROM ${src.table} WHERE ${where.sql}
GROUP BY ${groupCols} ORDER BY n_bytes DESC, n_packets DESC, n_flows DESC, ${groupCols}
LIMIT ${p.add('UInt32', limit)}
${opts.readSettings ?? ''}`,
      query_params: p.values,
      format: 'JSONEachRow',
    }),
    client.query({
      query: `SELECT ${measures} FROM ${src.table} WHERE ${where.sql}\n${opts.readSettings ?? ''}`,
      query_params: p.values,
      format: 'JSONEachRow',
    }),
  ]);
  const num = (v: unknown): number => Number(v ?? 0);
  const groups = (await groupsRs.json<Record<string, unknown>>()).map((r) => {
    const key: Record<string, string | number | null> = {};
    for (const [i, s] of specs.entries()) {
      const v = r[`k${i}`];
      key[s.name] = v === null || v === undefined ? null : 'column' in s && NUMERIC_GROUPS.has(s.column) ? Number(v) : String(v);
    }
    return { key, flows: num(r.n_flows), packets: num(r.n_packets), bytes: num(r.n_bytes) };
  });
  const t = (await totalRs.json<Record<string, unknown>>())[0] ?? {};
  return { groupBy, groups, total: { flows: num(t.n_flows), packets: num(t.n_packets), bytes: num(t.n_bytes) }, source: src };
}
