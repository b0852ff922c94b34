// The agent's flow pipeline: source -> decode -> enrich -> aggregate -> sink.
//
//   source (RingBufferReader batches: raw records, or records already decoded)
//     -> input queue (bounded: what does not fit is counted lost, 'input_queue')
//     -> decode, enrich, aggregate, in chunks with a yield to the event loop between chunks
//     -> at each interval's end: conntrack read (optional), rows
//     -> sink queue (bounded: 'sink_queue') -> sink(rows), one call at a time
//
// Decode, enrich and aggregate share one stage: they are synchronous functions on one thread,
// and a queue between them would only copy; backpressure exists where time is spent waiting, at
// the input (the event loop is busy) and at the sink (the store is slow). Every loss, at any
// stage, is counted in stats() and reported in the store as a 'lost' row naming its source.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { decodeCtEntry, decodeCtKey, type CtEntry, type CtKey, type WeirRecord } from '../datapath/abi.js';
import type { FlowRow } from '../store/row.js';
import { Aggregator, DEFAULT_INTERVAL_MS, type LossSource } from './aggregate.js';
import { RecordClock } from './clock.js';
import { decodeRecordFast } from './decode.js';
import { enricher, type RuleNamer } from './enrich.js';
import { BoundedQueue } from './queue.js';
import type { EndpointRegistry } from './registry.js';

/** Records waiting to be processed. */
export const DEFAULT_QUEUE_CAPACITY = 262_144;
/** Rows waiting for the sink. */
export const DEFAULT_SINK_QUEUE_CAPACITY = 1_000_000;
/** Records processed between two yields to the event loop. */
export const DEFAULT_CHUNK_SIZE = 2_048;
/** Rows per sink call at most. */
export const DEFAULT_SINK_BATCH = 50_000;
/** Tracked flows put into buckets between two yields when an interval ends. */
export const DEFAULT_FLUSH_CHUNK = 16_384;

export type ConntrackEntries = Iterable<readonly [CtKey, CtEntry]>;

export interface FlowPipelineOptions {
  readonly registry: EndpointRegistry;
  /** rule id -> text (ruleNamer(ids.ruleInfo) with the lab's IdAllocator) */
  readonly ruleName: RuleNamer;
  /** gets every row; may return a promise, then the next call waits for it; a throw or a
   * rejection counts the rows lost ('sink_error') */
  readonly sink: (rows: FlowRow[]) => void | Promise<void>;
  readonly intervalMs?: number;
  readonly keepIps?: boolean;
  /** this node's name: every row's `reporter` */
  readonly reporter?: string;
  readonly queueCapacity?: number;
  readonly sinkQueueCapacity?: number;
  readonly chunkSize?: number;
  readonly sinkBatch?: number;
  readonly flushChunk?: number;
  readonly maxFlows?: number;
  readonly maxPendingRows?: number;
  readonly flowTimeoutMs?: number;
  /** read at each interval's end: the whole conntrack table (readConntrack(map)), so long-lived
   * flows report their counters every interval, not only at their end */
  readonly conntrack?: () => ConntrackEntries | Promise<ConntrackEntries>;
  readonly clock?: RecordClock;
  /** flush on a timer at wall-clock multiples of intervalMs (default true); false: the caller
   * calls flush() */
  readonly timer?: boolean;
}

export interface PipelineStats {
  /** records offered to push() */
  received: number;
  /** records decoded and aggregated */
  processed: number;
  inputQueue: number;
  sinkQueue: number;
  /** records the input queue refused (= lost.input_queue) */
  dropped: number;
  /** rows handed to the sink successfully */
  rowsOut: number;
  intervals: number;
  /** conntrack reads that failed */
  conntrackReadErrors: number;
  flowsTracked: number;
  flowsExpired: number;
  /** every loss since the start, by source: events, except rows for sink_queue/sink_error */
  lost: Partial<Record<LossSource, number>>;
  registry: { pods: number; addresses: number; intervals: number };
  clockOffsetMs: number;
}

