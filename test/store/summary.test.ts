// Summaries against real chDB: the rollups answer what the raw rows answer (ranges on their
// buckets), the table each range is read from, grouping by labels, top talkers, and refusals.
// One store for the file (opening chDB is heavy); each test its own namespaces.

import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { openStore, type FlowStore } from '../../src/store/store.js';
import { MAX_SUMMARY_LIMIT, chooseSource, summarize, type Summary, type SummaryOptions, type SummaryTable } from '../../src/store/summary.js';
import { DEFAULT_RETENTION, HOUR_TABLE, MINUTE_TABLE, ROW_COLUMNS, SIDE_COLUMNS, type Retention } from '../../src/store/schema.js';
import { tableRetention } from '../../src/store/migrations.js';
import type { FlowFilter } from '../../src/store/filter.js';
import type { FlowRow } from '../../src/store/row.js';
import { FilterError, buildWhere, checkGroupBy, filterColumns } from '../../src/store/sql.js';
import { INJECTIONS, row, tempDir } from './fixtures.js';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** a whole hour, five hours ago: inside every table's retention whenever the tests run */
const H = Math.floor(Date.now() / HOUR) * HOUR - 5 * HOUR;

const tmp = tempDir('summary');
let store: FlowStore;

before(async () => {
  store = await openStore({ dataDir: path.join(tmp.dir, 'data') });
  // unmerged parts hold several rollup rows per key: a reader that did not sum would count wrong
  await store.client.command({ query: `SYSTEM STOP MERGES ${MINUTE_TABLE}` });
  await store.client.command({ query: `SYSTEM STOP MERGES ${HOUR_TABLE}` });
});

after(async () => {
  await store?.close();
  tmp.remove();
});

const sum = (filter: FlowFilter, groupBy: readonly string[], opts: SummaryOptions = {}, limit = MAX_SUMMARY_LIMIT): Promise<Summary> =>
  summarize(store.client, filter, groupBy, limit, opts);

/** Rows of namespaces eq-a/eq-b/eq-c over [H - 40 min, H + 3 h), edges included, spread over pods, ports and verdicts. */
function spread(): FlowRow[] {
  const out: FlowRow[] = [];
  const pods = ['p1', 'p2', 'p3'];
  const nss = ['eq-a', 'eq-b', 'eq-c'];
  // a step that is no divisor of a minute: rows fall everywhere inside buckets
  for (let i = 0; i < 240; i++) {
    const ts = H - 40 * MIN + i * 52_313;
    const denied = i % 7 === 0;
    out.push(row({
      ts, start: ts - 10_000, kind: denied ? 'denied' : 'flow', verdict: denied ? 'denied' : 'allowed', reason: denied ? 'DENY_DEFAULT' : 'ALLOW_POLICY',
      protocol: i % 5 === 0 ? 17 : 6, policy: denied ? '' : `x/allow-${i % 3} ingress[0]`,
      packetsFwd: 1 + (i % 4), packetsRev: i % 3, bytesFwd: 100 * (1 + (i % 11)), bytesRev: 7 * i, count: denied ? 2 : 0,
      src: { namespace: nss[i % 3]!, pod: pods[(i >> 1) % 3]!, workload: `w${i % 2}`, port: 40000 + i },
      dst: { namespace: nss[(i + 1) % 3]!, pod: pods[i % 3]!, port: [8080, 53, 443][i % 3]!, kind: i % 9 === 0 ? 'world' : 'pod' },
      reporter: `node-${i % 2}`,
    }));
  }
  // on and just beside the edges of the ranges compared below
  for (const ts of [H - 1, H, H + 2 * HOUR - 1, H + 2 * HOUR, H + 7 * MIN - 1, H + 7 * MIN, H + 53 * MIN - 1, H + 53 * MIN]) {
    out.push(row({ ts, start: ts, src: { namespace: 'eq-a', pod: 'edge' }, bytesFwd: ts % 1000, reporter: 'edge' }));
  }
  return out;
}

const GROUPINGS: readonly (readonly string[])[] = [
  ['verdict'],
  ['src_namespace', 'src_pod'],
  ['dst_namespace', 'dst_port', 'protocol'],
  ['policy', 'reporter', 'kind'],
  ['src_workload', 'src_workload_kind', 'dst_kind', 'dst_workload'],
];

