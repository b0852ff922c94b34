// RingBufferReader on a real ring buffer: records written by a program (through test runs) come to
// onBatch from the event loop in few batches, consume() drains synchronously, close is idempotent.
import test from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { execFileSync } from 'node:child_process';
import { BpfError, BpfObject, RingBufferReader } from '../../src/datapath/libbpf.js';
import { bpfObject, skbCtx, udpFrame } from './helpers.js';

interface Rec { seq: number; total: number; mark: number; len: number }
const decode = (b: Buffer): Rec => ({ seq: b.readUInt32LE(0), total: b.readUInt32LE(4), mark: b.readUInt32LE(8), len: b.readUInt32LE(12) });

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

test('records arrive from the event loop, a whole wake-up in one batch', async () => {
  const obj = BpfObject.open(bpfObject('progs'));
  let reader: RingBufferReader | undefined;
  try {
    await obj.load();
    const batches: Buffer[][] = [];
    reader = new RingBufferReader(obj.map('events'), (records) => batches.push(records));
    const emit = obj.program('emit');
    assert.equal(emit.testRun({ data: udpFrame(70), ctx: skbCtx(20) }).retval, 20);
    assert.equal(batches.length, 0, 'nothing is delivered synchronously by a wake-up');
    await waitFor(() => batches.flat().length >= 20, '20 records');
    assert.ok(batches.length <= 2, `20 records in ${batches.length} batches`);
    const recs = batches.flat().map(decode);
    assert.deepEqual(recs.map((r) => r.seq), Array.from({ length: 20 }, (_, i) => i));
    assert.ok(recs.every((r) => r.total === 20 && r.mark === 20 && r.len === 70));
    assert.ok(batches.flat().every((b) => b.length === 16));

    // several runs before the loop turns: still one batch for everything pending
    batches.length = 0;
    for (let i = 0; i < 5; i++) emit.testRun({ data: udpFrame(), ctx: skbCtx(10) });
    await waitFor(() => batches.flat().length >= 50, '50 records');
    await sleep(20);
    assert.equal(batches.flat().length, 50);
    assert.ok(batches.length <= 2, `50 records in ${batches.length} batches`);

    // consume() drains synchronously and delivers through onBatch too
    batches.length = 0;
    emit.testRun({ data: udpFrame(), ctx: skbCtx(3) });
    assert.equal(reader.consume(), 3);
    assert.equal(batches.length, 1);
    assert.deepEqual(batches[0]!.map((b) => decode(b).seq), [0, 1, 2]);
    assert.equal(reader.consume(), 0, 'nothing left');
    await sleep(20);
    assert.equal(batches.length, 1, 'the wake-up found nothing more');

    reader.unref();
    reader.ref();
    reader.close();
    reader.close(); // idempotent
    const closed = (e: unknown) => e instanceof BpfError && e.code === 'ECLOSED';
    assert.throws(() => reader!.consume(), closed);
    assert.throws(() => reader!.ref(), closed);
    assert.throws(() => reader!.unref(), closed);
    // records written after close are not delivered
    emit.testRun({ data: udpFrame(), ctx: skbCtx(4) });
    await sleep(20);
    assert.equal(batches.length, 1);
  } finally {
    reader?.close();
    obj.close();
  }
});

/** Runs a child node process with the reader set up by `body`; returns its stdout. */
function runChild(body: string): string {
  const lib = new URL('../../src/datapath/libbpf.js', import.meta.url).href;
  const obj = bpfObject('progs');
  const script = `
import { BpfObject, RingBufferReader } from ${JSON.stringify(lib)};
const obj = BpfObject.open(${JSON.stringify(obj)});
await obj.load();
const data = Buffer.alloc(64);
const ctx = Buffer.alloc(192);
ctx.writeUInt32LE(3, 8);
${body}
`;
  return execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
}

test('ref keeps the process alive, unref lets it exit', () => {
  // an unref'd timer that only fires if something else holds the loop
  const probe = `setTimeout(() => { console.log('alive'); process.exit(0); }, 300).unref();`;
  assert.equal(runChild(`new RingBufferReader(obj.map('events'), () => {}); ${probe}`).trim(), 'alive');
  assert.equal(runChild(`new RingBufferReader(obj.map('events'), () => {}).unref(); ${probe}`).trim(), '');
  assert.equal(runChild(`new RingBufferReader(obj.map('events'), () => {}).close(); ${probe}`).trim(), '');
});

test('an unref\'d reader still delivers; an exception in onBatch is an uncaught exception', () => {
  const out = runChild(`
process.on('uncaughtException', (e) => { console.log('uncaught:' + e.message); process.exit(0); });
new RingBufferReader(obj.map('events'), (records) => {
  console.log('batch:' + records.length);
  throw new Error('boom');
}).unref();
obj.program('emit').testRun({ data, ctx });
setTimeout(() => console.log('timeout'), 2000);
`);
  assert.equal(out.trim(), 'batch:3\nuncaught:boom');
});

test('RingBufferReader needs a ring buffer map and an onBatch function', async () => {
  const obj = BpfObject.open(bpfObject('progs'));
  try {
    await obj.load();
    assert.throws(() => new RingBufferReader(obj.map('counts'), () => {}),
      (e: unknown) => e instanceof BpfError && e.code === 'EINVAL' && /RINGBUF/.test(e.message));
    assert.throws(() => new RingBufferReader(obj.map('events'), undefined as unknown as () => void), TypeError);
    const m = obj.map('events');
    m.close();
    assert.throws(() => new RingBufferReader(m, () => {}), (e: unknown) => e instanceof BpfError && e.code === 'ECLOSED');
  } finally {
    obj.close();
  }
});

test('a reader keeps working after its map handle is closed, until closed itself', async () => {
  const obj = BpfObject.open(bpfObject('progs'));
  let reader: RingBufferReader | undefined;
  try {
    await obj.load();
    const batches: Buffer[][] = [];
    const events = obj.map('events');
    reader = new RingBufferReader(events, (b) => batches.push(b));
    events.close();
    obj.program('emit').testRun({ data: udpFrame(), ctx: skbCtx(2) });
    await waitFor(() => batches.flat().length === 2, '2 records');
  } finally {
    reader?.close();
    obj.close();
  }
});