export class FlowPipeline {
  readonly intervalMs: number;
  private readonly registry: EndpointRegistry;
  private readonly agg: Aggregator;
  private readonly clock: RecordClock;
  private readonly input: BoundedQueue<Buffer | WeirRecord>;
  private readonly out: BoundedQueue<FlowRow>;
  private readonly chunkSize: number;
  private readonly sinkBatch: number;
  private readonly flushChunk: number;
  private ctReadErrors = 0;
  private readonly sink: FlowPipelineOptions['sink'];
  private readonly readCt: FlowPipelineOptions['conntrack'];
  private received = 0;
  private accepted = 0;
  private processed = 0;
  private rowsOut = 0;
  private intervals = 0;
  private processing = false;
  /** set while a flush runs: records wait in the input queue until it is done */
  private paused = false;
  private delivering: Promise<void> | undefined;
  private waiters: { target: number; resolve: () => void }[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  constructor(opts: FlowPipelineOptions) {
    this.intervalMs = opts.intervalMs ?? DEFAULT_INTERVAL_MS;
    if (!(this.intervalMs > 0)) throw new RangeError(`intervalMs must be positive, got ${opts.intervalMs}`);
    this.registry = opts.registry;
    this.clock = opts.clock ?? new RecordClock();
    this.agg = new Aggregator({
      enricher: enricher(opts.registry, opts.ruleName),
      toMs: (ns) => this.clock.toMs(ns),
      startMs: this.clock.nowMs(),
      ...(opts.reporter !== undefined ? { reporter: opts.reporter } : {}),
      ...(opts.keepIps !== undefined ? { keepIps: opts.keepIps } : {}),
      ...(opts.maxFlows !== undefined ? { maxFlows: opts.maxFlows } : {}),
      ...(opts.maxPendingRows !== undefined ? { maxPendingRows: opts.maxPendingRows } : {}),
      ...(opts.flowTimeoutMs !== undefined ? { flowTimeoutMs: opts.flowTimeoutMs } : {}),
    });
    this.input = new BoundedQueue(opts.queueCapacity ?? DEFAULT_QUEUE_CAPACITY);
    this.out = new BoundedQueue(opts.sinkQueueCapacity ?? DEFAULT_SINK_QUEUE_CAPACITY);
    this.chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.sinkBatch = opts.sinkBatch ?? DEFAULT_SINK_BATCH;
    this.flushChunk = opts.flushChunk ?? DEFAULT_FLUSH_CHUNK;
    this.sink = opts.sink;
    this.readCt = opts.conntrack;
    if (opts.timer ?? true) this.arm();
  }

  /** The source's entry point: a batch of raw ring-buffer records or decoded ones. Never blocks;
   * returns how many were accepted (the rest is counted lost, 'input_queue'). */
  push(records: readonly (Buffer | WeirRecord)[]): number {
    if (this.closing) throw new Error('flow pipeline is closed');
    this.received += records.length;
    const refused = this.input.push(records);
    if (refused > 0) this.agg.addLoss('input_queue', refused);
    const accepted = records.length - refused;
    this.accepted += accepted;
    if (accepted > 0) this.kick();
    return accepted;
  }

  /** Starts the processing loop on the next turn of the event loop (push() returns at once). */
  private kick(): void {
    if (this.processing) return;
    this.processing = true;
    setImmediate(() => void this.process());
  }

  private async process(): Promise<void> {
    try {
      while (this.input.length > 0 && !this.paused) {
        const chunk = this.input.take(this.chunkSize);
        for (const item of chunk) {
          try {
            this.agg.add(Buffer.isBuffer(item) ? decodeRecordFast(item) : item);
          } catch {
            this.agg.addLoss('invalid_record', 1); // a record the aggregator could not take
          }
        }
        this.processed += chunk.length;
        this.wake();
        if (this.input.length > 0 && !this.paused) await yieldToLoop();
      }
    } finally {
      this.processing = false;
      this.wake();
    }
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) (this.processed >= w.target ? w.resolve() : still.push(w));
    this.waiters = still;
  }

