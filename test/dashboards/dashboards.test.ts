// The Grafana dashboards (dashboards/*.json) against the real schema and metrics: no Grafana runs
// here, so what Grafana would do is done by hand. Every ClickHouse target's SQL is expanded as
// Grafana and the grafana-clickhouse-datasource plugin expand it (test/dashboards/macros.ts), for
// several variable selections ("All" included), and run against a real chDB store seeded with
// flows; it must run and return the columns declared below, and key panels the numbers the
// seeded rows make. Every Prometheus expression may name only metrics of src/metrics/catalog.ts.

import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { openStore, type FlowStore } from '../../src/store/store.js';
import type { FlowRow, SideIdentity } from '../../src/store/row.js';
import { DASHBOARDS } from '../../src/dashboards/index.js';
import { DASHBOARDS_DIR, dashboardJson } from '../../src/dashboards/generate.js';
import { CLICKHOUSE_TYPE, PROMETHEUS_TYPE } from '../../src/dashboards/model.js';
import { tempDir } from '../store/fixtures.js';
import { MIN, RANGE, SEED, T0, hasLabel, inNamespaces, inRange, loadDashboards, sum } from './seed.js';
import {
  DashboardCheckError, checkClickHouseTarget, checkPrometheusTarget, runSql, targetsOf, variableStates,
  type DashboardFile, type PanelTarget,
} from './check.js';
import { expandQuery, type ExpandOptions } from './macros.js';

/** The dashboards and their uids: stable, since links and provisioning refer to them. */
const UIDS: Record<string, string> = {
  'agent-health.json': 'weir-agent-health',
  'denied-flows.json': 'weir-denied-flows',
  'traffic-overview.json': 'weir-traffic-overview',
};

const TS = ['time', 'series', 'value'];
/** The columns each ClickHouse target returns, in order (`uid / panel title / refId`). */
const EXPECT_COLUMNS: Record<string, readonly string[]> = {
  'weir-denied-flows / Denied packets and audited flows / A': ['denied_packets', 'audited_flows'],
  'weir-denied-flows / Denied and audited by namespace and policy / A': TS,
  'weir-denied-flows / Top denied sources / A': ['source', 'source_ip', 'packets', 'records', 'destinations', 'last_seen'],
  'weir-denied-flows / Recent denied flows / A': [
    'time', 'verdict', 'reason', 'direction', 'protocol', 'source', 'source_ip', 'source_port',
    'destination', 'destination_ip', 'destination_port', 'rule', 'packets', 'node',
  ],
  'weir-denied-flows / World → host denied over time / A': TS,
  'weir-denied-flows / World → host attempts / A': ['source_ip', 'world_name', 'target', 'target_ip', 'protocol', 'port', 'packets', 'first_seen', 'last_seen'],
  'weir-traffic-overview / Packets by verdict / A': TS,
  'weir-traffic-overview / Verdicts / A': ['verdict', 'flows'],
  'weir-traffic-overview / Bytes by source namespace / A': TS,
  'weir-traffic-overview / Top talkers / A': ['source', 'destination', 'bytes', 'packets', 'connections'],
  'weir-traffic-overview / Namespace to namespace (bytes) / A': ['source_namespace', 'destination_namespace', 'bytes'],
  'weir-traffic-overview / Namespace to namespace (denied packets) / A': ['source_namespace', 'destination_namespace', 'packets'],
  'weir-agent-health / Stored loss rows / A': TS,
};
/** The columns of the ClickHouse query variables. */
const EXPECT_VARIABLE_COLUMNS: Record<string, readonly string[]> = { namespace: ['namespace'], label: ['label'] };

const dashboards = loadDashboards();
const allTargets = dashboards.flatMap(targetsOf);
const chTargets = allTargets.filter((t) => t.target.datasource?.type === CLICKHOUSE_TYPE);
const promTargets = allTargets.filter((t) => t.target.datasource?.type === PROMETHEUS_TYPE);

const tmp = tempDir('dashboards');
let store: FlowStore;
/** every value the query variables offer for RANGE (what "All" stands for) */
const options: Record<string, string[]> = {};

