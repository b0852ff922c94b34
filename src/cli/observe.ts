// `weir observe`: stored flows with Hubble's filter model, from the query API (`--server`, or the
// lab's running agent) or straight from a store (`--data-dir`, `--clickhouse-url`). The flags are
// turned into the API's query parameters and validated by src/api/params.ts, so the command and
// the API refuse the same things with the same words.
import { existsSync } from 'node:fs';
import { Command, Option, InvalidArgumentError } from 'commander';
import { DEFAULT_LAB } from '../lab/lab.js';
import { readAgentInfo } from '../agent/discovery.js';
import { defaultDataDir } from '../agent/agent.js';
import { checkLabName } from '../lab/state.js';
import { ParamError, parseFlowQuery } from '../api/params.js';
import { StoreFollower } from '../api/follow.js';
import type { FlowSource } from '../api/source.js';
import { MAX_LIMIT } from '../store/filter.js';
import type { FlowRow, SideIdentity } from '../store/row.js';

/** rows printed without --last (and without --follow), as Hubble does */
export const DEFAULT_LAST = 20;
/** how often --follow asks a store directly for new rows */
export const FOLLOW_POLL_MS = 1_000;

/** Flag -> query parameter; repeatable flags keep every value. */
export const FLAG_PARAMETERS = [
  ['namespace', 'namespace'], ['pod', 'pod'], ['label', 'label'], ['ip', 'ip'], ['cidr', 'cidr'],
  ['fromNamespace', 'src_namespace'], ['fromPod', 'src_pod'], ['fromLabel', 'src_label'], ['fromIp', 'src_ip'], ['fromCidr', 'src_cidr'],
  ['toNamespace', 'dst_namespace'], ['toPod', 'dst_pod'], ['toLabel', 'dst_label'], ['toIp', 'dst_ip'], ['toCidr', 'dst_cidr'],
  ['verdict', 'verdict'], ['port', 'port'], ['protocol', 'protocol'], ['policy', 'policy'],
  ['since', 'since'], ['until', 'until'],
] as const;

type FilterFlag = typeof FLAG_PARAMETERS[number][0];

export type OutputFormat = 'table' | 'json' | 'jsonl';

export interface ObserveFlags extends Partial<Record<FilterFlag, string[] | string>> {
  last?: number;
  follow?: boolean;
  output: OutputFormat;
  server?: string;
  token?: string;
  dataDir?: string;
  clickhouseUrl?: string;
  clickhouseUser?: string;
  clickhousePassword?: string;
  clickhouseDatabase?: string;
  lab: string;
}

const flagName = (key: string): string => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** The flags as the API's query parameters, in flag order. */
export function flagsToParams(o: Partial<Record<FilterFlag, string[] | string>>): [string, string][] {
  const out: [string, string][] = [];
  for (const [flag, param] of FLAG_PARAMETERS) {
    const v = o[flag];
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out.push([param, one]);
  }
  return out;
}

/**
 * Validates the flags as the API would (same checks, same messages), naming the flag:
 * `--from-label: "app=" ...`. Returns the query parameters to send or to run.
 */
export function checkFlags(o: ObserveFlags, now: () => number = Date.now): [string, string][] {
  const params = flagsToParams(o);
  try {
    parseFlowQuery(params, { now });
  } catch (err) {
    if (!(err instanceof ParamError)) throw err;
    const flag = FLAG_PARAMETERS.find(([, p]) => p === err.parameter)?.[0];
    throw new InvalidArgumentError(`${flag ? flagName(flag) : err.parameter}: ${err.detail}`);
  }
  if (o.follow && o.output === 'json') throw new InvalidArgumentError('-o json is one document; with --follow use -o jsonl (or table)');
  const sources = [o.server, o.dataDir, o.clickhouseUrl].filter((x) => x !== undefined).length;
  if (sources > 1) throw new InvalidArgumentError('give one of --server, --data-dir and --clickhouse-url');
  return params;
}

// ---- output ----

/** `::ffff:10.0.0.1` -> `10.0.0.1`; `::` (not kept) -> '' */
export function displayIp(ip: string): string {
  if (ip === '::' || ip === '') return '';
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1]! : ip;
}

