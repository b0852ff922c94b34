// The typed face of the native binding (native/weir_bpf.c): BPF objects, programs, maps, tc
// attachment and the ring-buffer reader. The only module that touches the addon.
//
// Conventions:
//  - Every native failure surfaces as a BpfError { operation, errno, code, log? }, converted in one
//    place (rethrow()). Argument errors (wrong types, a key of the wrong size) stay TypeErrors.
//  - Handles are closed explicitly; close() is idempotent and any later use throws a BpfError with
//    code 'ECLOSED' (errno EBADF). Closing a BpfObject closes the programs and maps taken from it.
//    A handle that is never closed is released when garbage-collected, but do not rely on that.
//  - Every class takes the native binding as an optional last parameter (default: the addon,
//    loaded lazily), so the pure TypeScript here can be exercised with a fake.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import { nativeAddonPath } from '../paths.js';

/* ---- the native binding -------------------------------------------------------------------- */

/** Opaque native handles (napi externals). */
export type NativeHandle = { readonly __native: unique symbol };

export interface NativeFdInfo {
  handle: NativeHandle;
  fd: number;
  id: number;
  type: number;
  name: string;
}

export interface NativeMapInfo extends NativeFdInfo {
  keySize: number;
  valueSize: number;
  /** bytes of one lookup result: valueSize, or per CPU: roundUp(valueSize, 8) * possible CPUs */
  valueTotal: number;
  maxEntries: number;
  flags: number;
  perCpu: boolean;
}

export interface NativeTestRunResult {
  retval: number;
  durationNs: number;
  data: Buffer;
  ctx?: Buffer;
}

/** What native/weir_bpf.c exports. Failures throw Errors carrying operation/errno(/bpfCode/log). */
export interface NativeBinding {
  numPossibleCpus(): number;
  statfsType(path: string): number;
  mountBpffs(path: string): void;
  pin(handle: NativeHandle, path: string): void;
  unpin(path: string): void;
  fromPin(path: string, isMap: false): NativeFdInfo;
  fromPin(path: string, isMap: true): NativeMapInfo;
  closeHandle(handle: NativeHandle): void;

  objectOpen(path: string, pinRoot: string | undefined): NativeHandle;
  objectSetMaxEntries(obj: NativeHandle, map: string, maxEntries: number): void;
  /** resolves with libbpf's output during a successful load */
  objectLoad(obj: NativeHandle): Promise<string>;
  objectNames(obj: NativeHandle, maps: boolean): string[];
  objectGet(obj: NativeHandle, name: string, isMap: false): NativeFdInfo;
  objectGet(obj: NativeHandle, name: string, isMap: true): NativeMapInfo;
  objectClose(obj: NativeHandle): void;

  /** returns retval; result gets [durationNs, dataSizeOut, ctxSizeOut] */
  progTestRun(prog: NativeHandle, data: Buffer, dataOut: Buffer | undefined, ctx: Buffer | undefined,
    ctxOut: Buffer | undefined, repeat: number, result: Uint32Array): number;
  progTestRunAsync(prog: NativeHandle, data: Buffer, dataOutSize: number, ctx: Buffer | undefined,
    ctxOutSize: number, repeat: number): Promise<NativeTestRunResult>;

  mapLookup(map: NativeHandle, key: Buffer): Buffer | undefined;
  mapUpdate(map: NativeHandle, key: Buffer, value: Buffer, flags: number): void;
  mapDelete(map: NativeHandle, key: Buffer): boolean;
  mapNextKey(map: NativeHandle, key: Buffer | undefined): Buffer | undefined;
  mapLookupBatch(map: NativeHandle): Array<[Buffer, Buffer]>;
  mapUpdateBatch(map: NativeHandle, keys: Buffer[], values: Buffer[], flags: number): void;
  mapDeleteBatch(map: NativeHandle, keys: Buffer[]): void;

  tcAttach(ifindex: number, ifname: string | undefined, netns: string | undefined, direction: number,
    progFd: number, priority: number, handle: number): void;
  tcDetach(ifindex: number, ifname: string | undefined, netns: string | undefined, direction: number,
    progFd: 0, priority: number, handle: number): boolean;
  tcQuery(ifindex: number, ifname: string | undefined, netns: string | undefined, direction: number,
    progFd: 0, priority: number, handle: number): number | undefined;
  tcDestroyHook(ifindex: number, ifname: string | undefined, netns: string | undefined): void;
  ifindexOf(ifname: string, netns: string | undefined): number;