before(async () => {
  store = await openStore({ dataDir: path.join(tmp.dir, 'data') });
  await store.insert(SEED, 'dashboards-seed-1');
  // the variables' options, from their own queries (run with everything selected)
  const flows = dashboards.find((d) => d.json.uid === 'weir-denied-flows')!;
  for (const name of ['namespace', 'label']) {
    const v = flows.json.templating.list.find((x: any) => x.name === name);
    const sql = expandQuery(v.query.rawSql, expandOptions(flows, {}));
    const r = await runSql(store, sql);
    assert.deepEqual(r.columns.map((c) => c.name), EXPECT_VARIABLE_COLUMNS[name], `variable ${name}: columns`);
    options[name] = r.rows.map((x) => String(x[name]));
  }
});

after(async () => {
  await store?.close();
  tmp.remove();
});

function expandOptions(d: DashboardFile, current: Record<string, readonly string[] | 'all'>, intervalMs = MIN): ExpandOptions {
  return { ...RANGE, intervalMs, variables: variableStates(d, options, current) };
}

function dashboardOf(t: PanelTarget): DashboardFile {
  return dashboards.find((d) => d.file === t.file)!;
}

/** Runs one ClickHouse target with a selection; the rows, numbers as numbers. */
async function run(key: string, current: Record<string, readonly string[] | 'all'> = {}): Promise<Record<string, any>[]> {
  const t = chTargets.find((x) => x.key === key);
  assert.ok(t, `no ClickHouse target ${key}`);
  const r = await checkClickHouseTarget(store, t, expandOptions(dashboardOf(t), current), EXPECT_COLUMNS[key]!);
  return r.rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v])));
}

// ---- the files -------------------------------------------------------------------------------

test('the dashboards are the fixed set, each well-formed with its stable uid', () => {
  assert.deepEqual(dashboards.map((d) => d.file), Object.keys(UIDS).sort());
  const uids = new Set<string>();
  for (const { file, json } of dashboards) {
    assert.equal(json.uid, UIDS[file], `${file}: uid`);
    assert.ok(!uids.has(json.uid), `${file}: uid ${json.uid} used twice`);
    uids.add(json.uid);
    assert.ok(Number.isInteger(json.schemaVersion) && json.schemaVersion >= 36, `${file}: schemaVersion ${json.schemaVersion}`);
    assert.ok(typeof json.title === 'string' && json.title.startsWith('Weir / '), `${file}: title`);
    assert.ok(json.tags.includes('weir'), `${file}: tag weir (the dashboards link to each other by it)`);
    const ids = json.panels.map((p: any) => p.id);
    assert.equal(new Set(ids).size, ids.length, `${file}: panel ids unique`);
    // the grid: 24 columns, no two panels overlapping
    for (const p of json.panels) {
      assert.ok(p.gridPos.x >= 0 && p.gridPos.x + p.gridPos.w <= 24, `${file}: panel "${p.title}" outside the 24-column grid`);
      for (const q of json.panels) {
        if (q === p) continue;
        const overlap = p.gridPos.x < q.gridPos.x + q.gridPos.w && q.gridPos.x < p.gridPos.x + p.gridPos.w &&
          p.gridPos.y < q.gridPos.y + q.gridPos.h && q.gridPos.y < p.gridPos.y + p.gridPos.h;
        assert.ok(!overlap, `${file}: panels "${p.title}" and "${q.title}" overlap`);
      }
    }
  }
});

test('the files are what src/dashboards generates (edit the definitions, then run generate.js)', () => {
  for (const [file, d] of Object.entries(DASHBOARDS)) {
    const current = readFileSync(path.join(DASHBOARDS_DIR, file), 'utf8');
    assert.ok(current === dashboardJson(d), `dashboards/${file} differs from src/dashboards: run node dist/src/dashboards/generate.js`);
  }
});

