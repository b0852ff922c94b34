// FlowWriter: the sink between the pipeline and the store, shaped like OpenTelemetry's batch
// processor. write() only appends to memory and never waits; one background loop inserts batches
// (by rows, or when the oldest buffered row has waited maxDelayMs), retrying with exponential
// backoff. When the store stays unavailable, batches go to the disk spool (spool.ts) instead of
// growing memory, and the spool is replayed oldest first, before newer rows, once the store
// answers again. Every batch has a dedup token from birth to acknowledgement, on retry and on
// replay, so a batch the store took but did not acknowledge is not doubled. Loss is counted,
// never silent: rows the spool cannot take are `dropped`.

import { randomUUID } from 'node:crypto';
import type { FlowRow } from './row.js';
import { Spool, SpoolCorruptError, type SpoolEntry } from './spool.js';
import type { FlowStore } from './store.js';

export interface RetryOptions {
  /** first wait after a failed insert */
  readonly initialDelayMs: number;
  /** the wait doubles up to this; also the longest pause between probes of a down store */
  readonly maxDelayMs: number;
  /** insert attempts for a batch before it is spooled */
  readonly attempts: number;
}

export interface FlowWriterOptions {
  readonly spoolDir: string;
  /** rows per insert */
  readonly maxRows?: number;
  /** longest a row waits in memory before its batch is inserted */
  readonly maxDelayMs?: number;
  /** memory bound: rows beyond it go to the spool (and at most as many more may wait for the
   * disk; beyond that they are dropped) */
  readonly maxBufferedRows?: number;
  readonly spoolMaxBytes?: number;
  readonly retry?: Partial<RetryOptions>;
  /** called on every failed insert or spool write (logging); the writer handles the failure */
  readonly onError?: (err: Error) => void;
}

export interface WriterStats {
  /** rows the store acknowledged (replayed rows included) */
  readonly written: number;
  /** insert attempts that repeated a failed one (retries and replay probes) */
  readonly retried: number;
  /** rows written to the spool */
  readonly spooled: number;
  /** rows replayed from the spool into the store */
  readonly replayed: number;
  /** rows lost: spool full, damaged spool files, writes after close */
  readonly dropped: number;
  /** rows in memory now */
  readonly buffered: number;
  readonly spoolFiles: number;
  readonly spoolBytes: number;
  /** the store answered the last insert */
  readonly storeUp: boolean;
  readonly lastError?: string;
}

export const DEFAULT_MAX_ROWS = 10_000;
export const DEFAULT_MAX_DELAY_MS = 1_000;
export const DEFAULT_MAX_BUFFERED_ROWS = 100_000;
export const DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024;
/** inserts at once: one being written by the store while the next is encoded */
export const MAX_IN_FLIGHT = 2;
export const DEFAULT_RETRY: RetryOptions = { initialDelayMs: 100, maxDelayMs: 30_000, attempts: 3 };

export class FlowWriter {
  readonly #store: FlowStore;
  readonly #spool: Spool;
  readonly #maxRows: number;
  readonly #maxDelayMs: number;
  readonly #maxBuffered: number;
  readonly #retry: RetryOptions;
  readonly #onError: (err: Error) => void;
  // tokens are unique per writer instance: a restarted agent's batch 1 is not the old batch 1
  readonly #tokenPrefix = randomUUID();
  #seq = 0;

  #buffer: FlowRow[] = [];
  /** when the oldest buffered row arrived */
  #bufferSince = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = 0;
  /** overflow batches on their way to the spool, in order */
  #spoolChain: Promise<void> = Promise.resolve();
  #spoolPending = 0;

  #ready: Promise<void>;
  #running: Promise<void> | undefined;
  #again = false;
  #flushing = 0;
  #closing = false;
  #closed: Promise<void> | undefined;
  /** wakers of batches sleeping between retries */
  readonly #wake = new Set<() => void>();

  #down = false;
  #backoff: number;
  #nextProbeAt = 0;

  #written = 0;
  #retried = 0;
  #spooled = 0;
  #replayed = 0;
  #dropped = 0;
  #lastError: string | undefined;