  /** wakeup is called from the event loop whenever the ring is readable (uvStatus < 0 on error) */
  rbNew(map: NativeHandle, wakeup: (uvStatus?: number) => void): NativeHandle;
  rbConsume(rb: NativeHandle): Buffer[];
  rbRef(rb: NativeHandle, ref: boolean): void;
  rbClose(rb: NativeHandle): void;
}

let addon: NativeBinding | undefined;

/** The compiled addon (native/build/weir_bpf.node), loaded on first use. */
export function nativeBinding(): NativeBinding {
  if (!addon) {
    const require = createRequire(import.meta.url);
    try {
      addon = require(nativeAddonPath) as NativeBinding;
    } catch (e) {
      throw new Error(`cannot load the native addon ${nativeAddonPath} (run \`npm run build\`): ${(e as Error).message}`,
        { cause: e });
    }
  }
  return addon;
}

/* ---- errors ------------------------------------------------------------------------------- */

const errnoNames = new Map<number, string>();
for (const [name, num] of Object.entries(os.constants.errno)) {
  if (!errnoNames.has(num)) errnoNames.set(num, name);
}
// kernel-internal errno that leaks out of BPF syscalls and is not in os.constants
errnoNames.set(524, 'ENOTSUPP');
// aliases: prefer the names the kernel uses
errnoNames.set(os.constants.errno.EOPNOTSUPP, 'EOPNOTSUPP');
errnoNames.set(os.constants.errno.EAGAIN, 'EAGAIN');
const EBADF = os.constants.errno.EBADF;

/** The name of an errno value, e.g. 2 -> 'ENOENT'; 'E<n>' when unknown. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

export class BpfError extends Error {
  /** what was attempted, e.g. 'BpfMap.update', 'BpfObject.load', 'tcAttach' */
  readonly operation: string;
  /** positive errno (EBADF for a closed handle) */
  readonly errno: number;
  /** errno name ('ENOENT', ...), or 'ECLOSED' for use after close() */
  readonly code: string;
  /** libbpf's output (with the verifier log) for open/load failures */
  readonly log?: string;

  constructor(operation: string, errno: number, message: string, opts: { code?: string; log?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BpfError';
    this.operation = operation;
    this.errno = errno;
    this.code = opts.code ?? errnoName(errno);
    if (opts.log !== undefined) this.log = opts.log;
  }
}

interface NativeErrorShape extends Error {
  operation: string;
  errno: number;
  bpfCode?: string;
  log?: string;
}

function isNativeError(e: unknown): e is NativeErrorShape {
  return e instanceof Error && typeof (e as Partial<NativeErrorShape>).operation === 'string' &&
    typeof (e as Partial<NativeErrorShape>).errno === 'number';
}

/**
 * The one conversion: a native failure becomes a BpfError; anything else (TypeErrors from argument
 * validation, bugs) passes through untouched.
 */
export function toBpfError(e: unknown): unknown {
  if (!isNativeError(e) || e instanceof BpfError) return e;
  const code = e.bpfCode ?? errnoName(e.errno);
  const summary = e.log ? summarizeLog(e.log) : undefined;
  const message = summary ? `${e.message}: ${summary}` : e.message;
  return new BpfError(e.operation, e.errno, message, { code, log: e.log });
}

/**
 * The gist of a libbpf log for an error message: the verifier's complaint (the last lines of the
 * last program load log, before its statistics line) or else libbpf's last line. The full text
 * stays in BpfError.log.
 */
export function summarizeLog(log: string): string | undefined {
  const lines = log.split('\n');
  const end = lines.lastIndexOf('-- END PROG LOAD LOG --');
  if (end > 0) {
    let begin = end - 1;
    while (begin >= 0 && !lines[begin]!.includes('-- BEGIN PROG LOAD LOG --')) begin--;
    const prog = begin >= 0 ? /prog '([^']+)'/.exec(lines[begin]!)?.[1] : undefined;
    const body = lines.slice(begin + 1, end)
      .filter((l) => l.trim() !== '' && !/^processed \d+ insns/.test(l) && !/^verification time/.test(l) &&
        !/^stack depth/.test(l));
    const gist = body.slice(-2).join(' / ');
    if (gist) return prog ? `prog '${prog}': ${gist}` : gist;
  }
  const last = lines.map((l) => l.trim()).filter((l) => l !== '').pop();
  return last?.replace(/^libbpf: /, '');
}

