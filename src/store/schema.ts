// The ClickHouse schema of the flow store: the raw `flows` table (one column per FlowRow field),
// the per-minute and per-hour rollups fed by materialized views, and the same DDL for a cluster
// (`ON CLUSTER`, ReplicatedMergeTree local tables behind Distributed tables).
//
// Design notes (after reading how Akvorado and Antrea Theia lay out their flow tables):
// - Time is `DateTime64(3, 'UTC')`: FlowRow times are UTC milliseconds, and a fixed column time zone
//   means the server's zone never changes what a stored row says.
// - Addresses are `IPv6` (16 bytes, IPv4 mapped), as Akvorado does, instead of Theia's `String`:
//   half the size, and prefix matches become range comparisons.
// - Everything with few distinct values (namespaces, kinds, verdicts, reasons, policy texts, nodes,
//   service accounts) is `LowCardinality(String)`: dictionary-encoded, so filtering and grouping
//   compare small integers. Pod names and world names stay plain `String` (pods churn).
// - Labels are `Map(String, String)` (Theia keeps a JSON string, which cannot be filtered cheaply).
// - Partitioned by day, like Akvorado's time-sliced partitions: a "last 24 h" query reads one or two
//   partitions, and TTL drops whole old parts cheaply (`ttl_only_drop_parts`).
// - ORDER BY (src_namespace, dst_namespace, verdict, ts). Queries are "namespace X (either side)
//   in the last N hours", often "denied". Namespaces are few, so ClickHouse's generic exclusion
//   search can use the second key column as well as the first: `src_namespace = X`,
//   `dst_namespace = X` and `src_namespace = X OR dst_namespace = X` all skip granules by the
//   primary index, with no projection (a projection on dst_namespace would double the raw data
//   and still not serve the either-side OR). Rows of one namespace pair and verdict are sorted by
//   time, so the time range prunes inside them too. The trade-off: a query with no namespace at
//   all relies on partition pruning only.
// - Rollups are SummingMergeTree (Akvorado keeps its coarser resolutions the same way; Theia's
//   views too): every dimension is in the sorting key so merges add up the counters of equal
//   keys; the primary key is a prefix of it so the index stays small. Both rollups are fed from
//   the raw insert (not chained) so each is exact for its interval.
// - Raw inserts carry an `insert_deduplication_token`; `non_replicated_deduplication_window` makes
//   a plain MergeTree remember the last N tokens, so a batch replayed after an unacknowledged
//   insert is dropped instead of doubled (the rollups get the same setting and
//   `deduplicate_blocks_in_dependent_materialized_views`, so they are not doubled either).

/** Retention in days for raw rows and each rollup. */
export interface Retention {
  readonly rawDays: number;
  readonly minuteDays: number;
  readonly hourDays: number;
}

export const DEFAULT_RETENTION: Retention = { rawDays: 7, minuteDays: 30, hourDays: 365 };

/** How many recent insert tokens each table remembers for deduplication. */
export const DEDUP_WINDOW = 1000;

export const FLOWS_TABLE = 'flows';
export const MINUTE_TABLE = 'flows_1m';
export const HOUR_TABLE = 'flows_1h';
export const MIGRATIONS_TABLE = 'weir_schema_migrations';

/** Per-side columns: [FlowRow SideIdentity field, column suffix, ClickHouse type]. */
export const SIDE_COLUMNS = [
  ['kind', 'kind', 'LowCardinality(String)'],
  ['ip', 'ip', 'IPv6'],
  ['port', 'port', 'UInt16'],
  ['namespace', 'namespace', 'LowCardinality(String)'],
  ['pod', 'pod', 'String'],
  ['labels', 'labels', 'Map(String, String)'],
  ['workloadKind', 'workload_kind', 'LowCardinality(String)'],
  ['workload', 'workload', 'String'],
  ['serviceAccount', 'service_account', 'LowCardinality(String)'],
  ['node', 'node', 'LowCardinality(String)'],
  ['hostEndpoint', 'host_endpoint', 'LowCardinality(String)'],
  ['name', 'name', 'String'],
] as const;

