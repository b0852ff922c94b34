// `weir observe`: flags -> query parameters (validated as the API validates them), output formats,
// and runs against the real store: in-process (direct and through the API, once and following) and
// as the built command against a seeded data directory.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import {
  addObserveCommand, checkFlags, displayIp, displaySide, flagsToParams, formatTable, formatTableLines, parseSseEvent, runObserve, type ObserveFlags,
} from '../../src/cli/observe.js';
import { ParamError, parseFlowQuery } from '../../src/api/params.js';
import { createApiServer } from '../../src/api/server.js';
import { openStore } from '../../src/store/store.js';
import { repoRoot } from '../../src/paths.js';
import type { FlowRow } from '../../src/store/row.js';
import { T0, corpus, row, tempStore } from './fixtures.js';

const flags = (o: Partial<ObserveFlags>): ObserveFlags => ({ output: 'table', lab: 'default', ...o });

/** Parses argv as the real command does, returning the options the action would get. */
async function parseArgs(argv: string[]): Promise<ObserveFlags> {
  const program = new Command('weir').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  let got: ObserveFlags | undefined;
  const cmd = addObserveCommand(program, async () => { throw new Error('not opened in this test'); });
  cmd.action((o: ObserveFlags) => { got = o; });
  await program.parseAsync(['node', 'weir', 'observe', ...argv]);
  return got!;
}

test('flags map to the API\'s parameters, Hubble style', async () => {
  const o = await parseArgs(['--namespace', 'api', '--namespace', 'web', '--from-pod', 'ops/debug', '--to-label', 'app=orders', '--to-label', '!legacy',
    '--from-ip', '10.0.0.1', '--to-cidr', 'fd00::/64', '--label', 'tier', '--verdict', 'denied', '--port', '8080', '--protocol', 'TCP', '--policy', 'api/',
    '--since', '15m', '--until', '2026-01-01T00:00:00Z', '--last', '5', '-o', 'jsonl', '--data-dir', '/tmp/x']);
  assert.deepEqual(flagsToParams(o), [
    ['namespace', 'api'], ['namespace', 'web'], ['label', 'tier'], ['src_pod', 'ops/debug'], ['src_ip', '10.0.0.1'],
    ['dst_label', 'app=orders'], ['dst_label', '!legacy'], ['dst_cidr', 'fd00::/64'],
    ['verdict', 'denied'], ['port', '8080'], ['protocol', 'TCP'], ['policy', 'api/'], ['since', '15m'], ['until', '2026-01-01T00:00:00Z'],
  ]);
  assert.equal(o.last, 5);
  assert.equal(o.output, 'jsonl');
  assert.equal(o.dataDir, '/tmp/x');
  await assert.rejects(parseArgs(['-o', 'yaml']), /Allowed choices are table, json, jsonl/);
  await assert.rejects(parseArgs(['--last', '0']), /is not a number of rows/);
  await assert.rejects(parseArgs(['--last', '10001']), /is not a number of rows/);
});

test('the command refuses what the API refuses, with the same words, naming the flag', () => {
  const cases: [Partial<ObserveFlags>, string, string][] = [
    [{ fromLabel: ['app==x'] }, '--from-label', 'src_label'],
    [{ toNamespace: ['API'] }, '--to-namespace', 'dst_namespace'],
    [{ label: ['-x'] }, '--label', 'label'],
    [{ since: 'yesterday' }, '--since', 'since'],
    // absolute times: the message quotes both, and relative ones would move between the two parses
    [{ since: '2026-01-01T02:00:00Z', until: '2026-01-01T01:00:00Z' }, '--until', 'until'],
    [{ verdict: ['dropped'] }, '--verdict', 'verdict'],
    [{ protocol: ['gre'] }, '--protocol', 'protocol'],
    [{ port: ['http'] }, '--port', 'port'],
    [{ fromIp: ["10.0.0.1' OR 1=1"] }, '--from-ip', 'src_ip'],
    [{ policy: ["x'; DROP TABLE flows"] }, '--policy', 'policy'],
  ];
  for (const [o, flag, param] of cases) {
    const params = flagsToParams(o);
    let apiError: ParamError | undefined;
    try { parseFlowQuery(params); } catch (err) { apiError = err as ParamError; }
    assert.ok(apiError instanceof ParamError, flag);
    assert.equal(apiError.parameter, param);
    assert.throws(() => checkFlags(flags(o)), (err: Error) => err.message === `${flag}: ${apiError!.detail}`, flag);
  }
  assert.throws(() => checkFlags(flags({ follow: true, output: 'json' })), /with --follow use -o jsonl/);
  assert.throws(() => checkFlags(flags({ server: 'http://x', dataDir: '/d' })), /one of --server, --data-dir and --clickhouse-url/);
});

