// A read-only, ClickHouse-HTTP-compatible endpoint over the flow store, so Grafana's ClickHouse
// data source (clickhouse-go over HTTP), @clickhouse/client or curl read the embedded chDB the way
// they read a ClickHouse server, and the same dashboards work with and without one.
//
// The protocol subset real clients use: `GET|POST <prefix>/` with the query in the `query` URL
// parameter and/or the body (joined by a newline, as ClickHouse does), `param_<name>` values for
// `{name:Type}` placeholders (bound by the engine, never spliced into the text), `default_format`,
// `database` (only the store's), `query_id`, allowed settings (clickhouse-settings.ts);
// `GET <prefix>/ping` -> `Ok.`; X-ClickHouse-* response headers; errors as ClickHouse writes them.
//
// Read-only in depth, every restriction per query (the store's chDB session is shared with the
// agent's writer, so a session `SET` would leak into its inserts):
// 1. ClickHouse parses the query (clickhouse-sql.ts): one statement, SELECT/DESCRIBE/EXISTS/
//    SHOW TABLES|DATABASES, reading only the flow tables and allow-listed system tables, no table
//    function outside the allow-list, no `file`, no INTO OUTFILE, no SETTINGS clause of its own.
// 2. The checked text runs with our own `SETTINGS readonly = 1, max_execution_time, max_result_rows,
//    max_rows_to_read, max_memory_usage ...` appended last, then the FORMAT (the query's own FORMAT
//    clause is taken off and put back after our SETTINGS).
// 3. Request body and query size limits (413), a cap on queries at once (503), a deadline per request.
// "Limits on time" means execution time: a bound on the `ts` range a query reads cannot be enforced
// soundly from SQL text (rollups, subqueries, functions of ts), so max_rows_to_read bounds the work
// instead.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import express, { type Request, type Response } from 'express';
import type { ClickHouseClient } from '@clickhouse/client';
import { Authenticator, type AuthOptions } from './clickhouse-auth.js';
import { CH, ClickHouseHttpError, errorBody, toHttpError } from './clickhouse-errors.js';
import { DEFAULT_CLICKHOUSE_LIMITS, checkLimits, parseRequestParams, type ClickHouseLimits, type RequestParams } from './clickhouse-settings.js';
import { ALLOWED_TABLE_FUNCTIONS, FLOW_TABLES, SYSTEM_TABLES, checkReadOnly, paramValue, placeholderTypes, stripFormat, type ReadPolicy } from './clickhouse-sql.js';

export { DEFAULT_CLICKHOUSE_LIMITS, type ClickHouseLimits } from './clickhouse-settings.js';
export type { ClickHouseCredentials } from './clickhouse-auth.js';

/** What the endpoint needs of a store: its client (embedded chDB or a server) and its location. */
export interface ClickHouseSource {
  readonly client: ClickHouseClient;
  readonly location: string;
}

export interface ClickHouseEndpointOptions extends AuthOptions {
  readonly store: ClickHouseSource;
  readonly limits?: Partial<ClickHouseLimits>;
  /** X-ClickHouse-Server-Display-Name; default "weir" */
  readonly displayName?: string;
  /** one line per internal error (their details never reach the client); default console.error */
  readonly log?: (line: string) => void;
  /** past max_execution_time, how long the HTTP request may still wait for the engine; default 2 s */
  readonly graceMs?: number;
}

export interface ClickHouseEndpoint {
  /** mount under a prefix: `app.use('/clickhouse', endpoint.router)` */
  readonly router: express.Router;
  /** queries running now */
  readonly running: number;
}

export const DEFAULT_GRACE_MS = 2_000;

interface ServerInfo {
  readonly version: string;
  readonly policy: ReadPolicy;
}

/** Content-Type ClickHouse gives a format. */
function contentType(format: string): string {
  if (/^(JSON|NDJSON)/i.test(format)) return 'application/json; charset=UTF-8';
  if (/^(TabSeparated|TSV|CSV|Pretty|Values|Vertical|Markdown|XML|CustomSeparated|Template|LineAsString|Raw|SQLInsert|PrettyCompact)/i.test(format)) return 'text/plain; charset=UTF-8';
  return 'application/octet-stream';
}

