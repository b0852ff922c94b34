// The store against real chDB: one store for the whole file (opening chDB is heavy), each test
// with its own rows (its own namespaces or reporter) so they do not see each other's.

import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { openStore, StoreOpenError, type FlowStore } from '../../src/store/store.js';
import { migrate, SchemaError } from '../../src/store/migrations.js';
import { DEFAULT_RETENTION, MIGRATIONS, MIGRATIONS_TABLE, clusterDdl } from '../../src/store/schema.js';
import type { FlowFilter } from '../../src/store/filter.js';
import type { FlowRow } from '../../src/store/row.js';
import { FilterError } from '../../src/store/sql.js';
import { INJECTIONS, T0, injectedFilters, row, rows, tempDir } from './fixtures.js';

const tmp = tempDir('store');
let store: FlowStore;

before(async () => {
  store = await openStore({ dataDir: path.join(tmp.dir, 'data') });
});

after(async () => {
  await store?.close();
  tmp.remove();
});

async function scalar(sql: string): Promise<number> {
  const rs = await store.client.query({ query: sql, format: 'JSONEachRow' });
  const r = (await rs.json<Record<string, unknown>>())[0]!;
  return Number(Object.values(r)[0]);
}

test('opening migrates to the latest version; migrating again changes nothing', async () => {
  assert.deepEqual(store.migration, { from: 0, to: 1, applied: [1] });
  const again = await migrate(store.client, { database: '' }, DEFAULT_RETENTION);
  assert.deepEqual(again, { from: 1, to: 1, applied: [] });
  assert.equal(await scalar(`SELECT count() FROM ${MIGRATIONS_TABLE}`), 1);
  const tables = await store.client.query({ query: "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name", format: 'JSONEachRow' });
  assert.deepEqual((await tables.json<{ name: string }>()).map((t) => t.name), ['flows', 'flows_1h', 'flows_1h_mv', 'flows_1m', 'flows_1m_mv', MIGRATIONS_TABLE]);
  await store.ping();
});

test('a later migration is applied once, in order, and recorded', async () => {
  const next = [...MIGRATIONS, { version: 2, name: 'a test column', statements: () => ['ALTER TABLE flows ADD COLUMN IF NOT EXISTS test_col UInt8'] }];
  assert.deepEqual(await migrate(store.client, { database: '' }, DEFAULT_RETENTION, next), { from: 1, to: 2, applied: [2] });
  assert.deepEqual(await migrate(store.client, { database: '' }, DEFAULT_RETENTION, next), { from: 2, to: 2, applied: [] });
  assert.equal(await scalar("SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'flows' AND name = 'test_col'"), 1);
  // this code knows version 1 only: version 2 is from "a newer weir"
  await assert.rejects(migrate(store.client, { database: '' }, DEFAULT_RETENTION), /schema is version 2, newer than this weir knows \(1\)/);
  await store.client.command({ query: `ALTER TABLE ${MIGRATIONS_TABLE} DELETE WHERE version = 2`, clickhouse_settings: { mutations_sync: '1' } });
  await store.client.command({ query: 'ALTER TABLE flows DROP COLUMN test_col' });
  assert.equal((await migrate(store.client, { database: '' }, DEFAULT_RETENTION)).from, 1);
});

test('a row reads back as it was written, addresses IPv4-mapped and IPv6, labels as maps', async () => {
  const r4 = row({ ts: T0 + 123, src: { namespace: 'rt' }, count: 3, kind: 'denied', verdict: 'denied', reason: 'DENY_DEFAULT' });
  const r6 = row({ ts: T0 + 456, src: { namespace: 'rt', ip: 'fd00:10:244::a', labels: {} }, dst: { ip: 'fd00:10:244::b', kind: 'world', name: 'corp' } });
  await store.insert([r4, r6], 'rt-1');
  const { rows: got, nextCursor } = await store.queryFlows({ filter: { src: { namespace: ['rt'] } }, limit: 10 });
  assert.equal(nextCursor, undefined);
  assert.deepEqual(got, [r6, r4]);
});

test('a dedup token goes into the INSERT statement as one literal, whatever its text', async () => {
  // the token is a SETTINGS value in the statement's text: quotes, backslashes, a newline or a
  // `FORMAT` in it must neither break the statement nor change the settings
  const tokens = ["it's", 'back\\slash\\', "q\\' , insert_deduplicate = 0 --", 'line\nbreak FORMAT TSV', 'ünï-🔑'];
  for (const [i, token] of tokens.entries()) {
    const batch = rows(3, `tok${i}`);
    await store.insert(batch, token);
    await store.insert(batch, token);
    assert.equal(await store.count({ src: { namespace: [`tok${i}`] } }), 3, JSON.stringify(token));
  }
});

