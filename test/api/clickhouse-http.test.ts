// The ClickHouse-compatible endpoint over real HTTP on 127.0.0.1 (ephemeral port), in front of a real
// store (embedded chDB in a temp directory) seeded with the API fixture corpus, read by the real
// @clickhouse/client over HTTP and by plain fetch for the protocol's edges.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import express from 'express';
import { createClient, ClickHouseError, ClickHouseLogLevel, type ClickHouseClient } from '@clickhouse/client';
import { createClickHouseEndpoint, type ClickHouseEndpoint } from '../../src/api/clickhouse-http.js';
import { Authenticator, safeEqual } from '../../src/api/clickhouse-auth.js';
import { checkReadOnly, paramValue, stripFormat, unescapeTsv, type ReadPolicy } from '../../src/api/clickhouse-sql.js';
import { summarize } from '../../src/store/summary.js';
import { buildWhere } from '../../src/store/sql.js';
import { corpus, tempStore, type TempStore } from './fixtures.js';

const USER = 'grafana';
const PASSWORD = 'flows-read-only-1';
const TOKEN = 'tok-3c1d9a';
const PREFIX = '/clickhouse';
const SEEDED = corpus().length;

let t: TempStore;
let endpoint: ClickHouseEndpoint;
let server: http.Server;
let base: string;
let ch: ClickHouseClient;
const logged: string[] = [];
// refusals are what these tests expect: the client need not print each one
const QUIET = { level: ClickHouseLogLevel.OFF };

before(async () => {
  t = await tempStore();
  endpoint = createClickHouseEndpoint({
    store: t.store,
    credentials: { user: USER, password: PASSWORD },
    token: TOKEN,
    limits: { maxExecutionSeconds: 1, maxResultRows: 1000, maxQueryBytes: 16 * 1024, maxBodyBytes: 32 * 1024, maxRowsToRead: 2_000_000_000 },
    log: (l) => logged.push(l),
  });
  const app = express();
  app.use(PREFIX, endpoint.router);
  server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  ch = createClient({ url: base, pathname: PREFIX, username: USER, password: PASSWORD, request_timeout: 20_000, log: QUIET });
});

after(async () => {
  await ch?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await t?.cleanup();
});

/** The flows table still holds every seeded row (checked on the store directly, not through us). */
async function flowsIntact(): Promise<void> {
  assert.equal(await t.store.count(), SEEDED);
}

async function refused(p: Promise<unknown>, code: number, type: string, what: string): Promise<ClickHouseError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof ClickHouseError, `${what}: expected a ClickHouseError, got ${err === undefined ? 'success' : String(err)}`);
  assert.equal(err.code, String(code), `${what}: ${err.message}`);
  assert.equal(err.type, type, `${what}: ${err.message}`);
  assert.doesNotMatch(err.message, /\n\s+at |Stack trace/, `${what}: no stack trace`);
  return err;
}

interface Raw { status: number; headers: Headers; text: string; bytes: Buffer }

async function raw(path: string, init: RequestInit = {}, auth = true): Promise<Raw> {
  const headers = new Headers(init.headers);
  if (auth && !headers.has('authorization')) headers.set('authorization', `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`);
  const res = await fetch(`${base}${PREFIX}${path}`, { ...init, headers });
  const bytes = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, text: bytes.toString('utf8'), bytes };
}

test('ping: GET /ping and GET / without a query answer Ok.', async () => {
  assert.equal((await ch.ping()).success, true);
  const r = await raw('/ping', {}, false);
  assert.equal(r.status, 200);
  assert.equal(r.text, 'Ok.\n');
  assert.equal((await raw('/', {}, false)).text, 'Ok.\n');
  // a query needs credentials, even an empty one
  assert.equal((await raw('/?query=', {}, false)).status, 401);
  const empty = await raw('/', { method: 'POST', body: '' });
  assert.equal(empty.status, 400);
  assert.match(empty.text, /Empty query/);
});