function rethrow(e: unknown): never {
  throw toBpfError(e);
}

function closedError(operation: string): BpfError {
  return new BpfError(operation, EBADF, `${operation}: handle is closed`, { code: 'ECLOSED' });
}

/* ---- bpffs, CPUs ---------------------------------------------------------------------------- */

export const BPF_FS_MAGIC = 0xcafe4a11;
export const BPFFS_ROOT = '/sys/fs/bpf';

/**
 * Mounts bpffs on /sys/fs/bpf when it is not mounted yet, then creates dir (mkdir -p). Throws
 * BpfError EINVAL when dir ends up outside a bpffs (pins there would fail later, less clearly).
 */
export function ensureBpffs(dir: string = BPFFS_ROOT, binding: NativeBinding = nativeBinding()): void {
  try {
    if (binding.statfsType(BPFFS_ROOT) !== BPF_FS_MAGIC) binding.mountBpffs(BPFFS_ROOT);
  } catch (e) {
    rethrow(e);
  }
  fs.mkdirSync(dir, { recursive: true });
  let type: number;
  try {
    type = binding.statfsType(dir);
  } catch (e) {
    rethrow(e);
  }
  if (type !== BPF_FS_MAGIC) {
    throw new BpfError('ensureBpffs', os.constants.errno.EINVAL, `ensureBpffs: ${dir} is not on a bpf filesystem`);
  }
}

const cpusByBinding = new WeakMap<NativeBinding, number>();

/** Possible CPUs (/sys/devices/system/cpu/possible): the number of values in a per-CPU lookup. */
export function numPossibleCpus(binding: NativeBinding = nativeBinding()): number {
  let n = cpusByBinding.get(binding);
  if (n === undefined) {
    try {
      n = binding.numPossibleCpus();
    } catch (e) {
      rethrow(e);
    }
    cpusByBinding.set(binding, n);
  }
  return n;
}

/**
 * Splits a per-CPU lookup result into one Buffer per possible CPU (views, not copies).
 * valueSize is the map's per-CPU value size; each slot is rounded up to 8 bytes.
 */
export function splitPerCpu(value: Buffer, valueSize: number): Buffer[] {
  const stride = (valueSize + 7) & ~7;
  if (stride === 0 || value.length % stride !== 0) {
    throw new TypeError(`per-CPU value of ${value.length} bytes is not a multiple of ${stride}`);
  }
  const out: Buffer[] = [];
  for (let off = 0; off < value.length; off += stride) out.push(value.subarray(off, off + valueSize));
  return out;
}

/**
 * The per-CPU update value from one Buffer per possible CPU (each valueSize bytes), or the same
 * value for every CPU when given a single Buffer and the CPU count.
 */
export function joinPerCpu(values: Buffer[] | Buffer, valueSize: number, ncpus?: number): Buffer {
  const list = Buffer.isBuffer(values) ? Array.from({ length: ncpus ?? 1 }, () => values) : values;
  const stride = (valueSize + 7) & ~7;
  const out = Buffer.alloc(stride * list.length);
  list.forEach((v, i) => {
    if (v.length !== valueSize) throw new TypeError(`per-CPU value [${i}] must be ${valueSize} bytes, got ${v.length}`);
    v.copy(out, i * stride);
  });
  return out;
}

/* ---- objects ------------------------------------------------------------------------------- */

export interface BpfObjectOpenOptions {
  /** libbpf pin_root_path: LIBBPF_PIN_BY_NAME maps are pinned (or reused) there on load */
  pinRoot?: string;
  /** bpf_map__set_max_entries before load, by map name */
  maxEntries?: Record<string, number>;
}

export class BpfObject {
  readonly path: string;
  private log = '';
  private handle: NativeHandle | undefined;
  private readonly children = new Map<string, BpfProgram | BpfMap>();

  private constructor(path: string, handle: NativeHandle, private readonly binding: NativeBinding) {
    this.path = path;
    this.handle = handle;
  }

