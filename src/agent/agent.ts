// The flow agent: what `weir agent` runs for a lab, and what the demo and the pipeline benchmark
// run in-process. Stages, each bounded, each counting what it loses:
//
//   ring buffer (source.ts) -> decode -> FlowPipeline (enrich by the registry, aggregate)
//     -> FlowWriter (batches, retries, disk spool) -> FlowStore (chDB or ClickHouse)
//                                                  -> API server (query API, live SSE streams)
//
// Loss is counted at every hop: LOST records from the kernel (the ring was full), records this
// build cannot decode, events the pipeline's queue refused, rows the writer's spool could not
// take. `stats()` and GET /api/v1/stats show them; the pipeline also stores `lost` rows.
//
// The agent never touches the datapath's policy: if it cannot open its store it exits with the
// reason, and the lab goes on enforcing without it.
import http from 'node:http';
import crypto from 'node:crypto';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { Datapath, MAPS } from '../datapath/datapath.js';
import { requirePrivileges } from '../datapath/privileges.js';
import { checkLabName, readLabState, type LabState } from '../lab/state.js';
import { labNodeName } from '../lab/host-protection.js';
import { ruleNamer } from '../flows/enrich.js';
import { EndpointRegistry, type WorldName } from '../flows/registry.js';
import { FlowPipeline, readConntrack, type PipelineStats } from '../flows/pipeline.js';
import type { LossSource } from '../flows/aggregate.js';
import { openStore, type FlowStore, type StoreOptions } from '../store/store.js';
import { FlowWriter, type WriterStats, type FlowWriterOptions } from '../store/writer.js';
import express from 'express';
import { createApiServer, createLimitedServer, type ApiServer } from '../api/server.js';
import { createClickHouseEndpoint } from '../api/clickhouse-http.js';
import type { FlowRow } from '../store/row.js';
import { RingSource, type SourceStats } from './source.js';
import { LabStateFeed, LAB_WORLD_NAMES } from './lab-feed.js';
import { claimAgentInfo, removeAgentInfo, writeAgentInfo } from './discovery.js';
import { AgentMetrics, type MetricsOptions } from '../metrics/agent-metrics.js';

export const DEFAULT_INTERVAL_MS = 15_000;
/** The agent's counters on its API (the query API's own routes are src/api's). */
export const STATS_PATH = '/api/v1/stats';
/** Prometheus metrics (text exposition; docs/metrics.md), with the API's bearer-token rule. */
export const METRICS_PATH = '/metrics';
/** The read-only ClickHouse-compatible endpoint (docs/api.md): Grafana's data source URL path. */
export const CLICKHOUSE_PATH = '/clickhouse';
/** The endpoint's user when the API token is its password (no credentials of its own). */
export const CLICKHOUSE_USER = 'weir';
/** How often the agent looks whether its lab is still there. */
const LAB_WATCH_MS = 1_000;

export type StoreTarget = { readonly dataDir: string } | { readonly url: string; readonly username?: string; readonly password?: string; readonly database?: string };

/** The embedded store's default home for a lab's flows (outside /run: flows outlive the lab). */
export function defaultDataDir(lab: string): string {
  return path.join('/var/lib/weir/flows', lab);
}

/** The store could not be opened or migrated: the agent cannot run (the datapath can). */
export class AgentStoreError extends Error {
  constructor(readonly target: string, readonly reason: string) {
    // the store's own errors name it already
    super(reason.startsWith('cannot open the flow store') ? reason : `cannot open the flow store ${target}: ${reason}`);
    this.name = 'AgentStoreError';
  }
}

export interface LossStats {
  /** events the kernel could not put in the ring (its LOST records) */
  readonly ring: number;
  /** records this build could not decode */
  readonly invalid: number;
  /** events or rows the pipeline could not take: its input queue, flow table, row buffer, sink
   * queue, or a failing sink */
  readonly pipeline: number;
  /** rows the writer dropped (spool full or damaged) */
  readonly spool: number;
  readonly total: number;
  /** the pipeline's losses by where they happened */
  readonly bySource: Partial<Record<LossSource, number>>;
}