test('query with JSONEachRow reads the flows table', async () => {
  const rs = await ch.query({ query: 'SELECT reporter, src_namespace FROM flows ORDER BY ts', format: 'JSONEachRow' });
  const rows = await rs.json<{ reporter: string; src_namespace: string }>();
  assert.deepEqual(rows.map((r) => r.reporter), corpus().sort((a, b) => a.ts - b.ts).map((r) => r.reporter));
  assert.equal(rows[1]!.src_namespace, 'ops');
  // the response says what it is, as a ClickHouse server does
  assert.equal(rs.response_headers['x-clickhouse-format'], 'JSONEachRow');
  assert.equal(rs.response_headers['x-clickhouse-timezone'], 'UTC');
  assert.equal(rs.response_headers['x-clickhouse-server-display-name'], 'weir');
  assert.equal(rs.response_headers['x-clickhouse-query-id'], rs.query_id);
  const summary = JSON.parse(String(rs.response_headers['x-clickhouse-summary']));
  assert.equal(summary.read_rows, String(SEEDED));
});

test('query_params are bound by the engine: strings with quotes and backslashes, arrays, numbers, dates', async () => {
  const tricky = "it's a \\ back\tslash\n'; DROP TABLE flows; --";
  const rs = await ch.query({
    query: 'SELECT {s:String} AS s, {a:Array(String)} AS a, {n:UInt64} + 1 AS n, {d:DateTime64(3, \'UTC\')} AS d, {m:Nullable(String)} AS m',
    query_params: { s: tricky, a: ['x', "y'z", 'back\\slash'], n: 41, d: new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6)), m: null },
    format: 'JSONEachRow',
  });
  const [row] = await rs.json<{ s: string; a: string[]; n: string; d: string; m: string | null }>();
  assert.equal(row!.s, tricky);
  assert.deepEqual(row!.a, ['x', "y'z", 'back\\slash']);
  assert.equal(Number(row!.n), 42);
  assert.equal(row!.d, '2026-01-02 03:04:05.006');
  assert.equal(row!.m, null);
  // a filter of the store's own SQL (buildWhere), parameters and all, selects what the store selects
  const where = buildWhere({ either: { namespace: ['api'] }, verdict: ['denied'] });
  const viaEndpoint = await (await ch.query({ query: `SELECT reporter FROM flows WHERE ${where.sql} ORDER BY reporter`, query_params: where.params, format: 'JSONEachRow' })).json<{ reporter: string }>();
  const direct = await (await t.store.client.query({ query: `SELECT reporter FROM flows WHERE ${where.sql} ORDER BY reporter`, query_params: where.params, format: 'JSONEachRow' })).json<{ reporter: string }>();
  assert.deepEqual(viaEndpoint, direct);
  assert.ok(viaEndpoint.length > 0);
});

test("the store's own summary code reads through the endpoint as it reads the store", async () => {
  const filter = { either: { namespace: ['api'] } };
  const direct = await t.store.summary(filter, ['src_namespace', 'verdict'], 10);
  const viaEndpoint = await summarize(ch, filter, ['src_namespace', 'verdict'], 10);
  assert.deepEqual(viaEndpoint, direct);
  assert.ok(direct.groups.length > 0);
});