  /**
   * bpf_object__open_file (+ set_max_entries); nothing reaches the kernel before load(). With
   * pinRoot, the directory is created (and bpffs mounted if needed, see ensureBpffs).
   */
  static open(path: string, opts: BpfObjectOpenOptions = {}, binding: NativeBinding = nativeBinding()): BpfObject {
    if (opts.pinRoot !== undefined) ensureBpffs(opts.pinRoot, binding);
    let handle: NativeHandle;
    try {
      handle = binding.objectOpen(path, opts.pinRoot);
    } catch (e) {
      rethrow(e);
    }
    const obj = new BpfObject(path, handle, binding);
    try {
      for (const [name, n] of Object.entries(opts.maxEntries ?? {})) binding.objectSetMaxEntries(handle, name, n);
    } catch (e) {
      obj.close();
      rethrow(e);
    }
    return obj;
  }

  get closed(): boolean {
    return this.handle === undefined;
  }

  /** libbpf's output during the successful load (warnings; debug lines with WEIR_LIBBPF_DEBUG=1) */
  get loadLog(): string {
    return this.log;
  }

  private live(operation: string): NativeHandle {
    if (this.handle === undefined) throw closedError(operation);
    return this.handle;
  }

  /**
   * bpf_object__load on a worker thread. Rejects with a BpfError whose .log has the verifier log.
   * Until it settles, everything but close() throws EBUSY.
   */
  async load(): Promise<void> {
    const handle = this.live('BpfObject.load');
    try {
      this.log = await this.binding.objectLoad(handle);
    } catch (e) {
      rethrow(e);
    }
  }

  /** A loaded program, by function name (BpfError ENOENT if there is none). Same instance per name. */
  program(name: string): BpfProgram {
    const key = `p:${name}`;
    const have = this.children.get(key);
    if (have && !have.closed) return have as BpfProgram;
    let info: NativeFdInfo;
    try {
      info = this.binding.objectGet(this.live('BpfObject.program'), name, false);
    } catch (e) {
      rethrow(e);
    }
    const prog = new BpfProgram(info, this.binding, this);
    this.children.set(key, prog);
    return prog;
  }

  /** A loaded map, by name (BpfError ENOENT if there is none). Same instance per name. */
  map(name: string): BpfMap {
    const key = `m:${name}`;
    const have = this.children.get(key);
    if (have && !have.closed) return have as BpfMap;
    let info: NativeMapInfo;
    try {
      info = this.binding.objectGet(this.live('BpfObject.map'), name, true);
    } catch (e) {
      rethrow(e);
    }
    const map = new BpfMap(info, this.binding, this);
    this.children.set(key, map);
    return map;
  }

  programNames(): string[] {
    try {
      return this.binding.objectNames(this.live('BpfObject.programNames'), false);
    } catch (e) {
      rethrow(e);
    }
  }

  mapNames(): string[] {
    try {
      return this.binding.objectNames(this.live('BpfObject.mapNames'), true);
    } catch (e) {
      rethrow(e);
    }
  }

  /**
   * Closes the object and every program/map taken from it (their later use throws ECLOSED).
   * Pinned maps and attached programs stay in the kernel. Idempotent. During a load, the close
   * happens when the load finishes.
   */
  close(): void {
    if (this.handle === undefined) return;
    for (const child of this.children.values()) child.close();
    this.children.clear();
    const handle = this.handle;
    this.handle = undefined;
    this.binding.objectClose(handle);
  }
}

/* ---- programs ------------------------------------------------------------------------------ */

export interface TestRunOptions {
  /** packet (or other input) data; for tc programs at least 14 bytes (an Ethernet header) */
  data: Buffer;
  /** context in, e.g. a struct __sk_buff for tc programs */
  ctx?: Buffer;
  /** runs (default 1); durationNs is the average */
  repeat?: number;
  /** bytes reserved for output data (default data.length + 256; 0: no data out) */
  dataOutSize?: number;
  /** bytes reserved for the context out (default ctx.length, 0 without ctx) */
  ctxOutSize?: number;
}

export interface TestRunResult {
  retval: number;
  durationNs: number;
  data: Buffer;
  ctx?: Buffer;
}

/** room for programs that grow the packet (bpf_skb_change_head, encapsulation) */
const DATA_OUT_HEADROOM = 256;