/** Row-level columns: [FlowRow field, column, ClickHouse type]; times are handled apart. */
export const ROW_COLUMNS = [
  ['kind', 'kind', 'LowCardinality(String)'],
  ['verdict', 'verdict', 'LowCardinality(String)'],
  ['reason', 'reason', 'LowCardinality(String)'],
  ['direction', 'direction', 'LowCardinality(String)'],
  ['protocol', 'protocol', 'UInt8'],
  ['policy', 'policy', 'LowCardinality(String)'],
  ['egressPolicy', 'egress_policy', 'LowCardinality(String)'],
  ['ingressPolicy', 'ingress_policy', 'LowCardinality(String)'],
  ['forwardPolicy', 'forward_policy', 'LowCardinality(String)'],
  ['packetsFwd', 'packets_fwd', 'UInt64'],
  ['bytesFwd', 'bytes_fwd', 'UInt64'],
  ['packetsRev', 'packets_rev', 'UInt64'],
  ['bytesRev', 'bytes_rev', 'UInt64'],
  ['connectionsStarted', 'connections_started', 'UInt32'],
  ['connectionsCompleted', 'connections_completed', 'UInt32'],
  ['connectionsLive', 'connections_live', 'UInt32'],
  ['count', 'count', 'UInt64'],
  ['reporter', 'reporter', 'LowCardinality(String)'],
] as const;

function flowsColumns(): string {
  const cols: string[] = [
    "ts DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD)",
    "start DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD)",
    // not a FlowRow field: a per-row id (deterministic from the batch's dedup token and the row's
    // position) that breaks ties between rows of the same millisecond, so cursors are exact
    'id UInt64',
  ];
  for (const [, col, type] of ROW_COLUMNS) cols.push(`${col} ${type}`);
  for (const side of ['src', 'dst'] as const) {
    for (const [, col, type] of SIDE_COLUMNS) cols.push(`${side}_${col} ${type}`);
  }
  // label keys are looked up per row; a bloom filter on the keys lets `label exists`/`key=value`
  // skip granules where no row has the key at all
  cols.push('INDEX src_label_keys mapKeys(src_labels) TYPE bloom_filter(0.01) GRANULARITY 4');
  cols.push('INDEX dst_label_keys mapKeys(dst_labels) TYPE bloom_filter(0.01) GRANULARITY 4');
  return cols.join(',\n  ');
}

/** Rollup dimensions: everything a summary groups by, per side. */
export const ROLLUP_DIMENSIONS = [
  ['src_namespace', 'LowCardinality(String)'],
  ['dst_namespace', 'LowCardinality(String)'],
  ['verdict', 'LowCardinality(String)'],
  ['kind', 'LowCardinality(String)'],
  ['src_kind', 'LowCardinality(String)'],
  ['src_workload_kind', 'LowCardinality(String)'],
  ['src_workload', 'String'],
  ['src_pod', 'String'],
  ['dst_kind', 'LowCardinality(String)'],
  ['dst_workload_kind', 'LowCardinality(String)'],
  ['dst_workload', 'String'],
  ['dst_pod', 'String'],
  ['dst_port', 'UInt16'],
  ['protocol', 'UInt8'],
  ['policy', 'LowCardinality(String)'],
  ['reporter', 'LowCardinality(String)'],
] as const;

const ROLLUP_SUMS = [
  ['flows', 'count()'],
  ['packets_fwd', 'sum(packets_fwd)'],
  ['bytes_fwd', 'sum(bytes_fwd)'],
  ['packets_rev', 'sum(packets_rev)'],
  ['bytes_rev', 'sum(bytes_rev)'],
  ['connections_started', 'sum(connections_started)'],
  ['connections_completed', 'sum(connections_completed)'],
  ['count', 'sum(count)'],
] as const;

export interface Rollup {
  readonly table: string;
  readonly view: string;
  /** ClickHouse function truncating a time to the rollup's interval */
  readonly bucket: 'toStartOfMinute' | 'toStartOfHour';
  readonly days: (r: Retention) => number;
}