test('what a schema browser reads: databases, tables, columns, DESCRIBE, SHOW TABLES, EXISTS, version', async () => {
  const dbs = await (await ch.query({ query: 'SELECT name FROM system.databases ORDER BY name', format: 'JSONEachRow' })).json<{ name: string }>();
  assert.ok(dbs.some((d) => d.name === 'default'));
  const tables = await (await ch.query({ query: "SELECT name FROM system.tables WHERE database = {db:String} AND name LIKE 'flows%' ORDER BY name", query_params: { db: 'default' }, format: 'JSONEachRow' })).json<{ name: string }>();
  for (const name of ['flows', 'flows_1h', 'flows_1m']) assert.ok(tables.some((x) => x.name === name), name);
  const cols = await (await ch.query({ query: "SELECT name, type FROM system.columns WHERE table = 'flows' AND name = 'ts'", format: 'JSONEachRow' })).json<{ type: string }>();
  assert.equal(cols[0]!.type, "DateTime64(3, 'UTC')");
  const desc = await (await ch.query({ query: 'DESCRIBE TABLE flows', format: 'JSONEachRow' })).json<{ name: string }>();
  assert.ok(desc.some((c) => c.name === 'src_namespace'));
  const show = await (await ch.query({ query: 'SHOW TABLES', format: 'JSONEachRow' })).json<{ name: string }>();
  assert.ok(show.some((x) => x.name === 'flows_1m'));
  const exists = await (await ch.query({ query: 'EXISTS TABLE flows', format: 'JSONEachRow' })).json<{ result: number }>();
  assert.equal(Number(exists[0]!.result), 1);
  const version = await (await ch.query({ query: 'SELECT version() AS v, timezone() AS tz', format: 'JSONEachRow' })).json<{ v: string; tz: string }>();
  assert.match(version[0]!.v, /^\d+\.\d+/);
  assert.equal(version[0]!.tz, 'UTC');
  // CTEs, unions, subqueries, joins of allowed tables and allowed table functions
  const cte = await (await ch.query({
    query: `SELECT * FROM (
        WITH d AS (SELECT src_namespace AS ns, count() AS c FROM flows GROUP BY ns)
        SELECT ns, c FROM d WHERE ns IN (SELECT src_namespace FROM flows WHERE verdict = 'denied')
        UNION ALL SELECT 'n' AS ns, toUInt64(count()) AS c FROM numbers(3)
        UNION ALL SELECT 'w', toUInt64(count()) FROM flows AS f JOIN system.one AS o ON 1 WHERE f.src_namespace = 'web'
      ) ORDER BY ns`,
    format: 'JSONEachRow',
  })).json<{ ns: string; c: string }>();
  const rowsOf = (ns: string) => corpus().filter((x) => x.src.namespace === ns).length;
  const denied = [...new Set(corpus().filter((x) => x.verdict === 'denied').map((x) => x.src.namespace))];
  const want: Array<[string, number]> = [['n', 3], ['w', rowsOf('web')], ...denied.map((ns): [string, number] => [ns, rowsOf(ns)])];
  assert.deepEqual(cte.map((r) => [r.ns, Number(r.c)]), want.sort((a, b) => a[0].localeCompare(b[0])));
});

test('the query in the URL, in the body, or both (joined by a newline); FORMAT in the query or default_format', async () => {
  const inUrl = await raw(`/?query=${encodeURIComponent('SELECT count() FROM flows')}`);
  assert.equal(inUrl.status, 200, inUrl.text);
  assert.equal(inUrl.text, `${SEEDED}\n`);
  assert.equal(inUrl.headers.get('x-clickhouse-format'), 'TabSeparated');
  const both = await raw(`/?query=${encodeURIComponent('SELECT count() AS n')}&default_format=JSONEachRow&param_v=denied`, { method: 'POST', body: 'FROM flows WHERE verdict = {v:String}' });
  assert.equal(both.status, 200, both.text);
  assert.equal(Number(JSON.parse(both.text).n), corpus().filter((r) => r.verdict === 'denied').length);
  // the query's own FORMAT wins over default_format, and is put after our SETTINGS
  const own = await raw('/?default_format=JSONEachRow', { method: 'POST', body: 'SELECT 1 AS one FORMAT CSVWithNames' });
  assert.equal(own.status, 200, own.text);
  assert.equal(own.text, '"one"\n1\n');
  assert.equal(own.headers.get('x-clickhouse-format'), 'CSVWithNames');
  // a parameter the query names but the request lacks: the engine's error, as a 400
  const missing = await raw('/', { method: 'POST', body: 'SELECT {nope:String}' });
  assert.equal(missing.status, 400, missing.text);
  assert.equal(missing.headers.get('x-clickhouse-exception-code'), '456');
  assert.match(missing.text, /^Code: 456\. DB::Exception: .*\(UNKNOWN_QUERY_PARAMETER\) \(version [^)]+\)\n$/s);
});

/** A minimal decoder of ClickHouse's Native format: enough for UInt64 and String columns. */
function decodeNative(buf: Buffer): Array<{ name: string; type: string; values: unknown[] }> {
  let off = 0;
  const varint = (): number => {
    let v = 0, shift = 0, b: number;
    do { b = buf[off++]!; v += (b & 0x7f) * 2 ** shift; shift += 7; } while (b & 0x80);
    return v;
  };
  const str = (): string => { const n = varint(); const s = buf.toString('utf8', off, off + n); off += n; return s; };
  const out: Array<{ name: string; type: string; values: unknown[] }> = [];
  while (off < buf.length) {
    const ncols = varint();
    const nrows = varint();
    for (let c = 0; c < ncols; c++) {
      const name = str();
      const type = str();
      let col = out[c];
      if (!col) { col = { name, type, values: [] }; out.push(col); }
      for (let r = 0; r < nrows; r++) {
        if (type === 'UInt64') { col.values.push(buf.readBigUInt64LE(off)); off += 8; }
        else if (type === 'String') col.values.push(str());
        else throw new Error(`decodeNative: type ${type} not handled`);
      }
    }
  }
  return out;
}