/** opts.data's length, or 0 when it is not a Buffer (the native side throws the TypeError) */
function dataLength(opts: TestRunOptions): number {
  const d: unknown = opts?.data;
  return Buffer.isBuffer(d) ? d.length : 0;
}

export class BpfProgram {
  readonly name: string;
  readonly id: number;
  /** BPF_PROG_TYPE_* */
  readonly type: number;
  private readonly _fd: number;
  private handle: NativeHandle | undefined;
  private readonly runResult = new Uint32Array(3);

  /** @internal use BpfObject.program() or BpfProgram.fromPin() */
  constructor(info: NativeFdInfo, private readonly binding: NativeBinding, private readonly owner?: BpfObject) {
    this.handle = info.handle;
    this._fd = info.fd;
    this.name = info.name;
    this.id = info.id;
    this.type = info.type;
  }

  /** A pinned program (bpf_obj_get). Its name is the kernel's, truncated to 15 characters. */
  static fromPin(path: string, binding: NativeBinding = nativeBinding()): BpfProgram {
    try {
      return new BpfProgram(binding.fromPin(path, false), binding);
    } catch (e) {
      rethrow(e);
    }
  }

  /** This handle's own fd (a dup for programs of an object); throws ECLOSED after close. */
  get fd(): number {
    this.live('BpfProgram.fd');
    return this._fd;
  }

  get closed(): boolean {
    return this.handle === undefined || (this.owner?.closed ?? false);
  }

  private live(operation: string): NativeHandle {
    if (this.handle === undefined || this.owner?.closed) throw closedError(operation);
    return this.handle;
  }

  pin(path: string): void {
    try {
      this.binding.pin(this.live('BpfProgram.pin'), path);
    } catch (e) {
      rethrow(e);
    }
  }

  /** Removes the pin file (does not need the handle open). */
  unpin(path: string): void {
    try {
      this.binding.unpin(path);
    } catch (e) {
      rethrow(e);
    }
  }

  /** BPF_PROG_TEST_RUN, synchronously. Returned buffers are fresh (safe to keep). */
  testRun(opts: TestRunOptions): TestRunResult {
    const handle = this.live('BpfProgram.testRun');
    const dataOutSize = opts.dataOutSize ?? dataLength(opts) + DATA_OUT_HEADROOM;
    const ctxOutSize = opts.ctxOutSize ?? opts.ctx?.length ?? 0;
    const dataOut = dataOutSize > 0 ? Buffer.allocUnsafe(dataOutSize) : undefined;
    const ctxOut = ctxOutSize > 0 ? Buffer.allocUnsafe(ctxOutSize) : undefined;
    const r = this.runResult;
    let retval: number;
    try {
      retval = this.binding.progTestRun(handle, opts.data, dataOut, opts.ctx, ctxOut, opts.repeat ?? 1, r);
    } catch (e) {
      rethrow(e);
    }
    const result: TestRunResult = {
      retval,
      durationNs: r[0]!,
      data: dataOut ? dataOut.subarray(0, r[1]!) : Buffer.alloc(0),
    };
    if (ctxOut) result.ctx = ctxOut.subarray(0, r[2]!);
    return result;
  }

  /** BPF_PROG_TEST_RUN on a worker thread (for large repeat counts). Inputs are copied at call. */
  async testRunAsync(opts: TestRunOptions): Promise<TestRunResult> {
    const handle = this.live('BpfProgram.testRunAsync');
    const dataOutSize = opts.dataOutSize ?? dataLength(opts) + DATA_OUT_HEADROOM;
    const ctxOutSize = opts.ctxOutSize ?? opts.ctx?.length ?? 0;
    try {
      const r = await this.binding.progTestRunAsync(handle, opts.data, dataOutSize, opts.ctx, ctxOutSize,
        opts.repeat ?? 1);
      const result: TestRunResult = { retval: r.retval, durationNs: r.durationNs, data: r.data };
      if (r.ctx) result.ctx = r.ctx;
      return result;
    } catch (e) {
      rethrow(e);
    }
  }

  /** Closes this handle's fd (the program stays loaded while anything else holds it). Idempotent. */
  close(): void {
    if (this.handle === undefined) return;
    const handle = this.handle;
    this.handle = undefined;
    this.binding.closeHandle(handle);
  }
}