const gzip = promisify(zlib.gzip);
const deflate = promisify(zlib.deflate);
const brotli = promisify(zlib.brotliCompress);

/** The request body, whole, bounded; gzip/deflate/br bodies decompressed under the same bound. */
async function readBody(req: IncomingMessage & { body?: unknown }, max: number): Promise<Buffer> {
  // a body parser mounted before us may have read it already
  if (Buffer.isBuffer(req.body)) return req.body;
  if (typeof req.body === 'string') return Buffer.from(req.body);
  const type = req.headers['content-type'] ?? '';
  if (/^multipart\//i.test(type)) throw ClickHouseHttpError.of(CH.NOT_IMPLEMENTED, 'multipart bodies (external data, multipart query parameters) are not supported here: send the query as the body and parameters as param_<name> URL parameters');
  const encoding = (req.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (!['', 'identity', 'none', 'gzip', 'x-gzip', 'deflate', 'br'].includes(encoding)) {
    throw ClickHouseHttpError.of(CH.NOT_IMPLEMENTED, `Content-Encoding ${JSON.stringify(encoding)} is not supported here (use none, gzip, deflate or br)`, 415);
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  // a compressed body is bounded by the same size on the wire and again after decompression
  const wireMax = max;
  if (declared > wireMax) throw tooLarge(`request body of ${declared} bytes exceeds the limit of ${max}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > wireMax) throw tooLarge(`request body exceeds the limit of ${max} bytes`);
    chunks.push(chunk as Buffer);
  }
  const raw = Buffer.concat(chunks);
  if (encoding === '' || encoding === 'identity' || encoding === 'none') return raw;
  try {
    const opts = { maxOutputLength: max };
    if (encoding === 'br') return await promisify(zlib.brotliDecompress)(raw, opts);
    if (encoding === 'deflate') return await promisify(zlib.inflate)(raw, opts);
    return await promisify(zlib.gunzip)(raw, opts);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(`decompressed request body exceeds the limit of ${max} bytes`);
    throw new ClickHouseHttpError(271, 'CANNOT_DECOMPRESS', `cannot decompress the ${encoding} request body: ${(err as Error).message}`, 400);
  }
}

function tooLarge(message: string): ClickHouseHttpError {
  return ClickHouseHttpError.of(CH.QUERY_IS_TOO_LARGE, message, 413);
}

async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(chunks);
}

export function createClickHouseEndpoint(opts: ClickHouseEndpointOptions): ClickHouseEndpoint {
  const { client } = opts.store;
  const limits: ClickHouseLimits = { ...DEFAULT_CLICKHOUSE_LIMITS, ...opts.limits };
  checkLimits(limits);
  const auth = new Authenticator(opts);
  const displayName = opts.displayName ?? 'weir';
  if (!/^[!-~]([ -~]*[!-~])?$/.test(displayName)) throw new Error('clickhouse endpoint: displayName must be printable ASCII');
  const log = opts.log ?? ((line: string) => console.error(line));
  const graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
  // the store's own path stays out of messages
  const redact = [opts.store.location];
  let running = 0;

  let info: Promise<ServerInfo> | undefined;
  const serverInfo = (): Promise<ServerInfo> => {
    info ??= (async () => {
      const rs = await client.query({
        query: 'SELECT version() AS version, currentDatabase() AS database, (SELECT groupArray(lower(name)) FROM system.table_functions) AS table_functions',
        format: 'JSONEachRow',
      });
      const [row] = await rs.json<{ version: string; database: string; table_functions: string[] }>();
      if (!row) throw new Error('the store returned no server information');
      const policy: ReadPolicy = {
        database: row.database,
        flowTables: new Set(FLOW_TABLES),
        qualifiedTables: new Set(SYSTEM_TABLES.map((t) => `system.${t}`)),
        tableFunctions: new Set(row.table_functions),
        allowedTableFunctions: new Set(ALLOWED_TABLE_FUNCTIONS),
      };
      return { version: row.version, policy };
    })();
    // a store that was not ready is asked again next time
    info.catch(() => { info = undefined; });
    return info;
  };

  /** The engine's version for an error's text, if the store tells it quickly (it may be down). */
  const versionSoon = async (): Promise<string> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<string>((resolve) => { timer = setTimeout(() => resolve('unknown'), 500); });
    try {
      return await Promise.race([serverInfo().then((i) => i.version, () => 'unknown'), late]);
    } finally {
      clearTimeout(timer);
    }
  };

  const router = express.Router();

  const common = (res: Response, queryId?: string) => {
    res.set('X-ClickHouse-Server-Display-Name', displayName);
    res.set('X-ClickHouse-Timezone', 'UTC');
    if (queryId) res.set('X-ClickHouse-Query-Id', queryId);
  };

  const sendError = async (res: Response, err: unknown, queryId?: string) => {
    const { error, internal } = toHttpError(err, redact);
    if (internal) log(`weir: clickhouse endpoint: query ${queryId ?? '-'}: ${(err as Error)?.message ?? String(err)}`);
    const version = await versionSoon();
    if (res.headersSent) { res.destroy(); return; }
    common(res, queryId);
    res.set('X-ClickHouse-Exception-Code', String(error.code));
    res.set('Content-Type', 'text/plain; charset=UTF-8');
    res.set('Cache-Control', 'no-cache');
    if (error.status === 401) res.set('WWW-Authenticate', 'Basic realm="weir", charset="UTF-8"');
    if (error.status === 413) res.set('Connection', 'close');
    res.status(error.status).send(errorBody(error.code, error.type, error.message, version));
  };

  router.get('/ping', (_req, res) => {
    common(res);
    res.type('text/plain; charset=UTF-8').send('Ok.\n');
  });

  const handle = async (req: Request, res: Response) => {
    const sp = new URL(req.originalUrl, 'http://localhost').searchParams;
    let queryId = sp.get('query_id') ?? randomUUID();
    if (!/^[!-~]{1,128}$/.test(queryId)) queryId = randomUUID();
    let counted = false;
    try {
      // a GET of the root without a query is ClickHouse's health check, open like /ping
      if (req.method === 'GET' && !sp.has('query')) { common(res); res.type('text/plain; charset=UTF-8').send('Ok.\n'); return; }
      // credentials first: nothing of an unauthenticated request is read or parsed further
      auth.check(req.headers, sp);
      const p: RequestParams = parseRequestParams(sp, limits);
      let text = p.query ?? '';
      if (req.method === 'POST') {
        const body = (await readBody(req, limits.maxBodyBytes)).toString('utf8');
        if (body.length > 0) text = text.length > 0 ? `${text}\n${body}` : body;
      }
      if (text.trim() === '') throw ClickHouseHttpError.of(CH.SYNTAX_ERROR, 'Empty query');
      if (Buffer.byteLength(text) > limits.maxQueryBytes) throw tooLarge(`Max query size exceeded: the query has ${Buffer.byteLength(text)} bytes, the limit is ${limits.maxQueryBytes}`);
      if (running >= limits.maxConcurrent) throw ClickHouseHttpError.of(CH.TOO_MANY_SIMULTANEOUS_QUERIES, `Too many simultaneous queries. Maximum: ${limits.maxConcurrent}`);
      running++;
      counted = true;

      const { policy } = await serverInfo();
      if (p.database !== undefined && p.database !== policy.database) {
        throw ClickHouseHttpError.of(CH.UNKNOWN_DATABASE, `database ${JSON.stringify(p.database)} is not available here: only ${policy.database} (the flow store)`);
      }

      // the deadline covers parsing, the check and the run; the engine stops itself at
      // max_execution_time, this catches what does not
      const abort = new AbortController();
      const deadlineMs = p.executionSeconds * 1000 + graceMs;
      const timer = setTimeout(() => abort.abort(), deadlineMs);
      const onClose = () => { if (!res.writableFinished) abort.abort(); };
      res.on('close', onClose);
      try {
        const result = await run(text, p, policy, abort.signal, queryId);
        if (res.destroyed) return; // the client went away
        common(res, queryId);
        res.set('X-ClickHouse-Format', result.format);
        res.set('X-ClickHouse-Summary', JSON.stringify(result.summary));
        res.set('Content-Type', contentType(result.format));
        res.set('Cache-Control', 'no-cache');
        let body = result.body;
        const accept = String(req.headers['accept-encoding'] ?? '');
        if (p.compressResponse && body.length > 0) {
          const level = p.compressionLevel;
          if (/\bgzip\b/i.test(accept)) { body = await gzip(body, { level }); res.set('Content-Encoding', 'gzip'); }
          else if (/\bdeflate\b/i.test(accept)) { body = await deflate(body, { level }); res.set('Content-Encoding', 'deflate'); }
          else if (/\bbr\b/i.test(accept)) { body = await brotli(body); res.set('Content-Encoding', 'br'); }
        }
        res.status(200).end(body);
      } catch (err) {
        if (abort.signal.aborted) {
          throw ClickHouseHttpError.of(CH.TIMEOUT_EXCEEDED, `Timeout exceeded: the query did not finish within ${deadlineMs} ms`);
        }
        throw err;
      } finally {
        clearTimeout(timer);
        res.off('close', onClose);
      }
    } catch (err) {
      await sendError(res, err, queryId);
    } finally {
      if (counted) running--;
    }
  };

  /** Parse, check, run: the text that runs is the text checked, plus our SETTINGS and FORMAT. */
  const run = async (text: string, p: RequestParams, policy: ReadPolicy, signal: AbortSignal, queryId: string) => {
    const clean = (err: unknown) => {
      const e = err as { message?: string };
      // the engine quotes our wrapper around the user's text; the user's text is what matters
      if (typeof e?.message === 'string') e.message = e.message.replace(/[.:]?\s*In scope SELECT formatQuerySingleLine[\s\S]*$/, '');
      return err;
    };
    // 1. one statement, as ClickHouse reads it; the query is a bound value here, nothing of it runs
    const formatted = await client.query({
      query: 'SELECT formatQuerySingleLine({q:String}) AS q',
      query_params: { q: text },
      format: 'JSONEachRow',
      abort_signal: signal,
    }).then((rs) => rs.json<{ q: string }>(), (err) => { throw clean(err); });
    const canonical = formatted[0]?.q;
    if (typeof canonical !== 'string') throw new Error('formatQuerySingleLine returned nothing');
    // what is no read is refused on its first word, before anything more is asked of the engine
    if (!/^(SELECT|WITH|SHOW|DESCRIBE|EXISTS|\()/.test(canonical)) {
      throw ClickHouseHttpError.of(CH.READONLY, `only SELECT, DESCRIBE, EXISTS, SHOW TABLES and SHOW DATABASES are allowed here, not ${JSON.stringify(canonical.split(' ').slice(0, 2).join(' ').slice(0, 40))}`);
    }
    const { sql, format: ownFormat } = stripFormat(canonical);
    const format = ownFormat ?? p.defaultFormat ?? 'TabSeparated';

    // 2. its parameters, as the engine's binder wants them
    const types = placeholderTypes(sql);
    const query_params: Record<string, string | null> = {};
    for (const [name, raw] of p.params) query_params[name] = paramValue(name, raw, types.get(name));
    const bound = Object.keys(query_params).length > 0 ? { query_params } : {};

    // 3. its tree, checked
    const explained = await client.exec({
      query: `EXPLAIN AST ${sql}`,
      ...bound,
      clickhouse_settings: { default_format: 'JSONEachRow' },
      abort_signal: signal,
    });
    const rows = (await readAll(explained.stream)).toString('utf8').split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { explain: string }).explain);
    checkReadOnly(sql, rows, policy);

    // 4. run it, our settings last
    const result = await client.exec({
      query: `${sql}\nSETTINGS ${p.settings}\nFORMAT ${format}`,
      ...bound,
      abort_signal: signal,
      query_id: queryId,
    });
    const body = await readAll(result.stream);
    return { body, format, summary: result.summary ?? {} };
  };

  router.all('/', (req, res) => {
    if (req.method !== 'GET' && req.method !== 'POST') {
      void sendError(res, ClickHouseHttpError.of(CH.UNSUPPORTED_METHOD, `HTTP method ${req.method} is not supported: use GET or POST`, 405));
      return;
    }
    void handle(req, res);
  });

  router.use((req, res) => {
    common(res);
    res.status(404).type('text/plain; charset=UTF-8').send(`There is no handle ${req.path}\n\nUse / or /ping for health checks.\n`);
  });

  return {
    router,
    get running() { return running; },
  };
}

