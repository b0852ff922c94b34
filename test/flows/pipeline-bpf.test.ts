// Real records through the pipeline: weir.o runs crafted packets (BPF_PROG_TEST_RUN), its ring
// buffer is read, the records go through FlowPipeline (with conntrack read from the real map),
// and the rows must name the pods, the rule, the counters and the original addresses.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TestDatapath, tcp } from '../helpers/datapath.js';
import { tcpPacket, TcpFlag } from '../helpers/packets.js';
import { MapName, Proto, type FlowEvent } from '../../src/datapath/abi.js';
import { FlowPipeline, readConntrack } from '../../src/flows/pipeline.js';
import { ruleNamer } from '../../src/flows/enrich.js';
import { EndpointRegistry } from '../../src/flows/registry.js';
import type { FlowRow } from '../../src/store/row.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const A = '10.5.0.1'; // web/frontend, identity 256, not isolated
const B = '10.5.0.2'; // api/orders, identity 257, ingress isolated; rule 16 lets 256 in on TCP 8080
const B6 = 'fd00:5::2';
const WORLD = '192.0.2.9';
const WORLD6 = '2001:db8::9';
const RULE = 16;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('flow pipeline fed by the real datapath', () => {
  let dp: TestDatapath;
  before(async () => {
    dp = await TestDatapath.load();
    dp.pod(A, { id: 1, identity: 256 });
    dp.pod(B, { id: 2, identity: 257, isolate: 'ingress' });
    dp.pod(B6, { id: 2, identity: 257, isolate: 'ingress' });
    dp.allowIngress(257, 256, tcp(8080), RULE);
    dp.drain();
  });
  after(() => dp?.close());

  test('allowed flows aggregate with counters from FLOW_END and conntrack; denies keep their 5-tuple; IP reuse keeps the old pod', async () => {
    const registry = new EndpointRegistry({ node: 'node-1', worldNames: [{ cidr: '192.0.2.0/24', name: 'test-net' }] });
    const t0 = Date.now() - 60_000;
    registry.upsertPod({ namespace: 'web', name: 'frontend', labels: { app: 'frontend' }, ips: [A], node: 'node-1', ownerReferences: [{ kind: 'ReplicaSet', name: 'frontend-6c9f8d7b5', controller: true }] }, t0);
    registry.upsertPod({ namespace: 'api', name: 'orders', labels: { app: 'orders' }, ips: [B, B6], node: 'node-1', serviceAccount: 'orders' }, t0);
    const rows: FlowRow[] = [];
    const pipeline = new FlowPipeline({
      registry, reporter: 'node-1', timer: false,
      ruleName: ruleNamer((id) => (id === RULE ? { kind: 'NetworkPolicy', policy: 'api/allow-frontend', direction: 'Ingress', index: 0 } : undefined)),
      conntrack: () => readConntrack(dp.map(MapName.ct)),
      sink: (r) => { rows.push(...r); },
    });
    const records: FlowEvent[] = [];
    const feed = () => {
      const recs = dp.drain();
      records.push(...TestDatapath.flows(recs));
      pipeline.push(recs);
    };

    // one packet through both pods' hooks (pod to pod on one node)
    let fwd = { packets: 0, bytes: 0 };
    let rev = { packets: 0, bytes: 0 };
    const send = (sport: number, flags: number, len = 0) => {
      const p = tcpPacket(A, B, sport, 8080, flags, len);
      assert.equal(dp.run('fromPod', p), TC_ACT_OK);
      assert.equal(dp.run('toPod', p), TC_ACT_OK);
      fwd = { packets: fwd.packets + 1, bytes: fwd.bytes + p.length };
    };
    const reply = (sport: number, flags: number, len = 0) => {
      const p = tcpPacket(B, A, 8080, sport, flags, len);
      assert.equal(dp.run('fromPod', p), TC_ACT_OK);
      assert.equal(dp.run('toPod', p), TC_ACT_OK);
      rev = { packets: rev.packets + 1, bytes: rev.bytes + p.length };
    };

    // connection 1: handshake, data, RST -> FLOW_END
    send(40000, TcpFlag.SYN);
    reply(40000, TcpFlag.SYN | TcpFlag.ACK);
    send(40000, TcpFlag.ACK, 100);
    reply(40000, TcpFlag.ACK, 1000);
    send(40000, TcpFlag.RST);
    // connection 2 stays open: its counters come from the conntrack read
    fwd = { packets: 0, bytes: 0 };
    rev = { packets: 0, bytes: 0 };
    send(40001, TcpFlag.SYN);
    reply(40001, TcpFlag.SYN | TcpFlag.ACK);
    send(40001, TcpFlag.ACK, 300);
    reply(40001, TcpFlag.ACK, 3000);
    const open = { fwd, rev };

    // denied: the world to orders:22 over IPv4 and IPv6
    assert.equal(dp.run('toPod', tcpPacket(WORLD, B, 5555, 22, TcpFlag.SYN)), TC_ACT_SHOT);
    assert.equal(dp.run('toPod', tcpPacket(WORLD6, B6, 5556, 22, TcpFlag.SYN)), TC_ACT_SHOT);
    feed();

    // IP reuse: orders goes, payments gets its IPv4 address; a later deny names payments
    await sleep(30);
    const change = Date.now();
    registry.deletePod('api', 'orders', change);
    registry.upsertPod({ namespace: 'api', name: 'payments', labels: { app: 'payments' }, ips: [B], node: 'node-1' }, change);
    await sleep(30);
    assert.equal(dp.run('toPod', tcpPacket(WORLD, B, 6666, 22, TcpFlag.SYN)), TC_ACT_SHOT);
    feed();
    await pipeline.flush();

    const starts = records.filter((r) => r.type === 'FLOW_START');
    const ends = records.filter((r) => r.type === 'FLOW_END');
    assert.equal(starts.length, 4, 'two FLOW_STARTs (egress, ingress) per connection');
    assert.equal(ends.length, 1);
    const end = ends[0]!;

    const flows = rows.filter((r) => r.kind === 'flow');
    assert.equal(flows.length, 1, `one bucket: ${JSON.stringify(flows.map((f) => [f.src.pod, f.dst.pod, f.policy, f.reason, f.direction]))}`);
    const f = flows[0]!;
    assert.deepEqual([f.verdict, f.direction, f.protocol, f.reason, f.policy, f.ingressPolicy, f.egressPolicy, f.reporter],
      ['allowed', 'both', Proto.TCP, 'ALLOW_POLICY', 'api/allow-frontend ingress[0]', 'api/allow-frontend ingress[0]', '', 'node-1']);
    assert.deepEqual([f.src.kind, f.src.namespace, f.src.pod, f.src.workloadKind, f.src.workload, f.src.ip, f.src.port], ['pod', 'web', 'frontend', 'Deployment', 'frontend', '::', 0]);
    assert.deepEqual([f.dst.kind, f.dst.namespace, f.dst.pod, f.dst.serviceAccount, f.dst.labels, f.dst.port], ['pod', 'api', 'orders', 'orders', { app: 'orders' }, 8080]);
    assert.deepEqual([f.connectionsStarted, f.connectionsCompleted, f.connectionsLive, f.count], [2, 1, 1, 2]);
    // packets/bytes: connection 1's FLOW_END totals + connection 2's conntrack totals
    assert.ok(end.packetsFwd >= 3n && end.packetsRev === 2n, `FLOW_END counters ${end.packetsFwd}/${end.packetsRev}`);
    assert.deepEqual([f.packetsFwd, f.bytesFwd, f.packetsRev, f.bytesRev], [
      Number(end.packetsFwd) + open.fwd.packets, Number(end.bytesFwd) + open.fwd.bytes,
      Number(end.packetsRev) + open.rev.packets, Number(end.bytesRev) + open.rev.bytes,
    ]);

    const denied = rows.filter((r) => r.kind === 'denied');
    assert.deepEqual(denied.map((d) => [d.src.ip, d.src.port, d.src.kind, d.src.name, d.dst.ip, d.dst.port, d.dst.pod, d.reason, d.direction, d.count]), [
      ['::ffff:192.0.2.9', 5555, 'world', 'test-net', '::ffff:10.5.0.2', 22, 'orders', 'DENY_DEFAULT', 'ingress', 1],
      ['2001:db8::9', 5556, 'world', '', 'fd00:5::2', 22, 'orders', 'DENY_DEFAULT', 'ingress', 1],
      ['::ffff:192.0.2.9', 6666, 'world', 'test-net', '::ffff:10.5.0.2', 22, 'payments', 'DENY_DEFAULT', 'ingress', 1],
    ]);
    for (const d of denied) assert.ok(Math.abs(d.ts - Date.now()) < 5_000, 'record times are wall-clock UTC ms');
    assert.ok(denied[0]!.ts < change && denied[2]!.ts >= change, 'the change falls between the two records');
    assert.equal(rows.filter((r) => r.kind === 'lost').length, 0, 'nothing lost');
    assert.deepEqual(pipeline.stats().lost, {});

    // next interval: connection 2 is still live; nothing new happened to it
    const seen = rows.length;
    await pipeline.flush();
    const next = rows.slice(seen).filter((r) => r.kind === 'flow');
    assert.deepEqual(next.map((r) => [r.connectionsStarted, r.connectionsLive, r.packetsFwd]), [[0, 1, 0]]);
    await pipeline.close();
  });
});
