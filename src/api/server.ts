// The query API over the flow store (express): flows, summaries, a live stream, health and its
// own OpenAPI document. Localhost by default; with a token, every /api route wants
// `Authorization: Bearer <token>` (the probes /healthz and /readyz stay open, they tell nothing).
// Every filter value is validated by params.ts and handed to the store as a typed FlowFilter; the
// store binds them as SQL parameters.
import http from 'node:http';
import crypto from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { FlowRow } from '../store/row.js';
import type { FlowFilter } from '../store/filter.js';
import type { FlowSource } from './source.js';
import { FilterError } from '../store/sql.js';
import { ParamError, parseFlowQuery, parseStreamFilter, parseSummaryQuery } from './params.js';
import { rowMatches } from './match.js';
import { StoreFollower } from './follow.js';
import { openApiDocument } from './openapi.js';

export const DEFAULT_API_HOST = '127.0.0.1';
export const DEFAULT_API_PORT = 9470;
/** SSE comment lines keep idle streams (and proxies in between) from timing out */
export const STREAM_HEARTBEAT_MS = 15_000;
/** rows a slow stream client may have queued before it is cut off */
export const MAX_STREAM_BACKLOG_BYTES = 8 * 1024 * 1024;

/** What one request may cost (docs/reliability.md, "API hostile input"). The API takes no
 * request bodies (GET only: a body is never read), so the request line and headers are the size
 * that matters. */
export interface HttpLimits {
  /** request line + headers, bytes (Node's maxHeaderSize); beyond: 431 */
  readonly maxHeaderBytes: number;
  /** headers per request (Node's maxHeadersCount); the rest are ignored */
  readonly maxHeadersCount: number;
  /** the headers must have arrived by then (a client trickling them ties up a socket): 408 */
  readonly headersTimeoutMs: number;
  /** the whole request must have arrived by then: 408 */
  readonly requestTimeoutMs: number;
  /** a store query not answered by then gets 503 (an embedded store has no timeout of its own) */
  readonly queryTimeoutMs: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  maxHeaderBytes: 16 * 1024, maxHeadersCount: 100, headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, queryTimeoutMs: 30_000,
};