test('Native format: the bytes are the store\'s own, and decode', async () => {
  const query = 'SELECT toUInt64(packets_fwd + packets_rev) AS packets, CAST(reporter AS String) AS reporter FROM flows ORDER BY ts';
  // as clickhouse-go asks: the query as the body, default_format=Native in the URL
  const r = await raw('/?default_format=Native', { method: 'POST', body: query });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('x-clickhouse-format'), 'Native');
  assert.equal(r.headers.get('content-type'), 'application/octet-stream');
  const direct = await t.store.client.exec({ query: `${query} FORMAT Native` });
  const chunks: Buffer[] = [];
  for await (const c of direct.stream) chunks.push(c as Buffer);
  assert.deepEqual(r.bytes, Buffer.concat(chunks));
  const cols = decodeNative(r.bytes);
  assert.deepEqual(cols.map((c) => [c.name, c.type]), [['packets', 'UInt64'], ['reporter', 'String']]);
  const sorted = corpus().sort((a, b) => a.ts - b.ts);
  assert.deepEqual(cols[1]!.values, sorted.map((x) => x.reporter));
  assert.deepEqual(cols[0]!.values, sorted.map((x) => BigInt(x.packetsFwd + x.packetsRev)));
});

test('HTTP compression: a gzip response when asked; a gzip body is read; ClickHouse block compression is refused', async () => {
  const r = await raw('/?enable_http_compression=1', { method: 'POST', body: 'SELECT count() FROM flows', headers: { 'accept-encoding': 'gzip' } });
  assert.equal(r.status, 200, r.text);
  // fetch decompresses for us; the header says it was compressed
  assert.equal(r.headers.get('content-encoding'), 'gzip');
  assert.equal(r.text, `${SEEDED}\n`);
  const body = zlib.gzipSync('SELECT count() FROM flows WHERE src_namespace = \'web\'');
  const g = await raw('/', { method: 'POST', body, headers: { 'content-encoding': 'gzip' } });
  assert.equal(g.status, 200, g.text);
  assert.equal(Number(g.text), corpus().filter((x) => x.src.namespace === 'web').length);
  const c = await raw('/?compress=1', { method: 'POST', body: 'SELECT 1' });
  assert.equal(c.status, 501);
  assert.match(c.text, /Code: 48\..*block compression is not supported.*\(NOT_IMPLEMENTED\)/s);
  const z = await raw('/', { method: 'POST', body: 'SELECT 1', headers: { 'content-encoding': 'zstd' } });
  assert.equal(z.status, 415);
  // a compressed bomb is cut at the body limit, not inflated whole
  const bomb = zlib.gzipSync(Buffer.alloc(10 * 1024 * 1024, 0x20));
  const b = await raw('/', { method: 'POST', body: bomb, headers: { 'content-encoding': 'gzip' } });
  assert.equal(b.status, 413);
  assert.equal(b.headers.get('x-clickhouse-exception-code'), '393');
});

test('writes and DDL are refused with READONLY, and the rows stay', async () => {
  const statements = [
    "INSERT INTO flows (reporter) VALUES ('x')",
    'ALTER TABLE flows DELETE WHERE 1',
    'ALTER TABLE flows DROP COLUMN reporter',
    'DROP TABLE flows',
    'TRUNCATE TABLE flows',
    'CREATE TABLE evil (x UInt8) ENGINE = Memory',
    'CREATE TEMPORARY TABLE evil (x UInt8)',
    'SET readonly = 0',
    'SYSTEM FLUSH LOGS',
    'SYSTEM DROP MARK CACHE',
    'KILL QUERY WHERE 1',
    'OPTIMIZE TABLE flows FINAL',
    'RENAME TABLE flows TO flows_old',
    'GRANT SELECT ON *.* TO default',
    'EXPLAIN SELECT 1',
    'SHOW SETTINGS LIKE \'%\'',
    'SHOW USERS',
    'SHOW CREATE TABLE flows',
    'DELETE FROM flows WHERE 1',
  ];
  for (const query of statements) {
    await refused(ch.command({ query }), 164, 'READONLY', query);
  }
  await flowsIntact();
});

