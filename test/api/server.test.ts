// The API over real HTTP on 127.0.0.1 (ephemeral ports) against the real store (embedded chDB in a
// temp directory), seeded with the fixture corpus.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createApiServer, parameterOfField, type ApiServer } from '../../src/api/server.js';
import { FILTER_PARAMETERS, FLOWS_PARAMETERS, STREAM_PARAMETERS, SUMMARY_PARAMETERS } from '../../src/api/params.js';
import { openApiDocument } from '../../src/api/openapi.js';
import type { FlowRow } from '../../src/store/row.js';
import { CASES } from './cases.js';
import { T0, corpus, names, row, tempStore, type TempStore } from './fixtures.js';

let t: TempStore;
let api: ApiServer;
let base: string;
const SEEDED = corpus().length;

before(async () => {
  t = await tempStore();
  api = createApiServer({ store: t.store, port: 0 });
  base = (await api.listen()).url;
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/);
});

after(async () => {
  await api?.close();
  await t?.cleanup();
});

interface Answer { status: number; headers: Headers; body: any }

async function get(path: string, headers: Record<string, string> = {}, at = base): Promise<Answer> {
  const res = await fetch(`${at}${path}`, { headers });
  const text = await res.text();
  let body: unknown = text;
  try { body = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, body };
}

test('GET /api/v1/flows: every row, newest first', async () => {
  const r = await get('/api/v1/flows');
  assert.equal(r.status, 200);
  assert.equal(r.body.rows.length, SEEDED);
  assert.equal(r.body.nextCursor, undefined);
  const ts = (r.body.rows as FlowRow[]).map((x) => x.ts);
  assert.deepEqual(ts, [...ts].sort((a, b) => b - a));
  // rows come back whole, as stored
  const stored = (r.body.rows as FlowRow[]).find((x) => x.reporter === 'world-host-ssh-audit')!;
  assert.deepEqual(stored, JSON.parse(JSON.stringify(corpus().find((x) => x.reporter === 'world-host-ssh-audit'))));
});

test('every filter over HTTP selects the expected rows', async () => {
  for (const [qs, want] of CASES) {
    const r = await get(`/api/v1/flows?${new URLSearchParams(qs).toString()}`);
    assert.equal(r.status, 200, `${qs}: ${JSON.stringify(r.body)}`);
    assert.deepEqual(names(r.body.rows), want, qs);
  }
  // relative times count back from now: everything is from about an hour ago
  assert.equal((await get('/api/v1/flows?since=2h')).body.rows.length, SEEDED);
  assert.equal((await get('/api/v1/flows?since=30m')).body.rows.length, 0);
  assert.equal((await get('/api/v1/flows?until=30m')).body.rows.length, SEEDED);
});

