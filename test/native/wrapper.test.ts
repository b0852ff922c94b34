// The TypeScript half of the binding against a fake NativeBinding: error conversion, per-CPU
// helpers, argument mapping, batch fallback and the ring-buffer wake-up path. No root, no kernel.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BPF_FS_MAGIC, BpfError, BpfObject, RingBufferReader, ensureBpffs, joinPerCpu, numPossibleCpus, splitPerCpu,
  summarizeLog, tcAttach, tcQuery, toBpfError, type NativeBinding, type NativeHandle, type NativeMapInfo,
} from '../../src/datapath/libbpf.js';

/** A binding whose unimplemented functions fail loudly. */
function fake(impl: Partial<Record<keyof NativeBinding, (...args: any[]) => unknown>>): NativeBinding {
  return new Proxy(impl, {
    get(target, prop: string) {
      const f = (target as Record<string, unknown>)[prop];
      if (f) return f;
      return () => { throw new Error(`fake binding: ${prop} not implemented`); };
    },
  }) as unknown as NativeBinding;
}

function nativeError(operation: string, errno: number, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`${operation}: failed`), { operation, errno, ...extra });
}

const handle = {} as NativeHandle;

test('toBpfError converts native errors and passes others through', () => {
  const e = toBpfError(nativeError('BpfMap.update', 17));
  assert.ok(e instanceof BpfError);
  assert.equal(e.code, 'EEXIST');
  assert.equal(e.errno, 17);
  assert.equal(e.operation, 'BpfMap.update');
  assert.equal((toBpfError(nativeError('x', 524)) as BpfError).code, 'ENOTSUPP');
  assert.equal((toBpfError(nativeError('x', 95)) as BpfError).code, 'EOPNOTSUPP');
  assert.equal((toBpfError(nativeError('x', 9, { bpfCode: 'ECLOSED' })) as BpfError).code, 'ECLOSED');
  const t = new TypeError('bad');
  assert.equal(toBpfError(t), t);
});

test('summarizeLog picks the verifier complaint', () => {
  const log = [
    "libbpf: prog 'p': BPF program load failed: Permission denied",
    "libbpf: prog 'p': -- BEGIN PROG LOAD LOG --",
    '0: R1=ctx() R10=fp0',
    'invalid access to packet, off=0 size=4, R1(id=0,off=0,r=0)',
    'R1 offset is outside of the packet',
    'processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
    '-- END PROG LOAD LOG --',
    "libbpf: prog 'p': failed to load: -13",
    '',
  ].join('\n');
  assert.equal(summarizeLog(log), "prog 'p': invalid access to packet, off=0 size=4, R1(id=0,off=0,r=0) / R1 offset is outside of the packet");
  assert.equal(summarizeLog('libbpf: Kernel error message: Invalid handle\n'), 'Kernel error message: Invalid handle');
  const err = toBpfError(nativeError('BpfObject.load', 13, { log })) as BpfError;
  assert.match(err.message, /invalid access to packet/);
  assert.equal(err.log, log);
});

test('per-CPU values split and join with 8-byte slots', () => {
  const joined = joinPerCpu([Buffer.from([1, 2, 3, 4, 5]), Buffer.from([6, 7, 8, 9, 10])], 5);
  assert.equal(joined.length, 16);
  assert.deepEqual(splitPerCpu(joined, 5), [Buffer.from([1, 2, 3, 4, 5]), Buffer.from([6, 7, 8, 9, 10])]);
  assert.equal(joinPerCpu(Buffer.alloc(8, 1), 8, 3).length, 24);
  assert.throws(() => joinPerCpu([Buffer.alloc(3)], 5), TypeError);
  assert.throws(() => splitPerCpu(Buffer.alloc(12), 5), TypeError);
  assert.equal(numPossibleCpus(fake({ numPossibleCpus: () => 6 })), 6);
});