test('every panel and target uses a datasource variable of the right plugin type', () => {
  for (const { file, json } of dashboards) {
    const dsVars = new Map<string, string>(
      json.templating.list.filter((v: any) => v.type === 'datasource').map((v: any) => [`\${${v.name}}`, v.query]),
    );
    const check = (what: string, ds: any): void => {
      assert.ok(ds && typeof ds.type === 'string', `${file}: ${what} has no datasource`);
      assert.ok([CLICKHOUSE_TYPE, PROMETHEUS_TYPE].includes(ds.type), `${file}: ${what}: datasource type ${ds.type}`);
      // a datasource variable users pick, never a uid of some Grafana's own datasource
      assert.equal(dsVars.get(ds.uid), ds.type, `${file}: ${what}: datasource uid ${ds.uid} is not a ${ds.type} datasource variable of the dashboard`);
    };
    for (const p of json.panels) {
      check(`panel "${p.title}"`, p.datasource);
      assert.ok(p.targets.length > 0, `${file}: panel "${p.title}" has no query`);
      for (const t of p.targets) {
        check(`panel "${p.title}" ${t.refId}`, t.datasource);
        assert.equal(t.datasource.type, p.datasource.type, `${file}: panel "${p.title}" ${t.refId}: a target of another type than its panel`);
        if (t.datasource.type === CLICKHOUSE_TYPE) {
          assert.equal(t.editorType, 'sql', `${file}: panel "${p.title}": editorType`);
          assert.ok(typeof t.rawSql === 'string' && t.rawSql.length > 0, `${file}: panel "${p.title}": rawSql`);
          const fmt = p.type === 'timeseries' ? { queryType: 'timeseries', format: 0 } : { queryType: 'table', format: 1 };
          assert.deepEqual({ queryType: t.queryType, format: t.format }, fmt, `${file}: panel "${p.title}" (${p.type}): queryType and format`);
        } else {
          assert.ok(typeof t.expr === 'string' && t.expr.length > 0, `${file}: panel "${p.title}": expr`);
        }
      }
    }
    for (const v of json.templating.list.filter((x: any) => x.type === 'query')) check(`variable ${v.name}`, v.datasource);
  }
});

test('every ClickHouse target has declared columns, and every declaration a target', () => {
  assert.deepEqual(chTargets.map((t) => t.key).sort(), Object.keys(EXPECT_COLUMNS).sort());
});

// ---- ClickHouse: every target runs for every selection ---------------------------------------

const SELECTIONS: ReadonlyArray<{ name: string; current: Record<string, readonly string[] | 'all'> }> = [
  { name: 'everything ("All")', current: {} },
  { name: 'one namespace', current: { namespace: ['api'] } },
  { name: 'two namespaces and a label', current: { namespace: ['web', 'api'], label: ['app=orders'] } },
  { name: 'a label with a quote in it', current: { label: ["it's=x"] } },
];

test('every ClickHouse target runs against the store and returns its columns, for every selection', async () => {
  assert.ok(chTargets.length >= 10, `only ${chTargets.length} ClickHouse targets found`);
  for (const sel of SELECTIONS) {
    for (const t of chTargets) {
      try {
        await checkClickHouseTarget(store, t, expandOptions(dashboardOf(t), sel.current), EXPECT_COLUMNS[t.key]!);
      } catch (err) {
        throw new Error(`with ${sel.name}: ${(err as Error).message}`, { cause: err });
      }
    }
  }
});

test('time series targets return a time column first, in order', async () => {
  for (const t of chTargets.filter((x) => x.panel.type === 'timeseries')) {
    const r = await checkClickHouseTarget(store, t, expandOptions(dashboardOf(t), {}), EXPECT_COLUMNS[t.key]!);
    assert.match(r.columns[0]!.type, /^DateTime/, `${t.key}: first column type`);
    const times = r.rows.map((x) => String(x.time));
    assert.deepEqual(times, [...times].sort(), `${t.key}: times in order`);
  }
});

test('every column a panel names (overrides, transformations) is one its query returns', () => {
  for (const t of chTargets) {
    const columns = EXPECT_COLUMNS[t.key]!;
    const named: string[] = [];
    for (const o of t.panel.fieldConfig?.overrides ?? []) if (o.matcher?.id === 'byName') named.push(o.matcher.options);
    for (const tr of t.panel.transformations ?? []) {
      for (const k of ['rowField', 'columnField', 'valueField']) if (tr.options?.[k]) named.push(tr.options[k]);
    }
    for (const n of named) assert.ok(columns.includes(n), `${t.key}: names column "${n}", which the query does not return`);
  }
});

test('the variables offer the namespaces and labels of the time range', () => {
  const rows = SEED.filter(inRange);
  const ns = [...new Set(rows.flatMap((r) => [r.src.namespace, r.dst.namespace]).filter((n) => n !== ''))].sort();
  assert.deepEqual(options.namespace, ns);
  const labels = [...new Set(rows.flatMap((r) => [r.src, r.dst].flatMap((s) => Object.entries(s.labels).map(([k, v]) => `${k}=${v}`))))].sort();
  assert.deepEqual(options.label, labels);
});

// ---- ClickHouse: the numbers of key panels ---------------------------------------------------