const FILTERS: readonly FlowFilter[] = [
  { either: { namespace: ['eq-a', 'eq-b', 'eq-c'] } },
  { either: { namespace: ['eq-a'] } },
  { src: { pod: ['eq-b/p1', 'p2'] }, verdict: ['allowed'] },
  { verdict: ['denied'], src: { namespace: ['eq-c'] } },
  { protocol: [17], dst: { namespace: ['eq-a'], pod: ['p3'] } },
];

test('rollups answer what the raw rows answer, for ranges on their buckets, from unmerged parts', async () => {
  const rows = spread();
  // three batches: the same keys land in several parts of each rollup
  for (let b = 0; b < 3; b++) await store.insert(rows.filter((_, i) => i % 3 === b), `eq-${b}`);
  // the rollups really hold several rows for one key (merges are stopped): the edge rows inside
  // hour H share one key and went in three batches, so three parts; a reader must sum
  const dup = await store.client.query({
    query: `SELECT count() AS n FROM ${HOUR_TABLE} WHERE src_pod = 'edge' AND ts = toDateTime({h:UInt32}, 'UTC')`,
    query_params: { h: H / 1000 },
    format: 'JSONEachRow',
  });
  assert.equal(Number((await dup.json<{ n: string }>())[0]!.n), 3);
  const ranges: Array<[SummaryTable[], number, number]> = [
    [['flows_1h', 'flows_1m'], H, H + 2 * HOUR],
    [['flows_1m'], H + 7 * MIN, H + 53 * MIN],
  ];
  let compared = 0;
  for (const [tables, since, until] of ranges) {
    for (const f of FILTERS) {
      for (const g of GROUPINGS) {
        const filter = { ...f, since, until };
        const raw = await sum(filter, g, { table: 'flows' });
        assert.ok(raw.total.flows > 0, `${JSON.stringify(filter)}: the raw rows match nothing`);
        for (const table of tables) {
          const rolled = await sum(filter, g, { table });
          assert.equal(rolled.source.table, table);
          assert.deepEqual(rolled.groups, raw.groups, `${table} ${JSON.stringify(filter)} by ${g.join(',')}`);
          assert.deepEqual(rolled.total, raw.total, `${table} ${JSON.stringify(filter)} total`);
          compared++;
        }
      }
    }
  }
  assert.equal(compared, FILTERS.length * GROUPINGS.length * 3);
  // the edge rows: [H, H+2h) takes H and H+2h-1, not H-1 nor H+2h
  const edges = await sum({ src: { pod: ['eq-a/edge'] }, since: H, until: H + 2 * HOUR }, ['reporter'], { table: 'flows_1h' });
  assert.equal(edges.total.flows, 6);
});