test('a second statement is refused before anything runs', async () => {
  for (const query of ['SELECT 1; DROP TABLE flows', 'SELECT 1;DROP TABLE flows;', "SELECT 'a'; INSERT INTO flows (reporter) VALUES ('x')"]) {
    const err = await refused(ch.command({ query }), 62, 'SYNTAX_ERROR', query);
    assert.match(err.message, /Multi-statements are not allowed/);
  }
  // a semicolon inside a literal or a comment is no second statement
  const ok = await (await ch.query({ query: "SELECT 'a;b' AS s -- ; DROP TABLE flows\n", format: 'JSONEachRow' })).json<{ s: string }>();
  assert.deepEqual(ok, [{ s: 'a;b' }]);
  await flowsIntact();
});

test('files, URLs, other servers and tables off the list are refused with ACCESS_DENIED', async () => {
  const queries = [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/passwd')",
    "SELECT 1 WHERE 'root' IN file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1', 'default', 'flows')",
    "SELECT * FROM s3('http://127.0.0.1:1/b/k', 'CSV')",
    "SELECT * FROM executable('id', 'TSV', 'x String')",
    "SELECT * FROM merge('default', '.*')",
    'SELECT * FROM system.users',
    'SELECT * FROM system.settings',
    'SELECT * FROM system.processes',
    'SELECT name FROM system.tables WHERE name IN (SELECT name FROM system.users)',
    'SELECT 1 FROM flows WHERE reporter IN system.users',
    'SELECT * FROM default.weir_schema_migrations',
    'SELECT * FROM weir_schema_migrations',
    'SELECT * FROM information_schema.tables',
    'DESCRIBE TABLE system.users',
    "DESCRIBE file('/etc/passwd', 'LineAsString')",
    "SELECT dictGet('d', 'x', 1)",
    "SELECT joinGet('flows', 'reporter', 1)",
  ];
  for (const query of queries) await refused(ch.query({ query, format: 'JSONEachRow' }), 497, 'ACCESS_DENIED', query);
  // a table named by a parameter is checked after the engine substitutes it
  await refused(ch.query({ query: 'SELECT * FROM {t:Identifier}', query_params: { t: 'system.users' }, format: 'JSONEachRow' }), 497, 'ACCESS_DENIED', '{t:Identifier} = system.users');
  const named = await (await ch.query({ query: 'SELECT count() AS n FROM {t:Identifier}', query_params: { t: 'flows' }, format: 'JSONEachRow' })).json<{ n: number }>();
  assert.equal(Number(named[0]!.n), SEEDED);
  await flowsIntact();
});

test('the query may not bring its own settings or write a file', async () => {
  await refused(ch.query({ query: 'SELECT getSetting(\'readonly\') SETTINGS readonly = 0', format: 'JSONEachRow' }), 164, 'READONLY', 'SETTINGS readonly = 0');
  await refused(ch.query({ query: 'SELECT * FROM flows SETTINGS max_result_rows = 0', format: 'JSONEachRow' }), 164, 'READONLY', 'SETTINGS max_result_rows');
  await refused(ch.query({ query: 'SELECT 1 FROM (SELECT 1 SETTINGS max_threads = 64)', format: 'JSONEachRow' }), 164, 'READONLY', 'inner SETTINGS');
  await refused(ch.command({ query: "SELECT 1 INTO OUTFILE '/tmp/weir-ch-http-outfile'" }), 164, 'READONLY', 'INTO OUTFILE');
  // settings as URL parameters: output settings pass, limits only go down, the rest is refused
  await refused(ch.query({ query: 'SELECT 1', format: 'JSONEachRow', clickhouse_settings: { readonly: '0' } }), 164, 'READONLY', 'readonly=0 in the URL');
  await refused(ch.query({ query: 'SELECT 1', format: 'JSONEachRow', clickhouse_settings: { allow_ddl: 1 } }), 164, 'READONLY', 'allow_ddl in the URL');
  await refused(ch.query({ query: 'SELECT 1', format: 'JSONEachRow', clickhouse_settings: { max_result_rows: '0', max_execution_time: 0 } }).then(async (rs) => {
    // 0 ("no limit") leaves our limits in place: this passes, and the next one shows them
    await rs.json();
    return ch.query({ query: 'SELECT number FROM numbers(5000)', format: 'JSONEachRow', clickhouse_settings: { max_result_rows: '0' } });
  }), 396, 'TOO_MANY_ROWS_OR_BYTES', 'max_result_rows=0 does not lift ours');
  const quoted = await (await ch.query({ query: 'SELECT toUInt64(7) AS n', format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } })).json<{ n: unknown }>();
  assert.deepEqual(quoted, [{ n: 7 }]);
  await refused(ch.query({ query: 'SELECT number FROM numbers(20)', format: 'JSONEachRow', clickhouse_settings: { max_result_rows: '10' } }), 396, 'TOO_MANY_ROWS_OR_BYTES', 'a lower max_result_rows applies');
  const other = await raw('/?database=system', { method: 'POST', body: 'SELECT 1' });
  assert.equal(other.status, 404);
  assert.equal(other.headers.get('x-clickhouse-exception-code'), '81');
  await flowsIntact();
});

