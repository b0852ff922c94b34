// Following a store by polling: new rows once, late rows (older ts, inserted later) within the
// settle window once, nothing from before the start.
import test from 'node:test';
import assert from 'node:assert/strict';
import { StoreFollower } from '../../src/api/follow.js';
import { row, tempStore } from './fixtures.js';

test('a follower returns each new matching row once, oldest first, late rows included', async () => {
  const t = await tempStore();
  try {
    const start = Date.now();
    const f = new StoreFollower(t.store, { verdict: ['denied'] }, { startMs: start, settleMs: 30_000 });
    assert.deepEqual(await f.poll(), []); // the seeded rows are an hour old
    await t.store.insert([
      row({ reporter: 'b', ts: start + 2000, kind: 'denied', verdict: 'denied' }),
      row({ reporter: 'a', ts: start + 1000, kind: 'denied', verdict: 'denied' }),
      row({ reporter: 'allowed', ts: start + 1500 }),
    ], 'f1');
    assert.deepEqual((await f.poll()).map((r) => r.reporter), ['a', 'b']);
    assert.deepEqual(await f.poll(), []);
    // a row stamped earlier than the newest seen, stored later (an aggregation interval's end)
    await t.store.insert([row({ reporter: 'late', ts: start + 500, kind: 'denied', verdict: 'denied' }), row({ reporter: 'c', ts: start + 3000, kind: 'denied', verdict: 'denied' })], 'f2');
    assert.deepEqual((await f.poll()).map((r) => r.reporter), ['late', 'c']);
    assert.deepEqual(await f.poll(), []);
    // before the start: never
    await t.store.insert([row({ reporter: 'before', ts: start - 10, kind: 'denied', verdict: 'denied' })], 'f3');
    assert.deepEqual(await f.poll(), []);
    // markSeen: rows already shown are not shown again
    const g = new StoreFollower(t.store, { verdict: ['denied'] }, { startMs: start });
    const shown = (await t.store.queryFlows({ filter: { verdict: ['denied'], since: start }, limit: 2 })).rows;
    g.markSeen(shown);
    assert.deepEqual((await g.poll()).map((r) => r.reporter), ['late', 'a']);
  } finally {
    await t.cleanup();
  }
});
