// BpfMap on a real kernel: element operations, iteration, per-CPU values, batches, argument
// validation, pinning.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { BpfError, BpfMap, BpfObject, BpfProgram, numPossibleCpus, splitPerCpu } from '../../src/datapath/libbpf.js';
import { bpfObject, makePinDir, removePinDir, u32, u64, udpFrame } from './helpers.js';

async function withProgs(fn: (obj: BpfObject) => Promise<void> | void): Promise<void> {
  const obj = BpfObject.open(bpfObject('progs'));
  try {
    await obj.load();
    await fn(obj);
  } finally {
    obj.close();
  }
}

test('lookup, update (with flags), delete, nextKey, keys, entries', () => withProgs((obj) => {
  const m = obj.map('counts');
  assert.equal(m.lookup(u32(1)), undefined);
  assert.equal(m.nextKey(), undefined, 'empty map has no first key');
  m.update(u32(1), u64(10));
  m.update(u32(2), u64(20), 'noexist');
  assert.throws(() => m.update(u32(2), u64(21), 'noexist'), (e: unknown) => e instanceof BpfError && e.code === 'EEXIST');
  assert.throws(() => m.update(u32(3), u64(30), 'exist'), (e: unknown) => e instanceof BpfError && e.code === 'ENOENT');
  m.update(u32(2), u64(22), 'exist');
  assert.equal(m.lookup(u32(1))?.readBigUInt64LE(), 10n);
  assert.equal(m.lookup(u32(2))?.readBigUInt64LE(), 22n);

  const first = m.nextKey();
  assert.ok(first);
  const second = m.nextKey(first);
  assert.ok(second);
  assert.equal(m.nextKey(second), undefined);
  assert.deepEqual([first.readUInt32LE(), second.readUInt32LE()].sort(), [1, 2]);
  assert.deepEqual([...m.keys()].map((k) => k.readUInt32LE()).sort(), [1, 2]);
  assert.deepEqual(new Map([...m.entries()].map(([k, v]) => [k.readUInt32LE(), v.readBigUInt64LE()])),
    new Map([[1, 10n], [2, 22n]]));

  assert.equal(m.delete(u32(1)), true);
  assert.equal(m.delete(u32(1)), false);
  assert.equal(m.lookup(u32(1)), undefined);
  assert.deepEqual([...m.keys()].map((k) => k.readUInt32LE()), [2]);
}));

test('the program and user space see the same map', () => withProgs((obj) => {
  const prog = obj.program('count_len');
  for (let i = 0; i < 3; i++) prog.testRun({ data: udpFrame(64) });
  prog.testRun({ data: udpFrame(100) });
  const m = obj.map('counts');
  assert.equal(m.lookup(u32(64))?.readBigUInt64LE(), 3n);
  assert.equal(m.lookup(u32(100))?.readBigUInt64LE(), 1n);
}));

test('wrong key or value sizes are TypeErrors naming the expected size', () => withProgs((obj) => {
  const m = obj.map('counts');
  assert.throws(() => m.lookup(Buffer.alloc(8)), (e: unknown) => e instanceof TypeError && /key must be a Buffer of 4 bytes, got 8/.test(e.message) && /counts/.test(e.message));
  assert.throws(() => m.update(u32(1), Buffer.alloc(4)), (e: unknown) => e instanceof TypeError && /value must be a Buffer of 8 bytes, got 4/.test(e.message));
  assert.throws(() => m.delete(Buffer.alloc(3)), TypeError);
  assert.throws(() => m.nextKey(Buffer.alloc(5)), TypeError);
  assert.throws(() => m.lookup('x' as unknown as Buffer), (e: unknown) => e instanceof TypeError && /Buffer of 4 bytes/.test(e.message));
  assert.throws(() => m.updateBatch([[u32(1), u64(1)], [u32(2), Buffer.alloc(2)]]), (e: unknown) => e instanceof TypeError && /value\[1\]/.test(e.message));
  assert.throws(() => m.update(u32(1), u64(1), 'sometimes' as 'any'), TypeError);
}));

test('per-CPU maps: one 8-byte-aligned slot per possible CPU', () => withProgs((obj) => {
  const m = obj.map('pcpu');
  const ncpu = numPossibleCpus();
  assert.ok(ncpu >= 1);
  assert.equal(m.perCpu, true);
  assert.equal(m.valueSize, 12);
  assert.equal(m.valueTotal, 16 * ncpu);
  const prog = obj.program('count_len');
  for (let i = 0; i < 5; i++) prog.testRun({ data: udpFrame(80) });
  const v = m.lookup(u32(0));
  assert.ok(v);
  assert.equal(v.length, 16 * ncpu);
  const slots = splitPerCpu(v, m.valueSize);
  assert.equal(slots.length, ncpu);
  assert.equal(slots.reduce((n, s) => n + s.readUInt32LE(0), 0), 5, 'runs summed over CPUs');
  const used = slots.filter((s) => s.readUInt32LE(0) > 0);
  assert.ok(used.every((s) => s.readUInt32LE(4) === 80 && s.readUInt32LE(8) === 0xfeedf00d));
  // updates take the same shape
  const w = Buffer.alloc(16 * ncpu);
  for (let c = 0; c < ncpu; c++) w.writeUInt32LE(c + 100, c * 16);
  m.update(u32(1), w);
  assert.deepEqual(splitPerCpu(m.lookup(u32(1))!, 12).map((s) => s.readUInt32LE(0)),
    Array.from({ length: ncpu }, (_, c) => c + 100));
  assert.throws(() => m.update(u32(1), Buffer.alloc(12)), (e: unknown) => e instanceof TypeError && /per-CPU/.test(e.message));
}));