test('cursor pagination: pages of `limit`, newest first, no row twice, none skipped', async () => {
  const seen: FlowRow[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const r = await get(`/api/v1/flows?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    assert.equal(r.status, 200);
    assert.ok(r.body.rows.length <= 3);
    seen.push(...r.body.rows);
    cursor = r.body.nextCursor;
    pages++;
  } while (cursor);
  assert.equal(pages, 3);
  assert.deepEqual(seen.map((x) => x.reporter), corpus().sort((a, b) => b.ts - a.ts).map((x) => x.reporter));
  // a cursor the store did not make is the caller's mistake
  const bad = await get('/api/v1/flows?cursor=bm90LWEtY3Vyc29y');
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.parameter, 'cursor');
});

test('bad parameters: 400, JSON, naming the parameter', async () => {
  const cases: [string, string, RegExp][] = [
    ['/api/v1/flows?foo=1', 'foo', /unknown parameter "foo"/],
    ['/api/v1/flows?label=a%3D%3Db', 'label', /is not a label match/],
    ['/api/v1/flows?src_label=-x', 'src_label', /is not a label match/],
    ['/api/v1/flows?dst_label=!', 'dst_label', /is not a label match/],
    ['/api/v1/flows?since=yesterday', 'since', /is not a time/],
    ['/api/v1/flows?until=2026-02-30T00:00:00Z', 'until', /is not a time/],
    ['/api/v1/flows?since=1h&until=2h', 'until', /is not after since/],
    ['/api/v1/flows?limit=0', 'limit', /out of range/],
    ['/api/v1/flows?limit=10001', 'limit', /out of range/],
    ['/api/v1/flows?limit=1&limit=2', 'limit', /more than once/],
    ['/api/v1/flows?verdict=dropped', 'verdict', /is not a verdict/],
    ['/api/v1/flows?protocol=gre', 'protocol', /is not a protocol/],
    ['/api/v1/flows?port=70000', 'port', /is not a port number/],
    ['/api/v1/flows?dst_ip=1.2.3', 'dst_ip', /is not an IPv4 or IPv6 address/],
    ['/api/v1/flows?src_cidr=1.2.3.4%2F40', 'src_cidr', /is not a CIDR prefix/],
    ['/api/v1/flows?namespace[]=a', 'namespace[]', /unknown parameter/],
    ['/api/v1/flows?label[key]=a', 'label[key]', /unknown parameter/],
    ['/api/v1/flows/summary?group_by=secret', 'group_by', /is not a group key/],
    ['/api/v1/flows/summary?cursor=abc', 'cursor', /unknown parameter/],
    ['/api/v1/flows/stream?limit=1', 'limit', /unknown parameter/],
    ['/api/v1/stats?x=1', 'x', /unknown parameter/],
  ];
  for (const [path, parameter, message] of cases) {
    const r = await get(path);
    assert.equal(r.status, 400, path);
    assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    assert.equal(r.body.error.parameter, parameter, path);
    assert.match(r.body.error.message, message, path);
  }
});

test('SQL injection attempts in every filter: 400 or no rows, never executed; the table keeps its rows', async () => {
  const attempts = [
    "' OR 1=1 --", "api' OR '1'='1", "api'; DROP TABLE flows; --", 'api) OR (1=1', '{p0:String}', "x'); TRUNCATE TABLE flows; --",
    '1 UNION SELECT name FROM system.tables', 'SLEEP(3)', "') OR sleep(3) OR ('", '\\', '%', '_', '../../etc/passwd', 'api\u0000', 'a\nOR 1',
    "app=x' OR '1'='1", "!app' OR 1=1 --", "10.0.0.1' OR 1=1 --", '10.0.0.0/8) OR (1=1', '8080 OR 1=1', 'tcp; DROP TABLE flows',
  ];
  const before = await t.store.count();
  assert.equal(before, SEEDED);
  let refused = 0;
  for (const name of [...FILTER_PARAMETERS, 'limit', 'cursor']) {
    for (const value of attempts) {
      const started = Date.now();
      const r = await get(`/api/v1/flows?${new URLSearchParams([[name, value]]).toString()}`);
      assert.ok(Date.now() - started < 2500, `${name}=${value} took too long: did something sleep?`);
      if (r.status === 400) {
        assert.equal(r.body.error.parameter, name, `${name}=${value}`);
        refused++;
      } else {
        assert.equal(r.status, 200, `${name}=${JSON.stringify(value)}: ${JSON.stringify(r.body)}`);
        assert.deepEqual(r.body.rows, [], `${name}=${JSON.stringify(value)} matched rows`);
      }
    }
  }
  assert.ok(refused > 0);
  for (const value of attempts) {
    const r = await get(`/api/v1/flows/summary?${new URLSearchParams([['group_by', value]]).toString()}`);
    assert.equal(r.status, 400, `group_by=${value}`);
    assert.equal(r.body.error.parameter, 'group_by');
  }
  // the table is there, with every row
  assert.equal(await t.store.count(), SEEDED);
  assert.equal((await get('/api/v1/flows')).body.rows.length, SEEDED);
});

test('summary: counts, packets and bytes per group, top talkers first, totals', async () => {
  const r = await get('/api/v1/flows/summary?group_by=verdict');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.groupBy, ['verdict']);
  const byVerdict = Object.fromEntries((r.body.groups as { key: { verdict: string }; flows: number }[]).map((g) => [g.key.verdict, g.flows]));
  assert.deepEqual(byVerdict, { allowed: 4, denied: 2, audit: 1, '': 1 });
  assert.deepEqual(r.body.total, { flows: SEEDED, packets: 30, bytes: 1800 });
  const bytes = (r.body.groups as { bytes: number }[]).map((g) => g.bytes);
  assert.deepEqual(bytes, [...bytes].sort((a, b) => b - a));
  const top = await get('/api/v1/flows/summary?group_by=src_namespace,src_pod,dst_namespace,dst_pod,dst_port,protocol&limit=2&verdict=allowed');
  assert.equal(top.status, 200);
  assert.equal(top.body.groups.length, 2);
  assert.deepEqual(Object.keys(top.body.groups[0].key), ['src_namespace', 'src_pod', 'dst_namespace', 'dst_pod', 'dst_port', 'protocol']);
  assert.equal(typeof top.body.groups[0].key.dst_port, 'number');
  const defaults = await get('/api/v1/flows/summary');
  assert.equal(defaults.status, 200);
  assert.ok(defaults.body.groups.length > 0);
});

test('health: /healthz always, /readyz asks the store', async () => {
  assert.deepEqual((await get('/healthz')).body, { status: 'ok' });
  assert.deepEqual((await get('/readyz')).body, { status: 'ready' });
  // the same store, except that it no longer answers pings
  const failing = createApiServer({ store: { queryFlows: (q) => t.store.queryFlows(q), summary: (f, g, l) => t.store.summary(f, g, l), ping: () => Promise.reject(new Error('connection refused')) }, port: 0 });
  const { url } = await failing.listen();
  try {
    const r = await get('/readyz', {}, url);
    assert.equal(r.status, 503);
    assert.match(r.body.error.message, /store not ready: connection refused/);
  } finally {
    await failing.close();
  }
  const missing = await get('/api/v1/nothing');
  assert.equal(missing.status, 404);
  assert.match(missing.body.error.message, /no such endpoint: GET \/api\/v1\/nothing/);
  const stats = await get('/api/v1/stats');
  assert.equal(stats.status, 404);
});

test('a token that no Authorization header could carry is refused at start', () => {
  for (const token of ['', 'two words', 'tab\there', 'caf\u00e9']) {
    assert.throws(() => createApiServer({ store: t.store, port: 0, token }), /token must be printable ASCII/, JSON.stringify(token));
  }
});

test('bearer token: 401 with WWW-Authenticate without it or with a wrong one; probes stay open', async () => {
  const secured = createApiServer({ store: t.store, port: 0, token: 's3cret-token', stats: () => ({ rowsWritten: 5 }) });
  const { url } = await secured.listen();
  try {
    for (const path of ['/api/v1/flows', '/api/v1/flows/summary', '/api/v1/flows/stream', '/api/v1/openapi.json', '/api/v1/stats', '/api/v1/nothing',
      '/API/V1/FLOWS', '/api/v1/flows/', '/api/v1/flows/?verdict=denied', '/api/./v1/flows', '/x/../api/v1/flows']) {
      const none = await get(path, {}, url);
      assert.equal(none.status, 401, path);
      assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="weir"');
      assert.match(none.body.error.message, /authentication required/);
      const wrong = await get(path, { Authorization: 'Bearer s3cret-tokeN' }, url);
      assert.equal(wrong.status, 401, path);
      assert.equal(wrong.headers.get('www-authenticate'), 'Bearer realm="weir", error="invalid_token"');
      assert.equal((await get(path, { Authorization: 'Basic czNjcmV0LXRva2Vu' }, url)).status, 401);
    }
    const ok = await get('/api/v1/flows?verdict=denied', { Authorization: 'Bearer s3cret-token' }, url);
    assert.equal(ok.status, 200);
    assert.deepEqual(names(ok.body.rows), ['debug-orders-denied', 'icmp-denied']);
    assert.deepEqual((await get('/api/v1/stats', { Authorization: 'Bearer s3cret-token' }, url)).body, { rowsWritten: 5 });
    // a bad parameter with a good token is still a 400, and without a token a 401 (nothing is parsed first)
    assert.equal((await get('/api/v1/flows?foo=1', { Authorization: 'Bearer s3cret-token' }, url)).status, 400);
    assert.equal((await get('/api/v1/flows?foo=1', {}, url)).status, 401);
    assert.equal((await get('/healthz', {}, url)).status, 200);
    assert.equal((await get('/readyz', {}, url)).status, 200);
  } finally {
    await secured.close();
  }
});

/** An SSE client: collects `flow` events. */
function openStream(url: string, headers: Record<string, string> = {}): Promise<{ rows: FlowRow[]; raw: () => string; close(): void; waitFor(n: number, ms?: number): Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Accept: 'text/event-stream', ...headers } }, (res) => {
      if (res.statusCode !== 200) { reject(new Error(`stream: ${res.statusCode}`)); return; }
      assert.match(res.headers['content-type'] ?? '', /^text\/event-stream/);
      const rows: FlowRow[] = [];
      let text = '';
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const lines = block.split('\n');
          if (lines.includes('event: flow')) rows.push(JSON.parse(lines.find((l) => l.startsWith('data: '))!.slice(6)) as FlowRow);
        }
      });
      res.once('readable', () => {});
      resolve({
        rows,
        raw: () => text,
        close: () => req.destroy(),
        async waitFor(n, ms = 5000) {
          const deadline = Date.now() + ms;
          while (rows.length < n) {
            if (Date.now() > deadline) throw new Error(`stream: ${rows.length} of ${n} rows after ${ms} ms; got ${text}`);
            await new Promise((r) => setTimeout(r, 20));
          }
        },
      });
    });
    req.on('error', reject);
  });
}

async function waitUntil(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('stream: published rows that match the filter arrive, the others do not', async () => {
  const s = await openStream(`${base}/api/v1/flows/stream?verdict=denied&namespace=api&src_label=app%3Ddebug`);
  try {
    await waitUntil(() => api.streams === 1, 'the stream to register');
    const now = Date.now();
    const match = row({ reporter: 'live-match', ts: now, kind: 'denied', verdict: 'denied', src: { namespace: 'ops', pod: 'debug', labels: { app: 'debug' } } });
    const wrongVerdict = row({ reporter: 'live-allowed', ts: now, src: { namespace: 'ops', pod: 'debug', labels: { app: 'debug' } } });
    const wrongLabel = row({ reporter: 'live-other-label', ts: now, kind: 'denied', verdict: 'denied', src: { namespace: 'ops', pod: 'x', labels: { app: 'other' } } });
    api.publish([wrongVerdict, match, wrongLabel]);
    api.publish([wrongLabel]);
    api.publish([{ ...match, reporter: 'live-match-2' }]);
    await s.waitFor(2);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(s.rows.map((r) => r.reporter), ['live-match', 'live-match-2']);
    assert.deepEqual(s.rows[0], JSON.parse(JSON.stringify(match)));
  } finally {
    s.close();
  }
  await waitUntil(() => api.streams === 0, 'the closed stream to go');
  // a bad filter is refused before the stream opens
  const bad = await get('/api/v1/flows/stream?verdict=dropped');
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.parameter, 'verdict');
});

test('stream without an agent: polls the store for rows newer than the last seen', async () => {
  const polling = createApiServer({ store: t.store, port: 0, pollIntervalMs: 50 });
  const { url } = await polling.listen();
  const s = await openStream(`${url}/api/v1/flows/stream?dst_namespace=api&verdict=denied`);
  try {
    await waitUntil(() => polling.streams === 1, 'the stream to register');
    await new Promise((r) => setTimeout(r, 150));
    // the seeded rows are older than the stream: not sent
    assert.equal(s.rows.length, 0);
    const now = Date.now();
    await t.store.insert([
      row({ reporter: 'polled-match', ts: now, kind: 'denied', verdict: 'denied' }),
      row({ reporter: 'polled-other', ts: now, kind: 'denied', verdict: 'denied', dst: { namespace: 'web' } }),
    ], 'poll-1');
    await s.waitFor(1);
    await t.store.insert([row({ reporter: 'polled-match-2', ts: now + 1, kind: 'denied', verdict: 'denied' })], 'poll-2');
    await s.waitFor(2);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(s.rows.map((r) => r.reporter), ['polled-match', 'polled-match-2']);
  } finally {
    s.close();
    await polling.close();
    // the rows this test added
    await t.store.client.command({ query: "DELETE FROM flows WHERE reporter LIKE 'polled-%'" }).catch(() => {});
  }
});

test('close() ends open streams and is safe twice', async () => {
  const server = createApiServer({ store: t.store, port: 0 });
  const { url } = await server.listen();
  const s = await openStream(`${url}/api/v1/flows/stream`);
  await waitUntil(() => server.streams === 1, 'the stream to register');
  await server.close();
  await server.close();
  assert.equal(server.streams, 0);
  s.close();
});

test('OpenAPI 3.1: every route and every parameter the server takes is documented', async () => {
  const r = await get('/api/v1/openapi.json');
  assert.equal(r.status, 200);
  const doc = r.body as { openapi: string; paths: Record<string, Record<string, { parameters?: { name: string; in: string }[]; responses: Record<string, unknown> }>> };
  assert.deepEqual(doc, JSON.parse(JSON.stringify(openApiDocument())));
  assert.equal(doc.openapi, '3.1.0');
  // the routes express has
  const routes = (api.app.router.stack as { route?: { path: string; methods: Record<string, boolean> } }[])
    .filter((l) => l.route).map((l) => ({ path: l.route!.path, methods: Object.keys(l.route!.methods) }));
  assert.ok(routes.length >= 7);
  for (const { path, methods } of routes) {
    for (const m of methods) assert.ok(doc.paths[path]?.[m], `${m.toUpperCase()} ${path} is not in the OpenAPI document`);
  }
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const m of Object.keys(ops)) assert.ok(routes.some((x) => x.path === path && x.methods.includes(m)), `documented ${m} ${path} is not served`);
  }
  const documented = (path: string) => (doc.paths[path]!.get!.parameters ?? []).map((p) => p.name).sort();
  assert.deepEqual(documented('/api/v1/flows'), [...FLOWS_PARAMETERS].sort());
  assert.deepEqual(documented('/api/v1/flows/summary'), [...SUMMARY_PARAMETERS].sort());
  assert.deepEqual(documented('/api/v1/flows/stream'), [...STREAM_PARAMETERS].sort());
  for (const path of ['/healthz', '/readyz', '/api/v1/openapi.json', '/api/v1/stats']) assert.deepEqual(documented(path), []);
  // every 4xx the API can give is described where it can happen
  for (const path of ['/api/v1/flows', '/api/v1/flows/summary', '/api/v1/flows/stream']) {
    for (const code of ['200', '400', '401']) assert.ok(doc.paths[path]!.get!.responses[code], `${path} ${code}`);
  }
});

test('store field names map to query parameters', () => {
  assert.equal(parameterOfField('either.ip[0]'), 'ip');
  assert.equal(parameterOfField('src.labels[2]'), 'src_label');
  assert.equal(parameterOfField('dst.cidr[1]'), 'dst_cidr');
  assert.equal(parameterOfField('cursor'), 'cursor');
  assert.equal(parameterOfField('group_by[0]'), 'group_by');
  assert.equal(parameterOfField('port[3]'), 'port');
});

void T0;
