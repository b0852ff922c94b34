// The writer against the real chDB store, made unavailable by a wrapper that fails inserts on
// demand ("down": before inserting; "lost-ack": after inserting, as when the connection breaks
// before the acknowledgement). Rows are counted in chDB: nothing lost, nothing doubled.

import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openStore, type FlowStore } from '../../src/store/store.js';
import { FlowWriter, type FlowWriterOptions } from '../../src/store/writer.js';
import type { FlowRow } from '../../src/store/row.js';
import { T0, rows, tempDir } from './fixtures.js';

const tmp = tempDir('writer');
let real: FlowStore;

before(async () => {
  real = await openStore({ dataDir: path.join(tmp.dir, 'data') });
});

after(async () => {
  await real?.close();
  tmp.remove();
});

/** The real store, with inserts that fail while the test says so. */
class Switchable implements FlowStore {
  mode: 'up' | 'down' | 'lost-ack' = 'up';
  inserts = 0;
  /** when each insert was called, and with how many rows */
  calls: Array<{ at: number; rows: number }> = [];
  constructor(private readonly inner: FlowStore) {}
  get location() { return this.inner.location; }
  get migration() { return this.inner.migration; }
  get client() { return this.inner.client; }
  async insert(batch: readonly FlowRow[], token: string): Promise<void> {
    this.inserts++;
    this.calls.push({ at: Date.now(), rows: batch.length });
    if (this.mode === 'down') throw new Error('connect ECONNREFUSED (test: store down)');
    await this.inner.insert(batch, token);
    if (this.mode === 'lost-ack') throw new Error('socket hang up (test: acknowledgement lost)');
  }
  queryFlows: FlowStore['queryFlows'] = (q) => this.inner.queryFlows(q);
  summary: FlowStore['summary'] = (f, g, l) => this.inner.summary(f, g, l);
  count: FlowStore['count'] = (f) => this.inner.count(f);
  ping: FlowStore['ping'] = () => this.inner.ping();
  async close(): Promise<void> {}
}

const count = (ns: string) => real.count({ src: { namespace: [ns] } });
const fast = { initialDelayMs: 5, maxDelayMs: 40, attempts: 2 };

function writer(store: FlowStore, name: string, over: Partial<FlowWriterOptions> = {}): FlowWriter {
  return new FlowWriter(store, { spoolDir: path.join(tmp.dir, `spool-${name}`), maxRows: 100, maxDelayMs: 50, retry: fast, ...over });
}

