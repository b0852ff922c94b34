// Enforcement while the node agent dies and comes back (issue 8, item 1): continuous probes of an
// allowed and a denied pair (five new connections a second each) and established connections
// that keep talking, while the agent is SIGKILLed and restarted twice (the first time without
// bpftool on its PATH, as in its container image); the second time its view is
// inconsistent at first (the namespace manifest is missing), so it must not apply anything until
// the view is good again. Counted: wrong verdicts (goal 0) and established connections surviving.
// The restarted agent adopts the attachments (the same program ids stay on the veths) and the
// pins (the policy left in the maps goes on being enforced). Names "wnr-", everything removed in finally.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { sh } from '../datapath/discovery-layouts.js';
import { requireBpf } from '../helpers/datapath.js';
import { NodeRig, allowFrom, eventually, namespace, nodeObject, pod } from './rig.js';

const NS = 'wnr';
const PORT = 8080;
const ECHO_PORT = 8081;

const SERVER = `
const net = require('node:net');
net.createServer((c) => { c.on('error', () => {}); c.end('weir\\n'); }).listen(${PORT}, '::');
net.createServer((c) => { c.on('error', () => {}); c.pipe(c); }).listen(${ECHO_PORT}, '::', () => process.stdout.write('listening\\n'));
`;

// probe HOST PORT EVERY_MS: a new connection every EVERY_MS (1 s timeout each); on SIGTERM the
// outcomes as JSON. hold HOST PORT N: N connections sending a byte every 100 ms, each broken when
// it errors, closes or has no echo for 1 s.
const CLIENT = `
const net = require('node:net');
const [mode, host, port, arg] = [process.argv[1], process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const out = [];
let inflight = 0;
if (mode === 'probe') {
  const timer = setInterval(() => {
    const t = Date.now();
    inflight++;
    let done = false;
    const c = net.connect({ host, port });
    const finish = (ok) => { if (done) return; done = true; inflight--; clearTimeout(to); c.destroy(); out.push({ t, ok }); };
    const to = setTimeout(() => finish(false), 1000);
    let got = '';
    c.on('data', (d) => { got += d; });
    c.on('end', () => finish(got.startsWith('weir')));
    c.on('error', () => finish(false));
  }, arg);
  process.on('SIGTERM', () => {
    clearInterval(timer);
    const wait = () => (inflight === 0 ? (process.stdout.write(JSON.stringify(out)), process.exit(0)) : setTimeout(wait, 50));
    wait();
  });
} else {
  const conns = [];
  for (let i = 0; i < arg; i++) {
    const s = { broken: null, last: Date.now(), sent: 0, echoed: 0 };
    const c = net.connect({ host, port });
    const brk = (why) => { if (!s.broken) s.broken = { at: Date.now(), why }; };
    c.on('data', (d) => { s.echoed += d.length; s.last = Date.now(); });
    c.on('error', (e) => brk(e.code || e.message));
    c.on('close', () => brk('closed'));
    conns.push({ c, s });
  }
  const timer = setInterval(() => {
    for (const { c, s } of conns) {
      if (s.broken) continue;
      if (Date.now() - s.last > 1000) { s.broken = { at: Date.now(), why: 'no echo for 1 s' }; continue; }
      c.write('x'); s.sent++;
    }
  }, 100);
  process.stdout.write('holding\\n');
  process.on('SIGTERM', () => { clearInterval(timer); process.stdout.write(JSON.stringify(conns.map((x) => x.s))); process.exit(0); });
}
`;

interface Proc { child: ChildProcess; out: () => string }

function startIn(netns: string, script: string, args: readonly string[]): Proc {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  return { child, out: () => out };
}

async function stopAndRead(p: Proc): Promise<string> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return p.out();
  const exited = new Promise<void>((r) => p.child.once('exit', () => r()));
  p.child.kill('SIGTERM');
  await exited;
  return p.out();
}