/** One side as a person reads it: `ns/pod`, the node, a world name, or the address. */
export function displaySide(s: SideIdentity): string {
  const ip = displayIp(s.ip);
  if (s.kind === 'pod' && s.pod) return `${s.namespace}/${s.pod}`;
  if (s.kind === 'host') return s.node ? `host:${s.node}` : ip ? `host:${ip}` : 'host';
  if (s.kind === 'world') return s.name ? `${s.name}:${ip || '*'}` : ip || 'world';
  return ip || '-';
}

const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' };

export function displayTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

function columns(r: FlowRow): string[] {
  if (r.kind === 'lost') {
    return [displayTime(r.ts), 'LOST', '-', '-', '-', r.reason || '-', `${r.count} events`];
  }
  const proto = PROTOCOL_NAMES[r.protocol] ?? String(r.protocol);
  const portProto = r.protocol === 6 || r.protocol === 17 || r.protocol === 132 ? `${r.dst.port}/${proto}` : proto;
  const packets = r.packetsFwd + r.packetsRev || r.count;
  const verdict = (r.verdict || r.kind).toUpperCase();
  return [displayTime(r.ts), verdict, displaySide(r.src), displaySide(r.dst), portProto, r.policy || '-', `${packets}/${r.bytesFwd + r.bytesRev}`];
}

const HEADER = ['TIME (UTC)', 'VERDICT', 'SOURCE', 'DESTINATION', 'PORT', 'POLICY', 'PACKETS/BYTES'];
/** column widths for --follow, where later rows cannot widen earlier ones */
const FOLLOW_WIDTHS = [23, 7, 28, 28, 10, 36, 0];

function align(cells: string[][], widths: number[]): string[] {
  return cells.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}

/** Rows (oldest first) as a table with a header. */
export function formatTable(rows: readonly FlowRow[]): string {
  const cells = [HEADER, ...rows.map(columns)];
  const widths = HEADER.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return align(cells, widths).join('\n');
}

/** Streaming table lines: fixed widths so every line lines up without knowing what follows. */
export function formatTableLines(rows: readonly FlowRow[], header: boolean): string[] {
  return align([...(header ? [HEADER] : []), ...rows.map(columns)], FOLLOW_WIDTHS);
}

// ---- sources ----

/** Where rows come from: a page of the newest rows, and a follow loop. */
export interface ObserveSource {
  /** the newest `limit` rows matching, newest first */
  last(limit: number): Promise<readonly FlowRow[]>;
  /** calls onRows with new rows (oldest first) until the signal aborts */
  follow(after: readonly FlowRow[], onRows: (rows: readonly FlowRow[]) => void, signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/** A store opened in this process (embedded chDB or a ClickHouse server). */
export function storeSource(store: FlowSource & { close(): Promise<void> }, params: [string, string][], opts: { pollMs?: number; now?: () => number } = {}): ObserveSource {
  const now = opts.now ?? Date.now;
  return {
    async last(limit) {
      const q = parseFlowQuery([...params, ['limit', String(limit)]], { now });
      return (await store.queryFlows(q)).rows;
    },
    async follow(after, onRows, signal) {
      const q = parseFlowQuery(params, { now });
      const follower = new StoreFollower(store, q.filter, { now, startMs: after.length > 0 ? Math.min(...after.map((r) => r.ts)) : q.filter.since ?? now() });
      follower.markSeen(after);
      while (!signal.aborted) {
        const rows = await follower.poll();
        if (rows.length > 0) onRows(rows);
        await new Promise<void>((resolve) => {
          const done = () => { clearTimeout(t); signal.removeEventListener('abort', done); resolve(); };
          const t = setTimeout(done, opts.pollMs ?? FOLLOW_POLL_MS);
          signal.addEventListener('abort', done, { once: true });
        });
      }
    },
    close: () => store.close(),
  };
}

/** An error body of the API: `{ error: { parameter?, message } }`. */
async function apiError(res: Response): Promise<Error> {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json() as { error?: { message?: string } };
    if (body.error?.message) message = body.error.message;
  } catch { /* not JSON */ }
  return new Error(`the API at ${new URL(res.url).origin} said: ${message}`);
}

/** The query API (a remote server, or the lab's agent). */
export function apiSource(server: string, params: [string, string][], token?: string): ObserveSource {
  const base = server.replace(/\/+$/, '');
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  const url = (path: string, extra: [string, string][] = []) => `${base}${path}?${new URLSearchParams([...params, ...extra]).toString()}`;
  return {
    async last(limit) {
      const res = await fetch(url('/api/v1/flows', [['limit', String(limit)]]), { headers });
      if (!res.ok) throw await apiError(res);
      return ((await res.json()) as { rows: FlowRow[] }).rows;
    },
    async follow(_after, onRows, signal) {
      let res: Response;
      try {
        res = await fetch(url('/api/v1/flows/stream'), { headers: { ...headers, Accept: 'text/event-stream' }, signal });
      } catch (err) {
        if (signal.aborted) return;
        throw err;
      }
      if (!res.ok || !res.body) throw await apiError(res);
      const decoder = new TextDecoder();
      let buffer = '';
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(chunk, { stream: true });
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const event = parseSseEvent(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            if (event?.event === 'flow') onRows([JSON.parse(event.data) as FlowRow]);
            else if (event?.event === 'error') throw new Error(`the API's stream failed: ${(JSON.parse(event.data) as { error: { message: string } }).error.message}`);
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        throw err;
      }
      if (!signal.aborted) throw new Error('the API closed the stream');
    },
    close: async () => {},
  };
}

/** One SSE event block -> its type and data (comments and retry lines dropped). */
export function parseSseEvent(block: string): { event: string; data: string } | undefined {
  let event = 'message';
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':') || line === '') continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return data.length > 0 ? { event, data: data.join('\n') } : undefined;
}

