// Shared fixtures for the native binding tests: root/BPF preconditions (missing ones fail, never
// skip), compiling the test-only BPF programs in test/native/bpf, unique bpffs pin directories and
// network namespaces, all removed in finally blocks by the callers.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from '../../src/paths.js';
import { ensureBpffs } from '../../src/datapath/libbpf.js';
import { testPinRoot } from '../helpers/pins.js';

/** sizeof(struct __sk_buff) and offsets the tests use */
export const SKB_SIZE = 192;
export const SKB_MARK_OFFSET = 8;

let checked = false;

/** Fails (with the reason) unless we are root with a working bpffs and clang. */
export function requireBpf(): void {
  if (checked) return;
  if (process.getuid?.() !== 0) {
    throw new Error('test/native needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run the test suite as root');
  }
  try {
    execFileSync('clang', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('test/native needs clang to compile its BPF programs (npm run setup installs it)');
  }
  try {
    ensureBpffs();
  } catch (e) {
    throw new Error(`test/native needs bpffs on /sys/fs/bpf: ${(e as Error).message}`);
  }
  checked = true;
}

let tmpDir: string | undefined;
const compiled = new Map<string, string>();

/** Compiles test/native/bpf/<name>.c once per process; returns the object's path. */
export function bpfObject(name: string): string {
  requireBpf();
  const have = compiled.get(name);
  if (have) return have;
  if (!tmpDir) {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-test-native-'));
    const dir = tmpDir;
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  const out = path.join(tmpDir, `${name}.o`);
  const src = path.join(repoRoot, 'test', 'native', 'bpf', `${name}.c`);
  try {
    execFileSync('clang', ['-O2', '-g', '-target', 'bpf', '-I/usr/include/x86_64-linux-gnu', '-c', src, '-o', out],
      { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer };
    throw new Error(`clang failed on ${src}:\n${err.stderr?.toString() ?? String(e)}`);
  }
  compiled.set(name, out);
  return out;
}

let seq = 0;

/** A fresh, unique directory on bpffs; remove it with removePinDir in finally. */
export function makePinDir(): string {
  requireBpf();
  const dir = testPinRoot('weir-test-native');
  ensureBpffs(dir);
  return dir;
}

export function removePinDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Runs fn with a fresh network namespace (name wtn-<pid>-<n>), deleted afterwards. */
export async function withNetns<T>(fn: (name: string, nsPath: string) => Promise<T> | T): Promise<T> {
  requireBpf();
  const name = `wtn-${process.pid}-${seq++}`;
  execFileSync('ip', ['netns', 'add', name], { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    return await fn(name, `/run/netns/${name}`);
  } finally {
    execFileSync('ip', ['netns', 'del', name], { stdio: ['ignore', 'ignore', 'pipe'] });
  }
}

/** Runs `ip -n ns args...` and returns stdout. */
export function ipIn(ns: string, ...args: string[]): string {
  return execFileSync('ip', ['-n', ns, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A minimal Ethernet + IPv4 + UDP frame of `size` bytes (>= 42). */
export function udpFrame(size = 64): Buffer {
  const b = Buffer.alloc(size);
  b.set([0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1], 0); // dst, src MAC
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45; // IPv4, IHL 5
  b.writeUInt16BE(size - 14, 16);
  b[22] = 64; // TTL
  b[23] = 17; // UDP
  b.set([10, 0, 0, 1, 10, 0, 0, 2], 26);
  b.writeUInt16BE(1234, 34);
  b.writeUInt16BE(53, 36);
  b.writeUInt16BE(size - 34, 38);
  return b;
}

/** A struct __sk_buff with mark set (the fields test_run accepts; the rest zero). */
export function skbCtx(mark: number): Buffer {
  const b = Buffer.alloc(SKB_SIZE);
  b.writeUInt32LE(mark, SKB_MARK_OFFSET);
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

export function u64(n: bigint | number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}