async function waitFor(what: string, cond: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test('batches by rows at once and by time for the rest', async () => {
  const s = new Switchable(real);
  const w = writer(s, 'batch', { maxDelayMs: 300 });
  const t0 = Date.now();
  w.write(rows(250, 'batch'));
  await waitFor('three batches', async () => (await count('batch')) === 250);
  assert.deepEqual(s.calls.map((c) => c.rows), [100, 100, 50]);
  // the full batches go at once, the partial one waits for maxDelayMs
  assert.ok(s.calls[0]!.at - t0 < 300, `first batch after ${s.calls[0]!.at - t0} ms`);
  assert.ok(s.calls[2]!.at - t0 >= 300, `partial batch after ${s.calls[2]!.at - t0} ms`);
  await w.close();
  assert.deepEqual({ ...w.stats(), lastError: undefined }, {
    written: 250, retried: 0, spooled: 0, replayed: 0, dropped: 0, buffered: 0, spoolFiles: 0, spoolBytes: 0, storeUp: true, lastError: undefined,
  });
});

test('store down: batches retry, then spool; once it is back they are replayed, nothing lost or doubled', async () => {
  const s = new Switchable(real);
  const errors: string[] = [];
  const w = writer(s, 'down', { onError: (e) => errors.push(e.message) });
  s.mode = 'down';
  for (let i = 0; i < 5; i++) w.write(rows(100, 'down', T0 + 1000 * i));
  await w.flush();
  let st = w.stats();
  assert.equal(st.spooled, 500);
  assert.equal(st.spoolFiles, 5);
  assert.equal(st.storeUp, false);
  assert.ok(st.retried >= 1, 'the first batch was retried before spooling');
  assert.match(errors[0]!, /ECONNREFUSED/);
  assert.equal(await count('down'), 0);
  // more rows while down, then the store comes back by itself: the probe timer replays
  w.write(rows(30, 'down', T0 + 9000));
  await sleep(80);
  s.mode = 'up';
  await waitFor('replay', async () => w.stats().spoolFiles === 0 && (await count('down')) === 530);
  st = w.stats();
  assert.equal(st.replayed, 530);
  assert.equal(st.written, 530);
  assert.equal(st.spoolFiles, 0);
  assert.equal(st.dropped, 0);
  assert.equal(st.storeUp, true);
  await w.close();
  assert.equal(await count('down'), 530);
});

test('a batch stored but not acknowledged, spooled, and replayed by a restarted writer is stored once', async () => {
  const s = new Switchable(real);
  const spoolDir = path.join(tmp.dir, 'spool-restart');
  const w1 = writer(s, 'restart', { spoolDir });
  s.mode = 'lost-ack';
  w1.write(rows(100, 'restart'));
  w1.write(rows(40, 'restart', T0 + 5000));
  await w1.close(); // the agent stops with the store still failing
  assert.equal(w1.stats().spooled, 140);
  assert.equal(w1.stats().written, 0);
  // the first batch reached the store unacknowledged; the second too when it was already in
  // flight (two inserts at once) before the first failed, otherwise it was spooled unsent
  const taken = await count('restart');
  assert.ok(taken === 100 || taken === 140, `the store took the first batch (and maybe the second): ${taken} rows`);
  assert.equal(readdirSync(spoolDir).filter((f) => f.endsWith('.batch')).length, 2);
  // a half-written file from a crash during spooling is not a batch
  writeFileSync(path.join(spoolDir, '0000000000000099.batch.tmp'), '{"v":1');
  s.mode = 'up';
  const w2 = writer(s, 'restart', { spoolDir });
  await w2.flush();
  assert.equal(w2.stats().replayed, 140);
  assert.deepEqual(readdirSync(spoolDir), []);
  assert.equal(await count('restart'), 140, 'replayed with the same dedup tokens: not doubled');
  await w2.close();
});

test('spool full: rows are dropped and counted, the rest replayed', async () => {
  const s = new Switchable(real);
  const probe = JSON.stringify(rows(100, 'full')).length;
  const errors: string[] = [];
  const w = writer(s, 'full', { spoolMaxBytes: Math.floor(probe * 1.5), onError: (e) => errors.push(e.message) });
  s.mode = 'down';
  for (let i = 0; i < 3; i++) w.write(rows(100, 'full', T0 + 1000 * i));
  await w.flush();
  const st = w.stats();
  assert.equal(st.spooled, 100);
  assert.equal(st.dropped, 200);
  assert.equal(st.spoolFiles, 1);
  assert.equal(errors.filter((e) => /^spool .* is full \(\d+ bytes\): 100 rows dropped$/.test(e)).length, 2);
  s.mode = 'up';
  await w.flush();
  assert.equal(await count('full'), 100);
  await w.close();
  w.write(rows(5, 'full'));
  assert.equal(w.stats().dropped, 205, 'writes after close are counted as dropped');
  await w.close(); // idempotent
});

test('memory is bounded: beyond maxBufferedRows the buffer goes to the spool, in order, nothing lost', async () => {
  const s = new Switchable(real);
  const w = writer(s, 'bound', { maxRows: 1000, maxDelayMs: 10_000, maxBufferedRows: 50 });
  for (let i = 0; i < 3; i++) w.write(rows(40, 'bound', T0 + 100 * i));
  assert.ok(w.stats().buffered <= 50);
  await w.flush();
  const st = w.stats();
  assert.equal(st.spooled, 80);
  assert.equal(st.replayed, 80);
  assert.equal(st.written, 120);
  assert.equal(await count('bound'), 120);
  await w.close();
});
