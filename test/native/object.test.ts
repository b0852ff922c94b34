// BpfObject on a real kernel: open/load/close, verifier logs in errors, use after close,
// maxEntries, and LIBBPF_PIN_BY_NAME reuse through pinRoot.
import test from 'node:test';
import assert from 'node:assert/strict';
import { BpfError, BpfObject } from '../../src/datapath/libbpf.js';
import { bpfObject, makePinDir, removePinDir, skbCtx, u32, udpFrame } from './helpers.js';

test('open, load, look up programs and maps, close', async () => {
  const obj = BpfObject.open(bpfObject('progs'));
  try {
    assert.deepEqual(obj.programNames().sort(),
      ['bump_mark', 'count_len', 'emit', 'ret_const', 'rewrite_dst']);
    for (const m of ['counts', 'pcpu', 'resizable', 'events']) assert.ok(obj.mapNames().includes(m), m);
    await obj.load();
    const prog = obj.program('ret_const');
    assert.equal(prog.name, 'ret_const');
    assert.ok(prog.fd > 2 && prog.id > 0);
    assert.equal(obj.program('ret_const'), prog, 'same instance per name');
    const counts = obj.map('counts');
    assert.equal(counts.name, 'counts');
    assert.equal(counts.keySize, 4);
    assert.equal(counts.valueSize, 8);
    assert.equal(counts.maxEntries, 64);
    assert.equal(counts.type, 1 /* BPF_MAP_TYPE_HASH */);
    assert.equal(counts.perCpu, false);
    assert.throws(() => obj.program('nope'), (e: unknown) => e instanceof BpfError && e.code === 'ENOENT' &&
      e.operation === 'BpfObject.program' && /nope/.test(e.message));
    assert.throws(() => obj.map('nope'), (e: unknown) => e instanceof BpfError && e.code === 'ENOENT');
  } finally {
    obj.close();
  }
  obj.close(); // idempotent
});

test('open of a missing file is a BpfError ENOENT', () => {
  bpfObject('progs'); // preconditions
  assert.throws(() => BpfObject.open('/nonexistent/weir.o'),
    (e: unknown) => e instanceof BpfError && e.code === 'ENOENT' && e.operation === 'BpfObject.open');
});

test('program() before load is a clear error', () => {
  const obj = BpfObject.open(bpfObject('progs'));
  try {
    assert.throws(() => obj.program('ret_const'), (e: unknown) => e instanceof BpfError && /not loaded/.test(e.message));
  } finally {
    obj.close();
  }
});

test('a verifier rejection carries the verifier log', async () => {
  const obj = BpfObject.open(bpfObject('bad'));
  try {
    await assert.rejects(obj.load(), (e: unknown) => {
      assert.ok(e instanceof BpfError, String(e));
      assert.equal(e.operation, 'BpfObject.load');
      assert.equal(e.code, 'EACCES');
      assert.ok(e.log, 'log present');
      assert.match(e.log, /unchecked_read/);
      assert.match(e.log, /invalid access to packet/);
      assert.match(e.message, /invalid access to packet|failed/);
      return true;
    });
  } finally {
    obj.close();
  }
});

test('concurrent loads each get their own log', async () => {
  const bad = [BpfObject.open(bpfObject('bad')), BpfObject.open(bpfObject('bad'))];
  const good = BpfObject.open(bpfObject('progs'));
  try {
    const results = await Promise.allSettled([bad[0]!.load(), good.load(), bad[1]!.load()]);
    assert.equal(results[1]!.status, 'fulfilled');
    for (const r of [results[0]!, results[2]!]) {
      assert.equal(r.status, 'rejected');
      const log = ((r as PromiseRejectedResult).reason as BpfError).log ?? '';
      assert.equal(log.match(/BEGIN PROG LOAD LOG/g)?.length, 1, log);
      assert.doesNotMatch(log, /count_len|emit/);
    }
  } finally {
    for (const o of [...bad, good]) o.close();
  }
});

