// Issue 8, item 3: store outage. The agent (put together as runAgent does, over a real datapath)
// writes to a real embedded chDB store through a wrapper that makes the store unavailable: every
// insert fails (the first one of the outage after the store took it: a lost acknowledgement, the
// hardest case for exactly once) and pings fail. A steady load of new flows (BPF_PROG_TEST_RUN of
// weir_to_pod, allowed and denied) runs before, during and after the outage. The rows go to the
// writer's disk spool while the store is down and arrive afterwards by themselves, exactly once.
//
// Figures: rows expected (what the pipeline handed to the writer) vs rows stored, duplicates by
// row id and by the row's whole content; with a small spool, rows dropped = rows that did not
// arrive. The outage is WEIR_OUTAGE_S seconds (default 25; the "minutes": WEIR_OUTAGE_S=300).
import test from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent } from '../../src/agent/agent.js';
import { openStore, type FlowStore } from '../../src/store/store.js';
import type { FlowRow } from '../../src/store/row.js';
import { installRig, kernelCounters, LoadGenerator, requireRoot, waitFor, type Rig } from './rig.js';

const OUTAGE_S = Number(process.env.WEIR_OUTAGE_S ?? 25);
/** new flows per second of the steady load (half allowed, half denied: ~500 denied rows/s) */
const RATE = Number(process.env.WEIR_OUTAGE_RATE ?? 1000);
const TICK_MS = 50;
/** The writer's longest pause between probes of a down store (default 30 s): shortened so the
 * test waits seconds, not half a minute, for the store's return to be noticed. */
const PROBE_MAX_MS = 2_000;
/** the spool of the spool-full case */
const SPOOL_SMALL_BYTES = 1 << 20;

/** The real store; unavailable while `down` (the first insert of an outage is taken but not
 * acknowledged). */
class OutageStore implements FlowStore {
  down = false;
  private ackToLose = false;
  failedInserts = 0;
  lostAcks = 0;
  constructor(private readonly inner: FlowStore) {}
  get location() { return this.inner.location; }
  get migration() { return this.inner.migration; }
  get client() { return this.inner.client; }
  setDown(down: boolean, loseAck = down): void {
    this.down = down;
    this.ackToLose = loseAck;
  }
  async insert(rows: readonly FlowRow[], token: string): Promise<void> {
    if (this.ackToLose) {
      this.ackToLose = false;
      await this.inner.insert(rows, token);
      this.lostAcks++;
      throw new Error('socket hang up (test: the store went down before acknowledging)');
    }
    if (this.down) { this.failedInserts++; throw new Error('connect ECONNREFUSED (test: store down)'); }
    await this.inner.insert(rows, token);
  }
  queryFlows: FlowStore['queryFlows'] = (q) => this.inner.queryFlows(q);
  summary: FlowStore['summary'] = (f, g, l) => this.inner.summary(f, g, l);
  count: FlowStore['count'] = (f) => this.inner.count(f);
  ping: FlowStore['ping'] = async () => {
    if (this.down) throw new Error('connect ECONNREFUSED (test: store down)');
    return this.inner.ping();
  };
  async close(): Promise<void> {}
}

interface Stored { rows: number; distinctIds: number; distinctContent: number; denied: number; deniedTuples: number; started: number }

/** What the store holds for a reporter; duplicates by id and by the whole row (everything but id). */
async function stored(store: FlowStore, reporter: string): Promise<Stored> {
  const rs = await store.client.query({
    query: `SELECT count() AS rows, uniqExact(id) AS distinctIds,
  uniqExact(tuple(* EXCEPT (id))) AS distinctContent,
  countIf(kind = 'denied') AS denied,
  uniqExactIf(tuple(src_ip, src_port, dst_ip, dst_port), kind = 'denied') AS deniedTuples,
  sumIf(connections_started, kind = 'flow') AS started
FROM flows WHERE reporter = {r:String}`,
    query_params: { r: reporter }, format: 'JSONEachRow',
  });
  const [r] = await rs.json<Record<string, string | number>>();
  return {
    rows: Number(r!.rows), distinctIds: Number(r!.distinctIds), distinctContent: Number(r!.distinctContent),
    denied: Number(r!.denied), deniedTuples: Number(r!.deniedTuples), started: Number(r!.started),
  };
}

/** Runs the load at RATE until stop() is called. */
function steadyLoad(load: LoadGenerator): { stop(): void } {
  const perTick = Math.max(1, Math.round(RATE * TICK_MS / 1000));
  const timer = setInterval(() => load.run(perTick), TICK_MS);
  return { stop: () => clearInterval(timer) };
}

function spoolBatches(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.batch')) : [];
}

