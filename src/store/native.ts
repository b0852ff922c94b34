// FlowRows as one block of ClickHouse's Native format: the engine's own columnar layout, which it
// reads almost for free. JSONCompactEachRow cost chDB ~9 µs a row just to parse (a 40-column row
// with two maps); a Native block of the same rows parses ~25x faster, and encoding it here costs
// less than JSON.stringify did. See docs/performance.md for the measurements.
//
// Layout of a block (no block info, no per-column serialization flags: the format as ClickHouse
// writes and reads it in files and HTTP bodies):
//   VarUInt columns, VarUInt rows, then per column: String name, String type, the column's data.
// Column data: fixed-width numbers little-endian; String = VarUInt length + bytes per row; IPv6 =
// 16 bytes per row; Map(K, V) = the array offsets (UInt64, cumulative) then every key, then every
// value. LowCardinality(String) = a dictionary and indexes (see #lowCardinality): cheaper to build
// here than the strings, and the engine takes it as it is instead of building the dictionary.
//
// The columns and their order come from INSERT_COLUMNS (codec.ts) and the types from schema.ts, so
// a column added to the schema is encoded here without a second list.

import { ipToKey16 } from '../datapath/abi.js';
import { INSERT_COLUMNS } from './codec.js';
import type { FlowRow } from './row.js';
import { ROW_COLUMNS, SIDE_COLUMNS } from './schema.js';

type ColumnType = 'DateTime64' | 'UInt64' | 'UInt32' | 'UInt16' | 'UInt8' | 'String' | 'LowCardinality' | 'IPv6' | 'Map';

interface Column {
  readonly name: string;
  /** the type named in the block */
  readonly wireType: string;
  readonly type: ColumnType;
  readonly get: (row: FlowRow, index: number) => unknown;
}

const WIRE_TYPES: Readonly<Record<ColumnType, string>> = {
  DateTime64: "DateTime64(3, 'UTC')",
  UInt64: 'UInt64',
  UInt32: 'UInt32',
  UInt16: 'UInt16',
  UInt8: 'UInt8',
  String: 'String',
  LowCardinality: 'LowCardinality(String)',
  IPv6: 'IPv6',
  Map: 'Map(String, String)',
};

function columnType(chType: string): ColumnType {
  switch (chType) {
    case 'UInt64': case 'UInt32': case 'UInt16': case 'UInt8': case 'IPv6':
      return chType;
    case 'String':
      return 'String';
    case 'LowCardinality(String)':
      return 'LowCardinality';
    case 'Map(String, String)':
      return 'Map';
    default:
      throw new Error(`native: no encoding for the column type ${chType}`);
  }
}

/**
 * A reader of one field, compiled for that field: `(r) => r.src.namespace`. A generic
 * `(r) => r[side][field]` is a megamorphic keyed load, and over 40 columns x 10k rows that alone
 * cost more than the rest of the encoding. The names are our schema's identifiers (checked).
 */
function reader(...path: readonly string[]): Column['get'] {
  for (const p of path) if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(p)) throw new Error(`native: ${p} is not a field name`);
  return new Function('r', `return r.${path.join('.')};`) as Column['get'];
}

function column(name: string, type: ColumnType, get: Column['get']): Column {
  return { name, wireType: WIRE_TYPES[type], type, get };
}

/** Every insert column, in INSERT_COLUMNS order; `id` is filled by the caller per row index. */
function buildColumns(): Column[] {
  const cols: Column[] = [
    column('ts', 'DateTime64', (r) => r.ts),
    column('start', 'DateTime64', (r) => r.start),
    column('id', 'UInt64', () => 0), // written from the batch's id base, see encodeNativeBlock
  ];
  for (const [field, col, type] of ROW_COLUMNS) cols.push(column(col, columnType(type), reader(field)));
  for (const side of ['src', 'dst'] as const) {
    for (const [field, col, type] of SIDE_COLUMNS) cols.push(column(`${side}_${col}`, columnType(type), reader(side, field)));
  }
  const names = cols.map((c) => c.name);
  if (names.join(',') !== INSERT_COLUMNS.join(',')) {
    throw new Error(`native: columns ${names.join(',')} do not follow INSERT_COLUMNS ${INSERT_COLUMNS.join(',')}`);
  }
  return cols;
}