  constructor(store: FlowStore, opts: FlowWriterOptions) {
    this.#store = store;
    this.#maxRows = positive('maxRows', opts.maxRows ?? DEFAULT_MAX_ROWS);
    this.#maxDelayMs = positive('maxDelayMs', opts.maxDelayMs ?? DEFAULT_MAX_DELAY_MS);
    this.#maxBuffered = positive('maxBufferedRows', opts.maxBufferedRows ?? DEFAULT_MAX_BUFFERED_ROWS);
    this.#retry = { ...DEFAULT_RETRY, ...opts.retry };
    positive('retry.attempts', this.#retry.attempts);
    this.#backoff = this.#retry.initialDelayMs;
    this.#onError = opts.onError ?? (() => {});
    this.#spool = new Spool(opts.spoolDir, positive('spoolMaxBytes', opts.spoolMaxBytes ?? DEFAULT_SPOOL_MAX_BYTES));
    // a spool left by a previous run is replayed as soon as it is read
    this.#ready = this.#spool.open().catch((err: Error) => {
      // without a spool the writer still inserts; spooling then fails and counts drops
      this.#error(new Error(`cannot open the spool ${opts.spoolDir}: ${err.message}`, { cause: err }));
    });
    void this.#ready.then(() => this.#kick());
  }

  /** Buffers rows; never waits. Beyond the memory bound the buffer goes to the spool. */
  write(rows: readonly FlowRow[]): void {
    if (rows.length === 0) return;
    if (this.#closing) {
      this.#dropped += rows.length;
      return;
    }
    if (this.#buffer.length === 0) this.#bufferSince = Date.now();
    for (const r of rows) this.#buffer.push(r);
    // the store is slower than the producer (or down): the oldest rows go to the spool, so
    // memory stays bounded
    while (this.#buffer.length > this.#maxBuffered) this.#toSpool(this.#take(Math.min(this.#maxRows, this.#buffer.length)));
    if (this.#buffer.length >= this.#maxRows) void this.#kick();
    else this.#wakeAt(this.#bufferSince + this.#maxDelayMs);
  }

  /** Resolves once every row written so far is in the store or in the spool; tries the spool
   * once more even if the store was down. */
  async flush(): Promise<void> {
    this.#flushing++;
    try {
      this.#nextProbeAt = 0;
      // a batch sleeping between retries goes on now (and to the spool if it fails again)
      this.#wakeSleepers();
      await this.#ready;
      await this.#spoolChain;
      await this.#kick();
      await this.#spoolChain;
    } finally {
      this.#flushing--;
    }
  }

  /** Flushes, then refuses (counts as dropped) further writes. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.flush();
      this.#closing = true;
      this.#wakeSleepers();
      clearTimeout(this.#timer);
      // whatever arrived during the flush
      await this.#kick();
      await this.#spoolChain;
      clearTimeout(this.#timer);
    })();
    return this.#closed;
  }

  stats(): WriterStats {
    return {
      written: this.#written,
      retried: this.#retried,
      spooled: this.#spooled,
      replayed: this.#replayed,
      dropped: this.#dropped,
      buffered: this.#buffer.length,
      spoolFiles: this.#spool.files,
      spoolBytes: this.#spool.bytes,
      storeUp: !this.#down,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
    };
  }

  #token(): string {
    return `${this.#tokenPrefix}-${++this.#seq}`;
  }

  #take(n: number): FlowRow[] {
    const batch = this.#buffer.splice(0, n);
    if (this.#buffer.length) this.#bufferSince = Date.now();
    return batch;
  }

  #error(err: Error): void {
    this.#lastError = err.message;
    this.#onError(err);
  }

  /** Wakes the loop at `at` (epoch ms), unless it is already due to wake earlier. */
  #wakeAt(at: number): void {
    if (this.#closing) return;
    if (this.#timer && this.#timerAt <= at) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#kick();
    }, Math.max(0, at - Date.now()));
    // a writer waiting for rows does not keep the process alive
    this.#timer.unref();
  }

  /** Runs the loop, or asks the running loop for another pass; resolves when it is idle. */
  #kick(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      try {
        await this.#ready;
        do {
          this.#again = false;
          await this.#loop();
        } while (this.#again);
      } catch (err) {
        // an unexpected failure (the spool's disk): back off as from a down store, never spin
        this.#error(err as Error);
        this.#down = true;
        this.#nextProbeAt = Date.now() + this.#backoff;
        this.#backoff = Math.min(this.#backoff * 2, this.#retry.maxDelayMs);
      } finally {
        this.#running = undefined;
        this.#schedule();
      }
    })();
    return this.#running;
  }

  /** After the loop: a timer for buffered rows, and for the next probe of a down store. */
  #schedule(): void {
    if (this.#buffer.length) this.#wakeAt(this.#bufferSince + this.#maxDelayMs);
    if (this.#spool.files) this.#wakeAt(this.#nextProbeAt);
  }

  #batchDue(): boolean {
    const n = this.#buffer.length;
    if (n === 0) return false;
    return n >= this.#maxRows || this.#flushing > 0 || this.#closing || Date.now() - this.#bufferSince >= this.#maxDelayMs;
  }

  async #loop(): Promise<void> {
    // Up to MAX_IN_FLIGHT batches at once: the next batch is encoded (on this thread) while the
    // store writes the previous one (a server's round trip, or chDB on its own threads; on 2 vCPUs
    // the embedded store measured the same either way, its merges already using the second core).
    // Each batch keeps its token, retries and spooling, so order between batches never mattered.
    const inFlight = new Set<Promise<void>>();
    try {
      for (;;) {
        // spooled batches are older than anything in memory: they go first, one at a time
        const oldest = this.#spool.oldest();
        if (oldest && (!this.#down || Date.now() >= this.#nextProbeAt)) {
          await Promise.all(inFlight);
          await this.#replay(oldest);
          continue;
        }
        if (!this.#batchDue()) return;
        const batch = this.#take(this.#maxRows);
        const token = this.#token();
        if (oldest || (this.#down && Date.now() < this.#nextProbeAt)) {
          // the store is down (or behind on its backlog): keep order and memory, spool it
          await this.#spoolNow(token, batch);
          continue;
        }
        const sent = (async () => {
          if (!(await this.#insertWithRetry(batch, token))) await this.#spoolNow(token, batch);
        })();
        inFlight.add(sent);
        void sent.then(() => inFlight.delete(sent), () => inFlight.delete(sent));
        if (inFlight.size >= MAX_IN_FLIGHT) await Promise.race(inFlight);
      }
    } finally {
      await Promise.all(inFlight);
    }
  }

  async #replay(e: SpoolEntry): Promise<void> {
    let batch;
    try {
      batch = await this.#spool.read(e);
    } catch (err) {
      if (!(err instanceof SpoolCorruptError)) throw err;
      this.#dropped += err.rows;
      this.#error(err);
      await this.#spool.quarantine(e);
      return;
    }
    if (this.#down) this.#retried++;
    if (await this.#attempt(batch.rows, batch.token)) {
      this.#replayed += batch.rows.length;
      await this.#spool.remove(e);
    }
  }

  /** One insert; on failure the store counts as down until the next probe time. */
  async #attempt(rows: readonly FlowRow[], token: string): Promise<boolean> {
    try {
      await this.#store.insert(rows, token);
      this.#written += rows.length;
      this.#down = false;
      this.#backoff = this.#retry.initialDelayMs;
      return true;
    } catch (err) {
      this.#error(err as Error);
      this.#down = true;
      this.#nextProbeAt = Date.now() + this.#backoff;
      this.#backoff = Math.min(this.#backoff * 2, this.#retry.maxDelayMs);
      return false;
    }
  }

  async #insertWithRetry(rows: readonly FlowRow[], token: string): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      if (await this.#attempt(rows, token)) return true;
      // closing or flushing: do not hold the caller for the backoff, the spool keeps the batch
      if (attempt >= this.#retry.attempts || this.#closing || this.#flushing) return false;
      await this.#sleep(this.#nextProbeAt - Date.now());
      this.#retried++;
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.#wake.delete(done);
        resolve();
      };
      const t = setTimeout(done, Math.max(0, ms));
      this.#wake.add(done);
    });
  }

  #wakeSleepers(): void {
    for (const wake of [...this.#wake]) wake();
  }

  /** Overflow from write(): spooled in order, off the caller's path. */
  #toSpool(batch: FlowRow[]): void {
    // rows waiting for the disk are memory too: a disk slower than the producer drops, counted
    if (this.#spoolPending + batch.length > Math.max(this.#maxBuffered, this.#maxRows)) {
      this.#dropped += batch.length;
      this.#error(new Error(`spool ${this.#spool.dir} is behind (${this.#spoolPending} rows waiting): ${batch.length} rows dropped`));
      return;
    }
    this.#spoolPending += batch.length;
    const token = this.#token();
    this.#spoolChain = this.#spoolChain.then(async () => {
      await this.#spoolNow(token, batch);
      this.#spoolPending -= batch.length;
    });
  }

  async #spoolNow(token: string, batch: readonly FlowRow[]): Promise<void> {
    await this.#ready;
    try {
      if (await this.#spool.put(token, batch)) {
        this.#spooled += batch.length;
        return;
      }
      this.#error(new Error(`spool ${this.#spool.dir} is full (${this.#spool.bytes} bytes): ${batch.length} rows dropped`));
    } catch (err) {
      this.#error(new Error(`cannot spool ${batch.length} rows: ${(err as Error).message}`, { cause: err }));
    }
    this.#dropped += batch.length;
  }
}

function positive(name: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`FlowWriter: ${name} must be a positive number, got ${v}`);
  return v;
}
