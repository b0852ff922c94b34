// Applying the versioned schema (schema.ts MIGRATIONS) to a store. A store records every applied
// version in `weir_schema_migrations`; opening applies what is missing, in order, and refuses a
// store whose schema is newer than this code (an older weir must not write rows a newer schema
// means differently). Every statement is `IF NOT EXISTS`, and a version is recorded only after all
// its statements ran, so a migration interrupted half-way is simply run again.

import type { ClickHouseClient } from '@clickhouse/client';
import {
  DEFAULT_RETENTION,
  FLOWS_TABLE,
  HOUR_TABLE,
  MIGRATIONS,
  MINUTE_TABLE,
  MIGRATIONS_TABLE,
  ROLLUPS,
  SCHEMA_VERSION,
  checkRetention,
  createMigrationsTable,
  rawTtl,
  rollupTtl,
  type Migration,
  type Retention,
  type Target,
} from './schema.js';
import { chTime } from './codec.js';

export class SchemaError extends Error {
  override readonly name = 'SchemaError';
}

export interface MigrationResult {
  /** schema version before opening (0: empty store) */
  readonly from: number;
  readonly to: number;
  readonly applied: readonly number[];
}

/** The highest applied version, 0 when the store has none. */
export async function appliedVersion(client: ClickHouseClient, t: Target): Promise<number> {
  const table = t.database ? `${t.database}.${MIGRATIONS_TABLE}` : MIGRATIONS_TABLE;
  const rs = await client.query({ query: `SELECT max(version) AS v FROM ${table}`, format: 'JSONEachRow' });
  const rows = await rs.json<{ v: number | string }>();
  return Number(rows[0]?.v ?? 0);
}

export async function migrate(
  client: ClickHouseClient,
  t: Target,
  retention: Retention,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<MigrationResult> {
  checkRetention(retention);
  const latest = migrations.length ? migrations[migrations.length - 1]!.version : 0;
  await client.command({ query: createMigrationsTable(t) });
  const from = await appliedVersion(client, t);
  if (from > latest) {
    throw new SchemaError(
      `the store's schema is version ${from}, newer than this weir knows (${latest}): ` +
        `it was written by a newer weir; upgrade weir to use this store`,
    );
  }
  if (from > 0 && from < latest && !t.cluster && (await isCluster(client, t))) {
    // single-server DDL would alter the Distributed tables, not the shards' data
    throw new SchemaError(
      `the store's schema is version ${from} on a ClickHouse cluster (flows is a Distributed table) and ` +
        `this weir needs version ${latest}: run this weir's clusterDdl() against the cluster first (docs/flows.md)`,
    );
  }
  const applied: number[] = [];
  const table = t.database ? `${t.database}.${MIGRATIONS_TABLE}` : MIGRATIONS_TABLE;
  for (const m of migrations) {
    if (m.version <= from) continue;
    for (const [i, statement] of m.statements(t, retention).entries()) {
      try {
        await client.command({ query: statement });
      } catch (err) {
        throw new SchemaError(
          `schema migration ${m.version} (${m.name}), statement ${i + 1}: ${(err as Error).message}`,
          { cause: err },
        );
      }
    }
    await client.insert({
      table,
      values: [{ version: m.version, name: m.name, applied_at: chTime(Date.now()) }],
      format: 'JSONEachRow',
    });
    applied.push(m.version);
  }
  await applyRetention(client, t, retention);
  return { from, to: Math.max(from, latest), applied };
}

async function isCluster(client: ClickHouseClient, t: Target): Promise<boolean> {
  const rs = await client.query({
    query: `SELECT engine FROM system.tables WHERE database = ${t.database ? '{db:String}' : 'currentDatabase()'} AND name = {name:String}`,
    query_params: { db: t.database, name: FLOWS_TABLE },
    format: 'JSONEachRow',
  });
  return (await rs.json<{ engine: string }>()).some((r) => r.engine === 'Distributed');
}

/**
 * Retention is configuration, not schema: the tables are created with the retention of the first
 * open, and a later open with another retention changes the TTLs in place (only when they
 * differ, and without rewriting existing parts: old rows go when their parts are merged/dropped).
 */
export async function applyRetention(client: ClickHouseClient, t: Target, r: Retention): Promise<void> {
  const wanted: Array<[string, string]> = [
    [FLOWS_TABLE, rawTtl(r)],
    ...ROLLUPS.map((rollup): [string, string] => [rollup.table, rollupTtl(r, rollup)]),
  ];
  const rs = await client.query({
    query: `SELECT name, create_table_query FROM system.tables
            WHERE database = ${t.database ? '{db:String}' : 'currentDatabase()'} AND name IN {names:Array(String)}`,
    query_params: { db: t.database, names: wanted.map(([n]) => n) },
    format: 'JSONEachRow',
  });
  const current = new Map((await rs.json<{ name: string; create_table_query: string }>()).map((x) => [x.name, x.create_table_query]));
  for (const [name, ttl] of wanted) {
    const days = /INTERVAL (\d+) DAY/.exec(ttl)![1];
    // ClickHouse shows `INTERVAL 7 DAY` as `toIntervalDay(7)`
    const query = current.get(name);
    // a cluster's Distributed tables have no TTL: there clusterDdl's retention holds
    if (query === undefined || query.includes('ENGINE = Distributed')) continue;
    if (query.includes(`toIntervalDay(${days})`)) continue;
    const table = t.database ? `${t.database}.${name}` : name;
    await client.command({
      query: `ALTER TABLE ${table} MODIFY TTL ${ttl}`,
      clickhouse_settings: { materialize_ttl_after_modify: 0 },
    });
  }
}

/**
 * The retention the tables have now, read back from their TTLs (what applyRetention set at the
 * last open, by this process or another): what each table is sure to hold. A table without a TTL
 * (a cluster's Distributed table, or none yet) counts with `fallback`'s days.
 */
export async function tableRetention(client: ClickHouseClient, t: Target, fallback: Retention = DEFAULT_RETENTION): Promise<Retention> {
  const rs = await client.query({
    query: `SELECT name, create_table_query FROM system.tables
            WHERE database = ${t.database ? '{db:String}' : 'currentDatabase()'} AND name IN {names:Array(String)}`,
    query_params: { db: t.database, names: [FLOWS_TABLE, MINUTE_TABLE, HOUR_TABLE] },
    format: 'JSONEachRow',
  });
  const days = new Map<string, number>();
  for (const x of await rs.json<{ name: string; create_table_query: string }>()) {
    // ClickHouse shows `INTERVAL 7 DAY` as `toIntervalDay(7)`
    const m = /\bTTL\b[^\n]*?toIntervalDay\((\d+)\)/.exec(x.create_table_query);
    if (m) days.set(x.name, Number(m[1]));
  }
  return {
    rawDays: days.get(FLOWS_TABLE) ?? fallback.rawDays,
    minuteDays: days.get(MINUTE_TABLE) ?? fallback.minuteDays,
    hourDays: days.get(HOUR_TABLE) ?? fallback.hourDays,
  };
}

export { SCHEMA_VERSION };