test('the rule picks the table by range and retention, and reports it', async () => {
  const now = H + 5 * HOUR + 17 * MIN + 3_456;
  const r = DEFAULT_RETENTION;
  const pick = (filter: FlowFilter, groupBy: readonly string[] = ['verdict'], retention: Retention = r) => chooseSource(filter, groupBy, { retention, now });
  // everything kept: the table kept longest
  assert.deepEqual(pick({}), { table: 'flows_1h', resolutionSeconds: 3600, retentionDays: 365, reason: 'no since: the table kept longest (365 days)' });
  // whole hours: the hour table is exact
  const hourly = pick({ since: H - 2 * HOUR, until: H });
  assert.deepEqual([hourly.table, hourly.since, hourly.until], ['flows_1h', H - 2 * HOUR, H]);
  assert.match(hourly.reason, /exact/);
  // whole minutes, not hours, short: the minute table is exact
  const minutely = pick({ since: H + 7 * MIN, until: H + 53 * MIN });
  assert.deepEqual([minutely.table, minutely.resolutionSeconds, minutely.since, minutely.until], ['flows_1m', 60, H + 7 * MIN, H + 53 * MIN]);
  // `since=15m`: edges off the minute, too short for a rollup: raw rows, exact
  const recent = pick({ since: now - 15 * MIN });
  assert.deepEqual([recent.table, recent.resolutionSeconds, recent.since, recent.until], ['flows', 0.001, now - 15 * MIN, undefined]);
  // `since=1h`: a minute is 1/60 of it: minute table, since widened down to its minute
  const hour = pick({ since: now - HOUR });
  assert.deepEqual([hour.table, hour.since], ['flows_1m', Math.floor((now - HOUR) / MIN) * MIN]);
  assert.match(hour.reason, /widened/);
  // until is widened up, never down
  const closed = pick({ since: now - 2 * HOUR, until: now - HOUR });
  assert.deepEqual([closed.table, closed.until], ['flows_1m', Math.ceil((now - HOUR) / MIN) * MIN]);
  // `since=24h` still minutes (an hour is more than 1/60 of a day); `since=3d` hours
  assert.equal(pick({ since: now - DAY }).table, 'flows_1m');
  assert.equal(pick({ since: now - 3 * DAY }).table, 'flows_1h');
  assert.equal(pick({ since: now - 59 * HOUR }).table, 'flows_1m');
  assert.equal(pick({ since: now - 60 * HOUR }).table, 'flows_1h');
  // short ranges older than the raw rows are kept: the minute table; older than minutes: hours
  const old = pick({ since: now - 8 * DAY, until: now - 8 * DAY + 10 * MIN });
  assert.deepEqual([old.table, old.retentionDays], ['flows_1m', 30]);
  assert.match(old.reason, /older than the raw table keeps/);
  assert.equal(pick({ since: now - 40 * DAY, until: now - 40 * DAY + 10 * MIN }).table, 'flows_1h');
  assert.match(pick({ since: now - 400 * DAY }).reason, /older than any table keeps/);
  // retention decides: raw rows kept 60 days hold a short range 40 days back
  assert.equal(pick({ since: now - 40 * DAY, until: now - 40 * DAY + 10 * MIN }, ['verdict'], { rawDays: 60, minuteDays: 90, hourDays: 365 }).table, 'flows');
  // whatever the range, a column the rollups lack means raw rows
  const hours = { since: H - 2 * HOUR, until: H };
  for (const [filter, groupBy, why] of [
    [hours, ['src_label:app'], /group_by src_label:app: labels are kept in the raw table only/],
    [hours, ['src_ip'], /group_by src_ip: not a rollup dimension/],
    [hours, ['src_port'], /group_by src_port/],
    [hours, ['reason'], /group_by reason/],
    [{ ...hours, port: [8080] }, ['verdict'], /filter port reads src_port/],
    [{ ...hours, policy: ['x/allow'] }, ['policy'], /filter policy reads egress_policy/],
    [{ ...hours, src: { labels: [{ key: 'app', op: 'exists' }] } }, ['verdict'], /filter src.labels reads src_labels/],
    [{ ...hours, either: { cidr: ['10.0.0.0/8'] } }, ['verdict'], /filter either.cidr reads src_ip/],
    [{}, ['dst_label:example.com/team'], /labels/],
  ] as Array<[FlowFilter, string[], RegExp]>) {
    const s = pick(filter, groupBy);
    assert.equal(s.table, 'flows', `${JSON.stringify(filter)} ${groupBy}`);
    assert.match(s.reason, why);
  }
  // namespace, pod, protocol and verdict filters on both sides are rollup columns
  assert.equal(pick({ ...hours, either: { namespace: ['a'], pod: ['a/b'] }, dst: { pod: ['c'] }, protocol: [6], verdict: ['denied'] }, ['dst_port', 'policy']).table, 'flows_1h');
});