  /** Resolves once everything pushed so far is aggregated. */
  drain(): Promise<void> {
    const target = this.accepted;
    if (this.processed >= target) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push({ target, resolve });
      this.kick();
    });
  }

  /** Ends the interval now: what was pushed before is aggregated, conntrack read, rows handed to
   * the sink. Resolves when the sink has taken them. Flushes run one at a time. */
  flush(): Promise<void> {
    const run = this.flushing.then(() => this.flushNow());
    this.flushing = run.catch(() => undefined);
    return run;
  }

  private async flushNow(): Promise<void> {
    await this.drain();
    // Records pushed from now on belong to the next interval: they wait in the input queue while
    // the flush runs in steps (it yields to the event loop, and the aggregator must not change
    // under it).
    this.paused = true;
    let rows: FlowRow[];
    let endMs: number;
    try {
      await this.readConntrack();
      endMs = this.clock.nowMs();
      const steps = this.agg.flushSteps(endMs, this.flushChunk);
      for (;;) {
        const r = steps.next();
        if (r.done) {
          rows = r.value;
          break;
        }
        await yieldToLoop();
      }
    } finally {
      this.paused = false;
      if (this.input.length > 0) this.kick();
    }
    this.intervals++;
    this.registry.expire(endMs);
    this.clock.resyncIfDue();
    // loss rows always get in (one per source per interval): dropping them would hide the loss
    const lossRows = rows.filter((r) => r.kind === 'lost');
    const refused = this.out.push(rows.filter((r) => r.kind !== 'lost'));
    this.out.force(lossRows);
    if (refused > 0) this.agg.addLoss('sink_queue', refused);
    await this.deliver();
  }

  private async readConntrack(): Promise<void> {
    if (!this.readCt) return;
    const nowMs = this.clock.nowMs();
    let entries: ConntrackEntries | undefined;
    try {
      entries = await this.readCt();
    } catch {
      this.ctReadErrors++; // a failed read: counters come at the next read or at FLOW_END
      entries = undefined;
    }
    if (!entries) return;
    this.agg.beginConntrack();
    let chunk: Array<readonly [CtKey, CtEntry]> = [];
    for (const e of entries) {
      chunk.push(e);
      if (chunk.length >= this.chunkSize) {
        this.agg.conntrackEntries(chunk, nowMs);
        chunk = [];
        await yieldToLoop();
      }
    }
    this.agg.conntrackEntries(chunk, nowMs);
    this.agg.endConntrack(true);
  }

  private deliver(): Promise<void> {
    if (!this.delivering) {
      const run = this.deliverLoop();
      this.delivering = run;
      // (a loop that finished synchronously must not leave itself behind as "delivering")
      void run.finally(() => {
        if (this.delivering === run) this.delivering = undefined;
      });
    }
    return this.delivering;
  }

  /** Hands the sink queue to the sink, one call at a time; never rejects. */
  private async deliverLoop(): Promise<void> {
    while (this.out.length > 0) {
      const batch = this.out.take(this.sinkBatch);
      try {
        await this.sink(batch);
        this.rowsOut += batch.length;
      } catch {
        this.agg.addLoss('sink_error', batch.length);
      }
    }
  }

  /** Flushes at wall-clock multiples of the interval, so every agent's rows share boundaries. */
  private arm(): void {
    const now = this.clock.nowMs();
    const next = Math.ceil((now + 1) / this.intervalMs) * this.intervalMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.closing) return;
      void this.flush().finally(() => {
        if (!this.closing) this.arm();
      });
    }, next - now);
    this.timer.unref();
  }

  stats(): PipelineStats {
    const a = this.agg.stats();
    return {
      received: this.received,
      processed: this.processed,
      inputQueue: this.input.length,
      sinkQueue: this.out.length,
      dropped: a.lostTotal.input_queue ?? 0,
      rowsOut: this.rowsOut,
      intervals: this.intervals,
      conntrackReadErrors: this.ctReadErrors,
      flowsTracked: a.flowsTracked,
      flowsExpired: a.flowsExpired,
      lost: a.lostTotal,
      registry: this.registry.stats(),
      clockOffsetMs: this.clock.offset,
    };
  }

  /** Stops the timer, flushes what is left, refuses further pushes. Idempotent. */
  close(): Promise<void> {
    if (!this.closing) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.closing = this.flush();
    }
    return this.closing;
  }
}

/** The whole conntrack table (one batch lookup), decoded; for FlowPipelineOptions.conntrack. */
export function readConntrack(map: { lookupBatch(): Array<[Buffer, Buffer]> }): ConntrackEntries {
  return decodeConntrack(map.lookupBatch());
}

function* decodeConntrack(raw: Array<[Buffer, Buffer]>): Generator<readonly [CtKey, CtEntry]> {
  for (const [k, v] of raw) yield [decodeCtKey(k), decodeCtEntry(v)] as const;
}
