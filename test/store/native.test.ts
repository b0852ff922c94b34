// The Native block encoder against the real engine: ClickHouse (embedded chDB) itself writes the
// same rows in Native format, and the bytes must be ours; rows with awkward values survive a round
// trip through the store unchanged.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { INSERT_COLUMNS } from '../../src/store/codec.js';
import { NativeEncoder } from '../../src/store/native.js';
import { openStore, type FlowStore } from '../../src/store/store.js';
import type { FlowRow } from '../../src/store/row.js';
import { row, T0, tempDir } from './fixtures.js';

const tmp = tempDir('native');
let store: FlowStore;

before(async () => {
  store = await openStore({ dataDir: path.join(tmp.dir, 'data') });
});

after(async () => {
  await store?.close();
  tmp.remove();
});

/** Rows whose values stress every column encoding. */
function awkwardRows(): FlowRow[] {
  const long = 'x'.repeat(200); // a length of two VarUInt bytes
  const longer = 'é'.repeat(9000); // 18,000 bytes: a three-byte length, and not ASCII
  return [
    row({ ts: T0, src: { labels: {} }, dst: { labels: {} } }), // empty maps
    row({
      ts: T0 + 1, kind: 'denied', verdict: 'denied', reason: 'DENY_DEFAULT', direction: 'egress', protocol: 17,
      src: { ip: 'fd00::1:2', port: 65535, pod: long, labels: { 'app.kubernetes.io/name': 'ünïcödé ✓', k: '' } },
      dst: { kind: 'world', ip: '2001:db8::ffff:1', port: 53, namespace: '', pod: '', labels: {}, name: longer, workloadKind: '', workload: '' },
      policy: '', packetsFwd: 2 ** 40, bytesFwd: Number.MAX_SAFE_INTEGER, count: 4_000_000_000,
    }),
    row({ ts: T0 + 2, src: { ip: '::', namespace: 'ns-ü' }, dst: { ip: '::ffff:255.255.255.255' }, connectionsLive: 2 ** 32 - 1 }),
  ];
}

/** The rows as the store reads them back, ordered as inserted (ts ascending). */
async function readBack(n: number): Promise<FlowRow[]> {
  const { rows } = await store.queryFlows({ filter: {}, limit: n });
  return rows.reverse();
}

test('rows with awkward values survive a round trip through the store unchanged', async () => {
  const rows = awkwardRows();
  await store.insert(rows, 'native-roundtrip');
  assert.deepEqual(await readBack(rows.length), rows);
  // the staged block was removed once chDB had read it
  assert.deepEqual(readdirSync(path.join(tmp.dir, 'data', 'inserts')), []);
});

test('the encoder writes the bytes ClickHouse itself writes for the same rows', async () => {
  // 300 distinct pod names and namespaces: LowCardinality indexes of two bytes, not one
  const rows = Array.from({ length: 300 }, (_, i) =>
    row({ ts: T0 + 10_000 + i, src: { namespace: `ns-${i}`, pod: `pod-${i}`, labels: { i: String(i) } }, dst: { port: i } }));
  await store.insert(rows, 'native-bytes');
  const since = `fromUnixTimestamp64Milli(toInt64(${T0 + 10_000}), 'UTC')`;
  const { stream } = await store.client.exec({
    query: `SELECT ${INSERT_COLUMNS.join(', ')} FROM flows WHERE ts >= ${since} ORDER BY ts FORMAT Native`,
  });
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  const theirs = Buffer.concat(chunks);
  // the store derives the batch's ids from its token: the first row holds the base
  const first = await store.client.query({ query: `SELECT toString(id) AS id FROM flows WHERE ts = ${since}`, format: 'JSONEachRow' });
  const base = BigInt((await first.json<{ id: string }>())[0]!.id);
  const ours = new NativeEncoder().encode(rows, base);
  assert.equal(theirs.length, ours.length, 'block sizes differ');
  assert.ok(theirs.equals(ours), 'the engine wrote other bytes for the same rows');
});

test('row ids wrap around 2^64 inside a block', () => {
  const block = new NativeEncoder().encode([row(), row(), row()], 2n ** 64n - 2n);
  // the id column's data follows its name and type, after ts and start (8 bytes a row each)
  const header = Buffer.from('\x02id\x06UInt64', 'latin1');
  const at = block.indexOf(header) + header.length;
  assert.ok(at > header.length);
  const ids = [0, 1, 2].map((i) => block.readBigUInt64LE(at + 8 * i));
  assert.deepEqual(ids, [2n ** 64n - 2n, 2n ** 64n - 1n, 0n]);
});

test('the encoder refuses values its column cannot hold, naming the column', () => {
  const enc = new NativeEncoder();
  assert.throws(() => enc.encode([row({ packetsFwd: -1 })], 0n), /column packets_fwd needs a non-negative integer, got -1/);
  assert.throws(() => enc.encode([row({ src: { namespace: 7 as unknown as string } })], 0n), /column src_namespace needs a string, got 7/);
  assert.throws(() => enc.encode([row({ dst: { ip: 'not-an-ip' } })], 0n), /not-an-ip/);
  assert.throws(() => enc.encode([row({ protocol: 256 })], 0n), /protocol|range/i);
});