export const ROLLUPS: readonly Rollup[] = [
  { table: MINUTE_TABLE, view: `${MINUTE_TABLE}_mv`, bucket: 'toStartOfMinute', days: (r) => r.minuteDays },
  { table: HOUR_TABLE, view: `${HOUR_TABLE}_mv`, bucket: 'toStartOfHour', days: (r) => r.hourDays },
];

/** Where a statement runs: one server (or chDB), or every node of a cluster. */
export interface Target {
  /** database prefix for table names, '' for the connection's database */
  readonly database: string;
  /** cluster name for ON CLUSTER; undefined for a single server */
  readonly cluster?: string;
}

function checkIdentifier(what: string, name: string): string {
  // names go into DDL text, so only plain identifiers are accepted
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new Error(`${what}: "${name}" is not a plain identifier (letters, digits, underscore)`);
  }
  return name;
}

function checkDays(what: string, days: number): number {
  if (!Number.isInteger(days) || days < 1 || days > 100_000) {
    throw new Error(`retention.${what}: ${days} is not a whole number of days between 1 and 100000`);
  }
  return days;
}

export function checkRetention(r: Retention): Retention {
  checkDays('rawDays', r.rawDays);
  checkDays('minuteDays', r.minuteDays);
  checkDays('hourDays', r.hourDays);
  return r;
}

function q(t: Target, table: string): string {
  return t.database ? `${t.database}.${table}` : table;
}

function onCluster(t: Target): string {
  return t.cluster ? ` ON CLUSTER ${t.cluster}` : '';
}

/** Engine clause; on a cluster the replicated variant, one ZooKeeper path per shard and table. */
function engine(t: Target, kind: 'MergeTree' | 'SummingMergeTree', table: string): string {
  if (!t.cluster) return kind;
  return `Replicated${kind}('/clickhouse/tables/{shard}/{database}/${table}', '{replica}')`;
}

export function rawTtl(r: Retention): string {
  return `toDateTime(ts) + INTERVAL ${r.rawDays} DAY`;
}

export function rollupTtl(r: Retention, rollup: Rollup): string {
  return `ts + INTERVAL ${rollup.days(r)} DAY`;
}

/** `CREATE TABLE flows` (on a cluster: the local table). */
export function createFlowsTable(t: Target, r: Retention, table = FLOWS_TABLE): string {
  return `CREATE TABLE IF NOT EXISTS ${q(t, table)}${onCluster(t)} (
  ${flowsColumns()}
)
ENGINE = ${engine(t, 'MergeTree', table)}
PARTITION BY toDate(ts)
ORDER BY (src_namespace, dst_namespace, verdict, ts)
TTL ${rawTtl(r)}
SETTINGS non_replicated_deduplication_window = ${DEDUP_WINDOW}, ttl_only_drop_parts = 1`;
}

export function createRollupTable(t: Target, r: Retention, rollup: Rollup, table = rollup.table): string {
  const dims = ROLLUP_DIMENSIONS.map(([c, type]) => `${c} ${type}`);
  const sums = ROLLUP_SUMS.map(([c]) => `${c} UInt64`);
  const sortKey = ['src_namespace', 'dst_namespace', 'verdict', 'ts', ...ROLLUP_DIMENSIONS.slice(3).map(([c]) => c)];
  return `CREATE TABLE IF NOT EXISTS ${q(t, table)}${onCluster(t)} (
  ts DateTime('UTC'),
  ${[...dims, ...sums].join(',\n  ')}
)
ENGINE = ${engine(t, 'SummingMergeTree', table)}
PARTITION BY ${rollup.bucket === 'toStartOfMinute' ? 'toDate(ts)' : 'toYYYYMM(ts)'}
PRIMARY KEY (src_namespace, dst_namespace, verdict, ts)
ORDER BY (${sortKey.join(', ')})
TTL ${rollupTtl(r, rollup)}
SETTINGS non_replicated_deduplication_window = ${DEDUP_WINDOW}, ttl_only_drop_parts = 1`;
}