export interface ObserveDeps {
  /** opens a store in this process */
  openStore(target: { dataDir: string } | { url: string; username?: string; password?: string; database?: string }): Promise<FlowSource & { close(): Promise<void> }>;
  write(text: string): void;
  /** aborts --follow (SIGINT in the command) */
  signal?: AbortSignal;
  now?: () => number;
  pollMs?: number;
}

/** Picks the source: --server, --clickhouse-url, --data-dir, else the lab's running agent, else its data directory. */
async function openSource(o: ObserveFlags, params: [string, string][], deps: ObserveDeps): Promise<ObserveSource> {
  const token = o.token;
  if (o.server) return apiSource(o.server, params, token);
  const local = (store: FlowSource & { close(): Promise<void> }) => storeSource(store, params, { ...(deps.now ? { now: deps.now } : {}), ...(deps.pollMs ? { pollMs: deps.pollMs } : {}) });
  if (o.clickhouseUrl) {
    return local(await deps.openStore({
      url: o.clickhouseUrl,
      ...(o.clickhouseUser !== undefined ? { username: o.clickhouseUser } : {}),
      ...(o.clickhousePassword !== undefined ? { password: o.clickhousePassword } : {}),
      ...(o.clickhouseDatabase !== undefined ? { database: o.clickhouseDatabase } : {}),
    }));
  }
  if (o.dataDir) return local(await openDataDir(o.dataDir, deps));
  // chDB holds its directory for one process: while the lab's agent runs, ask its API
  checkLabName(o.lab);
  const agent = readAgentInfo(o.lab);
  if (agent) {
    if (agent.tokenRequired && !token) throw new Error(`the agent of lab "${o.lab}" (${agent.url}) wants a token: give --token or WEIR_API_TOKEN`);
    return apiSource(agent.url, params, token);
  }
  return local(await openDataDir(defaultDataDir(o.lab), deps));
}

/** An existing embedded store (observing never creates one). */
async function openDataDir(dataDir: string, deps: ObserveDeps): Promise<FlowSource & { close(): Promise<void> }> {
  if (!existsSync(dataDir)) {
    throw new Error(`no flow store in ${dataDir}: is \`weir agent\` writing one? (or give --server, --data-dir or --clickhouse-url)`);
  }
  try {
    return await deps.openStore({ dataDir });
  } catch (err) {
    // chDB opens a directory in one process at a time: a running agent holds it
    throw new Error(`${(err as Error).message} (if an agent is using it, ask its API instead: --server URL, or --lab NAME for a lab's agent)`, { cause: err });
  }
}