test('denied totals: the minute rollup ("All") and the raw rows (a label) give the seeded numbers', async () => {
  const rows = SEED.filter(inRange);
  const expectTotals = (rs: readonly FlowRow[]) => ({
    denied_packets: sum(rs.filter((r) => r.kind === 'denied'), (r) => r.count),
    audited_flows: sum(rs.filter((r) => r.kind === 'audit'), (r) => r.count),
  });
  assert.deepEqual(await run('weir-denied-flows / Denied packets and audited flows / A'), [expectTotals(rows)]);
  assert.deepEqual(await run('weir-denied-flows / Denied packets and audited flows / A', { namespace: ['ops'] }), [expectTotals(rows.filter((r) => inNamespaces(r, ['ops'])))]);
  const labelled = rows.filter((r) => hasLabel(r, ['app=payments']));
  assert.ok(labelled.length > 0 && labelled.length < rows.length);
  assert.deepEqual(await run('weir-denied-flows / Denied packets and audited flows / A', { label: ['app=payments'] }), [expectTotals(labelled)]);
  // the time series adds up to the same
  const series = await run('weir-denied-flows / Denied and audited by namespace and policy / A');
  const total = expectTotals(rows);
  assert.equal(sum(series as any, (r: any) => r.value), total.denied_packets + total.audited_flows);
  assert.ok(series.some((r) => r.series === 'denied api (default deny)'), JSON.stringify(series));
  assert.ok(series.some((r) => r.series === 'denied api api/deny-debug ingress[0]'), JSON.stringify(series));
});

test('top denied sources show original addresses, IPv4-mapped ones as IPv4', async () => {
  const got = await run('weir-denied-flows / Top denied sources / A');
  const denied = SEED.filter((r) => inRange(r) && r.kind === 'denied');
  const bySource = new Map<string, number>();
  for (const r of denied) {
    const ip = r.src.ip.replace(/^::ffff:/, '');
    bySource.set(ip, (bySource.get(ip) ?? 0) + r.count);
  }
  assert.deepEqual(
    got.map((r) => [r.source_ip, r.packets]).sort(),
    [...bySource.entries()].sort(),
  );
  const v6 = got.find((r) => r.source_ip === 'fd00:10:244::d');
  assert.equal(v6?.source, 'ops/debug');
  const scanner = got.find((r) => r.source_ip === '203.0.113.7');
  assert.equal(scanner?.source, 'world scanners');
  assert.equal(got[0]!.packets, Math.max(...bySource.values()), 'largest first');
});

test('recent denied flows: every denied and audit record of the range, newest first', async () => {
  const got = await run('weir-denied-flows / Recent denied flows / A');
  const want = SEED.filter((r) => inRange(r) && (r.kind === 'denied' || r.kind === 'audit')).sort((a, b) => b.ts - a.ts);
  assert.deepEqual(got.map((r) => [r.source_ip, r.destination_port, r.packets]), want.map((r) => [r.src.ip.replace(/^::ffff:/, ''), r.dst.port, r.count]));
  assert.equal(got.find((r) => r.verdict === 'audit')?.rule, 'api/audit-payments ingress[0]');
  assert.equal(got.find((r) => r.source_ip === '10.244.0.13')?.rule, '(default deny)');
});

test('world -> host attempts: denied packets from the world to a host endpoint, by source and port', async () => {
  const got = await run('weir-denied-flows / World → host attempts / A');
  const want = SEED.filter((r) => inRange(r) && r.kind === 'denied' && r.src.kind === 'world' && r.dst.kind === 'host');
  assert.equal(sum(got as any, (r: any) => r.packets), sum(want, (r) => r.count));
  const ssh = got.find((r) => r.source_ip === '203.0.113.7' && r.port === 22);
  assert.deepEqual(
    { world_name: ssh?.world_name, target: ssh?.target, target_ip: ssh?.target_ip, protocol: ssh?.protocol, packets: ssh?.packets },
    { world_name: 'scanners', target: 'host node-1-eth0', target_ip: '192.168.1.10', protocol: 'TCP', packets: 5 },
  );
  assert.equal(got.find((r) => r.source_ip === '198.51.100.9')?.world_name, '(unnamed)');
  // the same from the rollup, over time
  const series = await run('weir-denied-flows / World → host denied over time / A');
  assert.equal(sum(series as any, (r: any) => r.value), sum(want, (r) => r.count));
  // neither side has a namespace, so a namespace choice leaves them be
  const scoped = await run('weir-denied-flows / World → host denied over time / A', { namespace: ['api'] });
  assert.equal(sum(scoped as any, (r: any) => r.value), sum(want, (r) => r.count));
  assert.equal((await run('weir-denied-flows / World → host attempts / A', { namespace: ['api'] })).length, got.length);
});