/* ---- maps ----------------------------------------------------------------------------------- */

export type MapUpdateFlags = 'any' | 'noexist' | 'exist';
const UPDATE_FLAGS: Record<MapUpdateFlags, number> = { any: 0, noexist: 1, exist: 2 };

function updateFlags(flags: MapUpdateFlags | undefined): number {
  const f = UPDATE_FLAGS[flags ?? 'any'];
  if (f === undefined) throw new TypeError(`flags must be 'any', 'noexist' or 'exist', got ${JSON.stringify(flags)}`);
  return f;
}

/** errnos meaning "this map type has no batch operations" */
const BATCH_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUPP', 'EOPNOTSUPP']);

export class BpfMap {
  readonly name: string;
  readonly id: number;
  /** BPF_MAP_TYPE_* */
  readonly type: number;
  readonly keySize: number;
  /** the kernel's value size (per CPU for per-CPU maps) */
  readonly valueSize: number;
  /** bytes of a lookup result / update value: valueSize, or roundUp(valueSize, 8) * possible CPUs */
  readonly valueTotal: number;
  readonly maxEntries: number;
  /** BPF_F_* map flags */
  readonly flags: number;
  /** PERCPU_HASH/ARRAY, LRU_PERCPU_HASH: values are numPossibleCpus() 8-byte-aligned slots */
  readonly perCpu: boolean;
  private readonly _fd: number;
  private handle: NativeHandle | undefined;

  /** @internal use BpfObject.map() or BpfMap.fromPin() */
  constructor(info: NativeMapInfo, /** @internal */ readonly binding: NativeBinding, private readonly owner?: BpfObject) {
    this.handle = info.handle;
    this._fd = info.fd;
    this.name = info.name;
    this.id = info.id;
    this.type = info.type;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.valueTotal = info.valueTotal;
    this.maxEntries = info.maxEntries;
    this.flags = info.flags;
    this.perCpu = info.perCpu;
  }

  /** A pinned map (bpf_obj_get); sizes and type from the kernel, name truncated to 15 chars. */
  static fromPin(path: string, binding: NativeBinding = nativeBinding()): BpfMap {
    try {
      return new BpfMap(binding.fromPin(path, true), binding);
    } catch (e) {
      rethrow(e);
    }
  }

  /** This handle's own fd (a dup for maps of an object); throws ECLOSED after close. */
  get fd(): number {
    this.live('BpfMap.fd');
    return this._fd;
  }

  get closed(): boolean {
    return this.handle === undefined || (this.owner?.closed ?? false);
  }

  /** @internal the native handle, for RingBufferReader */
  nativeHandle(operation: string): NativeHandle {
    return this.live(operation);
  }

  private live(operation: string): NativeHandle {
    if (this.handle === undefined || this.owner?.closed) throw closedError(operation);
    return this.handle;
  }

  pin(path: string): void {
    try {
      this.binding.pin(this.live('BpfMap.pin'), path);
    } catch (e) {
      rethrow(e);
    }
  }

  /** Removes the pin file (does not need the handle open). */
  unpin(path: string): void {
    try {
      this.binding.unpin(path);
    } catch (e) {
      rethrow(e);
    }
  }

  /** The value (valueTotal bytes; see splitPerCpu), or undefined when the key is absent. */
  lookup(key: Buffer): Buffer | undefined {
    try {
      return this.binding.mapLookup(this.live('BpfMap.lookup'), key);
    } catch (e) {
      rethrow(e);
    }
  }

  /** 'noexist' fails with EEXIST on a present key, 'exist' with ENOENT on an absent one. */
  update(key: Buffer, value: Buffer, flags?: MapUpdateFlags): void {
    const f = updateFlags(flags);
    try {
      this.binding.mapUpdate(this.live('BpfMap.update'), key, value, f);
    } catch (e) {
      rethrow(e);
    }
  }

  /** false when the key was absent */
  delete(key: Buffer): boolean {
    try {
      return this.binding.mapDelete(this.live('BpfMap.delete'), key);
    } catch (e) {
      rethrow(e);
    }
  }