/** Runs `weir observe`: the last rows, then (with --follow) new ones as they come. */
export async function runObserve(o: ObserveFlags, deps: ObserveDeps): Promise<void> {
  const params = checkFlags(o, deps.now);
  const source = await openSource(o, params, deps);
  try {
    const lastN = o.last ?? (o.follow ? 0 : DEFAULT_LAST);
    // newest first from the store; printed oldest first, as a log reads
    const rows = lastN > 0 ? [...await source.last(lastN)].reverse() : [];
    if (o.output === 'json') { deps.write(`${JSON.stringify(rows)}\n`); return; }
    if (o.output === 'jsonl') { for (const r of rows) deps.write(`${JSON.stringify(r)}\n`); }
    else if (!o.follow) { deps.write(`${rows.length > 0 ? formatTable(rows) : 'no flows match'}\n`); }
    else { for (const l of formatTableLines(rows, true)) deps.write(`${l}\n`); }
    if (!o.follow) return;
    const signal = deps.signal ?? new AbortController().signal;
    await source.follow(rows, (fresh) => {
      if (o.output === 'jsonl') for (const r of fresh) deps.write(`${JSON.stringify(r)}\n`);
      else for (const l of formatTableLines(fresh, false)) deps.write(`${l}\n`);
    }, signal);
  } finally {
    await source.close();
  }
}

function positiveLast(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > MAX_LIMIT) throw new InvalidArgumentError(`"${value}" is not a number of rows (1-${MAX_LIMIT})`);
  return n;
}

const repeat = (value: string, previous: string[] = []): string[] => [...previous, value];

/** Adds `weir observe` to the program. `openStore` is the store's (src/store/store.ts). */
export function addObserveCommand(program: Command, openStore: ObserveDeps['openStore']): Command {
  const cmd = program.command('observe')
    .description('stored flows, filtered like Hubble: from the query API (--server, or the lab\'s running agent) or the store itself');
  const r = (flags: string, description: string, repeated = 'any of them') => cmd.option(flags, `${description} (repeatable: ${repeated})`, repeat);
  const ALL = 'all must hold, on one side';
  r('--namespace <ns>', 'either side in this namespace');
  r('--pod <[ns/]pod>', 'either side is this pod');
  r('--label <match>', 'either side\'s labels: key=value, key!=value (or no such label), key (exists), !key (does not)', ALL);
  r('--ip <address>', 'either side has this address');
  r('--cidr <prefix>', 'either side\'s address is in this prefix');
  r('--from-namespace <ns>', 'the source is in this namespace');
  r('--from-pod <[ns/]pod>', 'the source is this pod');
  r('--from-label <match>', 'the source\'s labels', 'all must hold');
  r('--from-ip <address>', 'the source address');
  r('--from-cidr <prefix>', 'the source address is in this prefix');
  r('--to-namespace <ns>', 'the destination is in this namespace');
  r('--to-pod <[ns/]pod>', 'the destination is this pod');
  r('--to-label <match>', 'the destination\'s labels', 'all must hold');
  r('--to-ip <address>', 'the destination address');
  r('--to-cidr <prefix>', 'the destination address is in this prefix');
  r('--verdict <verdict>', 'allowed, denied or audit');
  r('--port <port>', 'either side\'s port');
  r('--protocol <protocol>', 'tcp, udp, sctp, icmp, icmpv6 or a number');
  r('--policy <text>', 'the deciding rule contains this, e.g. api/allow-frontend or gnp/deny-ssh');
  return cmd
    .option('--since <time>', 'from this time: RFC 3339 or a duration ago (15m, 2h, 7d)')
    .option('--until <time>', 'before this time: RFC 3339 or a duration ago')
    .option('--last <n>', `the newest N rows (default ${DEFAULT_LAST}; with --follow, none)`, positiveLast)
    .option('-f, --follow', 'then keep printing new rows as they are stored (until Ctrl-C)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'jsonl']).default('table'))
    .option('--server <url>', 'a Weir query API, e.g. http://127.0.0.1:9470')
    .addOption(new Option('--token <token>', 'bearer token for the API').env('WEIR_API_TOKEN'))
    .option('--data-dir <dir>', `an embedded store's data directory (default: ask the lab's running agent, else read ${defaultDataDir('<lab>')})`)
    .option('--clickhouse-url <url>', 'a ClickHouse server, e.g. http://localhost:8123')
    .option('--clickhouse-user <user>', 'ClickHouse user')
    .addOption(new Option('--clickhouse-password <password>', 'ClickHouse password').env('WEIR_CLICKHOUSE_PASSWORD'))
    .option('--clickhouse-database <db>', 'ClickHouse database')
    .addOption(new Option('--lab <lab>', 'without --server/--data-dir/--clickhouse-url: this lab\'s agent or store').env('WEIR_LAB').default(DEFAULT_LAB))
    .action(async (o: ObserveFlags) => {
      const ac = new AbortController();
      const stop = () => ac.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        await runObserve(o, { openStore, write: (t) => process.stdout.write(t), signal: ac.signal });
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
}