test('namespace matrices and top talkers add up the seeded allowed and denied traffic', async () => {
  const flows = SEED.filter((r) => inRange(r) && r.kind === 'flow');
  const nsOf = (s: SideIdentity) => s.namespace || `(${s.kind})`;
  const matrix = await run('weir-traffic-overview / Namespace to namespace (bytes) / A');
  const want = new Map<string, number>();
  for (const r of flows) {
    const k = `${nsOf(r.src)} -> ${nsOf(r.dst)}`;
    want.set(k, (want.get(k) ?? 0) + r.bytesFwd + r.bytesRev);
  }
  assert.deepEqual(new Map(matrix.map((r) => [`${r.source_namespace} -> ${r.destination_namespace}`, r.bytes])), want);
  assert.ok(want.has('web -> (world)'));

  const denied = await run('weir-traffic-overview / Namespace to namespace (denied packets) / A');
  assert.equal(denied.find((r) => r.source_namespace === 'ops' && r.destination_namespace === 'api')?.packets,
    sum(SEED.filter((r) => inRange(r) && r.kind === 'denied' && r.src.namespace === 'ops'), (r) => r.count));
  assert.equal(denied.find((r) => r.source_namespace === '(world)')?.destination_namespace, '(host)');

  const talkers = await run('weir-traffic-overview / Top talkers / A');
  assert.equal(talkers[0]!.destination, 'world', 'the largest flow first: frontend to the internet');
  assert.equal(talkers[0]!.bytes, 90_500);
  // with a label the raw rows answer, with richer names (the world's CIDR name)
  const labelled = await run('weir-traffic-overview / Top talkers / A', { label: ['app=frontend'] });
  assert.equal(labelled[0]!.destination, 'world internet');
  assert.equal(sum(labelled as any, (r: any) => r.bytes), sum(flows.filter((r) => hasLabel(r, ['app=frontend'])), (r) => r.bytesFwd + r.bytesRev));
});

test('verdicts: connections started and denied records, the same from the rollup and the raw rows', async () => {
  const rows = SEED.filter(inRange);
  const want = (rs: readonly FlowRow[]) => {
    const m = new Map<string, number>();
    for (const r of rs) {
      if (r.kind !== 'flow' && r.kind !== 'denied') continue;
      m.set(r.verdict, (m.get(r.verdict) ?? 0) + (r.kind === 'flow' ? r.connectionsStarted : 1));
    }
    return [...m.entries()].sort();
  };
  const key = 'weir-traffic-overview / Verdicts / A';
  assert.deepEqual((await run(key)).map((r) => [r.verdict, r.flows]), want(rows));
  assert.deepEqual((await run(key, { label: ['app=frontend', 'app=debug'] })).map((r) => [r.verdict, r.flows]), want(rows.filter((r) => hasLabel(r, ['app=frontend', 'app=debug']))));
});

test('stored loss rows are shown by node and stage', async () => {
  const got = await run('weir-agent-health / Stored loss rows / A');
  assert.deepEqual(got.map((r) => [r.series, r.value]), [['node-1 ring_buffer', 7]]);
});

// ---- a broken dashboard fails, naming what is broken -----------------------------------------

test('a misspelled column fails the check, naming the panel and the column', async () => {
  const t = chTargets.find((x) => x.key === 'weir-denied-flows / Top denied sources / A')!;
  const broken: PanelTarget = { ...t, target: { ...t.target, rawSql: t.target.rawSql.replace('src_ip', 'src_ipp') } };
  await assert.rejects(
    checkClickHouseTarget(store, broken, expandOptions(dashboardOf(t), {}), EXPECT_COLUMNS[t.key]!),
    (err: Error) => err instanceof DashboardCheckError && /panel "Top denied sources"/.test(err.message) && /src_ipp/.test(err.message),
  );
  // a query that runs but returns another column than the panel expects
  const renamed: PanelTarget = { ...t, target: { ...t.target, rawSql: t.target.rawSql.replace('AS records', 'AS recs') } };
  await assert.rejects(
    checkClickHouseTarget(store, renamed, expandOptions(dashboardOf(t), {}), EXPECT_COLUMNS[t.key]!),
    /panel "Top denied sources" .*missing: records; unexpected: recs/,
  );
  // an unknown variable or macro
  const unknown: PanelTarget = { ...t, target: { ...t.target, rawSql: `${t.target.rawSql.replace('LIMIT 20', '')} LIMIT $limit` } };
  await assert.rejects(checkClickHouseTarget(store, unknown, expandOptions(dashboardOf(t), {}), EXPECT_COLUMNS[t.key]!), /"Top denied sources".*unknown template variable "limit"/);
});