test('ensureBpffs mounts only when /sys/fs/bpf is not bpffs, and checks the directory', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-wrapper-'));
  try {
    const mounted: string[] = [];
    let mountedYet = false;
    const b = fake({
      statfsType: () => (mountedYet ? BPF_FS_MAGIC : 0x9123683e),
      mountBpffs: (p: string) => { mounted.push(p); mountedYet = true; },
    });
    ensureBpffs(path.join(dir, 'a', 'b'), b);
    assert.deepEqual(mounted, ['/sys/fs/bpf']);
    assert.ok(fs.statSync(path.join(dir, 'a', 'b')).isDirectory());
    ensureBpffs(dir, b);
    assert.equal(mounted.length, 1);
    assert.throws(() => ensureBpffs(dir, fake({ statfsType: (p: string) => (p === '/sys/fs/bpf' ? BPF_FS_MAGIC : 0xef53) })),
      (e: unknown) => e instanceof BpfError && e.code === 'EINVAL' && /not on a bpf filesystem/.test(e.message));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('tc options map to native arguments with defaults', () => {
  const calls: unknown[][] = [];
  const b = fake({
    tcAttach: (...a: unknown[]) => { calls.push(a); },
    tcQuery: () => 42,
  });
  tcAttach({ ifname: 'eth0', netns: 'pod1', direction: 'egress', program: 9 }, b);
  tcAttach({ ifindex: 3, ifname: 'ignored', netns: '/proc/1/ns/net', direction: 'ingress', program: 9, priority: 4, handle: 2 }, b);
  assert.deepEqual(calls, [
    [0, 'eth0', '/run/netns/pod1', 1, 9, 1, 1],
    [3, undefined, '/proc/1/ns/net', 0, 9, 4, 2],
  ]);
  assert.deepEqual(tcQuery({ ifname: 'eth0', direction: 'ingress' }, b), { progId: 42 });
});

test('lookupBatch falls back to iteration when the kernel has no batch ops', async () => {
  const entries = new Map([[1, 10], [2, 20]]);
  const key = (n: number) => Buffer.from([n, 0, 0, 0]);
  const info: NativeMapInfo = { handle, fd: 5, id: 1, type: 14, name: 'devs', keySize: 4, valueSize: 4, valueTotal: 4, maxEntries: 8, flags: 0, perCpu: false };
  const b = fake({
    objectOpen: () => handle,
    objectLoad: async () => '',
    objectGet: () => info,
    objectClose: () => {},
    closeHandle: () => {},
    mapLookupBatch: () => { throw nativeError('BpfMap.lookupBatch', 524); },
    mapNextKey: (_h: unknown, k?: Buffer) => {
      const ks = [...entries.keys()];
      const i = k ? ks.indexOf(k[0]!) + 1 : 0;
      return i < ks.length ? key(ks[i]!) : undefined;
    },
    mapLookup: (_h: unknown, k: Buffer) => key(entries.get(k[0]!)!),
  });
  const obj = BpfObject.open('/fake.o', {}, b);
  await obj.load();
  const m = obj.map('devs');
  assert.deepEqual(m.lookupBatch().map(([k, v]) => [k[0], v[0]]), [[1, 10], [2, 20]]);
  obj.close();
  assert.throws(() => m.lookup(key(1)), (e: unknown) => e instanceof BpfError && e.code === 'ECLOSED');
});

test('RingBufferReader: a wake-up drains once and delivers one batch', async () => {
  let wake: ((s?: number) => void) | undefined;
  let pending: Buffer[] = [Buffer.from('a'), Buffer.from('b')];
  const closed: unknown[] = [];
  const info: NativeMapInfo = { handle, fd: 5, id: 1, type: 27, name: 'events', keySize: 0, valueSize: 0, valueTotal: 0, maxEntries: 4096, flags: 0, perCpu: false };
  const b = fake({
    objectOpen: () => handle,
    objectLoad: async () => '',
    objectGet: () => info,
    objectClose: () => {},
    closeHandle: () => {},
    rbNew: (_m: unknown, w: (s?: number) => void) => { wake = w; return handle; },
    rbConsume: () => { const out = pending; pending = []; return out; },
    rbClose: (h: unknown) => { closed.push(h); },
  });
  const obj = BpfObject.open('/fake.o', {}, b);
  await obj.load();
  const batches: string[][] = [];
  const r = new RingBufferReader(obj.map('events'), (recs) => batches.push(recs.map(String)));
  wake!();
  wake!(); // nothing pending: no empty batch
  assert.deepEqual(batches, [['a', 'b']]);
  r.close();
  r.close();
  assert.equal(closed.length, 1);
  wake!(); // a late wake-up after close is ignored
  assert.throws(() => r.consume(), (e: unknown) => e instanceof BpfError && e.code === 'ECLOSED');
  obj.close();
});
