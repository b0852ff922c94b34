// The in-memory predicate (src/api/match.ts, used for live streams) and the store's SQL
// (src/store/sql.ts) must select the same rows: every case runs through both, against the real
// embedded store, and must also give the expected rows.
import test from 'node:test';
import assert from 'node:assert/strict';
import { parseFlowQuery } from '../../src/api/params.js';
import { inPrefix, ipBytes, labelHolds, parsePrefix, rowMatches } from '../../src/api/match.js';
import { MAX_LIMIT } from '../../src/store/filter.js';
import { corpus, names, tempStore } from './fixtures.js';
import { CASES } from './cases.js';

test('ip helpers: IPv4 mapped, IPv6 forms, prefixes', () => {
  assert.deepEqual(ipBytes('10.0.0.1'), ipBytes('::ffff:10.0.0.1'));
  assert.deepEqual(ipBytes('::ffff:10.0.0.1'), ipBytes('::ffff:a00:1'));
  assert.deepEqual(ipBytes('fd00::1'), ipBytes('fd00:0:0:0:0:0:0:1'));
  assert.equal(ipBytes('nope'), undefined);
  assert.ok(inPrefix(ipBytes('10.1.2.3')!, parsePrefix('10.0.0.0/8')!));
  assert.ok(!inPrefix(ipBytes('11.1.2.3')!, parsePrefix('10.0.0.0/8')!));
  assert.ok(inPrefix(ipBytes('10.1.2.3')!, parsePrefix('::ffff:0:0/96')!));
  assert.ok(!inPrefix(ipBytes('fd00::1')!, parsePrefix('10.0.0.0/8')!));
  assert.ok(inPrefix(ipBytes('fd00::1')!, parsePrefix('::/0')!));
  assert.ok(inPrefix(ipBytes('10.0.0.129')!, parsePrefix('10.0.0.128/25')!));
  assert.ok(!inPrefix(ipBytes('10.0.0.127')!, parsePrefix('10.0.0.128/25')!));
  assert.ok(labelHolds({ a: '' }, { key: 'a', op: '=', value: '' }));
  assert.ok(!labelHolds({}, { key: 'a', op: '=', value: '' }));
  assert.ok(labelHolds({}, { key: 'a', op: '!=', value: '' }));
  // inherited properties are not labels
  assert.ok(!labelHolds({}, { key: 'constructor', op: 'exists' }));
  assert.ok(!labelHolds({}, { key: 'toString', op: 'exists' }));
});

test('the predicate and the store\'s SQL select the same rows for every filter', async () => {
  const rows = corpus();
  const t = await tempStore(rows);
  try {
    for (const [qs, want] of CASES) {
      const q = parseFlowQuery(new URLSearchParams(qs));
      const inMemory = names(rows.filter((r) => rowMatches(r, q.filter)));
      const stored = names((await t.store.queryFlows({ filter: q.filter, limit: MAX_LIMIT })).rows);
      assert.deepEqual(inMemory, want, `predicate: ${qs}`);
      assert.deepEqual(stored, want, `store: ${qs}`);
    }
  } finally {
    await t.cleanup();
  }
});