export interface AgentStats {
  readonly lab: string;
  readonly startedAt: string;
  readonly source: SourceStats;
  /** the datapath's own counters (weir_counters_v1): events sent to / lost before the ring */
  readonly kernel: Readonly<Record<string, number>>;
  readonly pipeline: PipelineStats;
  readonly writer: WriterStats;
  readonly rowsWritten: number;
  readonly registryUpdates: number;
  readonly lost: LossStats;
}

/** What the agent needs to run, however it was put together (a lab, a benchmark). */
export interface AgentParts {
  readonly name: string;
  readonly datapath: Datapath;
  readonly store: FlowStore;
  readonly registry: EndpointRegistry;
  /** rule id -> the rule in words (`x/allow-a ingress[0]`); '' unknown */
  readonly ruleName: (id: number) => string;
  /** called before each ring batch is processed: bring the registry up to date */
  readonly beforeBatch?: () => void;
  readonly registryUpdates?: () => number;
  readonly reporter: string;
  readonly intervalMs?: number;
  readonly keepIps?: boolean;
  readonly queueCapacity?: number;
  /** the writer's disk spool for rows the store cannot take now */
  readonly spoolDir: string;
  readonly writer?: Partial<Omit<FlowWriterOptions, 'spoolDir'>>;
  readonly api?: { readonly host: string; readonly port: number; readonly token?: string };
  /** the read-only ClickHouse-compatible endpoint for Grafana at CLICKHOUSE_PATH on the API's
   * port (docs/api.md); default on. Who may use it: the API token (as a bearer), these
   * credentials (basic auth), or, when neither is set, anyone who reaches a loopback listener. */
  readonly clickhouseEndpoint?: false | { readonly credentials?: { readonly user: string; readonly password: string } };
  readonly conntrackIntervalMs?: number;
  readonly log?: (line: string) => void;
  /** the agent closes the store when it closes (default true) */
  readonly ownsStore?: boolean;
  /** extra work on close (after the store closed): the lab's agent.json, the datapath handle */
  readonly onClose?: () => void | Promise<void>;
  /** cardinality knobs of /metrics */
  readonly metrics?: MetricsOptions;
  /** what keeps the agent from being ready, [] when nothing does (a node agent: synced, policy
   * applied, interfaces reconciled); /readyz answers 503 with these before it asks the store */
  readonly notReady?: () => readonly string[];
}

export class Agent {
  readonly startedAt = new Date();
  private readonly source: RingSource;
  private readonly pipeline: FlowPipeline;
  private readonly writer: FlowWriter;
  private api?: ApiServer;
  private server?: http.Server;
  private apiUrl?: string;
  private readonly tapListeners: ((records: readonly Buffer[]) => void)[] = [];
  private closing?: Promise<void>;
  readonly metrics: AgentMetrics;

  constructor(private readonly parts: AgentParts) {
    this.metrics = new AgentMetrics({ stats: () => this.stats(), running: () => this.apiUrl !== undefined && !this.closing && !parts.notReady?.().length, datapath: parts.datapath, registry: parts.registry, startedAt: this.startedAt }, parts.metrics);
    this.writer = new FlowWriter(this.metrics.timeStore(parts.store), {
      spoolDir: parts.spoolDir, ...parts.writer,
      onError: (err) => parts.log?.(`writer: ${err.message}`),
    });
    const ct = parts.datapath.map(MAPS.ct);
    this.pipeline = new FlowPipeline({
      intervalMs: parts.intervalMs ?? DEFAULT_INTERVAL_MS,
      keepIps: parts.keepIps ?? false,
      reporter: parts.reporter,
      ...(parts.queueCapacity !== undefined ? { queueCapacity: parts.queueCapacity } : {}),
      ruleName: parts.ruleName,
      registry: parts.registry,
      // long-lived flows report their counters every interval, not only when they end
      conntrack: () => readConntrack(ct),
      sink: (rows: FlowRow[]) => this.deliver(rows),
    });
    this.source = new RingSource(parts.datapath, {
      ...(parts.conntrackIntervalMs !== undefined ? { conntrackIntervalMs: parts.conntrackIntervalMs } : {}),
      onRecords: (records) => {
        parts.beforeBatch?.();
        for (const l of this.tapListeners) l(records);
        this.pipeline.push(records);
      },
      onError: (err) => parts.log?.(`conntrack collector: ${err.message}`),
    });
  }

