// Issue 8, item 2: ring-buffer overflow. The agent is put together (as runAgent does) over a real
// datapath but not started, so nothing reads the 8 MiB ring while the benchmark's BPF producer
// (a child process running weir_to_pod under BPF_PROG_TEST_RUN, one new flow per run) offers far
// more records than the ring holds. Every run's verdict is checked while the ring is full
// (allowed stays allowed, denied stays denied). Then the agent starts and drains the ring, one
// run per CPU lets the kernel write its pending LOST records, and the loss is followed through
// every place it must show: the datapath's counters, the LOST records, the pipeline's stats, the
// `lost` rows in the store, GET /api/v1/stats and (when the agent has it) /metrics.
//
// Figure: events offered = delivered + lost, each counted where it happened.
// WEIR_FLOOD_RUNS (default 200000) sets the flood.
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { numPossibleCpus } from '../../src/datapath/libbpf.js';
import { decodeRecordFast } from '../../src/flows/decode.js';
import { openStore, type FlowStore } from '../../src/store/store.js';
import { PROGRAMS } from '../../src/datapath/datapath.js';
import { tcpPacket, TcpFlag } from '../helpers/packets.js';
import { ALLOWED, installRig, kernelCounters, pendingLost, reasonPackets, requireRoot, runProducer, waitFor, type Rig } from './rig.js';

const FLOOD_RUNS = Number(process.env.WEIR_FLOOD_RUNS ?? 200_000);
/** the flood while the agent reads (WEIR_LIVE_RUNS) */
const LIVE_RUNS = Number(process.env.WEIR_LIVE_RUNS ?? 100_000); // docs/reliability.md's figure: 300000
/** struct weir_flow_event (136 bytes) + the ring's 8-byte record header */
const RING_RECORD_BYTES = 144;
const RING_BYTES = 8 << 20;
const REPORTER = 'rel-ring-node';

async function storedLoss(store: FlowStore): Promise<{ rows: number; events: number }> {
  const rs = await store.client.query({
    query: "SELECT count() AS rows, sum(count) AS events FROM flows WHERE kind = 'lost' AND reason = 'ring_buffer' AND reporter = {r:String}",
    query_params: { r: REPORTER }, format: 'JSONEachRow',
  });
  const [r] = await rs.json<{ rows: string | number; events: string | number }>();
  return { rows: Number(r?.rows ?? 0), events: Number(r?.events ?? 0) };
}

async function storedByVerdict(store: FlowStore): Promise<Array<{ kind: string; verdict: string; src_namespace: string; rows: number; started: number }>> {
  const rs = await store.client.query({
    query: `SELECT kind, verdict, src_namespace, count() AS rows, sum(connections_started) AS started FROM flows
WHERE reporter = {r:String} AND kind != 'lost' GROUP BY kind, verdict, src_namespace ORDER BY kind, verdict, src_namespace`,
    query_params: { r: REPORTER }, format: 'JSONEachRow',
  });
  return (await rs.json<Record<string, string | number>>()).map((r) => ({
    kind: String(r.kind), verdict: String(r.verdict), src_namespace: String(r.src_namespace), rows: Number(r.rows), started: Number(r.started),
  }));
}

