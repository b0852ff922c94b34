// Issue 8, item 6: hostile input to the query API. Every route of the OpenAPI document gets, for
// every parameter it has (and unknown ones), every string of INJECTIONS, more SQL, huge values,
// unicode (RTL, NUL, lone surrogates, invalid UTF-8, emoji), numbers out of range, repeated
// single-valued parameters, and seeded random strings (WEIR_FUZZ_SEED, WEIR_FUZZ_RANDOM). Every
// answer must be 2xx with valid data (flows that match the filter as the in-memory predicate reads
// it) or 4xx with a JSON message naming the parameter; never 5xx, never a stack trace or a path;
// the flows table keeps its rows. Two servers: the agent's (bearer token, /api/v1/stats and
// /metrics beside the API: the one `weir agent` runs) and the API's own listen() without a token.
// Then: auth on every route, the token compared in constant time, request size and time limits.
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { createApiServer, DEFAULT_HTTP_LIMITS, type ApiServer } from '../../src/api/server.js';
import { openApiDocument } from '../../src/api/openapi.js';
import { parseFlowQuery, parseSummaryQuery, parseStreamFilter } from '../../src/api/params.js';
import { rowMatches } from '../../src/api/match.js';
import type { FlowRow } from '../../src/store/row.js';
import type { FlowSource } from '../../src/api/source.js';
import { repoRoot } from '../../src/paths.js';
import { INJECTIONS } from '../store/fixtures.js';
import { corpus, tempStore, type TempStore } from '../api/fixtures.js';
import { installRig, requireRoot, type Rig } from './rig.js';

const SEED = Number(process.env.WEIR_FUZZ_SEED ?? 0x5eed_0008);
const RANDOM_PER_PARAMETER = Number(process.env.WEIR_FUZZ_RANDOM ?? 3); // docs/reliability.md's figure: 8
const TOKEN = 'rel-fuzz-token-7f3a9c';
const SEEDED = corpus().length;

let t: TempStore;
let rig: Rig;
let agent: Agent;
let plain: ApiServer;
let agentUrl: string;
let plainUrl: string;

before(async () => {
  requireRoot('the API fuzz test (the agent reads a datapath)');
  t = await tempStore();
  rig = await installRig('api');
  agent = new Agent({
    name: 'rel-api', datapath: rig.dp, store: t.store, registry: rig.registry, ruleName: rig.ruleName, reporter: 'rel-api-node',
    spoolDir: path.join(rig.dir, 'spool'), ownsStore: false, api: { host: '127.0.0.1', port: 0, token: TOKEN },
    intervalMs: 3_600_000, conntrackIntervalMs: 3_600_000,
  });
  agentUrl = (await agent.start())!;
  plain = createApiServer({ store: t.store, port: 0 });
  plainUrl = (await plain.listen()).url;
});

after(async () => {
  await plain?.close();
  await agent?.close();
  rig?.cleanup();
  await t?.cleanup();
});

// ---- the inputs ----

/** mulberry32: a small seeded PRNG, so a failing run can be repeated with its seed */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** A value as sent: text (percent-encoded as UTF-8 by us) or raw (already encoded, e.g. bytes that
 * are not UTF-8). */
type Value = string | { raw: string };