  private deliver(rows: readonly FlowRow[]): void {
    if (rows.length === 0) return;
    this.metrics.observeRows(rows);
    this.writer.write(rows);
    this.api?.publish(rows);
  }

  /** Starts reading the ring (and the API, when configured). Resolves with the API's URL. */
  async start(): Promise<string | undefined> {
    if (this.parts.api) {
      const { host, port, token } = this.parts.api;
      this.api = createApiServer({ store: this.parts.store, host, port, ...(token !== undefined ? { token } : {}) });
      const sql = this.clickhouseApp(host, token);
      this.server = await listenWithStats(this.api, { host, port, ...(token !== undefined ? { token } : {}) }, () => this.stats(), this.metrics, this.parts.notReady, sql);
      const a = this.server.address() as AddressInfo;
      this.apiUrl = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    }
    this.source.start();
    return this.apiUrl;
  }

  get url(): string | undefined {
    return this.apiUrl;
  }

  /** The ClickHouse-compatible endpoint's app, or undefined when it is off or nobody could be
   * let in (no token, no credentials, and a listener other than loopback). */
  private clickhouseApp(host: string, token: string | undefined): express.Express | undefined {
    const opt = this.parts.clickhouseEndpoint ?? {};
    if (opt === false) return undefined;
    const loopback = host === 'localhost' || host === '::1' || host.startsWith('127.');
    if (token === undefined && opt.credentials === undefined && !loopback) {
      this.parts.log?.(`the ClickHouse-compatible endpoint is off: listening on ${host} with neither an API token nor endpoint credentials`);
      return undefined;
    }
    // Grafana's data source sends a user and password (basic auth): with no credentials of its
    // own, the endpoint takes the API token as the password of the user CLICKHOUSE_USER
    const credentials = opt.credentials ?? (token !== undefined && token.length >= 8 ? { user: CLICKHOUSE_USER, password: token } : undefined);
    const endpoint = createClickHouseEndpoint({
      store: this.parts.store,
      ...(token !== undefined ? { token } : {}),
      ...(credentials ? { credentials } : {}),
      ...(token === undefined && credentials === undefined ? { allowAnonymous: true } : {}),
      displayName: this.parts.name,
      log: (line) => this.parts.log?.(`clickhouse endpoint: ${line}`),
    });
    const app = express();
    app.disable('x-powered-by');
    app.use(CLICKHOUSE_PATH, endpoint.router);
    return app;
  }

  /** The store the agent writes (for queries in-process: the demo, tests). */
  get store(): FlowStore {
    return this.parts.store;
  }

  /** Every decoded batch, before the pipeline (the demo prints records from it). */
  onRecords(listener: (records: readonly Buffer[]) => void): void {
    this.tapListeners.push(listener);
  }

  /** Delivers what is in the ring now to the pipeline (and the onRecords listeners),
   * synchronously; the record count. */
  drain(): number {
    return this.source.drain();
  }

  /** Resolves once every record read so far is aggregated. */
  drained(): Promise<void> {
    return this.pipeline.drain();
  }

  /** Runs the conntrack collector now (expired flows -> FLOW_END records). */
  collectConntrack(): number {
    return this.source.collect();
  }

  /** Everything in flight reaches the store: the ring drained, every open aggregate emitted,
   * every batch written (or spooled, if the store is down). */
  async flush(): Promise<void> {
    this.source.drain();
    await this.pipeline.flush();
    await this.writer.flush();
  }

  stats(): AgentStats {
    const source = this.source.stats();
    const pipeline = this.pipeline.stats();
    const writer = this.writer.stats();
    const kernel: Record<string, number> = {};
    try {
      for (const [k, v] of this.parts.datapath.counters()) kernel[k.toLowerCase()] = Number(v);
    } catch { /* the lab is gone */ }
    const bySource = pipeline.lost;
    const ring = bySource.ring_buffer ?? 0;
    const invalid = bySource.invalid_record ?? 0;
    const inPipeline = Object.values(bySource).reduce((a, b) => a + (b ?? 0), 0) - ring - invalid;
    const spool = writer.dropped;
    return {
      lab: this.parts.name,
      startedAt: this.startedAt.toISOString(),
      source, kernel, pipeline, writer,
      rowsWritten: writer.written,
      registryUpdates: this.parts.registryUpdates?.() ?? 0,
      lost: { ring, invalid, pipeline: inPipeline, spool, total: ring + invalid + inPipeline + spool, bySource },
    };
  }

