// The writer's disk spool: batches the store could not take, one file per batch, replayed oldest
// first. A file is written under a temporary name, fsync'd, renamed into place and the directory
// fsync'd, so after a crash a batch file is either complete or absent (a leftover temporary file
// is a batch that was never acknowledged as spooled, and its rows were counted as not yet
// spooled). Each file keeps the batch's dedup token, so replaying a batch that did reach the store
// before the crash is dropped by ClickHouse instead of doubling it.
//
// File layout: `<seq, 16 digits>.batch`, a header line `{"v":1,"token":...,"rows":N}` then the
// rows as one JSON array line (the header alone tells how many rows a damaged file held).

import { mkdir, open, readFile, readdir, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { FlowRow } from './row.js';

const SUFFIX = '.batch';
const TMP = '.tmp';

export interface SpoolEntry {
  readonly seq: number;
  readonly file: string;
  readonly bytes: number;
}

export interface SpooledBatch {
  readonly token: string;
  readonly rows: FlowRow[];
}

export class SpoolCorruptError extends Error {
  override readonly name = 'SpoolCorruptError';
  constructor(
    readonly file: string,
    /** rows the header announced (0 when the header is unreadable too) */
    readonly rows: number,
    reason: string,
  ) {
    super(`spool file ${file} is damaged: ${reason}`);
  }
}

export class Spool {
  #entries: SpoolEntry[] = [];
  #bytes = 0;
  #nextSeq = 1;

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {}

  /** Reads what a previous run left; removes half-written temporary files. */
  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const entries: SpoolEntry[] = [];
    for (const name of await readdir(this.dir)) {
      const file = path.join(this.dir, name);
      if (name.endsWith(TMP)) {
        await unlink(file).catch(() => {});
        continue;
      }
      const m = /^(\d{16})\.batch$/.exec(name);
      if (!m) continue;
      entries.push({ seq: Number(m[1]), file, bytes: (await stat(file)).size });
    }
    entries.sort((a, b) => a.seq - b.seq);
    this.#entries = entries;
    this.#bytes = entries.reduce((n, e) => n + e.bytes, 0);
    this.#nextSeq = (entries[entries.length - 1]?.seq ?? 0) + 1;
  }

  get files(): number {
    return this.#entries.length;
  }

  get bytes(): number {
    return this.#bytes;
  }

  oldest(): SpoolEntry | undefined {
    return this.#entries[0];
  }

  /** Writes a batch durably; false (nothing written) when it would exceed maxBytes. */
  async put(token: string, rows: readonly FlowRow[]): Promise<boolean> {
    const data = `${JSON.stringify({ v: 1, token, rows: rows.length })}\n${JSON.stringify(rows)}\n`;
    const bytes = Buffer.byteLength(data);
    if (this.#bytes + bytes > this.maxBytes) return false;
    const seq = this.#nextSeq++;
    // reserve the space before the first await so concurrent puts cannot overshoot together
    this.#bytes += bytes;
    const file = path.join(this.dir, `${String(seq).padStart(16, '0')}${SUFFIX}`);
    const tmp = `${file}${TMP}`;
    try {
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
      await syncDir(this.dir);
    } catch (err) {
      this.#bytes -= bytes;
      await unlink(tmp).catch(() => {});
      throw err;
    }
    // keep the list ordered by seq even if puts finish out of order
    const entry = { seq, file, bytes };
    const at = this.#entries.findIndex((e) => e.seq > seq);
    if (at < 0) this.#entries.push(entry);
    else this.#entries.splice(at, 0, entry);
    return true;
  }

  async read(e: SpoolEntry): Promise<SpooledBatch> {
    const text = await readFile(e.file, 'utf8');
    const nl = text.indexOf('\n');
    let header: { v?: unknown; token?: unknown; rows?: unknown };
    try {
      header = JSON.parse(nl < 0 ? text : text.slice(0, nl));
    } catch {
      throw new SpoolCorruptError(e.file, 0, 'unreadable header');
    }
    const announced = typeof header.rows === 'number' ? header.rows : 0;
    if (header.v !== 1 || typeof header.token !== 'string' || header.token === '') {
      throw new SpoolCorruptError(e.file, announced, 'unknown version or no token');
    }
    let rows: unknown;
    try {
      rows = JSON.parse(text.slice(nl + 1));
    } catch {
      throw new SpoolCorruptError(e.file, announced, 'unreadable rows');
    }
    if (!Array.isArray(rows) || rows.length !== announced) {
      throw new SpoolCorruptError(e.file, announced, `expected ${announced} rows`);
    }
    return { token: header.token, rows: rows as FlowRow[] };
  }

  async remove(e: SpoolEntry): Promise<void> {
    await unlink(e.file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    const i = this.#entries.indexOf(e);
    if (i >= 0) {
      this.#entries.splice(i, 1);
      this.#bytes -= e.bytes;
    }
  }

  /** Keeps a damaged file for inspection (`.bad`) but out of the replay order and the size bound. */
  async quarantine(e: SpoolEntry): Promise<void> {
    await rename(e.file, `${e.file}.bad`).catch(() => {});
    const i = this.#entries.indexOf(e);
    if (i >= 0) {
      this.#entries.splice(i, 1);
      this.#bytes -= e.bytes;
    }
  }
}

async function syncDir(dir: string): Promise<void> {
  // the rename is durable only once the directory entry is
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