  /** bpf_map_get_next_key: the first key without an argument; undefined after the last. */
  nextKey(key?: Buffer): Buffer | undefined {
    try {
      return this.binding.mapNextKey(this.live('BpfMap.nextKey'), key);
    } catch (e) {
      rethrow(e);
    }
  }

  /**
   * Iterates the keys with nextKey. As with any BPF hash map walk, deleting the current key
   * meanwhile restarts the walk from the beginning (the kernel's behaviour), so prefer lookupBatch
   * or collect the keys first when deleting.
   */
  *keys(): Generator<Buffer> {
    for (let k = this.nextKey(); k !== undefined; k = this.nextKey(k)) yield k;
  }

  /** Iterates [key, value]; keys that vanish between nextKey and lookup are skipped. */
  *entries(): Generator<[Buffer, Buffer]> {
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v !== undefined) yield [k, v];
    }
  }

  /** The whole map via bpf_map_lookup_batch; iterates instead where batch ops are unsupported. */
  lookupBatch(): Array<[Buffer, Buffer]> {
    try {
      return this.binding.mapLookupBatch(this.live('BpfMap.lookupBatch'));
    } catch (e) {
      const err = toBpfError(e);
      if (err instanceof BpfError && BATCH_UNSUPPORTED.has(err.code)) return [...this.entries()];
      throw err;
    }
  }

  /** bpf_map_update_batch; every value valueTotal bytes. */
  updateBatch(entries: Array<[Buffer, Buffer]>, flags?: MapUpdateFlags): void {
    const f = updateFlags(flags);
    try {
      this.binding.mapUpdateBatch(this.live('BpfMap.updateBatch'), entries.map((e) => e[0]),
        entries.map((e) => e[1]), f);
    } catch (e) {
      rethrow(e);
    }
  }

  /** bpf_map_delete_batch; an absent key fails with ENOENT (keys before it are deleted). */
  deleteBatch(keys: Buffer[]): void {
    try {
      this.binding.mapDeleteBatch(this.live('BpfMap.deleteBatch'), keys);
    } catch (e) {
      rethrow(e);
    }
  }

  /** Closes this handle's fd (the map lives on while pinned or used by a program). Idempotent. */
  close(): void {
    if (this.handle === undefined) return;
    const handle = this.handle;
    this.handle = undefined;
    this.binding.closeHandle(handle);
  }
}

/* ---- tc ------------------------------------------------------------------------------------- */

export type TcDirection = 'ingress' | 'egress';

export interface TcTarget {
  ifname?: string;
  ifindex?: number;
  /**
   * Network namespace: a path like /run/netns/NAME (a bare NAME means /run/netns/NAME). The
   * operation, name lookup included, runs in that namespace (setns on the calling thread and back).
   */
  netns?: string;
}

export interface TcFilterSpec extends TcTarget {
  direction: TcDirection;
  /** default 1 */
  priority?: number;
  /** default 1 */
  handle?: number;
}

function netnsPath(netns: string | undefined): string | undefined {
  if (netns === undefined || netns.includes('/')) return netns;
  return `/run/netns/${netns}`;
}

function tcArgs(t: TcTarget): [number, string | undefined, string | undefined] {
  if (t.ifname === undefined && t.ifindex === undefined) throw new TypeError('a tc target needs ifname or ifindex');
  return [t.ifindex ?? 0, t.ifindex ? undefined : t.ifname, netnsPath(t.netns)];
}

function tcDir(d: TcDirection): number {
  if (d !== 'ingress' && d !== 'egress') throw new TypeError(`direction must be 'ingress' or 'egress', got ${JSON.stringify(d)}`);
  return d === 'ingress' ? 0 : 1;
}

/**
 * Attaches a tc (clsact, direct-action) program: creates the clsact qdisc if needed and attaches
 * with BPF_TC_F_REPLACE, so attaching again at the same priority/handle replaces the program.
 */
export function tcAttach(spec: TcFilterSpec & { program: BpfProgram | number }, binding: NativeBinding = nativeBinding()): void {
  const fd = typeof spec.program === 'number' ? spec.program : spec.program.fd;
  const [ifindex, ifname, netns] = tcArgs(spec);
  try {
    binding.tcAttach(ifindex, ifname, netns, tcDir(spec.direction), fd, spec.priority ?? 1, spec.handle ?? 1);
  } catch (e) {
    rethrow(e);
  }
}