test('limits: a giant query is 413, too many rows and a slow query are the engine\'s own errors', async () => {
  const giant = `SELECT ${'1 + '.repeat(10_000)}1`;
  const big = await raw('/', { method: 'POST', body: giant });
  assert.equal(big.status, 413);
  assert.match(big.text, /^Code: 393\. DB::Exception: .*\(QUERY_IS_TOO_LARGE\)/);
  const bigBody = await raw('/', { method: 'POST', body: `SELECT 1 -- ${'x'.repeat(40 * 1024)}` });
  assert.equal(bigBody.status, 413);
  await refused(ch.query({ query: 'SELECT number FROM numbers(5000)', format: 'JSONEachRow' }), 396, 'TOO_MANY_ROWS_OR_BYTES', 'too many rows');
  const start = Date.now();
  await refused(ch.query({ query: 'SELECT count() FROM numbers(1000000000) WHERE cityHash64(number, \'x\') % 7 = 3', format: 'JSONEachRow' }), 159, 'TIMEOUT_EXCEEDED', 'slow query');
  assert.ok(Date.now() - start < 10_000, `the slow query took ${Date.now() - start} ms to be stopped`);
  await flowsIntact();
});

test('authentication: wrong or missing credentials are 401; basic, headers, URL parameters and the bearer token pass', async () => {
  const body = 'SELECT 1';
  const cases: Array<[string, RequestInit, string, number]> = [
    ['none', { method: 'POST', body }, '', 401],
    ['wrong password', { method: 'POST', body, headers: { authorization: `Basic ${Buffer.from(`${USER}:nope`).toString('base64')}` } }, '', 401],
    ['longer wrong password', { method: 'POST', body, headers: { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}-and-more`).toString('base64')}` } }, '', 401],
    ['wrong user', { method: 'POST', body, headers: { authorization: `Basic ${Buffer.from(`default:${PASSWORD}`).toString('base64')}` } }, '', 401],
    ['wrong token', { method: 'POST', body, headers: { authorization: 'Bearer tok-nope' } }, '', 401],
    ['two ways at once', { method: 'POST', body, headers: { authorization: `Bearer ${TOKEN}` } }, `?user=${USER}&password=${PASSWORD}`, 401],
    ['basic', { method: 'POST', body, headers: { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` } }, '', 200],
    ['headers', { method: 'POST', body, headers: { 'x-clickhouse-user': USER, 'x-clickhouse-key': PASSWORD } }, '', 200],
    ['url', { method: 'POST', body }, `?user=${USER}&password=${PASSWORD}`, 200],
    ['bearer', { method: 'POST', body, headers: { authorization: `Bearer ${TOKEN}` } }, '', 200],
  ];
  for (const [what, init, qs, status] of cases) {
    const r = await raw(`/${qs}`, init, false);
    assert.equal(r.status, status, `${what}: ${r.text}`);
    if (status === 401) {
      assert.equal(r.headers.get('x-clickhouse-exception-code'), '516', what);
      assert.match(r.text, /\(AUTHENTICATION_FAILED\)/, what);
      assert.doesNotMatch(r.text, new RegExp(PASSWORD), `${what}: the password is not echoed`);
    } else {
      assert.equal(r.text, '1\n', what);
    }
  }
  // the client parses it, too
  const bad = createClient({ url: base, pathname: PREFIX, username: USER, password: 'wrong-password', log: QUIET });
  try {
    await refused(bad.query({ query: 'SELECT 1', format: 'JSONEachRow' }), 516, 'AUTHENTICATION_FAILED', 'client with a wrong password');
  } finally {
    await bad.close();
  }
  // the comparison is of equal-length digests: inputs of any length compare without throwing
  const digest = (await import('node:crypto')).createHash('sha256').update(PASSWORD).digest();
  assert.equal(safeEqual(PASSWORD, digest), true);
  assert.equal(safeEqual('', digest), false);
  assert.equal(safeEqual(PASSWORD.repeat(100), digest), false);
});

test('the factory refuses to build without credentials unless anonymous access is asked for', () => {
  assert.throws(() => createClickHouseEndpoint({ store: t.store }), /no credentials and no token configured/);
  assert.throws(() => createClickHouseEndpoint({ store: t.store, credentials: { user: 'g', password: 'short' } }), /at least 8 characters/);
  assert.throws(() => createClickHouseEndpoint({ store: t.store, token: 'has space' }), /printable ASCII/);
  assert.throws(() => createClickHouseEndpoint({ store: t.store, token: 'x', limits: { maxResultRows: 0 } }), /limits\.maxResultRows/);
  assert.equal(new Authenticator({ allowAnonymous: true }).anonymous, true);
  // configured credentials win over allowAnonymous
  assert.equal(new Authenticator({ allowAnonymous: true, token: 'abc' }).anonymous, false);
});

test('too many queries at once are refused with 503, not queued', async () => {
  const small = createClickHouseEndpoint({ store: t.store, allowAnonymous: true, limits: { maxConcurrent: 1, maxExecutionSeconds: 3 } });
  const app = express();
  app.use('/', small.router);
  const srv = http.createServer(app);
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/`;
    const slow = fetch(url, { method: 'POST', body: 'SELECT sleep(1)' });
    // wait until the first one is counted
    for (let i = 0; i < 100 && small.running === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(small.running, 1);
    const second = await fetch(url, { method: 'POST', body: 'SELECT 1' });
    assert.equal(second.status, 503);
    assert.equal(second.headers.get('x-clickhouse-exception-code'), '202');
    assert.equal((await slow).status, 200);
    assert.equal(small.running, 0);
  } finally {
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
});

test('no stack trace and no store path in any error; an unknown path is 404', async () => {
  const r = await raw('/', { method: 'POST', body: 'SELECT * FROM flows WHERE no_such_column = 1' });
  assert.equal(r.status, 404);
  assert.match(r.text, /^Code: 47\. DB::Exception: .*\(UNKNOWN_IDENTIFIER\)/s);
  assert.doesNotMatch(r.text, /Stack trace|\n\s+at |\.ts:\d+|\.js:\d+/);
  assert.ok(!r.text.includes(t.dir), 'the data directory is not named');
  const syntax = await raw('/', { method: 'POST', body: 'SELEC 1' });
  assert.equal(syntax.status, 400);
  assert.equal(syntax.headers.get('x-clickhouse-exception-code'), '62');
  assert.doesNotMatch(syntax.text, /formatQuerySingleLine/);
  const nowhere = await raw('/nowhere');
  assert.equal(nowhere.status, 404);
  assert.equal(logged.length, 0, `internal errors logged: ${logged.join('\n')}`);
});

test('the writer still inserts through the shared session after all of the above (no setting leaked into it)', async () => {
  // the endpoint ran everything with readonly = 1 in the queries' own SETTINGS: a session-level
  // SET would have made this insert fail
  await t.store.insert([{ ...corpus()[0]!, reporter: 'after-endpoint' }], 'after-endpoint-batch');
  assert.equal(await t.store.count(), SEEDED + 1);
  const rs = await ch.query({ query: "SELECT count() AS n FROM flows WHERE reporter = 'after-endpoint'", format: 'JSONEachRow' });
  assert.equal(Number((await rs.json<{ n: number }>())[0]!.n), 1);
});

// ---- the parts on their own ---------------------------------------------------------------------

const POLICY: ReadPolicy = {
  database: 'default',
  flowTables: new Set(['flows']),
  qualifiedTables: new Set(['system.one']),
  tableFunctions: new Set(['file', 'numbers', 'url']),
  allowedTableFunctions: new Set(['numbers']),
};

test('checkReadOnly on EXPLAIN AST trees', () => {
  const select = (table: string) => [
    'SelectWithUnionQuery (children 1)', ' ExpressionList (children 1)', '  SelectQuery (children 2)', '   ExpressionList (children 1)', '    Asterisk',
    '   TablesInSelectQuery (children 1)', '    TablesInSelectQueryElement (children 1)', '     TableExpression (children 1)', `      ${table}`,
  ];
  assert.equal(checkReadOnly('SELECT * FROM flows', select('TableIdentifier flows (alias f)'), POLICY), 'select');
  assert.equal(checkReadOnly('SELECT * FROM default.flows', select('TableIdentifier default.flows'), POLICY), 'select');
  assert.equal(checkReadOnly('SELECT * FROM system.one', select('TableIdentifier system.one'), POLICY), 'select');
  assert.throws(() => checkReadOnly('SELECT * FROM system.users', select('TableIdentifier system.users'), POLICY), /system\.users is not allowed/);
  assert.throws(() => checkReadOnly('SELECT * FROM other.flows', select('TableIdentifier other.flows'), POLICY), /other\.flows is not allowed/);
  assert.throws(() => checkReadOnly('SELECT * FROM x', select('TableIdentifier x'), POLICY), /default\.x is not allowed/);
  // a CTE's name is no table
  assert.equal(checkReadOnly('WITH x AS (SELECT 1) SELECT * FROM x', select('TableIdentifier x'), POLICY), 'select');
  assert.throws(() => checkReadOnly('SELECT * FROM file(1)', select('Function file (children 1)'), POLICY), /function file is not allowed/);
  assert.throws(() => checkReadOnly('SELECT * FROM url(1)', select('Function url (children 1)'), POLICY), /url is not allowed/);
  assert.equal(checkReadOnly('SELECT * FROM numbers(1)', select('Function numbers (children 1)'), POLICY), 'select');
  assert.throws(() => checkReadOnly('x', ['InsertQuery   (children 2)', ' Identifier flows'], POLICY), /only SELECT/);
  assert.throws(() => checkReadOnly('SELECT 1', ['SelectWithUnionQuery (children 1)', ' ExpressionList (children 1)', '  SelectQuery (children 1)', '   Set'], POLICY), /SETTINGS clause/);
  assert.throws(() => checkReadOnly('SELECT 1', ['SelectWithUnionQuery (children 2)', ' ExpressionList (children 1)', " Literal '/tmp/x'"], POLICY), /INTO OUTFILE/);
  assert.throws(() => checkReadOnly('SELECT 1', ['SelectWithUnionQuery (children 1)', ' ExpressionList (children 1)', 'SelectWithUnionQuery (children 1)'], POLICY), /exactly one statement/);
  assert.throws(() => checkReadOnly('SHOW SETTINGS', ['ShowTables (children 1)'], POLICY), /only SHOW TABLES and SHOW DATABASES/);
  assert.equal(checkReadOnly('SHOW TABLES FROM system', ['ShowTables (children 1)', ' Identifier system'], POLICY), 'show');
});

test('stripFormat, unescapeTsv and paramValue', () => {
  assert.deepEqual(stripFormat('SELECT 1 FORMAT JSONEachRow'), { sql: 'SELECT 1', format: 'JSONEachRow' });
  assert.deepEqual(stripFormat("SELECT 'x FORMAT JSON'"), { sql: "SELECT 'x FORMAT JSON'" });
  assert.equal(unescapeTsv("a\\'b\\\\c\\td\\x41"), "a'b\\c\tdA");
  assert.equal(paramValue('s', "it\\'s", 'String'), "it's");
  assert.equal(paramValue('n', '\\N', 'Nullable(String)'), null);
  assert.equal(paramValue('a', "['x','y\\'z','b\\\\s']", 'Array(String)'), "['x','y''z','b\\s']");
  assert.throws(() => paramValue('a', "['\\x41']", 'Array(String)'), /param_a: the escape \\x/);
});