test('use after close throws ECLOSED, for the object and its programs and maps', async () => {
  const obj = BpfObject.open(bpfObject('progs'));
  let closedObj = false;
  try {
    await obj.load();
    const prog = obj.program('ret_const');
    const map = obj.map('counts');
    obj.close();
    closedObj = true;
    const closed = (e: unknown) => e instanceof BpfError && e.code === 'ECLOSED';
    assert.throws(() => obj.program('ret_const'), closed);
    assert.throws(() => obj.mapNames(), closed);
    await assert.rejects(obj.load(), closed);
    assert.throws(() => prog.testRun({ data: udpFrame() }), closed);
    assert.throws(() => prog.fd, closed);
    assert.throws(() => map.lookup(u32(1)), closed);
    assert.throws(() => map.update(u32(1), Buffer.alloc(8)), closed);
    prog.close();
    map.close(); // idempotent after the owner closed them
  } finally {
    if (!closedObj) obj.close();
  }
});

test('a program handle closed on its own stops working; the object keeps its own', async () => {
  const obj = BpfObject.open(bpfObject('progs'));
  try {
    await obj.load();
    const p = obj.program('ret_const');
    p.close();
    assert.throws(() => p.testRun({ data: udpFrame() }), (e: unknown) => e instanceof BpfError && e.code === 'ECLOSED');
    const again = obj.program('ret_const');
    assert.notEqual(again, p);
    assert.equal(again.testRun({ data: udpFrame() }).retval, 7);
  } finally {
    obj.close();
  }
});

test('maxEntries overrides a map size before load', async () => {
  const obj = BpfObject.open(bpfObject('progs'), { maxEntries: { resizable: 1000 } });
  try {
    await obj.load();
    assert.equal(obj.map('resizable').maxEntries, 1000);
    assert.equal(obj.map('counts').maxEntries, 64);
  } finally {
    obj.close();
  }
  assert.throws(() => BpfObject.open(bpfObject('progs'), { maxEntries: { missing: 1 } }),
    (e: unknown) => e instanceof BpfError && e.code === 'ENOENT' && /missing/.test(e.message));
});

test('pinRoot: a LIBBPF_PIN_BY_NAME map is pinned by the first load and reused by the second', async () => {
  const dir = makePinDir();
  const a = BpfObject.open(bpfObject('pinned'), { pinRoot: dir });
  const b = BpfObject.open(bpfObject('pinned'), { pinRoot: dir });
  try {
    await a.load();
    // the first program writes through its object's map ...
    const r = a.program('add_shared').testRun({ data: udpFrame(), ctx: skbCtx(41) });
    assert.equal(r.retval, 41);
    a.map('shared').update(u32(0), Buffer.from([42, 0, 0, 0, 0, 0, 0, 0]));
    await b.load();
    // ... and the second object's map is the same kernel map
    assert.equal(a.map('shared').id, b.map('shared').id);
    assert.equal(b.map('shared').lookup(u32(0))?.readBigUInt64LE(), 42n);
    assert.equal(b.program('add_shared').testRun({ data: udpFrame(), ctx: skbCtx(1) }).retval, 43);
    // maps not marked for pinning are not shared
    assert.notEqual(a.map('counts').id, b.map('counts').id);
  } finally {
    a.close();
    b.close();
    removePinDir(dir);
  }
});

test('while a load runs, everything but close() is EBUSY; close() during a load takes effect after it', async () => {
  const obj = BpfObject.open(bpfObject('progs'));
  try {
    const loading = obj.load();
    assert.throws(() => obj.programNames(), (e: unknown) => e instanceof BpfError && e.code === 'EBUSY');
    await assert.rejects(obj.load(), (e: unknown) => e instanceof BpfError && e.code === 'EBUSY');
    obj.close();
    assert.equal(obj.closed, true);
    await loading; // the load itself finished; the object is closed now
    assert.throws(() => obj.program('ret_const'), (e: unknown) => e instanceof BpfError && e.code === 'ECLOSED');
  } finally {
    obj.close();
  }
});
