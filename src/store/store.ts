// The flow store: FlowRows in ClickHouse through @clickhouse/client, whether the ClickHouse is the
// embedded chDB under a data directory (the default: nothing to run beside the agent) or a server
// reached by URL. Both go through the same client API, so every query here runs unchanged on
// both; only opening and closing differ.

import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { Readable } from 'node:stream';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { decodeCursor, encodeCursor } from './cursor.js';
import { INSERT_COLUMNS, recordToRow, rowToValues, selectColumns, type Record_ } from './codec.js';
import { MAX_LIMIT, type FlowFilter, type FlowQuery } from './filter.js';
import { migrate, type MigrationResult } from './migrations.js';
import type { FlowRow } from './row.js';
import { DEFAULT_RETENTION, FLOWS_TABLE, type Retention, type Target } from './schema.js';
import { FilterError, Params, buildWhere, checkGroupBy } from './sql.js';

export type StoreLocation =
  | { readonly dataDir: string }
  | { readonly url: string; readonly username?: string; readonly password?: string; readonly database?: string };

type ClientConnection = NonNullable<NonNullable<Parameters<typeof createClient>[0]>['connection']>;

export type OpenStoreOptions = StoreLocation & {
  /** raw rows and rollups; default DEFAULT_RETENTION (7 days, 30 days, 1 year) */
  readonly retention?: Retention;
};

/** the same as OpenStoreOptions */
export type StoreOptions = OpenStoreOptions;

export interface SummaryGroup {
  /** one entry per group_by column */
  readonly key: Readonly<Record<string, string | number>>;
  /** rows: aggregated flows, denied/audit/log records */
  readonly flows: number;
  /** both directions */
  readonly packets: number;
  readonly bytes: number;
}

export interface Summary {
  readonly groupBy: readonly string[];
  /** the top `limit` groups by bytes, then packets, then rows */
  readonly groups: readonly SummaryGroup[];
  /** over every matching row, not only the groups returned */
  readonly total: { readonly flows: number; readonly packets: number; readonly bytes: number };
}

export interface FlowStore {
  /** where the store is, for messages: the data directory or the URL (without credentials) */
  readonly location: string;
  readonly migration: MigrationResult;
  /** the underlying client, for diagnostics and tests; the store owns it */
  readonly client: ClickHouseClient;
  /**
   * Inserts one batch. The same `dedupToken` with the same batch again (a replay after an insert
   * whose acknowledgement was lost) is dropped by ClickHouse instead of doubling the rows.
   */
  insert(rows: readonly FlowRow[], dedupToken: string): Promise<void>;
  /** newest first; `nextCursor` when more rows may follow */
  queryFlows(q: FlowQuery): Promise<{ rows: FlowRow[]; nextCursor?: string }>;
  summary(filter: FlowFilter, groupBy: readonly string[], limit: number): Promise<Summary>;
  count(filter?: FlowFilter): Promise<number>;
  /** throws when the store cannot answer */
  ping(): Promise<void>;
  /** idempotent */
  close(): Promise<void>;
}

export class StoreOpenError extends Error {
  override readonly name = 'StoreOpenError';
}

const MAX_SUMMARY_LIMIT = 1000;
const NUMERIC_GROUPS = new Set(['src_port', 'dst_port', 'protocol']);

/**
 * Row ids: 64 bits from the batch's token, plus the row's position. Deterministic, so a replayed
 * batch gets the ids it had (the rows are the same rows), and unique within a batch.
 */
function batchIds(token: string): bigint {
  return createHash('sha256').update(token).digest().readBigUInt64BE(0);
}

/** A ClickHouse string literal: backslash and quote escaped, so any token text stays one literal. */
function sqlString(s: string): string {
  return `'${s.replace(/[\\']/g, '\\$&')}'`;
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return url;
  }
}