  /** Flushes what it has, then stops every stage. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const errors: Error[] = [];
      const step = async (what: string, f: () => unknown) => {
        try { await f(); } catch (e) { errors.push(new Error(`${what}: ${(e as Error).message}`)); }
      };
      await step('ring', () => this.source.close());
      await step('pipeline', () => this.pipeline.close());
      await step('writer', () => this.writer.close());
      await step('api', async () => {
        await this.api?.close();
        const server = this.server;
        if (server) await new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); });
      });
      if (this.parts.ownsStore ?? true) await step('store', () => this.parts.store.close());
      await step('cleanup', () => this.parts.onClose?.());
      for (const e of errors) this.parts.log?.(e.message);
    })();
    return this.closing;
  }
}

/** The query API's express app behind our own HTTP server, which also answers GET
 * /api/v1/stats (the agent's counters, loss at every stage) with the API's bearer-token rule. */
async function listenWithStats(api: ApiServer, o: { host: string; port: number; token?: string }, stats: () => AgentStats, metrics: AgentMetrics, notReady?: () => readonly string[], clickhouse?: express.Express): Promise<http.Server> {
  const want = o.token !== undefined ? crypto.createHash('sha256').update(o.token).digest() : undefined;
  // the API's request size and time limits apply here too (this server is the one the API is served on)
  const server = createLimitedServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    // Grafana's ClickHouse data source: its own authentication (basic auth or the token)
    if (clickhouse && (url.pathname === CLICKHOUSE_PATH || url.pathname.startsWith(`${CLICKHOUSE_PATH}/`))) { clickhouse(req, res); return; }
    const waiting = url.pathname === '/readyz' ? notReady?.() ?? [] : [];
    if (waiting.length > 0) { // open, as the API's own /readyz: it tells nothing secret
      res.writeHead(503, { 'Content-Type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify({ error: { message: `not ready: ${waiting.join('; ')}` }, waiting }));
      return;
    }
    if (url.pathname !== STATS_PATH && url.pathname !== METRICS_PATH) { api.app(req, res); return; }
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...(status === 401 ? { 'WWW-Authenticate': 'Bearer realm="weir"' } : {}) });
      res.end(JSON.stringify(body));
    };
    if (want) {
      const m = /^Bearer ([!-~]+)$/i.exec(req.headers.authorization ?? '');
      const got = m ? crypto.createHash('sha256').update(m[1]!).digest() : undefined;
      if (!got || !crypto.timingSafeEqual(got, want)) { reply(401, { error: { message: 'authentication required: Authorization: Bearer <token>' } }); return; }
    }
    if (req.method !== 'GET') { reply(405, { error: { message: `${req.method} ${url.pathname}: only GET` } }); return; }
    if (url.pathname === METRICS_PATH) {
      metrics.exposition().then(({ contentType, body }) => { res.writeHead(200, { 'Content-Type': contentType }); res.end(body); },
        (err: Error) => reply(500, { error: { message: `metrics: ${err.message}` } }));
      return;
    }
    reply(200, stats());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => { server.off('error', reject); resolve(); });
  });
  return server;
}

/** Rule ids in words from a lab's (latest) state: rule ids are never reused in a lab. */
export function labRuleName(state: () => LabState | undefined): (id: number) => string {
  return ruleNamer((id) => state()?.ids.ruleInfo[id]);
}

export interface AgentOptions {
  readonly lab: string;
  readonly store: StoreTarget;
  readonly intervalMs?: number;
  readonly keepIps?: boolean;
  /** API address; default 127.0.0.1, a free port */
  readonly listen?: { readonly host: string; readonly port: number };
  readonly token?: string;
  /** names for outside addresses (besides the lab's own world client) */
  readonly worldNames?: readonly WorldName[];
  readonly queueCapacity?: number;
  readonly writer?: Partial<Omit<FlowWriterOptions, 'spoolDir'>>;
  /** default: <dataDir>/spool, or /var/lib/weir/spool/<lab> with a server */
  readonly spoolDir?: string;
  /** the lab went down (or was made anew) while the agent ran: its ring has no writer any more */
  readonly onLabGone?: () => void;
  /** wraps the opened store (tests: a store that fails while "down") */
  readonly wrapStore?: (store: FlowStore) => FlowStore;
  readonly log?: (line: string) => void;
  readonly metrics?: MetricsOptions;
}