const COLUMNS = buildColumns();
const TWO_32 = 2 ** 32;

/** A growable byte buffer. */
class ByteWriter {
  buf: Buffer;
  pos = 0;

  constructor(capacity: number) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  varUInt(n: number): void {
    this.ensure(10);
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
  }

  /** a non-negative integer below 2^53 as UInt64 (also DateTime64 milliseconds) */
  u64(n: number): void {
    this.ensure(8);
    this.buf.writeUInt32LE(n >>> 0, this.pos);
    this.buf.writeUInt32LE(Math.floor(n / TWO_32), this.pos + 4);
    this.pos += 8;
  }

  string(s: string): void {
    const len = s.length;
    this.ensure(len * 3 + 10);
    const buf = this.buf;
    // most strings are short ASCII: copied char by char in JS, which beats a call into C++ per
    // string; anything else goes through Buffer.write
    if (len < 0x80) {
      let p = this.pos + 1;
      let i = 0;
      for (; i < len; i++) {
        const ch = s.charCodeAt(i);
        if (ch >= 0x80) break;
        buf[p++] = ch;
      }
      if (i === len) {
        buf[this.pos] = len;
        this.pos = p;
        return;
      }
    }
    const n = buf.write(s, this.pos + 1, 'utf8');
    if (n < 0x80) {
      buf[this.pos] = n;
      this.pos += 1 + n;
      return;
    }
    // a length of more than one byte: move the bytes up to make room for it
    let lenBytes = 1;
    for (let v = n; v >= 0x80; v = Math.floor(v / 128)) lenBytes++;
    buf.copyWithin(this.pos + lenBytes, this.pos + 1, this.pos + 1 + n);
    this.varUInt(n);
    this.pos += n;
  }
}

export class NativeEncoder {
  /** bytes a row took in the last block: the next block's first guess, so it rarely grows */
  #bytesPerRow = 512;
  /** addresses repeat across rows (pods talk to pods): parse each text once */
  #ipCache = new Map<string, Buffer>();

