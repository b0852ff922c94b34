// The flow store: FlowRows in ClickHouse through @clickhouse/client, whether the ClickHouse is the
// embedded chDB under a data directory (the default: nothing to run beside the agent) or a server
// reached by URL. Both go through the same client API, so every query here runs unchanged on
// both; only opening and closing differ.

import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createClient, type ClickHouseClient, type ErrorLogParams, type Logger, type WarnLogParams } from '@clickhouse/client';
import { decodeCursor, encodeCursor } from './cursor.js';
import { INSERT_COLUMNS, recordToRow, selectColumns, type Record_ } from './codec.js';
import { MAX_LIMIT, type FlowFilter, type FlowQuery } from './filter.js';
import { migrate, type MigrationResult } from './migrations.js';
import { NativeEncoder } from './native.js';
import type { FlowRow } from './row.js';
import { DEFAULT_RETENTION, FLOWS_TABLE, type Retention, type Target } from './schema.js';
import { FilterError, Params, QUERY_TIMEOUT_S, READ_SETTINGS, buildWhere } from './sql.js';
import { summarize, type Summary } from './summary.js';
import { processAlive } from '../process.js';

export type { Summary, SummaryGroup, SummarySource } from './summary.js';

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

/**
 * The client's own log, one line per message. Its default logger prints a warning with the whole
 * error and its stack for every failed request (a store that is down prints pages), while every
 * failure reaches us anyway as a rejected call, reported with the reason; so warnings and errors
 * keep one line, the cause's message included, and the rest is dropped.
 */
class OneLineLogger implements Logger {
  trace(): void {}
  debug(): void {}
  info(): void {}
  warn({ module, message, err }: WarnLogParams): void {
    console.error(`weir: clickhouse client (${module}): ${message.trim().replace(/\.$/, '')}${err ? `: ${err.message}` : ''}`);
  }
  error({ module, message, err }: ErrorLogParams): void {
    this.warn({ module, message, err });
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
      // and the server stops such a query itself (READ_SETTINGS does this for chDB)
      clickhouse_settings: { max_execution_time: QUERY_TIMEOUT_S },
      log: { LoggerClass: OneLineLogger },
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

/** Where an embedded store stages insert blocks, under its data directory. */
const INSERT_DIR = 'inserts';

/** Blocks left by a process that died mid-insert (their batches are retried from the writer's
 * spool or were lost with the process's memory, which the writer counts). */
function removeStaleBlocks(dir: string): void {
  for (const name of readdirSync(dir)) {
    const m = /^block-(\d+)-\d+\.native$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid !== process.pid && !processAlive(pid)) rmSync(path.join(dir, name), { force: true });
  }
}

class ClickHouseFlowStore implements FlowStore {
  #closed: Promise<void> | undefined;
  readonly #encoder = new NativeEncoder();
  /** embedded: where insert blocks are staged for chDB to read; a server: undefined */
  readonly #insertDir: string | undefined;
  #insertSeq = 0;
  /** embedded: the engine's own query time limit, in each statement; a server gets it as a
   * request setting (the client's clickhouse_settings, sent per request) */
  readonly #readSettings: string;

  constructor(
    readonly client: ClickHouseClient,
    readonly location: string,
    private readonly embedded: boolean,
    readonly migration: MigrationResult,
  ) {
    this.#readSettings = embedded ? READ_SETTINGS : '';
    if (embedded) {
      this.#insertDir = path.join(location, INSERT_DIR);
      mkdirSync(this.#insertDir, { recursive: true });
      removeStaleBlocks(this.#insertDir);
    }
  }

  async insert(rows: readonly FlowRow[], dedupToken: string): Promise<void> {
    if (typeof dedupToken !== 'string' || dedupToken === '') throw new TypeError('insert: dedupToken must be a non-empty string');
    if (rows.length === 0) return;
    // Rows go as one block of ClickHouse's Native format (native.ts): JSON cost chDB ~9 µs a row
    // to parse, Native almost nothing.
    const block = this.#encoder.encode(rows, batchIds(dedupToken));
    // The settings are in the statement's SETTINGS clause: chDB's connection turns
    // clickhouse_settings into `SET ...;` statements that then stay on its session, so a later
    // statement without its own token would run with this batch's.
    // deduplicate_blocks_in_dependent_materialized_views: the rollups skip a deduplicated block
    // too, or a replay would double their sums. optimize_on_insert = 0: the rollups' blocks are
    // not summed on insert (background merges sum them, and every reader of a SummingMergeTree
    // sums anyway, since unmerged parts are always possible); about a sixth of an insert's time.
    const settings = `SETTINGS insert_deduplicate = 1, insert_deduplication_token = ${sqlString(dedupToken)},
  deduplicate_blocks_in_dependent_materialized_views = 1, optimize_on_insert = 0`;
    const into = `INSERT INTO ${FLOWS_TABLE} (${INSERT_COLUMNS.join(', ')})`;
    if (this.#insertDir === undefined) {
      // a server takes the block as the body of the request
      const { stream } = await this.client.exec({
        query: `${into}\n${settings}\nFORMAT Native`,
        values: Readable.from([block], { objectMode: false }),
      });
      // nothing comes back from an INSERT, but a server's response must be read to free the socket
      for await (const _ of stream) void _;
      return;
    }
    // chDB's connection hands a request body over as text, which would mangle binary; chDB reads
    // local files itself, so the block goes through a file next to the store (written whole,
    // read once, removed). The path is ours and quoted as a literal.
    const file = path.join(this.#insertDir, `block-${process.pid}-${++this.#insertSeq}.native`);
    await writeFile(file, block);
    try {
      await this.client.command({ query: `${into}\nSELECT * FROM file(${sqlString(file)}, 'Native')\n${settings}` });
    } finally {
      await rm(file, { force: true });
    }
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
LIMIT ${p.add('UInt32', q.limit + 1)}
${this.#readSettings}`,
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

  summary(filter: FlowFilter, groupBy: readonly string[], limit: number): Promise<Summary> {
    return summarize(this.client, filter, groupBy, limit, { readSettings: this.#readSettings });
  }

  async count(filter: FlowFilter = {}): Promise<number> {
    const where = buildWhere(filter);
    const rs = await this.client.query({
      query: `SELECT count() AS n FROM ${FLOWS_TABLE} WHERE ${where.sql}\n${this.#readSettings}`,
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