const encode = (s: string) => [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9\-_.~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
const enc = (v: Value) => (typeof v === 'string' ? encode(v) : v.raw);
const qs = (pairs: ReadonlyArray<readonly [string, Value]>) => pairs.map(([k, v]) => `${encode(k)}=${enc(v)}`).join('&');

const SQL: readonly string[] = [
  "' OR 1=1 --", "api'; DROP TABLE flows; --", "x'); TRUNCATE TABLE flows; --", '1 UNION SELECT name FROM system.tables',
  "') OR sleep(3) OR ('", 'SLEEP(3)', '{p0:String}', '{since:Int64}', '$1', '?', '%', '_', '\\', "\\'", '"', '`', ';', '--', '/*', '*/',
  "app=x' OR '1'='1", "10.0.0.1' OR 1=1 --", '10.0.0.0/8) OR (1=1', '8080 OR 1=1', 'tcp; DROP TABLE flows', 'allowed OR 1=1',
  "x') SETTINGS readonly=0 --", 'x FORMAT TabSeparated', "1; INSERT INTO flows SELECT * FROM flows", 'file(\'/etc/passwd\')',
  '../../etc/passwd', '/etc/passwd', '${jndi:ldap://x}', '<script>alert(1)</script>', 'a\r\nX-Injected: 1',
];
const UNICODE: readonly Value[] = [
  '\u202Eipa', 'a\u0000b', '\u0000', '\uD800', '\uDFFF', 'x\uD83D', '🙂', '👩‍👩‍👧', 'ａｐｉ', 'İ', 'ß', 'e\u0301', '\u200B', '\uFEFFapi', '\u00A0',
  { raw: '%FF' }, { raw: '%ED%A0%80' }, { raw: '%C0%AF' }, { raw: '%E0%A4%A' }, { raw: '%' }, { raw: '%%' }, { raw: '%00' },
];
const NUMBERS: readonly string[] = [
  '-1', '65536', '99999', '4294967296', '18446744073709551616', '9'.repeat(400), '1e3', '0x50', '1.5', '+1', ' 1', '1 ', '-0', 'NaN', 'Infinity',
  '000000000080', '256', '0', '10001', '1001', '2147483648',
];
const TIMES: readonly string[] = [
  '9999-12-31T23:59:59Z', '0000-01-01T00:00:00Z', '2026-02-30T00:00:00Z', '2026-01-01T24:00:00Z', '2026-01-01T00:00:00+99:00',
  '99999999999d', '1h'.repeat(200), '0s', '2h', '30m', '-5m', '1.5h', '2026-01-01', 'now', 'yesterday',
];
const HUGE: readonly string[] = ['a'.repeat(300), 'a'.repeat(4_000), `${'a'.repeat(62)}b`, `${'a'.repeat(63)}b`, 'a.'.repeat(130), `${'x/'.repeat(200)}`];

function randomValues(rand: () => number, n: number): string[] {
  const alphabet = [...'abcdefghijklmnopqrstuvwxyz0123456789-_./:=!,;\'"`\\()[]{}<>%&*+?#@$^|~ ', '\u0000', '\t', '\n', 'é', '中', '🙂', '\u202E'];
  return Array.from({ length: n }, () => {
    const len = 1 + Math.floor(rand() * 64);
    let s = '';
    for (let i = 0; i < len; i++) s += alphabet[Math.floor(rand() * alphabet.length)]!;
    return s;
  });
}

// ---- the routes and their parameters, from the OpenAPI document ----

interface Route { path: string; parameters: string[] }
type Doc = { paths: Record<string, { get?: { parameters?: { name: string }[] } }> };
const ROUTES: Route[] = Object.entries((openApiDocument() as unknown as Doc).paths)
  .map(([p, ops]) => ({ path: p, parameters: (ops.get?.parameters ?? []).map((x) => x.name) }));
/** served by the agent beside the API (src/agent/agent.ts), with the API's token rule */
const AGENT_ROUTES: Route[] = [{ path: '/metrics', parameters: [] }];
const OPEN_ROUTES = new Set(['/healthz', '/readyz']);
const UNKNOWN_PARAMETERS = ['foo', 'namespace[]', 'label[key]', '__proto__', 'constructor', 'toString', 'Namespace', 'src_namespace ', ' verdict', 'a'.repeat(300), '\u0000', '🙂', 'q.verdict'];
/** single-valued parameters (params.ts SINGLE_VALUED) */
const SINGLE = ['since', 'until', 'limit', 'cursor', 'group_by'];

// ---- asking and judging ----

interface Answer { status: number; type: string; text: string; body: any }

async function ask(base: string, pathAndQuery: string, headers: Record<string, string> = {}): Promise<Answer> {
  const ctl = new AbortController();
  const res = await fetch(`${base}${pathAndQuery}`, { headers, signal: ctl.signal });
  const type = res.headers.get('content-type') ?? '';
  if (type.startsWith('text/event-stream')) {
    ctl.abort(); // a stream that opened: its status and type are the answer
    return { status: res.status, type, text: '', body: undefined };
  }
  const text = await res.text();
  let body: unknown;
  try { body = JSON.parse(text); } catch { /* judged below */ }
  return { status: res.status, type, text, body };
}

/** No stack trace, no source or data path, no internals in any answer. */
function assertNoLeak(what: string, a: Answer): void {
  for (const bad of [/\n\s+at\s/, /node:internal/, /file:\/\//, /\/(src|dist|node_modules)\/[\w./-]+\.(ts|js)/, /\.[jt]s:\d+:\d+/, /\bStack trace\b/i, /DB::Exception/]) {
    assert.doesNotMatch(a.text, bad, `${what}: the answer leaks ${bad}: ${a.text.slice(0, 300)}`);
  }
  for (const p of [repoRoot, t.dir, rig.dir]) assert.ok(!a.text.includes(p), `${what}: the answer names the path ${p}`);
}

let judged = 0;
const statusCount: Record<number, number> = {};

function judge(route: string, pairs: ReadonlyArray<readonly [string, Value]>, a: Answer): void {
  judged++;
  statusCount[a.status] = (statusCount[a.status] ?? 0) + 1;
  const what = `GET ${route}?${qs(pairs).slice(0, 200)}`;
  assert.ok(a.status < 500, `${what}: ${a.status} ${a.text.slice(0, 300)}`);
  assert.ok((a.status >= 200 && a.status < 300) || (a.status >= 400 && a.status < 500), `${what}: status ${a.status}`);
  assertNoLeak(what, a);
  if (a.status >= 400) {
    assert.match(a.type, /^application\/json/, `${what}: error type ${a.type}`);
    assert.equal(typeof a.body?.error?.message, 'string', `${what}: error without a message: ${a.text}`);
    if (a.status === 400) {
      // named: one of the parameters sent (as URLSearchParams decodes it)
      const sent = new Set([...new URLSearchParams(qs(pairs)).keys()]);
      assert.ok(sent.has(a.body.error.parameter), `${what}: 400 names ${JSON.stringify(a.body.error.parameter)}, not a parameter sent`);
    }
    return;
  }
  // 2xx: the data is valid for what was asked
  const decoded = new URLSearchParams(qs(pairs));
  if (route === '/api/v1/flows') {
    const q = parseFlowQuery(decoded); // the server took it: the parser takes it too
    assert.ok(Array.isArray(a.body?.rows), `${what}: no rows`);
    assert.ok(a.body.rows.length <= q.limit);
    for (const r of a.body.rows as FlowRow[]) assert.ok(rowMatches(r, q.filter), `${what}: a row that does not match: ${JSON.stringify(r).slice(0, 200)}`);
  } else if (route === '/api/v1/flows/summary') {
    parseSummaryQuery(decoded);
    assert.ok(Array.isArray(a.body?.groups) && typeof a.body?.total?.flows === 'number', `${what}: not a summary`);
    assert.ok(a.body.total.flows <= SEEDED);
  } else if (route === '/api/v1/flows/stream') {
    parseStreamFilter(decoded);
    assert.match(a.type, /^text\/event-stream/);
  } else if (route === '/api/v1/stats') {
    assert.equal(typeof a.body?.lost?.total, 'number', `${what}: not the agent's stats`);
  } else if (route === '/api/v1/openapi.json') {
    assert.equal(a.body?.openapi, '3.1.0');
  } else if (route === '/metrics') {
    assert.match(a.text, /^# HELP weir_/m);
  } else {
    assert.ok(a.body?.status === 'ok' || a.body?.status === 'ready', `${what}: ${a.text}`);
  }
}

/** Every request of the fuzz, per route. */
function requests(route: Route, rand: () => number): Array<Array<readonly [string, Value]>> {
  const out: Array<Array<readonly [string, Value]>> = [[]];
  const params = route.parameters.length > 0 ? route.parameters : ['x'];
  for (const p of params) {
    const values: Value[] = [...INJECTIONS, ...SQL, ...UNICODE, ...NUMBERS, ...TIMES, ...HUGE, '', ...randomValues(rand, RANDOM_PER_PARAMETER)];
    for (const v of values) out.push([[p, v]]);
    // repeated: a single-valued parameter twice is refused; a list of 200 alternatives is fine
    out.push([[p, '1h'], [p, '2h']]);
    out.push(Array.from({ length: 200 }, (_, i) => [p, `v${i}`] as const));
    // a hostile value beside a good one
    out.push([['verdict', 'denied'], [p, INJECTIONS[Math.floor(rand() * INJECTIONS.length)]!]]);
  }
  for (const u of UNKNOWN_PARAMETERS) out.push([[u, '1']]);
  out.push([['', 'x']]);
  for (const s of SINGLE.filter((x) => route.parameters.includes(x))) out.push([[s, '1'], [s, '1']]);
  return out;
}

test(`every route, every parameter: hostile values get 2xx with valid data or a 4xx naming the parameter (seed ${SEED})`, { timeout: 600_000 }, async (t2) => {
  const tablesBefore = await t.store.client.query({ query: "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name", format: 'JSONEachRow' }).then((r) => r.json());
  assert.equal(await t.store.count(), SEEDED);
  const auth = { Authorization: `Bearer ${TOKEN}` };
  for (const [base, headers, routes] of [[agentUrl, auth, [...ROUTES, ...AGENT_ROUTES]], [plainUrl, {}, ROUTES]] as const) {
    const rand = prng(SEED);
    for (const route of routes) {
      for (const pairs of requests(route, rand)) {
        const q = pairs.length > 0 ? `?${qs(pairs)}` : '';
        judge(route.path, pairs, await ask(base, `${route.path}${q}`, headers));
      }
    }
  }
  assert.equal(await t.store.count(), SEEDED, 'the flows table keeps its rows');
  const tablesAfter = await t.store.client.query({ query: "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name", format: 'JSONEachRow' }).then((r) => r.json());
  assert.deepEqual(tablesAfter, tablesBefore, 'no table made or dropped');
  const figure = { seed: SEED, requests: judged, byStatus: statusCount, rowsBefore: SEEDED, rowsAfter: await t.store.count() };
  t2.diagnostic(`api fuzz: ${JSON.stringify(figure)}`);
  console.log(`api fuzz figure: ${judged} requests over ${ROUTES.length + AGENT_ROUTES.length} routes (seed ${SEED}): ${JSON.stringify(statusCount)}; 5xx 0; rows ${SEEDED} before and after`);
  assert.ok(!Object.keys(statusCount).some((s) => Number(s) >= 500));
});

test('huge requests: 1 MB parameter, 10k repeated parameters, 1 MB header: 431 with a JSON message, on both servers', async () => {
  const auth = { Authorization: `Bearer ${TOKEN}` };
  for (const [base, headers] of [[agentUrl, auth], [plainUrl, {}]] as const) {
    const cases = [
      `/api/v1/flows?namespace=${'a'.repeat(1 << 20)}`,
      `/api/v1/flows?${Array.from({ length: 10_000 }, () => 'namespace=a').join('&')}`,
      `/api/v1/flows/summary?group_by=${'verdict,'.repeat(100_000)}`,
    ];
    for (const c of cases) {
      const a = await ask(base, c, headers);
      assert.equal(a.status, 431, `${c.slice(0, 60)}...: ${a.status}`);
      assert.match(a.type, /^application\/json/);
      assert.match(a.body.error.message, /too large/);
      assertNoLeak(c.slice(0, 60), a);
    }
    const bigHeader = await ask(base, '/api/v1/flows', { ...headers, 'X-Big': 'b'.repeat(1 << 20) });
    assert.equal(bigHeader.status, 431);
    // 1,000 alternatives fit in the limit: a valid query that matches nothing
    const many = await ask(base, `/api/v1/flows?${Array.from({ length: 1000 }, (_, i) => `namespace=n${i}`).join('&')}`, headers);
    assert.equal(many.status, 200, many.text.slice(0, 200));
    assert.deepEqual(many.body.rows, []);
    // a request body is never read: an 8 MB POST is answered (no such endpoint) and the server goes on
    const post = await fetch(`${base}/api/v1/flows`, { method: 'POST', headers, body: Buffer.alloc(8 << 20, 0x61) });
    assert.equal(post.status, 404);
    assert.match((await post.json() as { error: { message: string } }).error.message, /no such endpoint: POST/);
    assert.equal((await ask(base, '/healthz')).status, 200);
  }
  assert.equal(await t.store.count(), SEEDED);
});

test('auth: with a token every route but /healthz and /readyz answers 401 without it or with a wrong one', async () => {
  const routes = [...ROUTES, ...AGENT_ROUTES, { path: '/api/v1/nothing', parameters: [] }, { path: '/API/V1/FLOWS', parameters: [] }];
  const wrong = [
    undefined, `Bearer ${TOKEN.slice(0, -1)}x`, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, 'Bearer ', `Bearer  ${TOKEN}`,
    `Basic ${Buffer.from(`weir:${TOKEN}`).toString('base64')}`, TOKEN, `Bearer ${TOKEN.toUpperCase()}`, `Bearer ${'a'.repeat(10_000)}`, 'Bearer \u00e9',
  ];
  // (a trailing space is not a wrong token: HTTP strips it from header values)
  let refused = 0;
  for (const r of routes) {
    for (const h of wrong) {
      const a = await ask(agentUrl, `${r.path}?verdict=denied&token=${TOKEN}&access_token=${TOKEN}`, h === undefined ? {} : { Authorization: h });
      if (OPEN_ROUTES.has(r.path)) {
        assert.equal(a.status, 200, `${r.path} is open`);
        continue;
      }
      assert.equal(a.status, 401, `${r.path} with ${JSON.stringify(h)?.slice(0, 40)}: ${a.status}`);
      assert.match(a.type, /^application\/json/);
      assert.match(a.body.error.message, /authentication required|invalid token/);
      refused++;
    }
    // the right token (the scheme's case does not matter, RFC 7235)
    const ok = await ask(agentUrl, r.path === '/api/v1/flows/stream' ? r.path : `${r.path}`, { Authorization: `bearer ${TOKEN}` });
    assert.ok(ok.status === 200 || (r.path === '/api/v1/nothing' && ok.status === 404) || (r.path === '/API/V1/FLOWS' && ok.status === 200), `${r.path} with the token: ${ok.status}`);
  }
  assert.ok(refused > 0);
  // The comparison: both sides hashed to SHA-256 digests (equal length whatever the token's) and
  // compared with crypto.timingSafeEqual; no other comparison of the token anywhere.
  for (const file of ['src/api/server.ts', 'src/agent/agent.ts']) {
    const src = readFileSync(path.join(repoRoot, file), 'utf8');
    assert.match(src, /timingSafeEqual\(/, `${file} compares tokens with crypto.timingSafeEqual`);
    for (const line of src.split('\n')) {
      if (!/\b(token|tokenHash|want|got)\b/.test(line) || !/[!=]==/.test(line)) continue;
      // only "is there a token" checks: against undefined
      assert.doesNotMatch(line.replace(/[!=]==\s*undefined/g, ''), /[!=]==/, `${file}: a token compared with === or !==: ${line.trim()}`);
    }
  }
  const server = readFileSync(path.join(repoRoot, 'src/api/server.ts'), 'utf8');
  assert.match(server, /timingSafeEqual\(sha256\(m\[1\]!\), tokenHash\)/);
  assert.match(server, /tokenHash = opts\.token !== undefined \? sha256\(opts\.token\)/);
});

test('time limits: trickled headers get 408, a slow store 503, both as JSON; a stream outlives the request timeout', async () => {
  // a store that answers queries only after 2 s
  const slow: FlowSource = {
    queryFlows: async (q) => { await new Promise((r) => setTimeout(r, 2_000)); return t.store.queryFlows(q); },
    summary: (f, g, l) => t.store.summary(f, g, l),
    ping: () => t.store.ping(),
  };
  const limited = createApiServer({ store: slow, port: 0, limits: { headersTimeoutMs: 1_000, requestTimeoutMs: 1_500, queryTimeoutMs: 300 }, heartbeatMs: 200 });
  const { host, port, url } = await limited.listen();
  try {
    // slowloris: a header line every 200 ms, never the end of the headers
    const started = Date.now();
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(port, host);
      let got = '';
      let timer: NodeJS.Timeout | undefined;
      sock.on('connect', () => {
        sock.write('GET /api/v1/flows HTTP/1.1\r\nHost: x\r\n');
        timer = setInterval(() => { if (sock.writable) sock.write(`X-Slow-${Date.now()}: 1\r\n`); }, 200);
      });
      sock.on('data', (d) => { got += d.toString(); });
      sock.on('error', (e) => { clearInterval(timer); if (got) resolve(got); else reject(e); });
      sock.on('close', () => { clearInterval(timer); resolve(got); });
      setTimeout(() => { sock.destroy(); }, 8_000);
    });
    const took = Date.now() - started;
    assert.match(answer, /^HTTP\/1\.1 408 /, answer);
    assert.match(answer, /\{"error":\{"message":"the request did not arrive in time"\}\}/);
    assert.ok(took < 4_000, `the trickling client was cut off after ${took} ms`);
    // a store slower than the query limit
    const q0 = Date.now();
    const a = await ask(url, '/api/v1/flows?verdict=denied');
    assert.equal(a.status, 503);
    assert.match(a.body.error.message, /did not answer within 0\.3 s/);
    assert.ok(Date.now() - q0 < 1_500, `answered after ${Date.now() - q0} ms`);
    // the request timeout is about receiving the request: an open stream stays open past it
    const ctl = new AbortController();
    const res = await fetch(`${url}/api/v1/flows/stream`, { signal: ctl.signal });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    let text = '';
    const until = Date.now() + 2_500;
    while (Date.now() < until) {
      const { value, done } = await reader.read();
      assert.ok(!done, 'the stream ended');
      text += Buffer.from(value!).toString();
    }
    ctl.abort();
    assert.ok((text.match(/: keepalive/g) ?? []).length >= 5, text);
  } finally {
    await limited.close();
  }
  // the defaults the API and the agent's server run with
  assert.deepEqual(DEFAULT_HTTP_LIMITS, { maxHeaderBytes: 16_384, maxHeadersCount: 100, headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, queryTimeoutMs: 30_000 });
});