test('the chosen table answers what the raw rows do, and a widened edge counts its whole bucket', async () => {
  const now = Date.now();
  // (reuses the first test's rows when run with it; inserts its own otherwise)
  if ((await store.count({ src: { pod: ['eq-a/edge'] } })) === 0) await store.insert(spread(), 'eq-own');
  const filter: FlowFilter = { either: { namespace: ['eq-a', 'eq-b', 'eq-c'] }, since: H, until: H + 2 * HOUR };
  const chosen = await sum(filter, ['src_namespace', 'verdict'], { now });
  assert.equal(chosen.source.table, 'flows_1h');
  assert.deepEqual(chosen.groups, (await sum(filter, ['src_namespace', 'verdict'], { table: 'flows' })).groups);
  // a range of 80 minutes from H + 20.5 s: minutes, the first minute read whole
  const odd: FlowFilter = { either: { namespace: ['eq-a', 'eq-b', 'eq-c'] }, since: H + 20_500, until: H + 80 * MIN + 20_500 };
  const wide = await sum(odd, ['verdict'], { now });
  assert.deepEqual([wide.source.table, wide.source.since, wide.source.until], ['flows_1m', H, H + 81 * MIN]);
  const rawWide = await sum({ ...odd, since: H, until: H + 81 * MIN }, ['verdict'], { table: 'flows' });
  assert.deepEqual(wide.total, rawWide.total);
  // the edge row at H is in the widened answer, not in the raw answer to the range as asked
  const rawOdd = await sum(odd, ['verdict'], { table: 'flows' });
  assert.ok(wide.total.flows > rawOdd.total.flows);
  // a short unaligned range: raw rows
  const short = await sum({ ...odd, until: H + 10 * MIN }, ['verdict'], { now });
  assert.equal(short.source.table, 'flows');
  // without options the store reads the tables' retention back from their TTLs
  assert.deepEqual(await tableRetention(store.client, { database: '' }), DEFAULT_RETENTION);
  assert.equal((await store.summary(filter, ['verdict'], 10)).source.table, 'flows_1h');
  await assert.rejects(sum(filter, ['src_label:app'], { table: 'flows_1m' }), /flows_1m cannot answer: group_by src_label:app/);
});

test('group by labels: the value of one label per side, null where the row has none', async () => {
  const lab = (pod: string, labels: Record<string, string>, bytes: number, dstLabels: Record<string, string> = { tier: 'backend' }) =>
    row({ ts: H + MIN, bytesFwd: bytes, bytesRev: 0, packetsFwd: 1, packetsRev: 0, src: { namespace: 'lab-g', pod, labels }, dst: { labels: dstLabels } });
  await store.insert([
    lab('a', { app: 'web', 'example.com/team': 'sre' }, 100),
    lab('b', { app: 'web' }, 50),
    lab('c', { app: 'api', canary: '' }, 500, { tier: 'db' }),
    lab('d', {}, 7, {}),
  ], 'lab-g');
  const f: FlowFilter = { src: { namespace: ['lab-g'] } };
  const byApp = await sum(f, ['src_label:app']);
  assert.equal(byApp.source.table, 'flows');
  assert.deepEqual(byApp.groups, [
    { key: { 'src_label:app': 'api' }, flows: 1, packets: 1, bytes: 500 },
    { key: { 'src_label:app': 'web' }, flows: 2, packets: 2, bytes: 150 },
    { key: { 'src_label:app': null }, flows: 1, packets: 1, bytes: 7 },
  ]);
  assert.deepEqual(byApp.total, { flows: 4, packets: 4, bytes: 657 });
  const mixed = await sum(f, ['src_label:example.com/team', 'dst_label:tier', 'src_label:canary']);
  assert.deepEqual(mixed.groups.map((g) => g.key), [
    { 'src_label:example.com/team': null, 'dst_label:tier': 'db', 'src_label:canary': '' },
    { 'src_label:example.com/team': 'sre', 'dst_label:tier': 'backend', 'src_label:canary': null },
    { 'src_label:example.com/team': null, 'dst_label:tier': 'backend', 'src_label:canary': null },
    { 'src_label:example.com/team': null, 'dst_label:tier': null, 'src_label:canary': null },
  ]);
  // with columns too
  const withPod = await sum(f, ['src_pod', 'src_label:app'], {}, 2);
  assert.deepEqual(withPod.groups.map((g) => g.key), [{ src_pod: 'c', 'src_label:app': 'api' }, { src_pod: 'a', 'src_label:app': 'web' }]);
});

