// Child processes of `npm run bench -- pipeline` (bench/pipeline.ts), so that what they measure
// is not mixed with the parent's work:
//  - producer: a real BPF producer. Opens the parent's pinned datapath and runs weir_to_pod under
//    BPF_PROG_TEST_RUN (repeat 1), one new flow per run (a fresh source port each time), as fast
//    as it can; every run writes one record (FLOW_START or DENY) into the ring buffer the parent's
//    agent reads. Runs on its own core, so the agent's CPU time is the agent's alone.
//  - rss: an agent's memory at N pods: the endpoint registry with N pods, the pipeline after a
//    burst of events over them, and (with `store`) the writer into embedded chDB, as `weir agent`
//    runs; prints the resident set size.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Datapath, PROGRAMS } from '../src/datapath/datapath.js';
import { tcpPacket, TcpFlag } from '../test/helpers/packets.js';
import { EndpointRegistry } from '../src/flows/registry.js';
import { FlowPipeline } from '../src/flows/pipeline.js';
import { ruleNamer } from '../src/flows/enrich.js';
import { openStore } from '../src/store/store.js';
import { FlowWriter } from '../src/store/writer.js';
import { synthPods, synthEvents } from './pipeline-synth.js';

export interface ProducerPair {
  readonly src: string;
  readonly dst: string;
  readonly dport: number;
  /** the return code every run of this pair must have (0 allowed, 2 denied) */
  readonly expect: number;
}

export interface ProducerConfig {
  readonly pinRoot: string;
  readonly runs: number;
  readonly pairs: readonly ProducerPair[];
  /** first source port; each pair's n-th run uses firstSport + n */
  readonly firstSport: number;
}

/** IPv4 + TCP: the source port's offset in tcpPacket()'s frame (Ethernet 14 + IPv4 20). */
const SPORT_OFFSET = 34;

function produce(cfg: ProducerConfig): void {
  const dp = Datapath.open(cfg.pinRoot);
  try {
    const prog = dp.program(PROGRAMS.toPod);
    const packets = cfg.pairs.map((p) => tcpPacket(p.src, p.dst, cfg.firstSport, p.dport, TcpFlag.SYN));
    let mismatches = 0;
    const t0 = process.hrtime.bigint();
    const cpu0 = process.cpuUsage();
    const n = cfg.pairs.length;
    for (let i = 0; i < cfg.runs; i++) {
      const k = i % n;
      const pkt = packets[k]!;
      pkt.writeUInt16BE(cfg.firstSport + Math.floor(i / n), SPORT_OFFSET);
      const r = prog.testRun({ data: pkt, dataOutSize: 0 });
      if (r.retval !== cfg.pairs[k]!.expect) mismatches++;
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const cpu = process.cpuUsage(cpu0);
    process.stdout.write(`${JSON.stringify({ runs: cfg.runs, ms, mismatches, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
  } finally {
    dp.close();
  }
}

async function rss(pods: number, events: number, withStore: boolean): Promise<void> {
  const dir = withStore ? mkdtempSync(path.join(os.tmpdir(), 'weir-bench-rss-')) : undefined;
  try {
    const { registry: fill, podIps } = synthPods(pods);
    const registry = new EndpointRegistry({ node: 'bench-node' });
    fill(registry);
    const store = dir ? await openStore({ dataDir: path.join(dir, 'chdb') }) : undefined;
    const writer = store ? new FlowWriter(store, { spoolDir: path.join(dir!, 'spool') }) : undefined;
    let rows = 0;
    const pipeline = new FlowPipeline({
      registry, timer: false, reporter: 'bench-node',
      ruleName: ruleNamer((id) => ({ kind: 'NetworkPolicy', policy: `ns-${id % 20}/p-${id}`, direction: 'Ingress', index: 0 })),
      sink: (r) => { rows += r.length; writer?.write(r); },
    });
    global.gc?.();
    const registryMb = process.memoryUsage().rss / 2 ** 20;
    // the records are made chunk by chunk and dropped once pushed: only the agent's state stays
    for (let done = 0; done < events; done += 50_000) {
      const chunk = synthEvents(podIps, Math.min(50_000, events - done));
      for (let i = 0; i < chunk.length; i += 4096) pipeline.push(chunk.slice(i, i + 4096));
      await pipeline.drain();
    }
    await pipeline.flush();
    await writer?.flush();
    global.gc?.();
    await new Promise((r) => setTimeout(r, 200));
    const m = process.memoryUsage();
    process.stdout.write(`${JSON.stringify({ pods, events, rows, registryMb, rssMb: m.rss / 2 ** 20, heapMb: m.heapUsed / 2 ** 20, registry: registry.stats() })}\n`);
    await pipeline.close();
    await writer?.close();
    await store?.close();
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

const [mode, arg] = process.argv.slice(2);
if (mode === 'producer') {
  produce(JSON.parse(arg!) as ProducerConfig);
} else if (mode === 'rss') {
  const o = JSON.parse(arg!) as { pods: number; events: number; store: boolean };
  await rss(o.pods, o.events, o.store);
} else {
  console.error('pipeline-child: producer CONFIG | rss CONFIG');
  process.exit(2);
}