/** The program ids at Weir's tc hooks of a veth of the node. */
async function progIds(node: string, ifname: string): Promise<number[]> {
  const ids: number[] = [];
  for (const d of ['ingress', 'egress']) {
    const rows = JSON.parse(await sh('tc', ['-n', node, '-j', 'filter', 'show', 'dev', ifname, d]) || '[]') as Array<{ options?: { prog?: { id?: number } } }>;
    for (const r of rows) if (r.options?.prog?.id !== undefined) ids.push(r.options.prog.id);
  }
  return ids.sort();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('SIGKILL and restart of the node agent: no wrong verdict, established connections survive, attachments and pins adopted', { timeout: 300_000 }, async () => {
  requireBpf();
  const rig = new NodeRig('wnr', 'calico', 93);
  const node = rig.node;
  const ip = { a: '10.93.0.11', d: '10.93.0.14', srv: '10.93.0.20' };
  const procs: Proc[] = [];
  try {
    await rig.create();
    await rig.layout.addPod({ name: 'a', ifname: 'caliwnra', v4: ip.a });
    await rig.layout.addPod({ name: 'd', ifname: 'caliwnrd', v4: ip.d });
    await rig.layout.addPod({ name: 'srv', ifname: 'caliwnrsrv', v4: ip.srv });
    const server = startIn(rig.layout.podNetns('srv'), SERVER, []);
    procs.push(server);
    await eventually('the server listens', async () => server.out().includes('listening'), 10_000, 50);
    const policy = allowFrom(NS, 'srv-ingress', 'srv', ['a']) as { spec: { ingress: Array<{ ports: object[] }> } };
    policy.spec.ingress[0]!.ports.push({ protocol: 'TCP', port: ECHO_PORT });
    rig.write('ns.yaml', [namespace(NS)]);
    rig.write('objects.yaml', [nodeObject(node), pod(NS, 'a', 'a', ip.a, node), pod(NS, 'd', 'd', ip.d, node), pod(NS, 'srv', 'srv', ip.srv, node), policy]);

    const agentArgs = ['--datastore', 'files', '--manifests', rig.manifests, '--cni', 'calico'];
    let agent = await rig.startAgent(agentArgs);
    await eventually('/readyz 200', () => rig.ready(), 30_000);
    const idsBefore = await progIds(node, 'caliwnrsrv');
    assert.equal(idsBefore.length, 2);

    const EVERY_MS = 200;
    const allowed = startIn(rig.layout.podNetns('a'), CLIENT, ['probe', ip.srv, String(PORT), String(EVERY_MS)]);
    const denied = startIn(rig.layout.podNetns('d'), CLIENT, ['probe', ip.srv, String(PORT), String(EVERY_MS)]);
    const hold = startIn(rig.layout.podNetns('a'), CLIENT, ['hold', ip.srv, String(ECHO_PORT), '4']);
    procs.push(allowed, denied, hold);
    await eventually('connections held', async () => hold.out().includes('holding'), 10_000, 50);
    await sleep(2_000);

    // 1. SIGKILL, restart with the same view
    await agent.kill();
    await sleep(1_000);
    agent = await rig.startAgent(agentArgs, { withoutBpftool: true }); // as in the agent's image
    await eventually('/readyz 200 after the first restart', () => rig.ready(), 30_000);
    assert.match(agent.log(), /adopted 3 from an earlier agent/, agent.log());
    await sleep(2_000);

    // 2. SIGKILL, restart while the view is inconsistent: nothing is applied until it is good
    await agent.kill();
    rig.remove('ns.yaml');
    agent = await rig.startAgent(agentArgs);
    await sleep(2_500);
    assert.equal((await rig.get('/readyz')).status, 503);
    assert.doesNotMatch(agent.log(), /applied policy/, 'nothing applied before the view is good');
    rig.write('ns.yaml', [namespace(NS)]);
    await eventually('/readyz 200 after the second restart', () => rig.ready(), 30_000);
    assert.match(agent.log(), /applied policy/);
    await sleep(2_000);

    const outcomes = (p: Proc) => stopAndRead(p).then((s) => JSON.parse(s) as Array<{ t: number; ok: boolean }>);
    const [okRuns, denyRuns] = await Promise.all([outcomes(allowed), outcomes(denied)]);
    const held = JSON.parse((await stopAndRead(hold)).replace(/^holding\n/, '')) as Array<{ broken: { at: number; why: string } | null; sent: number; echoed: number }>;
    const wrong = okRuns.filter((r) => !r.ok).length + denyRuns.filter((r) => r.ok).length;
    const survived = held.filter((h) => h.broken === null).length;
    const probes = okRuns.length + denyRuns.length;
    console.log(`# restart: ${probes} probes (${okRuns.length} allowed pair, ${denyRuns.length} denied pair) across 2 SIGKILL+restarts: ${wrong} wrong verdicts; `
      + `${survived}/${held.length} established connections survived (${held.map((h) => h.echoed).join(', ')} bytes echoed)`);
    assert.ok(probes > 40, `too few probes ran: ${probes}`);
    assert.equal(wrong, 0, `wrong verdicts: ${JSON.stringify([...okRuns.filter((r) => !r.ok), ...denyRuns.filter((r) => r.ok)])}`);
    assert.equal(survived, held.length, JSON.stringify(held));
    assert.deepEqual(await progIds(node, 'caliwnrsrv'), idsBefore, 'the attachments were adopted, not replaced');
    assert.equal(await agent.stop(), 0, agent.log());
  } finally {
    for (const p of procs) await stopAndRead(p).catch(() => undefined);
    await rig.destroy();
  }
});