  /**
   * One Native block of `rows`, row i's id being `idBase + i` (mod 2^64). Each block has memory
   * of its own, so a block can still be on its way to the store while the next one is encoded.
   */
  encode(rows: readonly FlowRow[], idBase: bigint): Buffer {
    const w = new ByteWriter(Math.ceil(rows.length * this.#bytesPerRow * 1.1) + 4096);
    w.varUInt(COLUMNS.length);
    w.varUInt(rows.length);
    for (const c of COLUMNS) {
      w.string(c.name);
      w.string(c.wireType);
      if (c.name === 'id') this.#ids(w, rows.length, idBase);
      else this.#column(w, c, rows);
    }
    if (rows.length > 0) this.#bytesPerRow = Math.max(64, Math.ceil(w.pos / rows.length));
    return w.buf.subarray(0, w.pos);
  }

  #ids(w: ByteWriter, n: number, base: bigint): void {
    w.ensure(8 * n);
    // 64-bit ids as two 32-bit halves: a BigInt per row costs more than the rest of the column
    let lo = Number(BigInt.asUintN(32, base));
    let hi = Number(BigInt.asUintN(32, base >> 32n));
    for (let i = 0; i < n; i++) {
      w.buf.writeUInt32LE(lo, w.pos);
      w.buf.writeUInt32LE(hi, w.pos + 4);
      w.pos += 8;
      if (++lo === TWO_32) {
        lo = 0;
        hi = (hi + 1) >>> 0;
      }
    }
  }

  #column(w: ByteWriter, c: Column, rows: readonly FlowRow[]): void {
    const n = rows.length;
    switch (c.type) {
      case 'DateTime64':
      case 'UInt64':
        for (let i = 0; i < n; i++) w.u64(num(c, c.get(rows[i]!, i)));
        return;
      case 'UInt32':
        w.ensure(4 * n);
        for (let i = 0; i < n; i++) { w.buf.writeUInt32LE(num(c, c.get(rows[i]!, i)), w.pos); w.pos += 4; }
        return;
      case 'UInt16':
        w.ensure(2 * n);
        for (let i = 0; i < n; i++) { w.buf.writeUInt16LE(num(c, c.get(rows[i]!, i)), w.pos); w.pos += 2; }
        return;
      case 'UInt8':
        w.ensure(n);
        for (let i = 0; i < n; i++) w.pos = w.buf.writeUInt8(num(c, c.get(rows[i]!, i)), w.pos);
        return;
      case 'String':
        for (let i = 0; i < n; i++) w.string(str(c, c.get(rows[i]!, i)));
        return;
      case 'LowCardinality':
        this.#lowCardinality(w, c, rows);
        return;
      case 'IPv6':
        w.ensure(16 * n);
        for (let i = 0; i < n; i++) {
          this.#ip(str(c, c.get(rows[i]!, i))).copy(w.buf, w.pos);
          w.pos += 16;
        }
        return;
      case 'Map': {
        const maps = rows.map((r, i) => (c.get(r, i) ?? {}) as Readonly<Record<string, string>>);
        let total = 0;
        for (const m of maps) {
          for (const _ in m) total++;
          w.u64(total);
        }
        for (const m of maps) for (const k in m) w.string(k);
        for (const m of maps) for (const k in m) w.string(str(c, m[k]));
        return;
      }
    }
  }

  /**
   * LowCardinality(String) as ClickHouse writes it: UInt64 keys-serialization version 1 (shared
   * dictionaries with additional keys); UInt64 index width (0 = UInt8, 1 = UInt16, 2 = UInt32)
   * with the bits "has additional keys" (1 << 9) and "need update dictionary" (1 << 10); UInt64 key
   * count and the keys as a String column, the default '' first as ClickHouse puts it; UInt64 row
   * count and one index per row.
   */
  #lowCardinality(w: ByteWriter, c: Column, rows: readonly FlowRow[]): void {
    const n = rows.length;
    const dict = new Map<string, number>([['', 0]]);
    const keys: string[] = [''];
    const index = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const v = str(c, c.get(rows[i]!, i));
      let k = dict.get(v);
      if (k === undefined) {
        k = keys.length;
        dict.set(v, k);
        keys.push(v);
      }
      index[i] = k;
    }
    const width = keys.length <= 0x100 ? 0 : keys.length <= 0x10000 ? 1 : 2;
    w.u64(1);
    w.u64(width | (1 << 9) | (1 << 10));
    w.u64(keys.length);
    for (const k of keys) w.string(k);
    w.u64(n);
    w.ensure(n << width);
    const buf = w.buf;
    if (width === 0) for (let i = 0; i < n; i++) buf[w.pos++] = index[i]!;
    else if (width === 1) for (let i = 0; i < n; i++) { buf.writeUInt16LE(index[i]!, w.pos); w.pos += 2; }
    else for (let i = 0; i < n; i++) { buf.writeUInt32LE(index[i]!, w.pos); w.pos += 4; }
  }

  #ip(text: string): Buffer {
    let b = this.#ipCache.get(text);
    if (b === undefined) {
      // a bounded cache: addresses churn with pods; start over rather than grow without end
      if (this.#ipCache.size >= 65_536) this.#ipCache = new Map();
      b = ipToKey16(text);
      this.#ipCache.set(text, b);
    }
    return b;
  }
}

function num(c: Column, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new TypeError(`native: column ${c.name} needs a non-negative integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function str(c: Column, v: unknown): string {
  if (typeof v !== 'string') throw new TypeError(`native: column ${c.name} needs a string, got ${JSON.stringify(v)}`);
  return v;
}