export function createRollupView(t: Target, rollup: Rollup, source = FLOWS_TABLE, target = rollup.table): string {
  const dims = ROLLUP_DIMENSIONS.map(([c]) => c);
  const sums = ROLLUP_SUMS.map(([c, expr]) => `${expr} AS ${c}`);
  return `CREATE MATERIALIZED VIEW IF NOT EXISTS ${q(t, rollup.view)}${onCluster(t)} TO ${q(t, target)} AS
SELECT ${rollup.bucket}(ts) AS ts, ${dims.join(', ')},
  ${sums.join(',\n  ')}
FROM ${q(t, source)}
GROUP BY ts, ${dims.join(', ')}`;
}

export function createMigrationsTable(t: Target): string {
  // on a cluster the table is replicated across every shard (no {shard} in its path), so any
  // node an agent connects to sees the same schema version
  const eng = t.cluster
    ? `ReplicatedReplacingMergeTree('/clickhouse/tables/weir/{database}/${MIGRATIONS_TABLE}', '{replica}')`
    : 'ReplacingMergeTree';
  return `CREATE TABLE IF NOT EXISTS ${q(t, MIGRATIONS_TABLE)}${onCluster(t)} (
  version UInt32,
  name String,
  applied_at DateTime64(3, 'UTC')
)
ENGINE = ${eng}
ORDER BY version`;
}

export interface ClusterOptions {
  /** the cluster name as in the servers' remote_servers configuration */
  readonly cluster: string;
  readonly database?: string;
  readonly retention?: Retention;
}

/**
 * The whole schema for a ClickHouse cluster, as statements to run in order against any one node
 * (each is `ON CLUSTER`, so the DDL queue runs it on every node): `<table>_local` replicated
 * tables hold the data of each shard, `flows`, `flows_1m` and `flows_1h` are Distributed tables
 * over them, so agents and queries use the same names as on a single server. The rollup views
 * read each shard's local inserts, so every shard rolls up its own rows; the Distributed rollup
 * tables add the shards together at query time. Ends with the migration records, so an agent
 * started with --clickhouse-url finds the schema current and does not try to migrate.
 */
export function clusterDdl(opts: ClusterOptions): string[] {
  const cluster = checkIdentifier('cluster', opts.cluster);
  const database = checkIdentifier('database', opts.database ?? 'weir');
  const r = checkRetention(opts.retention ?? DEFAULT_RETENTION);
  const t: Target = { database, cluster };
  const local = (name: string): string => `${name}_local`;
  const distributed = (name: string, shardKey: string): string =>
    `CREATE TABLE IF NOT EXISTS ${q(t, name)}${onCluster(t)} AS ${q(t, local(name))}\n` +
    `ENGINE = Distributed(${cluster}, ${database}, ${local(name)}, ${shardKey})`;
  const out = [
    `CREATE DATABASE IF NOT EXISTS ${database}${onCluster(t)}`,
    createMigrationsTable(t),
    createFlowsTable(t, r, local(FLOWS_TABLE)),
    // rows of one reporting node stay on one shard: a node's batches (and their dedup tokens)
    // always land on the same replicas
    distributed(FLOWS_TABLE, 'cityHash64(reporter)'),
  ];
  for (const rollup of ROLLUPS) {
    out.push(createRollupTable(t, r, rollup, local(rollup.table)));
    out.push(createRollupView(t, rollup, local(FLOWS_TABLE), local(rollup.table)));
    out.push(distributed(rollup.table, 'rand()'));
  }
  out.push(
    `INSERT INTO ${q(t, MIGRATIONS_TABLE)} (version, name, applied_at) VALUES ` +
      MIGRATIONS.map((m) => `(${m.version}, '${m.name}', now64(3))`).join(', '),
  );
  return out;
}

export interface Migration {
  readonly version: number;
  /** plain words, for the migrations table and error messages */
  readonly name: string;
  /** statements in order; each must be safe to run again (IF NOT EXISTS) */
  readonly statements: (t: Target, r: Retention) => readonly string[];
}

/** Every schema change, oldest first. Append only: a released migration never changes. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'flows table and per-minute and per-hour rollups',
    statements: (t, r) => [
      createFlowsTable(t, r),
      ...ROLLUPS.flatMap((rollup) => [createRollupTable(t, r, rollup), createRollupView(t, rollup)]),
    ],
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