/** weir_... samples of a Prometheus text exposition: `name{labels}` -> value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

test('ring buffer overflow: verdicts unchanged, every lost event counted (offered = delivered + lost)', { timeout: 300_000 }, async (t) => {
  requireRoot('the ring-overflow test');
  assert.ok(FLOOD_RUNS > 2 * (RING_BYTES / RING_RECORD_BYTES), `WEIR_FLOOD_RUNS=${FLOOD_RUNS} does not overflow a ring of ~${RING_BYTES / RING_RECORD_BYTES} records`);
  let rig: Rig | undefined;
  let store: FlowStore | undefined;
  let agent: Agent | undefined;
  try {
    rig = await installRig('ring');
    store = await openStore({ dataDir: path.join(rig.dir, 'chdb') });
    const byType = { FLOW_START: 0, DENY: 0, LOST: 0, lostInRecords: 0, other: 0 };
    agent = new Agent({
      name: 'rel-ring', datapath: rig.dp, store, registry: rig.registry, ruleName: rig.ruleName, reporter: REPORTER,
      spoolDir: path.join(rig.dir, 'spool'), ownsStore: false, api: { host: '127.0.0.1', port: 0 },
      // rows at our flush, not the timer's; no conntrack collector runs, so every record in the
      // ring is one of the producer's runs (a collector run would add FLOW_END records)
      intervalMs: 3_600_000, conntrackIntervalMs: 3_600_000,
    });
    // the test's own count of what the agent read, by record type
    agent.onRecords((records) => {
      for (const raw of records) {
        const r = decodeRecordFast(raw);
        if (r.type === 'FLOW_START' || r.type === 'DENY') byType[r.type]++;
        else if (r.type === 'LOST') { byType.LOST++; byType.lostInRecords += Number(r.lost); }
        else byType.other++;
      }
    });
    const k0 = kernelCounters(rig.dp);
    const reasons0 = reasonPackets(rig.dp);
    assert.deepEqual(k0, { sent: 0, lost: 0 }, 'a fresh datapath has sent nothing');

    // 1. The flood, nobody reading: far more records than the ring holds.
    let sport = 1024;
    const flood = await runProducer({ pinRoot: rig.pinRoot, runs: FLOOD_RUNS, pairs: rig.pairs, firstSport: sport });
    sport += Math.ceil(FLOOD_RUNS / rig.pairs.length);
    assert.equal(flood.mismatches, 0, `${flood.mismatches} of ${FLOOD_RUNS} flood runs got another verdict than their pair's`);
    const kFull = kernelCounters(rig.dp);
    assert.ok(kFull.lost > 0 && kFull.sent > 0, `the ring overflowed: sent ${kFull.sent}, lost ${kFull.lost}`);
    assert.equal(kFull.sent + kFull.lost, FLOOD_RUNS, 'every run offered one record: sent or lost');

    // 2. Verdicts while the ring is full, in this process: a sample of packets of every pair.
    const prog = rig.dp.program(PROGRAMS.toPod);
    let sampleRuns = 0;
    const lostBeforeSample = kFull.lost;
    for (let i = 0; i < 25; i++, sport++) {
      for (const p of rig.pairs) {
        const r = prog.testRun({ data: tcpPacket(p.src, p.dst, sport, p.dport, TcpFlag.SYN), dataOutSize: 0 });
        sampleRuns++;
        assert.equal(r.retval, p.expect, `${p.src} -> ${p.dst}:${p.dport} with the ring full: ${r.retval === ALLOWED ? 'allowed' : `verdict ${r.retval}`}, want ${p.expect === ALLOWED ? 'allowed' : 'denied'}`);
      }
    }
    assert.equal(kernelCounters(rig.dp).lost - lostBeforeSample, sampleRuns, 'the sample ran with the ring full (each of its records lost)');
    const pendingBefore = pendingLost(rig.dp);
    assert.equal(pendingBefore, kernelCounters(rig.dp).lost, 'with no room for a LOST record, the whole loss is pending');

    // 3. The agent starts and drains the ring.
    await agent.start();
    const readAll = async (what: string) => waitFor(what, async () => {
      agent!.drain();
      await agent!.drained();
      return agent!.stats().source.records === kernelCounters(rig!.dp).sent;
    }, 60_000);
    await readAll('the agent to read every record the kernel sent');

    // 4. One run per pair on every CPU: the first reservation on a CPU with pending loss writes its
    // LOST record first.
    const reportLoss = async (): Promise<number> => {
      let runs = 0;
      for (let cpu = 0; cpu < numPossibleCpus(); cpu++) {
        const tail = await runProducer({ pinRoot: rig!.pinRoot, runs: rig!.pairs.length, pairs: rig!.pairs, firstSport: sport++ }, cpu);
        assert.equal(tail.mismatches, 0);
        runs += tail.runs;
      }
      await readAll('the LOST records');
      return runs;
    };
    const tailRuns = await reportLoss();
    assert.equal(pendingLost(rig.dp), 0, 'every CPU reported its loss in a LOST record');
    await agent.flush();

    // The figure.
    const k = kernelCounters(rig.dp);
    const offered = FLOOD_RUNS + sampleRuns + tailRuns;
    const delivered = byType.FLOW_START + byType.DENY;
    const s = agent.stats();
    const loss = await storedLoss(store);
    const api = await (await fetch(`${agent.url}/api/v1/stats`)).json() as { lost: { ring: number }; kernel: Record<string, number> };
    const metricsRes = await fetch(`${agent.url}/metrics`);
    const metrics = metricsRes.status === 200 ? samples(await metricsRes.text()) : undefined;
    const reasons = reasonPackets(rig.dp);
    const delta = (r: string) => (reasons[r] ?? 0) - (reasons0[r] ?? 0);
    const allowedRuns = Math.round(offered * rig.allowedClients.length / rig.pairs.length);
    const figure = {
      offered, delivered, lost: k.lost, ringRecords: Math.floor(RING_BYTES / RING_RECORD_BYTES),
      kernel: { sent: k.sent, lost: k.lost, lostRecords: byType.LOST, lostInRecords: byType.lostInRecords },
      pipelineRingLoss: s.pipeline.lost.ring_buffer ?? 0, storedLostRows: loss.rows, storedLostEvents: loss.events,
      apiLostRing: api.lost.ring, metricsLostRing: metrics?.get('weir_lost_events_total{source="ring_buffer"}') ?? null,
      verdicts: { allowedRuns, allowPolicyPackets: delta('ALLOW_POLICY'), denyPackets: delta('DENY_DEFAULT') + delta('DENY_POLICY'), mismatches: flood.mismatches },
    };
    t.diagnostic(`ring overflow: ${JSON.stringify(figure)}`);
    console.log(`ring overflow figure: offered ${offered} = delivered ${delivered} + lost ${k.lost} `
      + `(kernel EVENTS_LOST ${k.lost}; LOST records ${byType.LOST} carrying ${byType.lostInRecords}; pipeline ring_buffer ${figure.pipelineRingLoss}; `
      + `stored lost rows ${loss.rows} carrying ${loss.events}; /api/v1/stats lost.ring ${api.lost.ring}; /metrics ${figure.metricsLostRing ?? 'not served'})`);

    assert.equal(byType.other, 0, 'no record besides the producer runs and LOST');
    assert.equal(delivered + k.lost, offered, 'offered = delivered + lost');
    assert.equal(k.sent, delivered + byType.LOST, 'everything the kernel sent was read');
    assert.equal(byType.lostInRecords, k.lost, 'the LOST records carry every failed reservation');
    assert.equal(figure.pipelineRingLoss, k.lost, "the pipeline's ring_buffer loss");
    assert.equal(s.lost.ring, k.lost);
    assert.equal(loss.events, k.lost, 'the stored lost rows (reason ring_buffer) carry every lost event');
    assert.equal(api.lost.ring, k.lost, 'GET /api/v1/stats lost.ring');
    assert.equal(api.kernel.events_lost, k.lost, 'GET /api/v1/stats kernel.events_lost');
    if (metrics) {
      assert.equal(figure.metricsLostRing, k.lost, '/metrics weir_lost_events_total{source="ring_buffer"}');
      assert.equal(metrics.get('weir_ringbuf_lost_events_total'), k.lost, '/metrics weir_ringbuf_lost_events_total');
    }
    // nothing else lost on the way: the loss is the ring's alone
    assert.deepEqual(Object.keys(s.pipeline.lost).filter((x) => x !== 'ring_buffer'), []);
    assert.equal(s.writer.dropped, 0);
    // verdicts: every packet was judged and counted by reason, lost record or not
    assert.equal(figure.verdicts.allowPolicyPackets, allowedRuns, 'ALLOW_POLICY packets = allowed runs');
    assert.equal(figure.verdicts.denyPackets, offered - allowedRuns, 'denied packets = denied runs');
    // and the rows say what the records said: denied rows from rel-b only, one per DENY record;
    // allowed flows from rel-a only, one connection per FLOW_START record
    const rows = await storedByVerdict(store);
    const denied = rows.filter((r) => r.kind === 'denied');
    const flows = rows.filter((r) => r.kind === 'flow');
    assert.deepEqual(denied.map((r) => [r.verdict, r.src_namespace]), [['denied', 'rel-b']], JSON.stringify(rows));
    assert.deepEqual(flows.map((r) => [r.verdict, r.src_namespace]), [['allowed', 'rel-a']], JSON.stringify(rows));
    assert.equal(denied[0]!.rows, byType.DENY, 'one denied row per DENY record');
    assert.equal(flows[0]!.started, byType.FLOW_START, 'one connection per FLOW_START record');

    // 5. A flood while the agent reads at full speed (the producer on its own core, the agent on
    // the other): whatever it loses, the same accounting holds.
    const b = { ...byType };
    const kb = kernelCounters(rig.dp);
    const ringLossBefore = s.pipeline.lost.ring_buffer ?? 0;
    const live = await runProducer({ pinRoot: rig.pinRoot, runs: LIVE_RUNS, pairs: rig.pairs, firstSport: sport });
    sport += Math.ceil(LIVE_RUNS / rig.pairs.length);
    assert.equal(live.mismatches, 0, `${live.mismatches} of ${LIVE_RUNS} runs got another verdict than their pair's`);
    await readAll('the agent to read the live flood');
    const liveTail = await reportLoss();
    assert.equal(pendingLost(rig.dp), 0);
    await agent.flush();
    const ka = kernelCounters(rig.dp);
    const s2 = agent.stats();
    const live2 = {
      offered: LIVE_RUNS + liveTail, producerPerS: Math.round(LIVE_RUNS / (live.ms / 1000)),
      delivered: byType.FLOW_START + byType.DENY - b.FLOW_START - b.DENY, lost: ka.lost - kb.lost,
      lostInRecords: byType.lostInRecords - b.lostInRecords, pipelineRingLoss: (s2.pipeline.lost.ring_buffer ?? 0) - ringLossBefore,
      storedLostEvents: (await storedLoss(store)).events - loss.events, maxBatch: s2.source.maxBatch,
    };
    t.diagnostic(`ring overflow, agent reading: ${JSON.stringify(live2)}`);
    console.log(`ring overflow figure, agent reading: producer ${live2.producerPerS} runs/s; offered ${live2.offered} = delivered ${live2.delivered} + lost ${live2.lost} `
      + `(LOST records carrying ${live2.lostInRecords}; pipeline ring_buffer ${live2.pipelineRingLoss}; stored lost rows carrying ${live2.storedLostEvents}; largest batch ${live2.maxBatch})`);
    assert.equal(byType.other, 0);
    assert.equal(live2.delivered + live2.lost, live2.offered, 'offered = delivered + lost');
    assert.equal(live2.lostInRecords, live2.lost);
    assert.equal(live2.pipelineRingLoss, live2.lost);
    assert.equal(live2.storedLostEvents, live2.lost);
    assert.deepEqual(Object.keys(s2.pipeline.lost).filter((x) => x !== 'ring_buffer'), [], JSON.stringify(s2.pipeline.lost));
  } finally {
    await agent?.close().catch(() => undefined);
    await store?.close().catch(() => undefined);
    rig?.cleanup();
  }
});