test('top talkers: grouped by source, the top N by bytes, the total over everything', async () => {
  const talkers = [['web', 'a', 900], ['web', 'b', 300], ['api', 'a', 1200], ['api', 'b', 50], ['ops', 'x', 600], ['web', 'a', 400]] as const;
  await store.insert(talkers.map(([ns, pod, bytes], i) =>
    row({ ts: H + 2 * MIN + i, bytesFwd: bytes, bytesRev: 10, packetsFwd: 2, packetsRev: 1, src: { namespace: `tt-${ns}`, pod } })), 'tt');
  const filter: FlowFilter = { either: { namespace: ['tt-web', 'tt-api', 'tt-ops'] }, since: H, until: H + HOUR };
  for (const table of [undefined, 'flows', 'flows_1m', 'flows_1h'] as const) {
    const top = await sum(filter, ['src_namespace', 'src_pod'], table ? { table } : {}, 3);
    assert.deepEqual(top.groups, [
      { key: { src_namespace: 'tt-web', src_pod: 'a' }, flows: 2, packets: 6, bytes: 1320 },
      { key: { src_namespace: 'tt-api', src_pod: 'a' }, flows: 1, packets: 3, bytes: 1210 },
      { key: { src_namespace: 'tt-ops', src_pod: 'x' }, flows: 1, packets: 3, bytes: 610 },
    ], String(table));
    assert.deepEqual(top.total, { flows: 6, packets: 18, bytes: 3510 });
  }
});

test('bad group_by and limit values are refused, naming them, injection strings in label keys too', async () => {
  for (const bad of ['src_label:', 'src_label:-x', 'src_label:a/b/c', 'src_label:Bad_Prefix/x', 'pod_label:app', 'src_labels', 'src_label', `src_label:${'x'.repeat(64)}`]) {
    await assert.rejects(sum({}, ['verdict', bad]), (e: unknown) => e instanceof FilterError && e.field === 'group_by[1]', bad);
  }
  for (const s of INJECTIONS) {
    for (const g of [`src_label:${s}`, `dst_label:app${s}`, s]) {
      await assert.rejects(sum({}, [g]), (e: unknown) => e instanceof FilterError && e.field === 'group_by[0]', g);
    }
  }
  await assert.rejects(sum({}, ['src_label:app', 'src_label:app']), /group_by\[1\]: .* given twice/);
  await assert.rejects(sum({}, []), (e: unknown) => e instanceof FilterError && e.field === 'group_by');
  await assert.rejects(sum({}, ['verdict'], {}, 0), (e: unknown) => e instanceof FilterError && e.field === 'limit');
  await assert.rejects(sum({ since: Number.NaN }, ['verdict']), (e: unknown) => e instanceof FilterError && e.field === 'since');
  assert.deepEqual(checkGroupBy(['src_label:app.kubernetes.io/name', 'dst_label:tier']), ['src_label:app.kubernetes.io/name', 'dst_label:tier']);
  // the tables are all there
  const rs = await store.client.query({ query: "SELECT count() AS n FROM system.tables WHERE database = currentDatabase() AND name LIKE 'flows%'", format: 'JSONEachRow' });
  assert.equal(Number((await rs.json<{ n: string }>())[0]!.n), 5);
});

test('filterColumns names every column buildWhere reads', () => {
  const columns = new Set(['ts', 'start', 'id', ...ROW_COLUMNS.map(([, c]) => c), ...(['src', 'dst'] as const).flatMap((s) => SIDE_COLUMNS.map(([, c]) => `${s}_${c}`))]);
  const sides = [{ namespace: ['a'] }, { pod: ['a/b'] }, { pod: ['b'] }, { labels: [{ key: 'k', op: 'exists' as const }] }, { ip: ['10.0.0.1'] }, { cidr: ['10.0.0.0/8'] },
    { namespace: ['a'], ip: ['::1'], cidr: ['fd00::/8'], labels: [{ key: 'k', op: '=' as const, value: 'v' }] }];
  const filters: FlowFilter[] = [
    {}, { port: [1] }, { protocol: [6] }, { verdict: ['denied'] }, { policy: ['x'] }, { since: 1 }, { until: 2 },
    ...sides.flatMap((s) => [{ either: s }, { src: s }, { dst: s }]),
    { either: sides[6], src: sides[1], dst: sides[3], port: [2], protocol: [17], verdict: ['audit'], policy: ['y'], since: 1, until: 5 },
  ];
  for (const f of filters) {
    const read = new Set([...buildWhere(f).sql.matchAll(/\b[a-z_]+\b/g)].map((m) => m[0]).filter((w) => columns.has(w)));
    const named = new Set(filterColumns(f).flatMap(([, c]) => c));
    assert.deepEqual([...named].sort(), [...read].sort(), JSON.stringify(f));
  }
});
