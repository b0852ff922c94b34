// GET /api/v1/flows/summary over real HTTP against the real store (embedded chDB, fixture corpus):
// grouping by labels, the table each range is read from, top talkers, bad group_by values, and
// the answers checked against the OpenAPI document's schema.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { createApiServer, type ApiServer } from '../../src/api/server.js';
import { openApiDocument } from '../../src/api/openapi.js';
import { summarize } from '../../src/store/summary.js';
import type { FlowRow } from '../../src/store/row.js';
import { T0, corpus, tempStore, type TempStore } from './fixtures.js';

const HOUR = 3_600_000;
const MIN = 60_000;
let t: TempStore;
let api: ApiServer;
let base: string;
const ROWS = corpus();

before(async () => {
  t = await tempStore(ROWS);
  api = createApiServer({ store: t.store, port: 0 });
  base = (await api.listen()).url;
});

after(async () => {
  await api?.close();
  await t?.cleanup();
});

async function get(path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${path}`);
  return { status: res.status, body: await res.json() };
}

const summaryUrl = (params: Record<string, string>): string => `/api/v1/flows/summary?${new URLSearchParams(params).toString()}`;

type Key = Record<string, string | number | null>;

/** The summary computed here from the rows themselves: the reference the store must match. */
function reference(rows: readonly FlowRow[], keyOf: (r: FlowRow) => Key, limit: number) {
  const groups = new Map<string, { key: Key; flows: number; packets: number; bytes: number }>();
  for (const r of rows) {
    const key = keyOf(r);
    const id = JSON.stringify(key);
    const g = groups.get(id) ?? { key, flows: 0, packets: 0, bytes: 0 };
    g.flows++;
    g.packets += r.packetsFwd + r.packetsRev;
    g.bytes += r.bytesFwd + r.bytesRev;
    groups.set(id, g);
  }
  // the store's order: bytes, packets, rows (largest first), then the key (nulls last)
  const cmpKey = (a: Key, b: Key): number => {
    for (const k of Object.keys(a)) {
      const x = a[k]!;
      const y = b[k]!;
      if (x === y) continue;
      if (x === null) return 1;
      if (y === null) return -1;
      return x < y ? -1 : 1;
    }
    return 0;
  };
  const all = [...groups.values()].sort((a, b) => b.bytes - a.bytes || b.packets - a.packets || b.flows - a.flows || cmpKey(a.key, b.key));
  const total = all.reduce((s, g) => ({ flows: s.flows + g.flows, packets: s.packets + g.packets, bytes: s.bytes + g.bytes }), { flows: 0, packets: 0, bytes: 0 });
  return { groups: all.slice(0, limit), total };
}

test('group_by=src_label:KEY,dst_label:KEY: one label per side, from the raw rows, null where absent', async () => {
  const r = await get(summaryUrl({ group_by: 'src_label:app,dst_label:tier' }));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.groupBy, ['src_label:app', 'dst_label:tier']);
  const want = reference(ROWS, (x) => ({ 'src_label:app': x.src.labels.app ?? null, 'dst_label:tier': x.dst.labels.tier ?? null }), 20);
  assert.deepEqual(r.body.groups, want.groups);
  assert.deepEqual(r.body.total, want.total);
  assert.ok(r.body.groups.some((g: { key: Key }) => g.key['src_label:app'] === null));
  assert.equal(r.body.source.table, 'flows');
  assert.match(r.body.source.reason, /labels are kept in the raw table only/);
  // a prefixed key, with a filter on the same label
  const team = await get(summaryUrl({ group_by: 'src_label:example.com/team', src_label: 'example.com/team' }));
  assert.equal(team.status, 200);
  assert.deepEqual(team.body.groups.map((g: { key: Key }) => g.key), [{ 'src_label:example.com/team': 'sre' }]);
});

test('the table depends on the range: whole hours the hour rollup, a short odd range raw rows; same answers', async () => {
  const h = Math.floor(T0 / HOUR) * HOUR;
  const groupBy = 'src_namespace,src_pod,dst_port,verdict';
  const aligned = await get(summaryUrl({ group_by: groupBy, since: new Date(h - HOUR).toISOString(), until: new Date(h + 2 * HOUR).toISOString() }));
  assert.equal(aligned.status, 200, JSON.stringify(aligned.body));
  assert.deepEqual(aligned.body.source, {
    table: 'flows_1h', resolutionSeconds: 3600, retentionDays: 365, since: h - HOUR, until: h + 2 * HOUR, reason: 'since and until are on whole hours: exact',
  });
  const keyOf = (x: FlowRow): Key => ({ src_namespace: x.src.namespace, src_pod: x.src.pod, dst_port: x.dst.port, verdict: x.verdict });
  assert.deepEqual(aligned.body.groups, reference(ROWS, keyOf, 20).groups);
  assert.deepEqual(aligned.body.total, reference(ROWS, keyOf, 20).total);
  // the same filter read from the raw rows gives the same answer
  const raw = await summarize(t.store.client, { since: h - HOUR, until: h + 2 * HOUR }, groupBy.split(','), 20, { table: 'flows' });
  assert.deepEqual(aligned.body.groups, raw.groups);
  // a few minutes around the rows, off the minute: raw rows, the edges as asked
  const since = T0 - 1500;
  const short = await get(summaryUrl({ group_by: groupBy, since: new Date(since).toISOString(), until: new Date(T0 + 5500).toISOString() }));
  assert.equal(short.body.source.table, 'flows');
  assert.equal(short.body.source.since, since);
  assert.deepEqual(short.body.total, reference(ROWS.filter((x) => x.ts < T0 + 5500), keyOf, 20).total);
  // `since=2h`: minutes, since widened down to its minute
  const recent = await get(summaryUrl({ group_by: 'verdict', since: '2h' }));
  assert.equal(recent.body.source.table, 'flows_1m');
  assert.equal(recent.body.source.since % MIN, 0);
  assert.deepEqual(recent.body.total, reference(ROWS, (x) => ({ v: x.verdict }), 20).total);
  // a filter the rollups lack a column for: raw rows whatever the range
  const byPort = await get(summaryUrl({ group_by: 'verdict', port: '8080', since: new Date(h - HOUR).toISOString(), until: new Date(h + 2 * HOUR).toISOString() }));
  assert.equal(byPort.body.source.table, 'flows');
  assert.match(byPort.body.source.reason, /filter port/);
});

test('top talkers: group_by=src_namespace,src_pod gives the top N by bytes and the total of everything', async () => {
  const r = await get(summaryUrl({ group_by: 'src_namespace,src_pod', limit: '2' }));
  assert.equal(r.status, 200);
  const want = reference(ROWS, (x) => ({ src_namespace: x.src.namespace, src_pod: x.src.pod }), 2);
  assert.equal(r.body.groups.length, 2);
  assert.deepEqual(r.body.groups, want.groups);
  assert.deepEqual(r.body.total, want.total);
  assert.equal(r.body.total.flows, ROWS.length);
});

test('bad group_by values: 400 naming group_by, injection strings in label keys included; nothing runs', async () => {
  const before = await t.store.count();
  const bad = [
    'src_label:', 'dst_label:-app', 'src_label:a/b/c', 'src_label:Example.com/x', 'pod_label:app', 'src_labels', 'src_label:app,src_label:app',
    `src_label:${'k'.repeat(64)}`, "src_label:app' OR '1'='1", "dst_label:x'] OR 1=1 --", 'src_label:{p0:String}', 'src_label:app)); DROP TABLE flows; --',
    'src_label:a\nb', 'dst_label:app%', 'src_label:app,verdict;SELECT 1',
  ];
  for (const value of bad) {
    const r = await get(summaryUrl({ group_by: value }));
    assert.equal(r.status, 400, `group_by=${JSON.stringify(value)}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.parameter, 'group_by', value);
    assert.match(r.body.error.message, /^group_by: /);
  }
  assert.match((await get(summaryUrl({ group_by: 'src_label:a/b/c' }))).body.error.message, /is not a label key/);
  assert.equal(await t.store.count(), before);
});

test('the answers match the OpenAPI document, which describes label group keys and the source', async () => {
  const doc = openApiDocument() as any;
  const op = doc.paths['/api/v1/flows/summary'].get;
  const groupBy = op.parameters.find((p: { name: string }) => p.name === 'group_by');
  assert.match(groupBy.description, /src_label:KEY/);
  const ajv = new Ajv2020({ strict: false });
  const validate = ajv.compile(op.responses['200'].content['application/json'].schema);
  const itemSchema = ajv.compile(groupBy.schema.items);
  for (const k of ['src_namespace', 'src_label:app', 'dst_label:app.kubernetes.io/name']) assert.ok(itemSchema(k), k);
  for (const k of ['password', 'src_label:', "src_label:a'b"]) assert.ok(!itemSchema(k), k);
  for (const params of [{}, { group_by: 'src_label:app' }, { group_by: 'verdict', since: '2h' }, { group_by: 'dst_port,protocol', verdict: 'denied' }] as Record<string, string>[]) {
    const r = await get(summaryUrl(params));
    assert.equal(r.status, 200);
    assert.ok(validate(r.body), `${JSON.stringify(params)}: ${ajv.errorsText(validate.errors)}`);
  }
});