test('batch update, lookup and delete', () => withProgs((obj) => {
  const m = obj.map('counts');
  const entries: Array<[Buffer, Buffer]> = [];
  for (let i = 0; i < 50; i++) entries.push([u32(i), u64(i * 1000)]);
  m.updateBatch(entries);
  const all = m.lookupBatch();
  assert.equal(all.length, 50);
  assert.deepEqual(new Map(all.map(([k, v]) => [k.readUInt32LE(), v.readBigUInt64LE()])),
    new Map(entries.map(([k, v]) => [k.readUInt32LE(), v.readBigUInt64LE()])));
  m.deleteBatch(entries.slice(0, 30).map(([k]) => k));
  assert.deepEqual(m.lookupBatch().map(([k]) => k.readUInt32LE()).sort((a, b) => a - b),
    Array.from({ length: 20 }, (_, i) => i + 30));
  assert.throws(() => m.deleteBatch([u32(0)]), (e: unknown) => e instanceof BpfError && e.code === 'ENOENT');
  m.updateBatch([]);
  m.deleteBatch([]);
  // arrays (and per-CPU arrays) batch too: every index is present
  const arr = obj.map('pcpu').lookupBatch();
  assert.equal(arr.length, 4);
  assert.ok(arr.every(([, v]) => v.length === obj.map('pcpu').valueTotal));
  // an empty hash
  m.deleteBatch(m.lookupBatch().map(([k]) => k));
  assert.deepEqual(m.lookupBatch(), []);
}));

test('lookupBatch falls back to iteration for maps without batch support', () => withProgs((obj) => {
  // the kernel has no batch ops for device maps (ENOTSUPP)
  const devs = obj.map('devs');
  devs.update(u32(1), u32(1)); // ifindex 1: lo, present in every namespace
  devs.update(u32(2), u32(1));
  const all = devs.lookupBatch();
  assert.deepEqual(all.map(([k]) => k.readUInt32LE()).sort(), [1, 2]);
  assert.ok(all.every(([, v]) => v.readUInt32LE() === 1));
  // a ring buffer has neither batch ops nor keys: the fallback's own error surfaces
  assert.throws(() => obj.map('events').lookupBatch(), BpfError);
}));

test('pin, fromPin and unpin, for maps and programs', () => withProgs((obj) => {
  const dir = makePinDir();
  try {
    const m = obj.map('counts');
    m.update(u32(7), u64(77));
    m.pin(`${dir}/counts`);
    const again = BpfMap.fromPin(`${dir}/counts`);
    try {
      assert.equal(again.id, m.id);
      assert.equal(again.keySize, 4);
      assert.equal(again.valueSize, 8);
      assert.equal(again.maxEntries, 64);
      assert.equal(again.type, m.type);
      assert.equal(again.name, 'counts');
      assert.equal(again.lookup(u32(7))?.readBigUInt64LE(), 77n);
      again.update(u32(8), u64(88));
      assert.equal(m.lookup(u32(8))?.readBigUInt64LE(), 88n);
    } finally {
      again.close();
    }
    assert.throws(() => m.pin(`${dir}/counts`), (e: unknown) => e instanceof BpfError && e.code === 'EEXIST');
    assert.throws(() => BpfProgram.fromPin(`${dir}/counts`), (e: unknown) => e instanceof BpfError && e.code === 'EINVAL' && /not a pinned BPF program/.test(e.message));

    const p = obj.program('ret_const');
    p.pin(`${dir}/ret_const`);
    const p2 = BpfProgram.fromPin(`${dir}/ret_const`);
    try {
      assert.equal(p2.id, p.id);
      assert.equal(p2.name, 'ret_const');
      assert.equal(p2.testRun({ data: udpFrame() }).retval, 7);
    } finally {
      p2.close();
    }
    assert.throws(() => BpfMap.fromPin(`${dir}/ret_const`), (e: unknown) => e instanceof BpfError && e.code === 'EINVAL');

    m.unpin(`${dir}/counts`);
    p.unpin(`${dir}/ret_const`);
    assert.equal(fs.existsSync(`${dir}/counts`), false);
    assert.throws(() => m.unpin(`${dir}/counts`), (e: unknown) => e instanceof BpfError && e.code === 'ENOENT');
    assert.throws(() => BpfMap.fromPin(`${dir}/counts`), (e: unknown) => e instanceof BpfError && e.code === 'ENOENT' && e.operation === 'BpfMap.fromPin');
  } finally {
    removePinDir(dir);
  }
}));