/** Node's refusals before a request reaches the app -> status and message. */
const CLIENT_ERRORS: Readonly<Record<string, readonly [number, string]>> = {
  HPE_HEADER_OVERFLOW: [431, 'request line and headers are too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'the request did not arrive in time'],
};

/** An HTTP server with the limits: the API's own (listen()) and the agent's, which serves this
 * API beside its stats (src/agent/agent.ts). Requests Node refuses before they reach the app
 * (too large, too slow, malformed) get a JSON error like every other, without a trace. */
export function createLimitedServer(handler: http.RequestListener, limits: Partial<HttpLimits> = {}): http.Server {
  const l = { ...DEFAULT_HTTP_LIMITS, ...limits };
  const server = http.createServer({
    maxHeaderSize: l.maxHeaderBytes,
    headersTimeout: l.headersTimeoutMs,
    requestTimeout: l.requestTimeoutMs,
    // how often the two timeouts are checked (Node's 30 s default would let them overrun)
    connectionsCheckingInterval: Math.max(100, Math.min(1_000, l.headersTimeoutMs / 4)),
  }, handler);
  server.maxHeadersCount = l.maxHeadersCount;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const inResponse = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
    if (err.code === 'ECONNRESET' || !socket.writable || inResponse) { socket.destroy(); return; }
    const [status, message] = CLIENT_ERRORS[err.code ?? ''] ?? [400, 'malformed HTTP request'];
    const body = JSON.stringify({ error: { message } });
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n`
      + `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  return server;
}

/** `p`, or a 503 once `ms` have passed (the query itself is left to finish). */
function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HttpError(503, `the store did not answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

export interface ApiServerOptions {
  readonly store: FlowSource;
  /** bearer token; without one the API is open (it listens on localhost by default) */
  readonly token?: string;
  readonly host?: string;
  /** 0: an ephemeral port */
  readonly port: number;
  readonly now?: () => number;
  /** streams also poll the store this often (for a server without an in-process agent); off by default */
  readonly pollIntervalMs?: number;
  readonly heartbeatMs?: number;
  /** the agent's counters (rows written, events lost per stage) for GET /api/v1/stats */
  readonly stats?: () => unknown;
  /** request size and time limits (DEFAULT_HTTP_LIMITS) */
  readonly limits?: Partial<HttpLimits>;
}

export interface ApiServer {
  readonly app: express.Express;
  /** starts listening; resolves with the bound address */
  listen(): Promise<{ host: string; port: number; url: string }>;
  /** hands newly stored rows to every open stream whose filter they match (the agent calls this) */
  publish(rows: readonly FlowRow[]): void;
  /** open streams */
  readonly streams: number;
  /** ends open streams and stops listening; safe twice */
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly parameter?: string) { super(message); }
}

interface Stream {
  readonly filter: FlowFilter;
  send(rows: readonly FlowRow[]): void;
  end(): void;
}

/** The store's name for a filter field (`src.labels[0]`, `either.ip[1]`, `cursor`) -> the query parameter. */
export function parameterOfField(field: string): string {
  const parts = field.replace(/\[\d+\]/g, '').split('.');
  const [first, second] = parts;
  if (second === undefined) return first!;
  const name = second === 'labels' ? 'label' : second;
  return first === 'either' ? name : `${first}_${name}`;
}

function sha256(s: string): Buffer {
  return crypto.createHash('sha256').update(s).digest();
}

/** The query string as name/value pairs, exactly as sent (no nested-object parsing). */
function queryPairs(req: Request): URLSearchParams {
  return new URL(req.originalUrl, 'http://localhost').searchParams;
}

export function createApiServer(opts: ApiServerOptions): ApiServer {
  const { store } = opts;
  const host = opts.host ?? DEFAULT_API_HOST;
  const now = opts.now ?? Date.now;
  const heartbeatMs = opts.heartbeatMs ?? STREAM_HEARTBEAT_MS;
  const queryTimeoutMs = opts.limits?.queryTimeoutMs ?? DEFAULT_HTTP_LIMITS.queryTimeoutMs;
  // an empty token would lock everyone out (no header can carry it) or, worse, read as "no auth"
  if (opts.token !== undefined && !/^[!-~]+$/.test(opts.token)) throw new Error('the API token must be printable ASCII without spaces, and not empty');
  const tokenHash = opts.token !== undefined ? sha256(opts.token) : undefined;
  const streams = new Set<Stream>();

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  app.get('/healthz', (_req, res) => { res.json({ status: 'ok' }); });
  app.get('/readyz', async (_req, res) => {
    try {
      const ok = await withDeadline(store.ping(), queryTimeoutMs);
      if (ok === false) throw new Error('the store did not answer');
      res.json({ status: 'ready' });
    } catch (err) {
      res.status(503).json({ error: { message: `store not ready: ${(err as Error).message}` } });
    }
  });

  // Everything under /api needs the token when one is set.
  app.use('/api', (req, res, next) => {
    if (!tokenHash) { next(); return; }
    const header = req.get('authorization');
    const m = header ? /^Bearer ([!-~]+)$/i.exec(header) : null;
    if (!m) {
      res.set('WWW-Authenticate', 'Bearer realm="weir"');
      res.status(401).json({ error: { message: 'authentication required: Authorization: Bearer <token>' } });
      return;
    }
    if (!crypto.timingSafeEqual(sha256(m[1]!), tokenHash)) {
      res.set('WWW-Authenticate', 'Bearer realm="weir", error="invalid_token"');
      res.status(401).json({ error: { message: 'invalid token' } });
      return;
    }
    next();
  });

  app.get('/api/v1/openapi.json', (_req, res) => { res.json(openApiDocument()); });

  app.get('/api/v1/stats', (req, res) => {
    const extra = [...queryPairs(req).keys()][0];
    if (extra !== undefined) throw new ParamError(extra, `unknown parameter ${JSON.stringify(extra)} (known: none)`);
    if (!opts.stats) throw new HttpError(404, 'no stats: this API server does not run in an agent');
    res.json(opts.stats());
  });

  app.get('/api/v1/flows', async (req, res) => {
    const q = parseFlowQuery(queryPairs(req), { now });
    const page = await withDeadline(store.queryFlows(q), queryTimeoutMs);
    res.json({ rows: page.rows, ...(page.nextCursor !== undefined ? { nextCursor: page.nextCursor } : {}) });
  });

  app.get('/api/v1/flows/summary', async (req, res) => {
    const q = parseSummaryQuery(queryPairs(req), { now });
    const result = await withDeadline(store.summary(q.filter, q.groupBy, q.limit), queryTimeoutMs);
    res.json({ ...result, groupBy: q.groupBy, limit: q.limit });
  });

  app.get('/api/v1/flows/stream', (req, res) => {
    const filter = parseStreamFilter(queryPairs(req), { now });
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.flushHeaders();
    res.write('retry: 2000\n: stream open\n\n');
    let closed = false;
    const timers: NodeJS.Timeout[] = [];
    const stream: Stream = {
      filter,
      send(rows) {
        if (closed) return;
        for (const row of rows) res.write(`event: flow\ndata: ${JSON.stringify(row)}\n\n`);
        // A client that does not read is cut off rather than buffered without bound.
        if (res.writableLength > MAX_STREAM_BACKLOG_BYTES) stream.end();
      },
      end() {
        if (closed) return;
        closed = true;
        for (const t of timers) clearInterval(t);
        streams.delete(stream);
        res.end();
      },
    };
    streams.add(stream);
    timers.push(setInterval(() => { if (!closed) res.write(': keepalive\n\n'); }, heartbeatMs));
    if (opts.pollIntervalMs !== undefined) {
      const follower = new StoreFollower(store, filter, { now });
      let busy = false;
      timers.push(setInterval(() => {
        if (busy || closed) return;
        busy = true;
        follower.poll().then((rows) => stream.send(rows), (err: Error) => {
          if (!closed) res.write(`event: error\ndata: ${JSON.stringify({ error: { message: `store query failed: ${err.message}` } })}\n\n`);
        }).finally(() => { busy = false; });
      }, opts.pollIntervalMs));
    }
    res.on('close', () => stream.end());
  });

  app.use((req, _res, next) => { next(new HttpError(404, `no such endpoint: ${req.method} ${req.path}`)); });

  // Every error is JSON: bad parameters 400 naming the parameter, the rest by status.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (res.headersSent) { res.end(); return; }
    if (err instanceof ParamError) {
      res.status(400).json({ error: { parameter: err.parameter, message: err.message } });
    } else if (err instanceof FilterError) {
      // the store refused a value params.ts let through (it checks too): still the caller's mistake
      const parameter = parameterOfField(err.field);
      res.status(400).json({ error: { parameter, message: `${parameter}: ${err.message.slice(err.field.length + 2)}` } });
    } else if (err instanceof HttpError) {
      res.status(err.status).json({ error: { ...(err.parameter ? { parameter: err.parameter } : {}), message: err.message } });
    } else if ((err as { type?: string; status?: number }).status && (err as { status: number }).status < 500) {
      res.status((err as { status: number }).status).json({ error: { message: (err as Error).message } });
    } else {
      // the first line only, cut short: a store's message may go on with its stack trace
      const first = String((err as Error)?.message ?? err).split('\n', 1)[0]!.slice(0, 300);
      res.status(500).json({ error: { message: `store query failed: ${first}` } });
    }
  });

  let server: http.Server | undefined;
  let closing: Promise<void> | undefined;

  return {
    app,
    get streams() { return streams.size; },
    listen() {
      if (server) throw new Error('the API server is already listening');
      const s = createLimitedServer(app, opts.limits);
      server = s;
      return new Promise((resolve, reject) => {
        s.once('error', reject);
        s.listen(opts.port, host, () => {
          s.off('error', reject);
          const a = s.address() as AddressInfo;
          const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
          resolve({ host: a.address, port: a.port, url: `http://${h}:${a.port}` });
        });
      });
    },
    publish(rows) {
      if (rows.length === 0) return;
      for (const s of streams) {
        const matching = rows.filter((r) => rowMatches(r, s.filter));
        if (matching.length > 0) s.send(matching);
      }
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const s of [...streams]) s.end();
        if (!server) { resolve(); return; }
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