test('labels and names with tabs, newlines, backslashes, quotes and unicode read back as written', async () => {
  const odd = 'a\tb\nc\\d\'e"f\u00e9\u4e2d\u{1F600}\u0000g';
  const r = row({ ts: T0 + 789, policy: odd, reporter: odd,
    src: { namespace: 'esc', pod: odd, labels: { [odd]: odd, 'k\'"': '{}[]:,' }, name: odd },
    dst: { workload: odd, labels: { '': '' } } });
  await store.insert([r], 'esc-1');
  const { rows: got } = await store.queryFlows({ filter: { src: { namespace: ['esc'] } }, limit: 10 });
  assert.deepEqual(got, [r]);
});

test('the same dedup token twice stores the batch once, in the rollups too', async () => {
  const batch = rows(50, 'dedup');
  await store.insert(batch, 'dedup-1');
  await store.insert(batch, 'dedup-1');
  await store.insert(batch.slice(0, 10), 'dedup-2');
  assert.equal(await store.count({ src: { namespace: ['dedup'] } }), 60);
  for (const t of ['flows_1m', 'flows_1h']) {
    assert.equal(await scalar(`SELECT sum(flows) FROM ${t} WHERE src_namespace = 'dedup'`), 60, t);
    assert.equal(await scalar(`SELECT sum(bytes_fwd) FROM ${t} WHERE src_namespace = 'dedup'`), 60_000, t);
  }
});

test('rollups sum per minute and per hour', async () => {
  const mk = (ts: number, bytesFwd: number) => row({ ts, bytesFwd, src: { namespace: 'roll' } });
  await store.insert([mk(T0, 1), mk(T0 + 30_000, 2), mk(T0 + 60_000, 4)], 'roll-1');
  await store.insert([mk(T0 + 3_600_000, 8)], 'roll-2');
  const per = async (table: string) => {
    const rs = await store.client.query({
      query: `SELECT toUnixTimestamp(ts) * 1000 AS t, sum(bytes_fwd) AS b, sum(flows) AS f FROM ${table} WHERE src_namespace = 'roll' GROUP BY t ORDER BY t`,
      format: 'JSONEachRow',
    });
    return (await rs.json<{ t: number; b: number; f: number }>()).map((x) => [Number(x.t) - T0, Number(x.b), Number(x.f)]);
  };
  assert.deepEqual(await per('flows_1m'), [[0, 3, 2], [60_000, 4, 1], [3_600_000, 8, 1]]);
  assert.deepEqual(await per('flows_1h'), [[0, 7, 3], [3_600_000, 8, 1]]);
});

