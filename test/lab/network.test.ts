// End-to-end tests of the lab network: real netns, veths and pod agents, no BPF. Each test makes
// its own lab (unique name, stateDir under the tmpdir) and tears it all down in `finally`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  LabNetwork,
  LabPodNet,
  PodAttachment,
  agentRequest,
  hostIfnameFor,
  probe,
  probeMany,
  type L4Protocol,
} from '../../src/lab/network.js';

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    assert.fail('this test needs root (it creates network namespaces and veths); run it as root');
  }
}

function labName(suffix: string): string {
  return `tn${process.pid % 10000}${suffix}`;
}

function netnsList(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
}

/** Live processes whose command line mentions `needle` (zombies have an empty cmdline). */
function processesMentioning(needle: string): number[] {
  const found: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle)) found.push(Number(d));
    } catch { /* exited meanwhile */ }
  }
  return found;
}

function ipIn(netns: string, ...args: string[]): string {
  return execFileSync('ip', ['-n', netns, ...args], { encoding: 'utf8' });
}

function linkCounters(netns: string, ifname: string): { rx: number; tx: number } {
  const [link] = JSON.parse(ipIn(netns, '-s', '-j', 'link', 'show', 'dev', ifname)) as Array<{
    stats64: { rx: { packets: number }; tx: { packets: number } };
  }>;
  return { rx: link!.stats64.rx.packets, tx: link!.stats64.tx.packets };
}