test('table output: time, verdict, sides by name or address, port/protocol, policy, packets/bytes', () => {
  assert.equal(displayIp('::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(displayIp('fd00::1'), 'fd00::1');
  assert.equal(displayIp('::'), '');
  const rows = corpus();
  const byName = (n: string) => rows.find((r) => r.reporter === n)!;
  assert.equal(displaySide(byName('fe-orders').src), 'web/frontend');
  assert.equal(displaySide(byName('world-host-ssh-audit').src), 'corp:10.243.0.100');
  assert.equal(displaySide(byName('world-host-ssh-audit').dst), 'host:lab-node');
  assert.equal(displaySide({ ...byName('world-host-ssh-audit').src, name: '' }), '10.243.0.100');
  assert.equal(displaySide(byName('lost').src), '-');
  const table = formatTable([byName('fe-orders'), byName('debug-orders-denied'), byName('fe-orders-v6-udp'), byName('icmp-denied'), byName('world-host-ssh-audit'), byName('lost')]);
  const lines = table.split('\n');
  assert.match(lines[0]!, /^TIME \(UTC\) +VERDICT +SOURCE +DESTINATION +PORT +POLICY +PACKETS\/BYTES$/);
  const t = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
  assert.match(lines[1]!, new RegExp(`^${t(T0)} +ALLOWED +web/frontend +api/orders +8080/TCP +api/allow-frontend-to-orders ingress\\[0\\] +5/300$`));
  assert.match(lines[2]!, /DENIED +ops\/debug +api\/orders +8080\/TCP +- +4\/0$/);
  assert.match(lines[3]!, /ALLOWED +web\/frontend +api\/orders +53\/UDP /);
  assert.match(lines[4]!, /DENIED +web\/frontend +api\/orders +ICMP +api\/default-deny +5\/300$/);
  assert.match(lines[5]!, /AUDIT +corp:10\.243\.0\.100 +host:lab-node +22\/TCP +gnp\/deny-ssh ingress\[0\] Deny/);
  assert.match(lines[6]!, /LOST +- +- +- +- +7 events$/);
  // columns line up: every row's SOURCE starts where the header's does
  for (const heading of ['VERDICT', 'SOURCE', 'DESTINATION', 'PORT', 'POLICY', 'PACKETS/BYTES']) {
    const col = lines[0]!.indexOf(heading);
    for (const l of lines.slice(1)) assert.ok(l.slice(col - 2, col) === '  ' && l[col] !== ' ', `${heading} column in ${JSON.stringify(l)}`);
  }
  const streamed = formatTableLines([byName('fe-orders')], true);
  assert.equal(streamed.length, 2);
  assert.equal(streamed[0]!.indexOf('SOURCE'), streamed[1]!.indexOf('web/frontend'));
});

test('without a source flag: the lab\'s agent, else its data directory, which observing never creates', async () => {
  let opened = false;
  await assert.rejects(runObserve(flags({ lab: 'no-such-lab-x' }), { openStore: async () => { opened = true; throw new Error('no'); }, write: () => {} }),
    /^Error: no flow store in \/var\/lib\/weir\/flows\/no-such-lab-x: is `weir agent` writing one\?/);
  await assert.rejects(runObserve(flags({ dataDir: '/nonexistent/weir-flows' }), { openStore: async () => { opened = true; throw new Error('no'); }, write: () => {} }),
    /no flow store in \/nonexistent\/weir-flows/);
  assert.equal(opened, false);
  await assert.rejects(runObserve(flags({ lab: '../etc' }), { openStore: async () => { throw new Error('no'); }, write: () => {} }), /lab name "..\/etc"/);
});

test('SSE events parse; comments and retry lines are not events', () => {
  assert.deepEqual(parseSseEvent('event: flow\ndata: {"a":1}'), { event: 'flow', data: '{"a":1}' });
  assert.deepEqual(parseSseEvent('data: a\ndata: b'), { event: 'message', data: 'a\nb' });
  assert.equal(parseSseEvent(': keepalive'), undefined);
  assert.equal(parseSseEvent('retry: 2000\n: stream open'), undefined);
});

test('runObserve against the real store: directly and through the API, the same rows; --follow sees new ones', async () => {
  const t = await tempStore();
  const api = createApiServer({ store: t.store, port: 0 });
  const { url } = await api.listen();
  try {
    const run = async (o: Partial<ObserveFlags>) => {
      let out = '';
      await runObserve(flags(o), { openStore: async () => ({ ...bind(t.store), close: async () => {} }), write: (s) => { out += s; } });
      return out;
    };
    const direct = await run({ dataDir: t.dir, verdict: ['denied'], output: 'jsonl' });
    const viaApi = await run({ server: url, verdict: ['denied'], output: 'jsonl' });
    assert.equal(direct, viaApi);
    // oldest first, as a log reads
    assert.deepEqual(direct.trim().split('\n').map((l) => (JSON.parse(l) as FlowRow).reporter), ['debug-orders-denied', 'icmp-denied']);
    const json = JSON.parse(await run({ dataDir: t.dir, last: 3, output: 'json' })) as FlowRow[];
    assert.deepEqual(json.map((r) => r.reporter), ['icmp-denied', 'lost', 'sctp-other-ns']);
    const table = await run({ server: url, toNamespace: ['web'] });
    assert.match(table, /ALLOWED +api\/frontend +web\/orders +9000\/SCTP +web\/allow-all ingress\[2\] +5\/300\n$/);
    assert.equal(await run({ dataDir: t.dir, namespace: ['nowhere'] }), 'no flows match\n');
    await assert.rejects(run({ server: url, fromLabel: ['a==b'] }), /^InvalidArgumentError: --from-label: "a==b" is not a label match/);

    // --follow: directly from the store (polling), and through the API (published rows)
    for (const mode of ['direct', 'api'] as const) {
      const ac = new AbortController();
      let out = '';
      const running = runObserve(flags({ ...(mode === 'direct' ? { dataDir: t.dir } : { server: url }), follow: true, output: 'jsonl', toNamespace: ['api'], verdict: ['denied'] }), {
        openStore: async () => ({ ...bind(t.store), close: async () => {} }), write: (s) => { out += s; }, signal: ac.signal, pollMs: 50,
      });
      await new Promise((r) => setTimeout(r, 200));
      const now = Date.now();
      const fresh = [row({ reporter: `${mode}-new-denied`, ts: now, kind: 'denied', verdict: 'denied' }), row({ reporter: `${mode}-new-allowed`, ts: now })];
      if (mode === 'direct') await t.store.insert(fresh, `follow-${mode}`);
      else { await waitFor(() => api.streams === 1); api.publish(fresh); }
      await waitFor(() => out.includes(`${mode}-new-denied`));
      await new Promise((r) => setTimeout(r, 150));
      ac.abort();
      await running;
      assert.deepEqual(out.trim().split('\n').map((l) => (JSON.parse(l) as FlowRow).reporter), [`${mode}-new-denied`]);
    }
  } finally {
    await api.close();
    await t.cleanup();
  }
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The store's methods bound, so a spread copy still works. */
function bind(s: Awaited<ReturnType<typeof openStore>>) {
  return { queryFlows: s.queryFlows.bind(s), summary: s.summary.bind(s), ping: s.ping.bind(s) };
}

test('`weir observe --data-dir` (the built command) against a seeded store', async () => {
  const t = await tempStore(corpus(), { keepDir: true });
  await t.cleanup(); // closes the store; the directory stays for the command (chDB: one process per directory)
  try {
    const main = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
    const run = promisify(execFile);
    const { stdout } = await run(process.execPath, [main, 'observe', '--data-dir', t.dir, '--verdict', 'denied', '--to-namespace', 'api'], { timeout: 60_000 });
    const lines = stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3, stdout);
    assert.match(lines[0]!, /^TIME \(UTC\) +VERDICT +SOURCE +DESTINATION +PORT +POLICY +PACKETS\/BYTES$/);
    assert.match(lines[1]!, /DENIED +ops\/debug +api\/orders +8080\/TCP +- +4\/0$/);
    assert.match(lines[2]!, /DENIED +web\/frontend +api\/orders +ICMP +api\/default-deny +5\/300$/);
    const jsonl = await run(process.execPath, [main, 'observe', '--data-dir', t.dir, '--label', 'example.com/team=sre', '-o', 'jsonl'], { timeout: 60_000 });
    assert.deepEqual(jsonl.stdout.trim().split('\n').map((l) => (JSON.parse(l) as FlowRow).reporter), ['debug-orders-denied']);
    // a bad filter: exit 1, one line naming the flag, nothing opened
    await assert.rejects(run(process.execPath, [main, 'observe', '--data-dir', t.dir, '--from-label', "app=x' OR '1'='1"], { timeout: 60_000 }),
      (err: { code: number; stderr: string }) => err.code === 1 && /^weir: --from-label: "app=x' OR '1'='1" is not a label match/.test(err.stderr));
  } finally {
    rmSync(t.dir, { recursive: true, force: true });
  }
});
