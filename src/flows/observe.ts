// Live flow records: the datapath's ring buffer read on the event loop (no thread, one callback
// per wake-up with a batch), decoded and named. The observer also runs the conntrack collector,
// whose expiries become flow-end records in the same ring.
import { statSync } from 'node:fs';
import path from 'node:path';
import { RingBufferReader } from '../datapath/libbpf.js';
import { decodeRecord } from '../datapath/abi.js';
import { MAPS, type Datapath } from '../datapath/datapath.js';
import { readAgentInfo } from '../agent/discovery.js';
import { Lab } from '../lab/lab.js';
import { labResolver } from '../lab/resolver.js';
import { labDir, readLabState, type LabState } from '../lab/state.js';
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

/** `weir lab observe`: prints records until interrupted (or for durationMs). */
export async function observeLab(name: string, opts: { json: boolean; durationMs?: number }): Promise<void> {
  // A ring buffer has one reader: with an agent reading this lab's ring, records would be split
  // between the two and both would be wrong. The agent's stream has every record.
  const agent = readAgentInfo(name);
  if (agent) {
    throw new Error(`lab "${name}" has a flow agent reading its records (${agent.url}): use \`weir observe --lab ${name} --follow\`, which reads them from the agent`);
  }
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
  observer.onFlow((f) => console.log(opts.json ? JSON.stringify(f) : formatFlow(f)));
  observer.start();
  console.error(`observing lab "${name}" (Ctrl-C to stop)`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (opts.durationMs) setTimeout(stop, opts.durationMs).unref();
  });
  observer.drain();
  observer.close();
  lab.close();
}
