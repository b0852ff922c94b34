import test from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_RETENTION, MIGRATIONS, ROW_COLUMNS, SIDE_COLUMNS, SCHEMA_VERSION, clusterDdl, createFlowsTable } from '../../src/store/schema.js';
import { row } from './fixtures.js';

test('the flows table has one column per FlowRow field, snake_case, per side', () => {
  const ddl = createFlowsTable({ database: '' }, DEFAULT_RETENTION);
  const r = row();
  const fields = Object.keys(r).filter((k) => k !== 'src' && k !== 'dst' && k !== 'ts' && k !== 'start');
  assert.deepEqual(new Set(ROW_COLUMNS.map(([f]) => f)), new Set(fields));
  assert.deepEqual(new Set(SIDE_COLUMNS.map(([f]) => f)), new Set(Object.keys(r.src)));
  for (const [, col] of ROW_COLUMNS) assert.match(ddl, new RegExp(`\\n  ${col} `));
  for (const s of ['src', 'dst']) for (const [, col] of SIDE_COLUMNS) assert.match(ddl, new RegExp(`\\n  ${s}_${col} `));
  assert.match(ddl, /ts DateTime64\(3, 'UTC'\)/);
  assert.match(ddl, /src_ip IPv6/);
  assert.match(ddl, /dst_labels Map\(String, String\)/);
  assert.match(ddl, /src_namespace LowCardinality\(String\)/);
  assert.match(ddl, /ORDER BY \(src_namespace, dst_namespace, verdict, ts\)/);
  assert.match(ddl, /TTL toDateTime\(ts\) \+ INTERVAL 7 DAY/);
  assert.match(ddl, /non_replicated_deduplication_window = 1000/);
});

test('cluster DDL: replicated local tables, Distributed tables of the same names, ON CLUSTER everywhere', () => {
  const ddl = clusterDdl({ cluster: 'weir_cluster', database: 'weir', retention: { rawDays: 3, minuteDays: 14, hourDays: 400 } });
  for (const s of ddl.slice(0, -1)) assert.match(s, / ON CLUSTER weir_cluster\b/, s);
  assert.equal(ddl[0], 'CREATE DATABASE IF NOT EXISTS weir ON CLUSTER weir_cluster');
  const find = (re: RegExp) => {
    const s = ddl.find((x) => re.test(x));
    assert.ok(s, `no statement matches ${re}`);
    return s;
  };
  const local = find(/^CREATE TABLE IF NOT EXISTS weir\.flows_local /);
  assert.match(local, /ENGINE = ReplicatedMergeTree\('\/clickhouse\/tables\/\{shard\}\/\{database\}\/flows_local', '\{replica\}'\)/);
  assert.match(local, /TTL toDateTime\(ts\) \+ INTERVAL 3 DAY/);
  assert.match(find(/^CREATE TABLE IF NOT EXISTS weir\.flows ON/), /AS weir\.flows_local\nENGINE = Distributed\(weir_cluster, weir, flows_local, cityHash64\(reporter\)\)$/);
  for (const [t, days] of [['flows_1m', 14], ['flows_1h', 400]] as const) {
    const l = find(new RegExp(`^CREATE TABLE IF NOT EXISTS weir\\.${t}_local `));
    assert.match(l, new RegExp(`ReplicatedSummingMergeTree\\('/clickhouse/tables/\\{shard\\}/\\{database\\}/${t}_local', '\\{replica\\}'\\)`));
    assert.match(l, new RegExp(`TTL ts \\+ INTERVAL ${days} DAY`));
    // the views read each shard's local inserts into the local rollup
    assert.match(find(new RegExp(`^CREATE MATERIALIZED VIEW IF NOT EXISTS weir\\.${t}_mv `)), new RegExp(`TO weir\\.${t}_local AS[\\s\\S]*FROM weir\\.flows_local\\n`));
    assert.match(find(new RegExp(`^CREATE TABLE IF NOT EXISTS weir\\.${t} ON`)), new RegExp(`ENGINE = Distributed\\(weir_cluster, weir, ${t}_local, rand\\(\\)\\)$`));
  }
  assert.match(find(/weir_schema_migrations ON CLUSTER/), /ReplicatedReplacingMergeTree\('\/clickhouse\/tables\/weir\/\{database\}\/weir_schema_migrations', '\{replica\}'\)/);
  // the migrations are recorded as applied, so agents do not migrate a cluster themselves
  assert.equal(ddl[ddl.length - 1], `INSERT INTO weir.weir_schema_migrations (version, name, applied_at) VALUES ${MIGRATIONS.map((m) => `(${m.version}, '${m.name}', now64(3))`).join(', ')}`);
  assert.equal(SCHEMA_VERSION, MIGRATIONS[MIGRATIONS.length - 1]!.version);
  // the local tables come before the Distributed ones and the views that read them
  const order = (re: RegExp) => ddl.findIndex((x) => re.test(x));
  assert.ok(order(/weir\.flows_local /) < order(/weir\.flows ON/));
  assert.ok(order(/weir\.flows_1m_local /) < order(/flows_1m_mv/));
});

test('cluster DDL refuses names and retentions that are not plain', () => {
  assert.throws(() => clusterDdl({ cluster: 'c; DROP DATABASE x' }), /cluster: "c; DROP DATABASE x" is not a plain identifier/);
  assert.throws(() => clusterDdl({ cluster: 'c', database: 'a.b' }), /database: "a\.b"/);
  assert.throws(() => clusterDdl({ cluster: 'c', retention: { ...DEFAULT_RETENTION, rawDays: 0 } }), /retention\.rawDays: 0/);
  assert.match(clusterDdl({ cluster: 'c' })[0]!, /^CREATE DATABASE IF NOT EXISTS weir ON CLUSTER c$/);
});
