// The agent's source stage: the datapath's ring buffer read on the event loop (a uv_poll on the
// ring's epoll fd, one batch per wake-up: no thread, no blocking read; a batch is at most what the
// 8 MiB ring holds), handed on raw; the pipeline decodes in chunks, yielding to the event loop in
// between. The conntrack collector runs every CONNTRACK_GC_INTERVAL_MS, so expired flows get
// their FLOW_END records. What the kernel could not put in the ring arrives as LOST records,
// which the pipeline counts and stores as `lost` rows.
import { RingBufferReader } from '../datapath/libbpf.js';
import { MAPS, type Datapath } from '../datapath/datapath.js';
import { CONNTRACK_GC_INTERVAL_MS } from '../flows/observe.js';

export interface SourceStats {
  /** records read from the ring */
  readonly records: number;
  /** wake-ups that delivered records */
  readonly batches: number;
  /** the largest batch one wake-up delivered */
  readonly maxBatch: number;
  /** conntrack entries the collector removed */
  readonly conntrackCollected: number;
  /** collector runs that failed */
  readonly conntrackErrors: number;
}

export interface RingSourceOptions {
  readonly conntrackIntervalMs?: number;
  /** called with every batch of raw records, in ring order */
  readonly onRecords: (records: Buffer[]) => void;
  /** a collector run failed (the source keeps going) */
  readonly onError?: (err: Error) => void;
}

export class RingSource {
  private reader?: RingBufferReader;
  private gcTimer?: NodeJS.Timeout;
  private closed = false;
  private s = { records: 0, batches: 0, maxBatch: 0, conntrackCollected: 0, conntrackErrors: 0 };

  constructor(private readonly datapath: Datapath, private readonly opts: RingSourceOptions) {}

  start(): void {
    if (this.closed) throw new Error('source is closed');
    if (this.reader) return;
    this.reader = new RingBufferReader(this.datapath.map(MAPS.events), (raw) => {
      this.s.records += raw.length;
      this.s.batches++;
      if (raw.length > this.s.maxBatch) this.s.maxBatch = raw.length;
      this.opts.onRecords(raw);
    });
    this.gcTimer = setInterval(() => this.collect(), this.opts.conntrackIntervalMs ?? CONNTRACK_GC_INTERVAL_MS);
    this.gcTimer.unref();
  }

  /** Runs the conntrack collector now (its FLOW_END records land in the ring). */
  collect(): number {
    try {
      const n = this.datapath.collectConntrack();
      this.s.conntrackCollected += Math.max(0, n);
      return n;
    } catch (err) {
      this.s.conntrackErrors++;
      this.opts.onError?.(err as Error);
      return 0;
    }
  }

  /** Delivers whatever is in the ring now, synchronously; the record count. */
  drain(): number {
    return this.reader && !this.reader.closed ? this.reader.consume() : 0;
  }

  stats(): SourceStats {
    return { ...this.s };
  }

  /** Stops reading (after a last drain). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.gcTimer) clearInterval(this.gcTimer);
    try { this.drain(); } catch { /* the map may be gone with its lab */ }
    this.reader?.close();
  }
}