/** Detaches the filter at priority/handle; false if there was none (or no clsact qdisc). */
export function tcDetach(spec: TcFilterSpec, binding: NativeBinding = nativeBinding()): boolean {
  const [ifindex, ifname, netns] = tcArgs(spec);
  try {
    return binding.tcDetach(ifindex, ifname, netns, tcDir(spec.direction), 0, spec.priority ?? 1, spec.handle ?? 1);
  } catch (e) {
    rethrow(e);
  }
}

/** The id of the program attached at priority/handle, or undefined. */
export function tcQuery(spec: TcFilterSpec, binding: NativeBinding = nativeBinding()): { progId: number } | undefined {
  const [ifindex, ifname, netns] = tcArgs(spec);
  let id: number | undefined;
  try {
    id = binding.tcQuery(ifindex, ifname, netns, tcDir(spec.direction), 0, spec.priority ?? 1, spec.handle ?? 1);
  } catch (e) {
    rethrow(e);
  }
  return id === undefined ? undefined : { progId: id };
}

/** Removes the clsact qdisc (both directions, every filter on it); fine when absent. */
export function tcDestroyHook(target: TcTarget, binding: NativeBinding = nativeBinding()): void {
  const [ifindex, ifname, netns] = tcArgs(target);
  try {
    binding.tcDestroyHook(ifindex, ifname, netns);
  } catch (e) {
    rethrow(e);
  }
}

/** if_nametoindex in netns (default: the current one); BpfError ENODEV when missing. */
export function ifindexOf(ifname: string, netns?: string, binding: NativeBinding = nativeBinding()): number {
  try {
    return binding.ifindexOf(ifname, netnsPath(netns));
  } catch (e) {
    rethrow(e);
  }
}

/* ---- ring buffer ------------------------------------------------------------------------------ */

/**
 * Reads a BPF_MAP_TYPE_RINGBUF map on the event loop, without a thread: a uv_poll_t on the
 * ring's epoll fd wakes us, everything available is drained (ring_buffer__consume) and copied,
 * and onBatch gets it as one array per wake-up. While open (and ref'd) it keeps the process alive.
 * An exception thrown by onBatch from a wake-up is an uncaught exception, as with any event
 * callback.
 */
export class RingBufferReader {
  private handle: NativeHandle | undefined;

  /** binding defaults to the map's */
  constructor(map: BpfMap, private readonly onBatch: (records: Buffer[]) => void,
    private readonly binding: NativeBinding = map.binding) {
    if (typeof onBatch !== 'function') throw new TypeError('onBatch must be a function');
    try {
      this.handle = binding.rbNew(map.nativeHandle('RingBufferReader'), (status) => this.wakeup(status));
    } catch (e) {
      rethrow(e);
    }
  }

  get closed(): boolean {
    return this.handle === undefined;
  }

  private live(operation: string): NativeHandle {
    if (this.handle === undefined) throw closedError(operation);
    return this.handle;
  }

  private wakeup(status?: number): void {
    if (this.handle === undefined) return;
    if (status !== undefined && status < 0) {
      throw new BpfError('RingBufferReader.poll', -status, `RingBufferReader.poll: libuv error ${status}`);
    }
    this.consume();
  }

  /** Drains now; delivers through onBatch (when non-empty) and returns the record count. */
  consume(): number {
    let batch: Buffer[];
    try {
      batch = this.binding.rbConsume(this.live('RingBufferReader.consume'));
    } catch (e) {
      rethrow(e);
    }
    if (batch.length > 0) this.onBatch(batch);
    return batch.length;
  }

  /** Keeps the event loop alive while open (the default). */
  ref(): this {
    try {
      this.binding.rbRef(this.live('RingBufferReader.ref'), true);
    } catch (e) {
      rethrow(e);
    }
    return this;
  }

  /** Lets the process exit while the reader is open. */
  unref(): this {
    try {
      this.binding.rbRef(this.live('RingBufferReader.unref'), false);
    } catch (e) {
      rethrow(e);
    }
    return this;
  }

  /** Stops polling and frees the ring buffer. Idempotent. Records not yet consumed are dropped. */
  close(): void {
    if (this.handle === undefined) return;
    const handle = this.handle;
    this.handle = undefined;
    this.binding.rbClose(handle);
  }
}