function storeLabel(t: StoreTarget): string {
  return 'dataDir' in t ? t.dataDir : t.url;
}

/** Opens the store (migrating it) or throws AgentStoreError with the reason. */
export async function openAgentStore(target: StoreTarget): Promise<FlowStore> {
  try {
    return await openStore(target as StoreOptions);
  } catch (err) {
    throw new AgentStoreError(storeLabel(target), (err as Error).message);
  }
}

/** Starts the agent of a lab: returns once it reads the ring and its API listens. */
export async function runAgent(opts: AgentOptions): Promise<Agent> {
  checkLabName(opts.lab);
  const first = readLabState(opts.lab); // the lab must be up
  requirePrivileges('weir agent');
  const info = { version: 1 as const, lab: opts.lab, pid: process.pid, url: '', tokenRequired: opts.token !== undefined, store: storeLabel(opts.store), startedAt: new Date().toISOString() };
  claimAgentInfo(info);
  let store: FlowStore;
  try {
    store = await openAgentStore(opts.store);
  } catch (err) {
    removeAgentInfo(opts.lab);
    throw err;
  }
  if (opts.wrapStore) store = opts.wrapStore(store);
  let datapath: Datapath | undefined;
  let agentMade = false;
  try {
    datapath = Datapath.open(first.pinRoot);
    const registry = new EndpointRegistry({ node: labNodeName(first), worldNames: [...(opts.worldNames ?? []), ...LAB_WORLD_NAMES] });
    const feed = new LabStateFeed(opts.lab, registry);
    feed.sync();
    const dp = datapath;
    const spoolDir = opts.spoolDir ?? ('dataDir' in opts.store ? path.join(opts.store.dataDir, 'spool') : path.join('/var/lib/weir/spool', opts.lab));
    agentMade = true;
    const agent = new Agent({
      name: opts.lab, datapath: dp, store, registry,
      ruleName: labRuleName(() => feed.current),
      // Before every batch, not on a timer: a record made after a pod change must find it.
      beforeBatch: () => { feed.sync(); },
      registryUpdates: () => feed.updates,
      reporter: labNodeName(first) || hostname(),
      ...(opts.intervalMs !== undefined ? { intervalMs: opts.intervalMs } : {}),
      ...(opts.keepIps !== undefined ? { keepIps: opts.keepIps } : {}),
      ...(opts.queueCapacity !== undefined ? { queueCapacity: opts.queueCapacity } : {}),
      spoolDir, ...(opts.writer ? { writer: opts.writer } : {}),
      api: { host: opts.listen?.host ?? '127.0.0.1', port: opts.listen?.port ?? 0, ...(opts.token !== undefined ? { token: opts.token } : {}) },
      ...(opts.log ? { log: opts.log } : {}),
      ...(opts.metrics ? { metrics: opts.metrics } : {}),
      onClose: () => { clearInterval(watch); removeAgentInfo(opts.lab); dp.close(); },
    });
    // A lab taken down (or taken down and made again: new pins, a new ring) leaves this agent
    // reading a ring nobody writes: say so, once.
    const watch = setInterval(() => {
      let same = false;
      try { same = readLabState(opts.lab).createdAt === first.createdAt; } catch { /* gone */ }
      if (same) return;
      clearInterval(watch);
      opts.log?.(`lab "${opts.lab}" went down`);
      opts.onLabGone?.();
    }, LAB_WATCH_MS);
    watch.unref();
    let url: string;
    try {
      url = (await agent.start())!;
    } catch (err) {
      await agent.close(); // closes the store and the datapath handle, removes the claim
      throw err;
    }
    writeAgentInfo({ ...info, url, startedAt: agent.startedAt.toISOString() });
    opts.log?.(`reading lab "${opts.lab}" into ${storeLabel(opts.store)}; API on ${url}`);
    return agent;
  } catch (err) {
    if (!agentMade) {
      datapath?.close();
      await store.close().catch(() => undefined);
      removeAgentInfo(opts.lab);
    }
    throw err;
  }
}