test(`store outage of ${OUTAGE_S} s under load: rows spool to disk and arrive afterwards exactly once; a full spool drops, counted`, { timeout: (OUTAGE_S + 180) * 1000 }, async (t) => {
  requireRoot('the store-outage test');
  let rig: Rig | undefined;
  let real: FlowStore | undefined;
  const agents: Agent[] = [];
  const loads: { stop(): void }[] = [];
  try {
    rig = await installRig('outage');
    real = await openStore({ dataDir: path.join(rig.dir, 'chdb') });
    const store = new OutageStore(real);
    const errors: string[] = [];
    const makeAgent = (reporter: string, spoolDir: string, spoolMaxBytes?: number) => {
      const a = new Agent({
        name: 'rel-outage', datapath: rig!.dp, store, registry: rig!.registry, ruleName: rig!.ruleName, reporter,
        spoolDir, ownsStore: false, api: { host: '127.0.0.1', port: 0 },
        intervalMs: 1_000, conntrackIntervalMs: 3_600_000,
        writer: { retry: { maxDelayMs: PROBE_MAX_MS }, ...(spoolMaxBytes !== undefined ? { spoolMaxBytes } : {}) },
        log: (line) => errors.push(line),
      });
      agents.push(a);
      return a;
    };

    // ---- 1. the outage ----
    const spoolDir = path.join(rig.dir, 'spool-outage');
    const agent = makeAgent('rel-outage-node', spoolDir);
    await agent.start();
    const load = new LoadGenerator(rig, 1024);
    const run = steadyLoad(load);
    loads.push(run);
    await sleep(5_000);
    assert.ok((await stored(real, 'rel-outage-node')).rows > 0, 'rows reach the store before the outage');
    const outageAt = Date.now();
    store.setDown(true);
    let maxSpoolFiles = 0;
    let maxSpoolBytes = 0;
    while (Date.now() - outageAt < OUTAGE_S * 1000) {
      await sleep(250);
      const w = agent.stats().writer;
      maxSpoolFiles = Math.max(maxSpoolFiles, w.spoolFiles);
      maxSpoolBytes = Math.max(maxSpoolBytes, w.spoolBytes);
    }
    const duringOutage = agent.stats().writer;
    assert.equal(duringOutage.storeUp, false);
    assert.ok(maxSpoolFiles > 0 && duringOutage.spooled > 0, `rows went to the spool: ${JSON.stringify(duringOutage)}`);
    store.setDown(false);
    const backAt = Date.now();
    // the load goes on for 10 s after the store is back; when did the spool empty by itself?
    let spoolEmptyAt: number | undefined;
    while (Date.now() - backAt < 10_000) {
      await sleep(100);
      if (spoolEmptyAt === undefined && agent.stats().writer.spoolFiles === 0) spoolEmptyAt = Date.now();
    }
    run.stop();
    // the rows of the last interval reach the writer; the writer is not flushed: the spool must
    // drain by itself
    await waitFor('the pipeline to hand over every row', async () => {
      agent.drain();
      await agent.drained();
      const s = agent.stats();
      return s.source.records === kernelCounters(rig!.dp).sent;
    }, 10_000);
    await sleep(1_500); // one more interval ends
    await waitFor('the spool to drain and the writer to write everything', () => {
      const s = agent.stats();
      return s.writer.spoolFiles === 0 && s.writer.buffered === 0 && s.writer.written === s.pipeline.rowsOut;
    }, 60_000, 100);
    const drainedMs = (spoolEmptyAt ?? Date.now()) - backAt;
    const s = agent.stats();
    const got = await stored(real, 'rel-outage-node');
    const k = kernelCounters(rig.dp);
    const figure = {
      outageS: OUTAGE_S, rate: RATE, offered: load.offered, allowedRuns: load.allowed, deniedRuns: load.denied,
      rowsExpected: s.pipeline.rowsOut, rowsStored: got.rows, distinctIds: got.distinctIds, distinctContent: got.distinctContent,
      deniedRowsStored: got.denied, connectionsStored: got.started,
      spooled: s.writer.spooled, replayed: s.writer.replayed, maxSpoolFiles, maxSpoolBytes, lostAcks: store.lostAcks, failedInserts: store.failedInserts,
      spoolFilesLeft: spoolBatches(spoolDir).length, spoolEmptyAfterMs: drainedMs, dropped: s.writer.dropped, ringLost: k.lost, pipelineLost: s.pipeline.lost,
    };
    t.diagnostic(`store outage: ${JSON.stringify(figure)}`);
    console.log(`store outage figure: ${OUTAGE_S} s outage at ${RATE} flows/s: rows expected ${figure.rowsExpected}, stored ${got.rows} `
      + `(distinct ids ${got.distinctIds}, distinct rows ${got.distinctContent}); spooled ${s.writer.spooled} rows in up to ${maxSpoolFiles} files `
      + `(${maxSpoolBytes} bytes), replayed ${s.writer.replayed}, the spool empty ${(drainedMs / 1000).toFixed(1)} s after the store came back; dropped ${s.writer.dropped}`);

    assert.equal(load.mismatches, 0, 'every run got its verdict');
    assert.equal(k.lost, 0, 'the ring lost nothing (the figure is about the store)');
    assert.deepEqual(s.pipeline.lost, {}, 'the pipeline lost nothing');
    assert.equal(store.lostAcks, 1, 'the outage began with an insert the store took but did not acknowledge');
    assert.equal(s.writer.dropped, 0);
    assert.equal(got.rows, figure.rowsExpected, 'rows stored = rows expected');
    assert.equal(got.distinctIds, got.rows, 'no row id twice');
    assert.equal(got.distinctContent, got.rows, 'no row twice');
    assert.equal(s.writer.written, figure.rowsExpected);
    // and the rows are the load's: one denied row per denied run (each its own 5-tuple), one
    // connection per allowed run
    assert.equal(got.denied, load.denied, 'denied rows = denied runs');
    assert.equal(got.deniedTuples, load.denied, 'each denied run once');
    assert.equal(got.started, load.allowed, 'connections started = allowed runs');
    assert.deepEqual(spoolBatches(spoolDir), [], 'the spool is empty');
    assert.ok(errors.some((e) => /ECONNREFUSED/.test(e)), 'the writer logged the outage');

    // ---- 2. spool full: a spool of 1 MiB (two or three batches) and the store down for the whole
    // load; no lost acknowledgement here (a batch stored unacknowledged and then dropped would
    // count as dropped and stored at once: the writer cannot know) ----
    await agent.close();
    const fullDir = path.join(rig.dir, 'spool-full');
    const small = makeAgent('rel-full-node', fullDir, SPOOL_SMALL_BYTES);
    const sentBefore = kernelCounters(rig.dp).sent; // what the first agent read
    await small.start();
    const load2 = new LoadGenerator(rig, 1024 + Math.ceil(load.offered / rig.pairs.length) + 1);
    store.setDown(true, false);
    const run2 = steadyLoad(load2);
    loads.push(run2);
    await sleep(10_000);
    run2.stop();
    await waitFor('the pipeline to hand over every row', async () => {
      small.drain();
      await small.drained();
      return small.stats().source.records === kernelCounters(rig!.dp).sent - sentBefore;
    }, 10_000);
    await sleep(1_500);
    const whileDown = small.stats().writer;
    assert.ok(whileDown.dropped > 0 && whileDown.spooled > 0, `the spool filled up and rows were dropped: ${JSON.stringify(whileDown)}`);
    store.setDown(false);
    await waitFor('the spool to drain', () => {
      const st = small.stats();
      return st.writer.spoolFiles === 0 && st.writer.buffered === 0 && st.writer.written + st.writer.dropped === st.pipeline.rowsOut;
    }, 60_000, 100);
    const s2 = small.stats();
    const got2 = await stored(real, 'rel-full-node');
    const api = await (await fetch(`${small.url}/api/v1/stats`)).json() as { lost: { spool: number }; writer: { dropped: number } };
    const metricsRes = await fetch(`${small.url}/metrics`);
    const metricSpool = metricsRes.status === 200
      ? Number(/^weir_lost_events_total\{source="spool"\} (\S+)$/m.exec(await metricsRes.text())?.[1] ?? NaN) : undefined;
    const figure2 = {
      offered: load2.offered, rowsExpected: s2.pipeline.rowsOut, rowsStored: got2.rows, dropped: s2.writer.dropped,
      spooled: s2.writer.spooled, apiLostSpool: api.lost.spool, metricsLostSpool: metricSpool ?? null,
    };
    t.diagnostic(`spool full: ${JSON.stringify(figure2)}`);
    console.log(`spool full figure: rows expected ${figure2.rowsExpected} = stored ${got2.rows} + dropped ${figure2.dropped} `
      + `(spool of ${SPOOL_SMALL_BYTES} bytes took ${figure2.spooled} rows; /api/v1/stats lost.spool ${api.lost.spool}; /metrics ${metricSpool ?? 'not served'})`);
    assert.equal(got2.rows + s2.writer.dropped, s2.pipeline.rowsOut, 'stored + dropped = expected');
    assert.equal(got2.rows, s2.writer.written);
    assert.equal(got2.distinctContent, got2.rows, 'no row twice');
    assert.equal(api.lost.spool, s2.writer.dropped, 'GET /api/v1/stats lost.spool');
    if (metricSpool !== undefined) assert.equal(metricSpool, s2.writer.dropped, '/metrics weir_lost_events_total{source="spool"}');
    assert.deepEqual(spoolBatches(fullDir), []);
    assert.ok(errors.some((e) => /is full .*rows dropped/.test(e)), 'the writer logged the drops');
  } finally {
    for (const l of loads) l.stop();
    for (const a of agents) await a.close().catch(() => undefined);
    await real?.close().catch(() => undefined);
    rig?.cleanup();
  }
});
