// Live flow records: the datapath's ring buffer read on the event loop (no thread, one callback
// per wake-up with a batch), decoded and named. The observer also runs the conntrack collector,
// whose expiries become flow-end records in the same ring. `weir lab observe` uses it when no flow
// agent reads the lab; with one, it follows the agent's live stream instead.
import { statSync } from 'node:fs';
import path from 'node:path';
import { RingBufferReader } from '../datapath/libbpf.js';
import { decodeRecord } from '../datapath/abi.js';
import { MAPS, type Datapath } from '../datapath/datapath.js';
import { readAgentInfo, type AgentInfo } from '../agent/discovery.js';
import { apiSource, formatTableLines } from '../cli/observe.js';
import { Lab } from '../lab/lab.js';
import { labResolver } from '../lab/resolver.js';
import { labDir, labExists, readLabState, type LabState } from '../lab/state.js';
import { describeRecord, formatFlow, type FlowView, type Resolver } from './describe.js';

/** How often expired conntrack entries are collected (and their flow-end records made). */
export const CONNTRACK_GC_INTERVAL_MS = 5_000;
/** How often `weir lab observe` looks whether the lab's state (pod names) changed. */
const STATE_RECHECK_MS = 200;

export class FlowObserver {
  private reader?: RingBufferReader;
  private gcTimer?: NodeJS.Timeout;
  private readonly listeners: ((f: FlowView) => void)[] = [];
  private closed = false;

  constructor(private readonly datapath: Datapath, private readonly resolver: Resolver) {}

  /** For a lab held in this process: names come from its live state. */
  static forLab(lab: Lab): FlowObserver {
    return new FlowObserver(lab.dp, labResolver(() => lab.snapshot as LabState));
  }

  onFlow(listener: (f: FlowView) => void): void {
    this.listeners.push(listener);
  }

  start(): void {
    if (this.closed) throw new Error('observer is closed');
    if (this.reader) return;
    this.reader = new RingBufferReader(this.datapath.map(MAPS.events), (records) => {
      for (const raw of records) {
        const view = describeRecord(decodeRecord(raw), this.resolver);
        for (const l of this.listeners) l(view);
      }
    });
    this.gcTimer = setInterval(() => this.datapath.collectConntrack(), CONNTRACK_GC_INTERVAL_MS);
    this.gcTimer.unref();
  }

  /** Delivers whatever is in the ring now, synchronously. */
  drain(): number {
    return this.reader?.consume() ?? 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.gcTimer) clearInterval(this.gcTimer);
    this.reader?.close();
  }
}

export interface ObserveLabOptions {
  readonly json: boolean;
  readonly durationMs?: number;
  /** where lines go (default stdout) */
  readonly write?: (line: string) => void;
  /** the agent's bearer token (default WEIR_API_TOKEN) */
  readonly token?: string;
}

/** `weir lab observe`: prints flows until interrupted (or for durationMs). With the lab's flow
 * agent running it follows the agent's live stream (a ring buffer has one reader: the agent's
 * stream is the one place every record goes); without one, it reads the ring itself and prints
 * one line per record. */
export async function observeLab(name: string, opts: ObserveLabOptions): Promise<void> {
  const agent = readAgentInfo(name);
  if (agent) return observeThroughAgent(name, agent, opts);
  return observeRing(name, opts);
}

/** Resolves after durationMs, or on SIGINT/SIGTERM; `done()` removes the handlers. */
function stopSignal(durationMs?: number): { promise: Promise<void>; done: () => void } {
  let stop!: () => void;
  const promise = new Promise<void>((resolve) => { stop = resolve; });
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const timer = durationMs ? setTimeout(stop, durationMs) : undefined;
  timer?.unref();
  return { promise, done: () => { clearTimeout(timer); process.off('SIGINT', stop); process.off('SIGTERM', stop); } };
}

/** Rows from the agent's stream (GET /api/v1/flows/stream): what it stores, as it stores it:
 * allowed flows aggregated per interval, denied/audit/log one row each with the 5-tuple. */
async function observeThroughAgent(name: string, agent: AgentInfo, opts: ObserveLabOptions): Promise<void> {
  const write = opts.write ?? ((l: string) => console.log(l));
  const token = opts.token ?? process.env.WEIR_API_TOKEN;
  if (agent.tokenRequired && !token) throw new Error(`the flow agent of lab "${name}" (${agent.url}) wants a token: set WEIR_API_TOKEN`);
  console.error(`observing lab "${name}" through its flow agent (${agent.url}): allowed flows come as one row per interval, denied flows one row each (Ctrl-C to stop)`);
  if (!opts.json) for (const l of formatTableLines([], true)) write(l);
  const ac = new AbortController();
  const stop = stopSignal(opts.durationMs);
  void stop.promise.then(() => ac.abort());
  try {
    await apiSource(agent.url, [], token).follow([], (rows) => {
      if (opts.json) for (const r of rows) write(JSON.stringify(r));
      else for (const l of formatTableLines(rows, false)) write(l);
    }, ac.signal);
  } catch (err) {
    // the agent ended the stream: it stopped (`weir lab down` stops it first)
    if ((err as Error).message === 'the API closed the stream') {
      console.error(`the flow agent of lab "${name}" stopped${labExists(name) ? '' : ': the lab went down'}`);
      return;
    }
    const cause = (err as Error & { cause?: { code?: string; message?: string } }).cause;
    const detail = cause?.code ?? cause?.message;
    throw new Error(`cannot follow the flow agent of lab "${name}" (${agent.url}): ${(err as Error).message}${detail ? ` (${detail})` : ''}`);
  } finally {
    stop.done();
  }
}

/** Records straight from the ring, one line each (no agent reads it). */
async function observeRing(name: string, opts: ObserveLabOptions): Promise<void> {
  const write = opts.write ?? ((l: string) => console.log(l));
  const lab = Lab.open(name);
  // Another `weir lab apply` may change the lab while we watch: re-read its state when it changes.
  // Names are looked up several times per record, so the file is checked at most every
  // STATE_RECHECK_MS, not on every lookup.
  let state = lab.snapshot as LabState;
  let stamp = 0;
  let checkedAt = 0;
  const current = (): LabState => {
    const now = Date.now();
    if (now - checkedAt < STATE_RECHECK_MS) return state;
    checkedAt = now;
    try {
      const m = statSync(path.join(labDir(name), 'state.json')).mtimeMs;
      if (m !== stamp) { stamp = m; state = readLabState(name); }
    } catch { /* lab went down: keep the last names */ }
    return state;
  };
  const observer = new FlowObserver(lab.dp, labResolver(current));
  observer.onFlow((f) => write(opts.json ? JSON.stringify(f) : formatFlow(f)));
  observer.start();
  console.error(`observing lab "${name}" from its ring buffer, one line per record (Ctrl-C to stop)`);
  const stop = stopSignal(opts.durationMs);
  await stop.promise;
  stop.done();
  observer.drain();
  observer.close();
  lab.close();
}
