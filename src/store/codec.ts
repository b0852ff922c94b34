// FlowRow <-> the `flows` table: the insert column list (the rows themselves are written as a
// Native block, native.ts) and reading rows back as JSONEachRow records. Column names and types
// come from
// schema.ts (ROW_COLUMNS, SIDE_COLUMNS), so a field added there is written and read here without
// a second list to keep in sync.

import type { EndpointKind, FlowRow, SideIdentity } from './row.js';
import { ROW_COLUMNS, SIDE_COLUMNS } from './schema.js';

/** UTC milliseconds as DateTime64(3) text ('YYYY-MM-DD hh:mm:ss.sss'), which ClickHouse parses
 * in the column's time zone (UTC) whatever the server's zone. */
export function chTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 23).replace('T', ' ');
}

export type Record_ = Record<string, unknown>;


/** The column list of an insert, in the order native.ts writes them. */
export const INSERT_COLUMNS: readonly string[] = [
  'ts', 'start', 'id',
  ...ROW_COLUMNS.map(([, c]) => c),
  ...SIDE_COLUMNS.map(([, c]) => `src_${c}`),
  ...SIDE_COLUMNS.map(([, c]) => `dst_${c}`),
];

/**
 * The SELECT list that reads rows back: times as epoch milliseconds, the id as text (chDB writes
 * UInt64 as a JSON number, which a JS number would round). The aliases must not be column names:
 * ClickHouse lets an alias stand for the column in WHERE, and `ts >= ...` would compare the alias.
 */
export function selectColumns(): string {
  const cols = ['toUnixTimestamp64Milli(ts) AS ts_ms', 'toUnixTimestamp64Milli(start) AS start_ms', 'toString(id) AS row_id'];
  for (const [, col] of ROW_COLUMNS) cols.push(col);
  for (const side of ['src', 'dst']) for (const [, col] of SIDE_COLUMNS) cols.push(`${side}_${col}`);
  return cols.join(', ');
}

const NUMERIC = new Set<string>(['port', 'protocol', 'packetsFwd', 'bytesFwd', 'packetsRev', 'bytesRev',
  'connectionsStarted', 'connectionsCompleted', 'connectionsLive', 'count']);

// a server quotes 64-bit integers in JSON by default, chDB does not: accept both
function value(field: string, v: unknown): unknown {
  return NUMERIC.has(field) ? Number(v) : v;
}

export function recordToRow(rec: Record_): FlowRow {
  const side = (p: 'src' | 'dst'): SideIdentity => {
    const s: Record<string, unknown> = {};
    for (const [field, col] of SIDE_COLUMNS) s[field] = value(field, rec[`${p}_${col}`]);
    return s as unknown as SideIdentity & { kind: EndpointKind };
  };
  const row: Record<string, unknown> = { ts: Number(rec.ts_ms), start: Number(rec.start_ms) };
  for (const [field, col] of ROW_COLUMNS) row[field] = value(field, rec[col]);
  row.src = side('src');
  row.dst = side('dst');
  return row as unknown as FlowRow;
}
