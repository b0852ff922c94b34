import test from 'node:test';
import assert from 'node:assert/strict';
import { FlowPipeline, type FlowPipelineOptions } from '../../src/flows/pipeline.js';
import { RecordClock } from '../../src/flows/clock.js';
import { ruleNamer } from '../../src/flows/enrich.js';
import { EndpointRegistry } from '../../src/flows/registry.js';
import { Direction, Hook, Proto, Reason, Verdict, type CtEntry, type CtKey } from '../../src/datapath/abi.js';
import type { FlowRow } from '../../src/store/row.js';
import { SEC, encodeFlow, encodeLost, fakeClocks, flow } from './records.js';

const A = '10.244.0.10';
const B = '10.244.0.11';

function setup(over: Partial<FlowPipelineOptions> = {}) {
  const clocks = fakeClocks(1000n * SEC, 1_700_000_000_000); // record ns 1000 s = wall 1 700 000 000 000
  const registry = new EndpointRegistry({ node: 'n1' });
  registry.upsertPod({ namespace: 'web', name: 'a', labels: { app: 'a' }, ips: [A] }, 0);
  registry.upsertPod({ namespace: 'api', name: 'b', labels: { app: 'b' }, ips: [B] }, 0);
  const rows: FlowRow[] = [];
  const p = new FlowPipeline({
    registry, ruleName: ruleNamer((id) => (id === 16 ? { kind: 'NetworkPolicy', policy: 'api/allow-a', direction: 'Ingress', index: 0 } : undefined)),
    sink: (r) => { rows.push(...r); }, reporter: 'n1', timer: false, clock: new RecordClock(clocks), ...over,
  });
  return { p, rows, clocks, registry };
}

const deny = (i: number) => encodeFlow({ type: 'DENY', saddr: '192.0.2.1', daddr: B, sport: 10_000 + (i % 50_000), tsNs: 1000n * SEC, verdict: Verdict.DENY, reason: Reason.DENY_DEFAULT });

test('raw records are decoded, enriched, aggregated and reach the sink at the interval\'s end', async () => {
  const { p, rows, clocks } = setup();
  p.push([
    encodeFlow({ saddr: A, daddr: B, tsNs: 1000n * SEC, ingressRuleId: 16 }),
    encodeFlow({ saddr: A, daddr: B, type: 'FLOW_END', tsNs: 1001n * SEC, startNs: 1000n * SEC, direction: Direction.BOTH, ingressRuleId: 16, packetsFwd: 3n, bytesFwd: 180n }),
    deny(0),
    encodeLost(1000n * SEC, 5n),
    Buffer.from([9, 9, 9]), // not a record
  ]);
  clocks.advance(15_000);
  await p.flush();
  const kinds = rows.map((r) => `${r.kind}:${r.reason}`).sort();
  assert.deepEqual(kinds, ['denied:DENY_DEFAULT', 'flow:ALLOW_POLICY', 'lost:invalid_record', 'lost:ring_buffer']);
  const f = rows.find((r) => r.kind === 'flow')!;
  assert.deepEqual([f.ts, f.src.pod, f.dst.pod, f.policy, f.packetsFwd, f.bytesFwd, f.connectionsStarted, f.connectionsCompleted, f.reporter],
    [1_700_000_015_000, 'a', 'b', 'api/allow-a ingress[0]', 3, 180, 1, 1, 'n1']);
  assert.equal(rows.find((r) => r.kind === 'denied')!.ts, 1_700_000_000_000, 'record time in UTC ms');
  const s = p.stats();
  assert.deepEqual([s.received, s.processed, s.rowsOut, s.intervals, s.inputQueue, s.sinkQueue], [5, 5, 4, 1, 0, 0]);
  assert.deepEqual(s.lost, { ring_buffer: 5, invalid_record: 1 });
  await p.close();
});

test('a full input queue refuses and counts; the loss is a lost row', async () => {
  const { p, rows } = setup({ queueCapacity: 10 });
  const batch = Array.from({ length: 25 }, (_, i) => deny(i));
  assert.equal(p.push(batch), 10);
  assert.equal(p.stats().dropped, 15);
  await p.flush();
  assert.equal(rows.filter((r) => r.kind === 'denied').length, 10);
  assert.deepEqual(rows.filter((r) => r.kind === 'lost').map((r) => [r.reason, r.count]), [['input_queue', 15]]);
  await p.close();
});

test('large batches do not block the event loop: other callbacks run between chunks', async () => {
  const { p, rows } = setup({ chunkSize: 1_000 });
  const N = 20_000;
  const batch = Array.from({ length: N }, (_, i) => flow({ type: 'DENY', saddr: '192.0.2.1', daddr: B, sport: i, tsNs: 1000n * SEC, verdict: Verdict.DENY, reason: Reason.DENY_DEFAULT }));
  let seenMidway = -1;
  p.push(batch);
  setImmediate(() => { seenMidway = p.stats().processed; });
  await p.flush();
  assert.ok(seenMidway > 0 && seenMidway < N, `a callback ran while the batch was processed (processed ${seenMidway} of ${N})`);
  assert.equal(rows.length, N);
  await p.close();
});