async function withLab(suffix: string, body: (lab: LabNetwork, stateDir: string) => Promise<void>): Promise<void> {
  requireRoot();
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-lab-test-'));
  const lab = new LabNetwork({ lab: labName(suffix), stateDir });
  try {
    await body(lab, stateDir);
  } finally {
    await lab.destroy().catch((err) => console.error(`cleanup of lab ${lab.lab}: ${err}`));
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

const WEB: LabPodNet['ports'] = [
  { port: 80, protocol: 'TCP' },
  { port: 53, protocol: 'UDP' },
  { port: 9999, protocol: 'SCTP' }, // skipped by the agent: no SCTP sockets here
];

function podNet(i: number, ports = WEB): LabPodNet {
  return { key: `default/pod-${i}`, ipv4: `10.244.0.${10 + i}`, ipv6: `fd00:10:244::${(10 + i).toString(16)}`, ports };
}

interface Cell { from: PodAttachment; to: { ip: string; port: number; protocol: L4Protocol }; label: string }

function allPairs(pods: PodAttachment[], nets: LabPodNet[], ports: Array<[number, L4Protocol]>): Cell[] {
  const cells: Cell[] = [];
  for (const from of pods) {
    for (const to of nets) {
      for (const ip of [to.ipv4, to.ipv6]) {
        for (const [port, protocol] of ports) {
          cells.push({ from, to: { ip, port, protocol }, label: `${from.key} -> ${to.key} ${protocol} [${ip}]:${port}` });
        }
      }
    }
  }
  return cells;
}

test('hostIfnameFor is deterministic, short and distinct per lab and pod', () => {
  const a = hostIfnameFor('lab1', 'default/a');
  assert.equal(a, hostIfnameFor('lab1', 'default/a'));
  assert.match(a, /^w[0-9a-f]{10}$/);
  assert.ok(a.length <= 15);
  assert.notEqual(a, hostIfnameFor('lab1', 'default/b'));
  assert.notEqual(a, hostIfnameFor('lab2', 'default/a'));
});

test('LabNetwork rejects bad lab names and relative state dirs', () => {
  assert.throws(() => new LabNetwork({ lab: 'Has_Caps', stateDir: '/tmp/x' }), /lab: "Has_Caps"/);
  assert.throws(() => new LabNetwork({ lab: 'x'.repeat(21), stateDir: '/tmp/x' }), /lab:/);
  assert.throws(() => new LabNetwork({ lab: 'ok', stateDir: 'rel/dir' }), /stateDir: "rel\/dir"/);
  const lab = new LabNetwork({ lab: 'ok', stateDir: '/tmp/x' });
  assert.equal(lab.nodeNetns, 'weir-ok-node');
  assert.equal(lab.podNetnsName('default/a'), `weir-ok-${hostIfnameFor('ok', 'default/a')}`);
});

test('three pods: all pairs connect over TCP and UDP, IPv4 and IPv6, through the node netns', async () => {
  await withLab('a', async (lab, stateDir) => {
    await lab.createNode();
    await lab.createNode(); // idempotent
    const nets = [1, 2, 3].map((i) => podNet(i));
    const pods: PodAttachment[] = [];
    for (const n of nets) pods.push(await lab.addPod(n));
    for (const p of pods) {
      assert.ok(netnsList().includes(p.netns), `${p.netns} exists`);
      assert.ok(p.hostIfindex > 0);
      assert.ok(fs.existsSync(p.socketPath));
      // Nothing of the lab in the root netns.
      assert.throws(() => execFileSync('ip', ['link', 'show', 'dev', p.hostIfname], { stdio: 'pipe' }));
    }

    const before = pods.map((p) => linkCounters(lab.nodeNetns, p.hostIfname));
    const cells = allPairs(pods, nets, [[80, 'TCP'], [53, 'UDP']]);
    const t0 = Date.now();
    const ok = await probeMany(cells, { timeoutMs: 2_000 });
    const elapsed = Date.now() - t0;
    const failed = cells.filter((_, i) => !ok[i]).map((c) => c.label);
    assert.deepEqual(failed, [], `probes that did not connect:\n${failed.join('\n')}`);
    assert.ok(elapsed < 2_000, `${cells.length} successful probes took ${elapsed} ms`);
    // Pod-to-pod traffic crossed the node-side veths (rx: from the pod, tx: to the pod).
    pods.forEach((p, i) => {
      const after = linkCounters(lab.nodeNetns, p.hostIfname);
      assert.ok(after.rx > before[i]!.rx && after.tx > before[i]!.tx, `${p.hostIfname} saw traffic`);
    });

    // Closed ports: a RST (TCP) and a port unreachable (UDP), quickly, not a timeout.
    for (const [port, protocol] of [[81, 'TCP'], [54, 'UDP']] as const) {
      for (const ip of [nets[1]!.ipv4, nets[1]!.ipv6]) {
        const r = await probe(pods[0]!, { ip, port, protocol }, 2_000);
        assert.equal(r.connected, false, `${protocol} [${ip}]:${port} is closed`);
        assert.equal(r.error, 'ECONNREFUSED', `${protocol} [${ip}]:${port}: ${r.error}`);
      }
    }
    // The SCTP port was skipped, not fatal; an SCTP probe is simply not connected.
    assert.equal((await probe(pods[0]!, { ip: nets[1]!.ipv4, port: 9999, protocol: 'SCTP' })).connected, false);

    // The node routes between pods: without forwarding, pod-to-pod traffic stops.
    execFileSync('ip', ['netns', 'exec', lab.nodeNetns, 'sysctl', '-q', '-w',
      'net.ipv4.ip_forward=0', 'net.ipv6.conf.all.forwarding=0']);
    const blocked = await probeMany([
      { from: pods[0]!, to: { ip: nets[1]!.ipv4, port: 80, protocol: 'TCP' } },
      { from: pods[0]!, to: { ip: nets[1]!.ipv6, port: 80, protocol: 'TCP' } },
    ], { timeoutMs: 500 });
    assert.deepEqual(blocked, [false, false], 'no pod-to-pod traffic without forwarding in the node netns');
    await lab.createNode(); // restores forwarding
    assert.deepEqual(await probeMany([
      { from: pods[0]!, to: { ip: nets[1]!.ipv4, port: 80, protocol: 'TCP' } },
      { from: pods[0]!, to: { ip: nets[1]!.ipv6, port: 80, protocol: 'TCP' } },
    ]), [true, true]);

    // A second pod with an address in use fails clearly and leaves nothing behind.
    const dup: LabPodNet = { key: 'default/dup', ipv4: nets[0]!.ipv4, ipv6: 'fd00:10:244::99', ports: WEB };
    await assert.rejects(lab.addPod(dup), /default\/dup: 10\.244\.0\.11 is already routed/);
    assert.ok(!netnsList().includes(lab.podNetnsName(dup.key)), 'failed addPod removed its netns');
    assert.deepEqual(processesMentioning(`${stateDir}/pods/default_dup`), []);
    assert.equal((await probe(pods[1]!, { ip: nets[0]!.ipv4, port: 80, protocol: 'TCP' })).connected, true);

    // removePod: agent and netns gone, the pod unreachable, the others unaffected; idempotent.
    const gone = pods[2]!;
    await lab.removePod(gone);
    await lab.removePod(gone);
    assert.ok(!netnsList().includes(gone.netns), `${gone.netns} deleted`);
    assert.deepEqual(processesMentioning(gone.socketPath), [], 'agent of the removed pod stopped');
    assert.equal((await probe(pods[0]!, { ip: nets[2]!.ipv4, port: 80, protocol: 'TCP' }, 500)).connected, false);
    assert.equal((await probe(pods[0]!, { ip: nets[1]!.ipv4, port: 80, protocol: 'TCP' })).connected, true);

    // The same pod can come back at once (its old host veth is gone synchronously).
    pods[2] = await lab.addPod(nets[2]!);
    assert.equal((await probe(pods[0]!, { ip: nets[2]!.ipv6, port: 53, protocol: 'UDP' })).connected, true);

    await lab.destroy(pods);
    const ours = netnsList().filter((n) => n.startsWith(`weir-${lab.lab}-`));
    assert.deepEqual(ours, [], 'destroy leaves no netns');
    assert.deepEqual(processesMentioning(stateDir), [], 'destroy leaves no agent');
    await lab.destroy(pods); // safe twice
  });
});

test('nine pods: a full 9x9 matrix costs about one timeout, and destroy finds agents by pid file', async () => {
  await withLab('b', async (lab, stateDir) => {
    await lab.createNode();
    const nets = Array.from({ length: 9 }, (_, i) => podNet(i + 1, [{ port: 8080, protocol: 'TCP' }, { port: 8081, protocol: 'UDP' }]));
    const pods = await Promise.all(nets.map((n) => lab.addPod(n)));

    const cells = allPairs(pods, nets, [[8080, 'TCP'], [8081, 'UDP']]);
    assert.equal(cells.length, 9 * 9 * 2 * 2);
    const ok = await probeMany(cells, { timeoutMs: 2_000 });
    const failed = cells.filter((_, i) => !ok[i]).map((c) => c.label);
    assert.deepEqual(failed, [], `probes that did not connect:\n${failed.join('\n')}`);

    // 81 probes that all time out (a blackhole route in the node netns drops silently).
    ipIn(lab.nodeNetns, 'route', 'add', 'blackhole', '10.99.0.0/24');
    const timeoutMs = 700;
    const dropped = pods.flatMap((from) => nets.map((_, j) => ({
      from, to: { ip: `10.99.0.${j + 1}`, port: 8080, protocol: 'TCP' as const },
    })));
    const t0 = Date.now();
    const res = await probeMany(dropped, { timeoutMs });
    const elapsed = Date.now() - t0;
    assert.ok(res.every((c) => !c), 'blackholed probes do not connect');
    assert.ok(elapsed >= timeoutMs, `waited for the timeout (${elapsed} ms)`);
    assert.ok(elapsed < 3 * timeoutMs, `81 timing-out probes took ${elapsed} ms, expected about ${timeoutMs} ms`);

    // The control protocol: ping names the pod, exit stops the agent.
    assert.deepEqual(await agentRequest(pods[0]!.socketPath, { op: 'ping', id: 7 }, 2_000), { ok: true, name: 'default/pod-1', id: 7 });
    assert.equal((await agentRequest(pods[0]!.socketPath, { op: 'nope' } as never, 2_000)).ok, false);
    assert.deepEqual(await agentRequest(pods[0]!.socketPath, { op: 'exit' }, 2_000), { ok: true });
    for (let i = 0; i < 100 && processesMentioning(pods[0]!.socketPath).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(processesMentioning(pods[0]!.socketPath), [], 'agent exited on {"op":"exit"}');

    // A fresh LabNetwork (as after a CLI restart) knows no attachments: destroy() still finds
    // the agents through their pid files and the netns by name.
    await new LabNetwork({ lab: lab.lab, stateDir }).destroy();
    assert.deepEqual(netnsList().filter((n) => n.startsWith(`weir-${lab.lab}-`)), []);
    assert.deepEqual(processesMentioning(stateDir), []);
  });
});