// ---- Prometheus ------------------------------------------------------------------------------

test('every Prometheus expression names only metrics the agent exports (src/metrics/catalog.ts)', () => {
  assert.ok(promTargets.length >= 10, `only ${promTargets.length} Prometheus targets found`);
  const used = new Set<string>();
  for (const t of promTargets) for (const n of checkPrometheusTarget(t)) used.add(n);
  // the Prometheus query variables too
  for (const { file, json } of dashboards) {
    for (const v of json.templating.list.filter((x: any) => x.type === 'query' && x.datasource.type === PROMETHEUS_TYPE)) {
      const text = typeof v.query === 'string' ? v.query : v.query.query;
      const m = /^label_values\((\w+),\s*\w+\)$/.exec(text);
      assert.ok(m, `${file}: variable ${v.name}: ${text}`);
      checkPrometheusTarget({ file, uid: json.uid, panel: { title: `variable ${v.name}` }, target: { refId: v.name, expr: m[1] }, key: v.name });
    }
  }
  // the agent's health is covered: loss, queues, store latency, map fill
  for (const m of ['weir_lost_events_total', 'weir_pipeline_queue_depth', 'weir_store_write_duration_seconds_bucket', 'weir_bpf_map_entries', 'weir_bpf_map_capacity']) {
    assert.ok(used.has(m), `no panel reads ${m}`);
  }
});

test('a metric the agent does not export fails the check, naming the panel and the metric', () => {
  const t = promTargets.find((x) => x.panel.title === 'Loss by stage')!;
  const broken: PanelTarget = { ...t, target: { ...t.target, expr: t.target.expr.replace('weir_lost_events_total', 'weir_events_lost_total') } };
  assert.throws(() => checkPrometheusTarget(broken), /panel "Loss by stage" \(A\) reads "weir_events_lost_total", not in src\/metrics\/catalog.ts/);
  // a label the metric does not have, in a matcher or a grouping
  const matcher: PanelTarget = { ...t, target: { ...t.target, expr: 'sum(rate(weir_lost_events_total{stage="x"}[5m]))' } };
  assert.throws(() => checkPrometheusTarget(matcher), /weir_lost_events_total has no label "stage"/);
  const grouped: PanelTarget = { ...t, target: { ...t.target, expr: 'sum by (stage) (rate(weir_lost_events_total[5m]))' } };
  assert.throws(() => checkPrometheusTarget(grouped), /groups or labels by "stage"/);
});

// ---- which table answers ---------------------------------------------------------------------

test('with every label ("All") the panels read the minute rollup, with a label the raw rows only', async () => {
  // a row only the rollup holds (written into flows_1m itself): counted with "All" labels; with a
  // label chosen the rollup branch must read nothing, or it would be counted there too
  await store.client.command({
    query: `INSERT INTO flows_1m (ts, src_namespace, dst_namespace, verdict, kind, src_kind, dst_kind, flows, count)
      VALUES (toDateTime(${Math.floor(T0 / 1000)}, 'UTC'), 'rollup-only', 'api', 'denied', 'denied', 'pod', 'pod', 1, 11)`,
  });
  try {
    const key = 'weir-denied-flows / Denied packets and audited flows / A';
    assert.deepEqual(await run(key, { namespace: ['rollup-only'] }), [{ denied_packets: 11, audited_flows: 0 }]);
    assert.deepEqual(await run(key, { namespace: ['rollup-only'], label: ['app=debug'] }), [{ denied_packets: 0, audited_flows: 0 }]);
  } finally {
    await store.client.command({ query: "ALTER TABLE flows_1m DELETE WHERE src_namespace = 'rollup-only'", clickhouse_settings: { mutations_sync: '1' } });
  }
});