async function openClient(opts: OpenStoreOptions): Promise<{ client: ClickHouseClient; location: string; embedded: boolean }> {
  if ('dataDir' in opts) {
    try {
      mkdirSync(opts.dataDir, { recursive: true });
    } catch (err) {
      throw new StoreOpenError(`cannot open the flow store in ${opts.dataDir}: ${(err as Error).message}`, { cause: err });
    }
    // imported only when embedded: loading chDB maps a large native library
    const { createChdbConnection } = await import('chdb/connection');
    try {
      // chdb types its Connection against @clickhouse/client-common, the client against its own
      // bundled copy of the same interface: structurally one type, nominally two
      const connection = createChdbConnection({ path: opts.dataDir }) as unknown as ClientConnection;
      const client = createClient({ connection });
      return { client, location: opts.dataDir, embedded: true };
    } catch (err) {
      throw new StoreOpenError(`cannot open the flow store in ${opts.dataDir}: ${(err as Error).message}`, { cause: err });
    }
  }
  try {
    const client = createClient({
      url: opts.url,
      username: opts.username,
      password: opts.password,
      database: opts.database,
      // flow queries filter on maps and ranges; a stuck query should not hold the API forever
      request_timeout: 30_000,
    });
    return { client, location: redact(opts.url), embedded: false };
  } catch (err) {
    // a malformed URL
    throw new StoreOpenError(`cannot open the flow store at ${redact(opts.url)}: ${(err as Error).message}`, { cause: err });
  }
}

export async function openStore(opts: OpenStoreOptions): Promise<FlowStore> {
  const retention = opts.retention ?? DEFAULT_RETENTION;
  const { client, location, embedded } = await openClient(opts);
  const target: Target = { database: '' };
  let migration: MigrationResult;
  try {
    const ping = await client.ping(embedded ? undefined : { select: true });
    if (!ping.success) throw ping.error;
    migration = await migrate(client, target, retention);
  } catch (err) {
    await closeClient(client, embedded).catch(() => {});
    const what = embedded ? `in ${location}` : `at ${location}`;
    throw new StoreOpenError(`cannot open the flow store ${what}: ${(err as Error).message}`, { cause: err });
  }
  return new ClickHouseFlowStore(client, location, embedded, migration);
}

async function closeClient(client: ClickHouseClient, embedded: boolean): Promise<void> {
  await client.close();
  if (embedded) {
    // chDB binds one data directory per process; the next open (maybe of another directory)
    // must wait until this connection is really gone
    const { drainPending } = await import('chdb');
    await drainPending();
  }
}

class ClickHouseFlowStore implements FlowStore {
  #closed: Promise<void> | undefined;

  constructor(
    readonly client: ClickHouseClient,
    readonly location: string,
    private readonly embedded: boolean,
    readonly migration: MigrationResult,
  ) {}

  async insert(rows: readonly FlowRow[], dedupToken: string): Promise<void> {
    if (typeof dedupToken !== 'string' || dedupToken === '') throw new TypeError('insert: dedupToken must be a non-empty string');
    if (rows.length === 0) return;
    const base = batchIds(dedupToken);
    let body = '';
    for (let i = 0; i < rows.length; i++) body += `${JSON.stringify(rowToValues(rows[i]!, BigInt.asUintN(64, base + BigInt(i))))}\n`;
    // A statement with its settings in a SETTINGS clause and the rows as the body (client.exec),
    // rather than client.insert with clickhouse_settings: chDB's connection turns
    // clickhouse_settings into `SET ...;` statements put before the INSERT, and splitting that
    // multi-statement text lexes the whole 5 MB body once more (15–30 % of the insert's time in
    // chDB); those SETs also stayed on chDB's session, so a later statement without its own token
    // ran with this batch's. A server takes the same statement over HTTP, the body as the request
    // body.
    // deduplicate_blocks_in_dependent_materialized_views: the rollups skip a deduplicated block
    // too, or a replay would double their sums. optimize_on_insert = 0: the rollups' blocks are
    // not summed on insert (background merges sum them, and every reader of a SummingMergeTree
    // sums anyway, since unmerged parts are always possible); about a sixth of an insert's time.
    const { stream } = await this.client.exec({
      query: `INSERT INTO ${FLOWS_TABLE} (${INSERT_COLUMNS.join(', ')})
SETTINGS insert_deduplicate = 1, insert_deduplication_token = ${sqlString(dedupToken)},
  deduplicate_blocks_in_dependent_materialized_views = 1, optimize_on_insert = 0
FORMAT JSONCompactEachRow`,
      values: Readable.from([body], { objectMode: false }),
    });
    // nothing comes back from an INSERT, but a server's response must be read to free the socket
    for await (const _ of stream) void _;
  }

