// BpfProgram.testRun / testRunAsync on a real kernel (BPF_PROG_TEST_RUN): return values, packet
// data out, the __sk_buff context in and out.
import test from 'node:test';
import assert from 'node:assert/strict';
import { BpfError, BpfObject } from '../../src/datapath/libbpf.js';
import { bpfObject, SKB_MARK_OFFSET, SKB_SIZE, skbCtx, udpFrame } from './helpers.js';

async function withProgs(fn: (obj: BpfObject) => Promise<void> | void): Promise<void> {
  const obj = BpfObject.open(bpfObject('progs'));
  try {
    await obj.load();
    await fn(obj);
  } finally {
    obj.close();
  }
}

test('testRun: retval, and the packet comes back unchanged', () => withProgs((obj) => {
  const frame = udpFrame(60);
  const r = obj.program('ret_const').testRun({ data: frame });
  assert.equal(r.retval, 7);
  assert.ok(r.durationNs >= 0);
  assert.deepEqual(r.data, frame);
  assert.equal(r.ctx, undefined);
}));

test('testRun: data written by the program comes back', () => withProgs((obj) => {
  const frame = udpFrame(64);
  const r = obj.program('rewrite_dst').testRun({ data: frame });
  assert.equal(r.retval, 0x08, 'byte 12 of the frame (ethertype 0x0800)');
  assert.equal(r.data.length, 64);
  assert.deepEqual(r.data.subarray(0, 6), Buffer.alloc(6, 0xff));
  assert.deepEqual(r.data.subarray(6), frame.subarray(6));
  assert.deepEqual(frame.subarray(0, 6), Buffer.from([2, 0, 0, 0, 0, 2]), 'input untouched');
  // no room for the output: ENOSPC, with a hint
  assert.throws(() => obj.program('rewrite_dst').testRun({ data: frame, dataOutSize: 10 }),
    (e: unknown) => e instanceof BpfError && e.code === 'ENOSPC' && /out buffer/.test(e.message));
  // dataOutSize 0: no data out at all
  assert.equal(obj.program('rewrite_dst').testRun({ data: frame, dataOutSize: 0 }).data.length, 0);
}));

test('testRun: the __sk_buff context goes in and comes out', () => withProgs((obj) => {
  const r = obj.program('bump_mark').testRun({ data: udpFrame(), ctx: skbCtx(1234) });
  assert.equal(r.retval, 1234);
  assert.ok(r.ctx);
  assert.equal(r.ctx.length, SKB_SIZE);
  assert.equal(r.ctx.readUInt32LE(SKB_MARK_OFFSET), 1235);
  // a context the kernel refuses (a non-zero field test_run does not accept) is EINVAL
  const bad = skbCtx(1);
  bad.writeUInt32LE(1, 4); // pkt_type
  assert.throws(() => obj.program('bump_mark').testRun({ data: udpFrame(), ctx: bad }),
    (e: unknown) => e instanceof BpfError && e.code === 'EINVAL' && e.operation === 'BpfProgram.testRun');
}));

test('testRun rejects bad arguments with TypeErrors', () => withProgs((obj) => {
  const p = obj.program('ret_const');
  assert.throws(() => p.testRun({ data: 'abc' as unknown as Buffer }), TypeError);
  assert.throws(() => p.testRun({ data: udpFrame(), repeat: -1 }), TypeError);
  assert.throws(() => p.testRun({ data: udpFrame(), ctx: 5 as unknown as Buffer }), TypeError);
}));

test('testRun is cheap enough for fuzzing (10k runs)', () => withProgs((obj) => {
  const p = obj.program('bump_mark');
  const data = udpFrame();
  const started = process.hrtime.bigint();
  for (let i = 0; i < 10_000; i++) {
    const r = p.testRun({ data, ctx: skbCtx(i) });
    if (r.retval !== i) assert.equal(r.retval, i);
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  assert.ok(ms < 10_000, `10k test runs took ${ms} ms`);
}));

test('testRunAsync runs on a worker thread with repeat', () => withProgs(async (obj) => {
  const p = obj.program('bump_mark');
  const [a, b] = await Promise.all([
    p.testRunAsync({ data: udpFrame(), ctx: skbCtx(5), repeat: 10_000 }),
    obj.program('rewrite_dst').testRunAsync({ data: udpFrame(64), repeat: 100 }),
  ]);
  // the repeats share one skb, so each run sees the mark the previous one left
  assert.equal(a.retval, 5 + 9_999);
  assert.equal(a.ctx?.readUInt32LE(SKB_MARK_OFFSET), 5 + 10_000);
  assert.ok(a.durationNs >= 0);
  assert.equal(b.retval, 8);
  assert.deepEqual(b.data.subarray(0, 6), Buffer.alloc(6, 0xff));
  // the program may be closed while a run is in flight: the run holds its own fd
  const pending = p.testRunAsync({ data: udpFrame(), ctx: skbCtx(9), repeat: 1000 });
  p.close();
  assert.equal((await pending).retval, 9 + 999);
  await assert.rejects(p.testRunAsync({ data: udpFrame() }), (e: unknown) => e instanceof BpfError && e.code === 'ECLOSED');
  await assert.rejects(obj.program('ret_const').testRunAsync({ data: Buffer.alloc(4) }),
    (e: unknown) => e instanceof BpfError && e.code === 'EINVAL', 'shorter than an Ethernet header');
}));