test('every filter field, per side and either side', async () => {
  const R = 'filters';
  const data: FlowRow[] = [
    /* 0 */ row({ ts: T0 + 1, reporter: R }),
    /* 1 */ row({ ts: T0 + 2, reporter: R, verdict: 'denied', kind: 'denied', reason: 'DENY_DEFAULT', policy: '', ingressPolicy: '', protocol: 17,
      src: { namespace: 'ops', pod: 'debug', labels: { app: 'debug' }, ip: '::ffff:10.244.0.13', port: 42568 } }),
    /* 2 */ row({ ts: T0 + 3, reporter: R, verdict: 'audit', kind: 'audit',
      src: { namespace: 'api', pod: 'orders', labels: { app: 'orders', tier: 'backend' }, ip: 'fd00:10:244::11' },
      dst: { namespace: 'api', pod: 'payments', labels: { app: 'payments' }, ip: 'fd00:10:244::12', port: 9090 }, policy: 'gnp/audit-all egress[0] Allow', egressPolicy: 'gnp/audit-all egress[0] Allow', ingressPolicy: '' }),
    /* 3 */ row({ ts: T0 + 4, reporter: R, src: { kind: 'world', namespace: '', pod: '', labels: {}, ip: '::ffff:203.0.113.7', name: 'corp' }, dst: { kind: 'host', namespace: '', pod: '', labels: { role: 'worker' }, ip: '::ffff:10.243.0.1', port: 22 }, policy: '', ingressPolicy: '', forwardPolicy: 'gnp/ssh ingress[0] Allow' }),
  ];
  await store.insert(data, 'filters-1');
  const ids = async (f: FlowFilter): Promise<number[]> => {
    const { rows: got } = await store.queryFlows({ filter: f, limit: 100 });
    return got.filter((r) => r.reporter === R).map((r) => data.findIndex((d) => d.ts === r.ts)).sort();
  };
  const cases: Array<[FlowFilter, number[]]> = [
    [{ either: { namespace: ['api'] } }, [0, 1, 2]],
    [{ src: { namespace: ['api'] } }, [2]],
    [{ dst: { namespace: ['api'] } }, [0, 1, 2]],
    [{ src: { namespace: ['web', 'ops'] } }, [0, 1]],
    [{ either: { pod: ['api/payments'] } }, [2]],
    [{ either: { pod: ['orders'] } }, [0, 1, 2]],
    [{ src: { pod: ['web/orders'] } }, []],
    [{ either: { labels: [{ key: 'app', op: '=', value: 'debug' }] } }, [1]],
    // either side: all conditions on the same side
    [{ either: { namespace: ['api'], labels: [{ key: 'app', op: '=', value: 'frontend' }] } }, []],
    [{ either: { namespace: ['web'], labels: [{ key: 'app', op: '=', value: 'frontend' }] } }, [0]],
    [{ src: { labels: [{ key: 'app', op: '!=', value: 'frontend' }] } }, [1, 2, 3]],
    [{ dst: { labels: [{ key: 'tier', op: 'exists' }] } }, [0, 1]],
    [{ dst: { labels: [{ key: 'tier', op: '!exists' }] } }, [2, 3]],
    [{ src: { labels: [{ key: 'app', op: 'exists' }, { key: 'tier', op: 'exists' }] } }, [2]],
    [{ either: { ip: ['10.244.0.13'] } }, [1]],
    [{ either: { ip: ['fd00:10:244::12'] } }, [2]],
    [{ src: { ip: ['10.244.0.11'] } }, []],
    [{ either: { cidr: ['10.243.0.0/24'] } }, [3]],
    [{ src: { cidr: ['203.0.113.0/24', 'fd00:10:244::/64'] } }, [2, 3]],
    [{ dst: { cidr: ['0.0.0.0/0'] } }, [0, 1, 3]],
    [{ port: [22] }, [3]],
    [{ port: [42568] }, [1]],
    [{ protocol: [17] }, [1]],
    [{ verdict: ['denied', 'audit'] }, [1, 2]],
    [{ policy: ['gnp/'] }, [2, 3]],
    [{ policy: ['api/allow-frontend'] }, [0]],
    [{ since: T0 + 2, until: T0 + 4 }, [1, 2]],
    [{ src: { namespace: ['ops'] }, verdict: ['allowed'] }, []],
  ];
  for (const [f, want] of cases) assert.deepEqual(await ids(f), want, JSON.stringify(f));
});

test('pages are newest first and neither repeat nor skip rows while rows keep arriving', async () => {
  const ns = 'pages';
  // 25 rows in 5 distinct milliseconds: ties are broken by the row id
  const first = Array.from({ length: 25 }, (_, i) => row({ ts: T0 + Math.floor(i / 5), src: { namespace: ns, port: i } }));
  await store.insert(first, 'pages-1');
  const seen: FlowRow[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await store.queryFlows({ filter: { src: { namespace: [ns] } }, limit: 7, ...(cursor ? { cursor } : {}) });
    seen.push(...page.rows);
    cursor = page.nextCursor;
    pages++;
    // newer rows arrive between pages
    if (pages === 1) await store.insert(rows(5, ns, T0 + 1000), 'pages-2');
  } while (cursor);
  assert.equal(pages, 4);
  assert.equal(seen.length, 25);
  assert.deepEqual(new Set(seen.map((r) => r.src.port)), new Set(first.map((r) => r.src.port)));
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i - 1]!.ts >= seen[i]!.ts);
  await assert.rejects(store.queryFlows({ filter: {}, limit: 0 }), (e: unknown) => e instanceof FilterError && e.field === 'limit');
  await assert.rejects(store.queryFlows({ filter: {}, limit: 10, cursor: 'nonsense' }), (e: unknown) => e instanceof FilterError && e.field === 'cursor');
});

test('summary: counts, packets and bytes per group, top talkers first, totals over everything', async () => {
  const mk = (pod: string, bytes: number, verdict: 'allowed' | 'denied') =>
    row({ verdict, bytesFwd: bytes, bytesRev: 0, packetsFwd: 1, packetsRev: 1, src: { namespace: 'sum', pod } });
  await store.insert([mk('a', 100, 'allowed'), mk('a', 50, 'allowed'), mk('b', 500, 'allowed'), mk('c', 10, 'denied')], 'sum-1');
  const s = await store.summary({ src: { namespace: ['sum'] } }, ['src_pod', 'verdict'], 2);
  assert.deepEqual(s.groups, [
    { key: { src_pod: 'b', verdict: 'allowed' }, flows: 1, packets: 2, bytes: 500 },
    { key: { src_pod: 'a', verdict: 'allowed' }, flows: 2, packets: 4, bytes: 150 },
  ]);
  assert.deepEqual(s.total, { flows: 4, packets: 8, bytes: 660 });
  const byPort = await store.summary({ src: { namespace: ['sum'] } }, ['dst_port', 'dst_ip', 'protocol'], 10);
  assert.deepEqual(byPort.groups.map((g) => g.key), [{ dst_port: 8080, dst_ip: '::ffff:10.244.0.11', protocol: 6 }]);
  await assert.rejects(store.summary({}, ['src_labels'], 10), FilterError);
  await assert.rejects(store.summary({}, ['verdict'], 0), FilterError);
});