  async queryFlows(q: FlowQuery): Promise<{ rows: FlowRow[]; nextCursor?: string }> {
    if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > MAX_LIMIT) {
      throw new FilterError('limit', `${JSON.stringify(q.limit)} is not a whole number from 1 to ${MAX_LIMIT}`);
    }
    const p = new Params();
    const where = buildWhere(q.filter, p);
    let cursor = '';
    if (q.cursor !== undefined) {
      const pos = decodeCursor(q.cursor);
      cursor = `\n  AND (ts, id) < (fromUnixTimestamp64Milli(${p.add('Int64', pos.ts)}, 'UTC'), ${p.add('UInt64', pos.id)})`;
    }
    // one row more than asked tells whether another page follows
    const rs = await this.client.query({
      query: `SELECT ${selectColumns()} FROM ${FLOWS_TABLE}
WHERE ${where.sql}${cursor}
ORDER BY ts DESC, id DESC
LIMIT ${p.add('UInt32', q.limit + 1)}`,
      query_params: p.values,
      format: 'JSONEachRow',
    });
    const records = await rs.json<Record_>();
    const page = records.slice(0, q.limit);
    const rows = page.map(recordToRow);
    if (records.length <= q.limit) return { rows };
    const last = page[page.length - 1]!;
    return { rows, nextCursor: encodeCursor({ ts: Number(last.ts_ms), id: String(last.row_id) }) };
  }

  async summary(filter: FlowFilter, groupBy: readonly string[], limit: number): Promise<Summary> {
    checkGroupBy(groupBy);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SUMMARY_LIMIT) {
      throw new FilterError('limit', `${JSON.stringify(limit)} is not a whole number from 1 to ${MAX_SUMMARY_LIMIT}`);
    }
    const p = new Params();
    const where = buildWhere(filter, p);
    // group_by names passed checkGroupBy's allow-list, so they are column names of ours
    // every key read as text under an alias that is no column name (an alias named like a column
    // would stand for it in WHERE); numbers are turned back below
    const keys = groupBy.map((g) => `toString(${g}) AS k_${g}`).join(', ');
    const measures = 'count() AS flows, sum(packets_fwd + packets_rev) AS packets, sum(bytes_fwd + bytes_rev) AS bytes';
    const [groupsRs, totalRs] = await Promise.all([
      this.client.query({
        query: `SELECT ${keys}, ${measures} FROM ${FLOWS_TABLE} WHERE ${where.sql}
GROUP BY ${groupBy.join(', ')} ORDER BY bytes DESC, packets DESC, flows DESC, ${groupBy.join(', ')}
LIMIT ${p.add('UInt32', limit)}`,
        query_params: p.values,
        format: 'JSONEachRow',
      }),
      this.client.query({
        query: `SELECT ${measures} FROM ${FLOWS_TABLE} WHERE ${where.sql}`,
        query_params: p.values,
        format: 'JSONEachRow',
      }),
    ]);
    const num = (v: unknown): number => Number(v ?? 0);
    const groups = (await groupsRs.json<Record_>()).map((r) => {
      const key: Record<string, string | number> = {};
      for (const g of groupBy) key[g] = NUMERIC_GROUPS.has(g) ? Number(r[`k_${g}`]) : String(r[`k_${g}`]);
      return { key, flows: num(r.flows), packets: num(r.packets), bytes: num(r.bytes) };
    });
    const t = (await totalRs.json<Record_>())[0] ?? {};
    return { groupBy, groups, total: { flows: num(t.flows), packets: num(t.packets), bytes: num(t.bytes) } };
  }

  async count(filter: FlowFilter = {}): Promise<number> {
    const where = buildWhere(filter);
    const rs = await this.client.query({
      query: `SELECT count() AS n FROM ${FLOWS_TABLE} WHERE ${where.sql}`,
      query_params: where.params,
      format: 'JSONEachRow',
    });
    return Number((await rs.json<{ n: number | string }>())[0]?.n ?? 0);
  }

  async ping(): Promise<void> {
    if (this.#closed) throw new Error(`the flow store ${this.location} is closed`);
    const r = await this.client.ping(this.embedded ? undefined : { select: true });
    if (!r.success) throw new Error(`the flow store ${this.location} does not answer: ${r.error.message}`, { cause: r.error });
  }

  close(): Promise<void> {
    this.#closed ??= closeClient(this.client, this.embedded);
    return this.#closed;
  }
}