test('ending an interval with many tracked flows does not block the event loop either', async () => {
  const { p, rows } = setup({ chunkSize: 100_000, flushChunk: 1_000 });
  const N = 20_000;
  p.push(Array.from({ length: N }, (_, i) => flow({ saddr: A, daddr: B, sport: i % 60_000, dport: 1 + Math.floor(i / 60_000), tsNs: 1000n * SEC })));
  let duringFlush = false;
  const tick = () => {
    const s = p.stats();
    if (s.processed === N && s.intervals === 0) duringFlush = true;
    if (s.intervals === 0) setImmediate(tick);
  };
  setImmediate(tick);
  await p.flush();
  assert.ok(duringFlush, 'a callback ran after the records were aggregated and before the interval was done');
  assert.deepEqual(rows.map((r) => [r.kind, r.connectionsStarted, r.connectionsLive]), [['flow', N, N]]);
  await p.close();
});

test('records pushed during a flush wait for it and count in the next interval', async () => {
  const { p, rows } = setup({ flushChunk: 10 });
  p.push(Array.from({ length: 100 }, (_, i) => flow({ saddr: A, daddr: B, sport: i, tsNs: 1000n * SEC })));
  const f = p.flush();
  setImmediate(() => p.push([deny(1)]));
  await f;
  assert.equal(rows.filter((r) => r.kind === 'denied').length, 0);
  await p.flush();
  assert.equal(rows.filter((r) => r.kind === 'denied').length, 1);
  await p.close();
});

test('sink failures and a full sink queue are counted and reported as lost rows', async () => {
  let fail = true;
  const got: FlowRow[] = [];
  const { p } = setup({ sink: (r) => { if (fail) throw new Error('store down'); got.push(...r); }, sinkQueueCapacity: 3 });
  p.push(Array.from({ length: 5 }, (_, i) => deny(i)));
  await p.flush(); // 3 rows queued (2 refused), then the sink throws: 3 rows lost
  fail = false;
  await p.flush();
  assert.deepEqual(got.map((r) => [r.kind, r.reason, r.count]).sort(), [['lost', 'sink_error', 3], ['lost', 'sink_queue', 2]]);
  assert.deepEqual(p.stats().lost, { sink_queue: 2, sink_error: 3 });
  await p.close();
});

test('an async sink is called one batch at a time, in order', async () => {
  const calls: number[] = [];
  let active = 0;
  const { p } = setup({
    sinkBatch: 2,
    sink: async (r) => {
      assert.equal(active++, 0, 'no overlapping sink calls');
      await new Promise((res) => setTimeout(res, 2));
      calls.push(r.length);
      active--;
    },
  });
  p.push(Array.from({ length: 5 }, (_, i) => deny(i)));
  await p.flush();
  assert.deepEqual(calls, [2, 2, 1]);
  await p.close();
});

test('conntrack is read at each interval\'s end', async () => {
  const key: CtKey = { saddr: A, daddr: B, sport: 5, dport: 8080, proto: Proto.TCP };
  let pf = 0n;
  const entry = (): CtEntry => ({
    createdNs: 1000n * SEC, lastSeenNs: 1000n * SEC, packetsFwd: pf, bytesFwd: pf * 100n, packetsRev: 0n, bytesRev: 0n, srcEp: 1, dstEp: 2,
    srcIdentity: 256, dstIdentity: 257, egressRuleId: 0, ingressRuleId: 16, ifindex: 0, revIfindex: 0, flags: 0, tcpFlagsFwd: 0, tcpFlagsRev: 0, forwardRuleId: 0,
  });
  const { p, rows } = setup({ conntrack: async () => [[key, entry()]] });
  p.push([flow({ ...key, tsNs: 1000n * SEC, hook: Hook.TO_POD, ingressRuleId: 16 })]);
  pf = 4n;
  await p.flush();
  pf = 10n;
  await p.flush();
  assert.deepEqual(rows.map((r) => [r.packetsFwd, r.bytesFwd, r.connectionsLive]), [[4, 400, 1], [6, 600, 1]]);
  await p.close();
});

test('close flushes once, is idempotent, and push after close throws', async () => {
  const { p, rows } = setup();
  p.push([deny(1)]);
  const c1 = p.close();
  assert.equal(p.close(), c1);
  await c1;
  assert.equal(rows.length, 1);
  assert.throws(() => p.push([deny(2)]), /flow pipeline is closed/);
});

test('the timer flushes at wall-clock multiples of the interval', async () => {
  const rows: FlowRow[] = [];
  const registry = new EndpointRegistry();
  const p = new FlowPipeline({ registry, ruleName: () => '', sink: (r) => { rows.push(...r); }, intervalMs: 50 });
  p.push([flow({ type: 'DENY', tsNs: process.hrtime.bigint(), verdict: Verdict.DENY })]);
  for (let i = 0; i < 100 && rows.length === 0; i++) await new Promise((res) => setTimeout(res, 10));
  assert.equal(rows.length, 1);
  assert.ok(p.stats().intervals >= 1);
  await p.close();
});