test('SQL-injection attempts in every field run as plain values and match nothing', async () => {
  await store.insert([row({ reporter: 'inj' })], 'inj-1');
  const before = await store.count();
  for (const s of INJECTIONS) {
    for (const f of injectedFilters(s)) {
      // `!=` and `!exists` alone would match; each injected filter also requires an injected value
      const filter: FlowFilter = { ...f, src: { ...f.src, namespace: [s] } };
      assert.deepEqual((await store.queryFlows({ filter, limit: 10 })).rows, [], JSON.stringify(filter));
      assert.equal(await store.count(filter), 0);
      assert.equal((await store.summary(filter, ['verdict'], 10)).total.flows, 0);
    }
    await assert.rejects(store.queryFlows({ filter: { src: { ip: [s] } }, limit: 10 }), FilterError);
    await assert.rejects(store.queryFlows({ filter: { dst: { cidr: [s] } }, limit: 10 }), FilterError);
  }
  // still there, nothing dropped or added
  assert.equal(await store.count(), before);
  assert.equal(await scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'flows'"), 1);
});

test('a changed retention alters the TTLs in place', async () => {
  await migrate(store.client, { database: '' }, { rawDays: 3, minuteDays: 10, hourDays: 100 });
  const rs = await store.client.query({ query: "SELECT name, create_table_query AS q FROM system.tables WHERE database = currentDatabase() AND name LIKE 'flows%' AND engine NOT LIKE 'Materialized%' ORDER BY name", format: 'JSONEachRow' });
  const ttl = (await rs.json<{ name: string; q: string }>()).map((t) => [t.name, /TTL (.*?) SETTINGS/.exec(t.q)?.[1]]);
  assert.deepEqual(ttl, [['flows', 'toDateTime(ts) + toIntervalDay(3)'], ['flows_1h', 'ts + toIntervalDay(100)'], ['flows_1m', 'ts + toIntervalDay(10)']]);
  await assert.rejects(migrate(store.client, { database: '' }, { rawDays: -1, minuteDays: 1, hourDays: 1 }), /retention\.rawDays: -1/);
});

test('the cluster DDL parses as ClickHouse SQL', async () => {
  // formatQuery parses without running: chDB has no cluster to run ON CLUSTER against
  for (const statement of clusterDdl({ cluster: 'weir', database: 'weir' })) {
    const rs = await store.client.query({ query: 'SELECT formatQuery({q:String}) AS f', query_params: { q: statement }, format: 'JSONEachRow' });
    assert.match((await rs.json<{ f: string }>())[0]!.f, /^(CREATE|INSERT)/);
  }
});

test('unopenable stores fail with the reason', async () => {
  const file = path.join(tmp.dir, 'a-file');
  writeFileSync(file, '');
  await assert.rejects(openStore({ dataDir: path.join(file, 'data') }), (e: unknown) =>
    e instanceof StoreOpenError && e.message.startsWith(`cannot open the flow store in ${path.join(file, 'data')}: `) && /ENOTDIR/.test(e.message));
  await assert.rejects(openStore({ url: 'http://weir:secret@127.0.0.1:1' }), (e: unknown) =>
    e instanceof StoreOpenError && /^cannot open the flow store at http:\/\/127\.0\.0\.1:1\/: .*ECONNREFUSED/.test(e.message) && !e.message.includes('secret'));
  await assert.rejects(openStore({ url: 'not a url' }), (e: unknown) => e instanceof StoreOpenError && /^cannot open the flow store at not a url: /.test(e.message));
});

// last: it closes the shared store
test('a store written by a newer weir is refused, naming both versions', async () => {
  await store.client.insert({ table: MIGRATIONS_TABLE, values: [{ version: 99, name: 'from the future', applied_at: '2030-01-01 00:00:00.000' }], format: 'JSONEachRow' });
  await assert.rejects(migrate(store.client, { database: '' }, DEFAULT_RETENTION), (e: unknown) =>
    e instanceof SchemaError && /schema is version 99, newer than this weir knows \(1\)/.test(e.message));
  await store.close();
  await store.close(); // idempotent
  await assert.rejects(openStore({ dataDir: path.join(tmp.dir, 'data') }), (e: unknown) =>
    e instanceof StoreOpenError && /^cannot open the flow store in .*: the store's schema is version 99, newer than this weir knows \(1\): .*upgrade weir/.test(e.message));
});
