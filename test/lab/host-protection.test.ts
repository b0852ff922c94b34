// End-to-end: host protection in the lab. Weir's host-device programs on the node's uplink (inside
// the node netns), an automatic HostEndpoint for the node, GlobalNetworkPolicies, failsafe ports,
// applyOnForward, a user HostEndpoint winning over the automatic one, and the CLI's flags and
// warnings. Real traffic through the real datapath. Own lab name; torn down in `finally`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Lab } from '../../src/lab/lab.js';
import { labPinRoot, readLabState } from '../../src/lab/state.js';
import { probeLab, type ProbeReport } from '../../src/lab/probe.js';
import { LAB_NODE_V4, LAB_WORLD_V4 } from '../../src/lab/addresses.js';
import { FlowObserver } from '../../src/flows/observe.js';
import { PROGRAMS, TC_HANDLE, TC_PRIORITY } from '../../src/datapath/datapath.js';
import { tcQuery } from '../../src/datapath/libbpf.js';
import type { FlowView } from '../../src/flows/describe.js';
import { repoRoot } from '../../src/paths.js';

const run = promisify(execFile);
const CLI = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');

const NODE = `
apiVersion: v1
kind: Node
metadata:
  name: lab-node
  labels: {role: worker}
  annotations: {lab.weir.dev/ports: "22/TCP,80/TCP,9100/TCP"}
`;

const PODS = `
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
`;

const ALLOW_9100 = `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: allow-9100}
spec:
  order: 100
  selector: {matchLabels: {role: worker}}
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [9100]}}]
`;

const DENY_SSH = `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: deny-ssh}
spec:
  order: 10
  selector: {matchLabels: {role: worker}}
  ingress: [{action: Deny, protocol: TCP, destination: {ports: [22]}}]
`;

const FORWARD_DENY_WORLD = `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: fwd-deny-world}
spec:
  order: 5
  selector: {matchLabels: {role: worker}}
  applyOnForward: true
  ingress: [{action: Deny, source: {nets: ["${LAB_WORLD_V4}/32"]}}]
`;

const USER_HEP = `
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: mine, labels: {role: other}}
spec: {node: lab-node, interfaceName: "*", expectedIPs: ["${LAB_NODE_V4}"]}
`;

function connected(report: ProbeReport, from: string, to: string): boolean {
  const r = report.results.find((x) => x.from === from && x.to === to);
  assert.ok(r, `no probe result ${from} -> ${to}`);
  return r.connected;
}

test('host protection in the lab: uplink programs, automatic host endpoint, global policies, failsafes, applyOnForward, CLI', async () => {
  if (process.getuid?.() !== 0) assert.fail('lab tests need root (network namespaces, BPF): run `sudo npm test`');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-lab-host-'));
  const file = (name: string, text: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const name = `th${process.pid % 10000}`;
  let lab: Lab | undefined;
  try {
    lab = (await Lab.up(name, [file('node.yaml', NODE), file('pods.yaml', PODS)])).lab;
    const l = lab;
    const nodeNetns = `weir-${name}-node`;
    // The uplink carries Weir's host-device programs, inside the node netns; its ifindex is recorded.
    const uplink = l.snapshot.uplink;
    assert.ok(uplink, 'the state records the uplink');
    assert.equal(uplink.ifname, 'uplink');
    const link = JSON.parse((await run('ip', ['-n', nodeNetns, '-j', 'link', 'show', 'dev', 'uplink'])).stdout) as { ifindex: number }[];
    assert.equal(uplink.ifindex, link[0]!.ifindex);
    for (const [direction, prog] of [['ingress', PROGRAMS.fromHostDev], ['egress', PROGRAMS.toHostDev]] as const) {
      assert.deepEqual(tcQuery({ netns: `/run/netns/${nodeNetns}`, ifname: 'uplink', direction, priority: TC_PRIORITY, handle: TC_HANDLE }),
        { progId: l.dp.program(prog).id }, `${prog} on the uplink's tc ${direction}`);
    }
    assert.deepEqual(l.warnings(), []);

    const observer = FlowObserver.forLab(l);
    const flows: FlowView[] = [];
    observer.onFlow((f) => flows.push(f));
    observer.start();
    try {
      const probe = async (from: string, to: string, port: number) =>
        connected(await probeLab(l.snapshot, { port, protocol: 'TCP', family: 4, timeoutMs: 1500, from, to }), from, to);

      // No host endpoint: the uplink's programs are attached but police nothing.
      assert.equal(await probe('world', 'host', 9100), true, 'no host endpoint: world -> host:9100');
      assert.equal(await probe('world', 'x/a', 80), true, 'world -> pod');

      // The automatic host endpoint, no policy: default deny for the host's own traffic, apart
      // from failsafes; forwarded traffic is allowed.
      flows.length = 0;
      await l.apply([], { autoHostEndpoints: true });
      assert.equal(readLabState(name).autoHostEndpoints, true, 'persisted');
      assert.equal(await probe('world', 'host', 22), true, 'failsafe tcp:22 to the host');
      assert.equal(await probe('world', 'host', 9100), false, 'host default deny');
      assert.equal(await probe('x/a', 'host', 9100), false, 'pod -> host is judged by the "*" endpoint too');
      assert.equal(await probe('world', 'x/a', 80), true, 'forwarded: allowed by default');
      observer.drain();
      const fs = flows.find((f) => f.src?.ip === LAB_WORLD_V4 && f.dst?.ip === LAB_NODE_V4 && f.dst?.port === 22 && f.type === 'flow-start');
      assert.ok(fs, `a FLOW_START to the host's 22 (got ${flows.map((f) => `${f.type} ${f.reason} ${f.src?.ip}>${f.dst?.ip}:${f.dst?.port}`).join(', ')})`);
      assert.equal(fs.reason, 'ALLOW_FAILSAFE');
      assert.equal(fs.dst!.name, 'lab-node');
      assert.equal(fs.dst!.hostEndpoint?.name, 'lab-node-auto-hep');
      assert.deepEqual(fs.dst!.hostEndpoint?.labels, { role: 'worker' });
      const hd = flows.find((f) => f.type === 'deny' && f.src?.ip === LAB_WORLD_V4 && f.dst?.port === 9100);
      assert.ok(hd, 'a DENY to the host\'s 9100');
      assert.equal(hd.reason, 'DENY_HOST_DEFAULT');
      const fwd = flows.find((f) => f.type === 'flow-start' && f.src?.ip === LAB_WORLD_V4 && f.dst?.name === 'x/a' && f.reason === 'ALLOW_FORWARDED');
      assert.ok(fwd, 'the forwarded flow is recorded as ALLOW_FORWARDED');

      // A global policy opens 9100 on nodes labelled role=worker.
      flows.length = 0;
      await l.apply([file('allow.yaml', ALLOW_9100)]);
      assert.equal(await probe('world', 'host', 9100), true, 'allowed by gnp/allow-9100');
      assert.equal(await probe('world', 'host', 80), false, 'still default deny');
      observer.drain();
      const allowed = flows.find((f) => f.type === 'flow-start' && f.dst?.port === 9100 && f.src?.ip === LAB_WORLD_V4);
      assert.ok(allowed);
      assert.equal(allowed.reason, 'ALLOW_GLOBAL');
      assert.equal(allowed.policy, 'gnp/allow-9100 ingress[0] Allow');
      // pod -> node: judged at the pod's hook by the node's "*" endpoint, named the same way
      flows.length = 0;
      assert.equal(await probe('x/a', 'host', 9100), true, 'pod -> host:9100 allowed by gnp/allow-9100');
      observer.drain();
      const podToHost = flows.find((f) => f.type === 'flow-start' && f.src?.name === 'x/a' && f.dst?.port === 9100);
      assert.ok(podToHost);
      assert.equal(podToHost.policy, 'gnp/allow-9100 ingress[0] Allow');
      assert.equal(podToHost.dst?.hostEndpoint?.name, 'lab-node-auto-hep');

      // A Deny of a failsafe port is accepted, warned about, and failsafes still win ...
      await l.apply([file('deny-ssh.yaml', DENY_SSH)]);
      assert.deepEqual(l.warnings(), ['GlobalNetworkPolicy deny-ssh: spec.ingress[0]: this Deny rule would close failsafe TCP 22; failsafe ports stay open unless failsafes are disabled']);
      assert.equal(await probe('world', 'host', 22), true, 'failsafe wins over the Deny');
      // ... until failsafes are disabled (then the Deny rule decides).
      await l.apply([], { failsafes: { disabled: true } });
      assert.deepEqual(l.warnings(), ['failsafe ports are disabled: a host policy can lock you out of the node']);
      assert.equal(await probe('world', 'host', 22), false, 'no failsafes: denied by gnp/deny-ssh');
      await l.apply([], { failsafes: { disabled: false } });
      assert.equal(await probe('world', 'host', 22), true, 'failsafes back');

      // applyOnForward: the world no longer reaches the pod through the node.
      flows.length = 0;
      await l.apply([file('fwd.yaml', FORWARD_DENY_WORLD)]);
      assert.equal(await probe('world', 'x/a', 80), false, 'forwarded traffic denied by gnp/fwd-deny-world');
      // applyOnForward adds forwarded traffic: the host's own traffic is still policed by it (order 5 first)
      assert.equal(await probe('world', 'host', 9100), false, 'gnp/fwd-deny-world comes before gnp/allow-9100');
      assert.equal(await probe('world', 'host', 22), true, 'failsafe');
      assert.equal(await probe('x/a', 'world', 80), true, 'the pod -> world direction is not denied (ingress rules only)');
      observer.drain();
      const fdeny = flows.find((f) => f.type === 'deny' && f.src?.ip === LAB_WORLD_V4 && f.dst?.name === 'x/a');
      assert.ok(fdeny, `a DENY of the forwarded flow (got ${flows.map((f) => `${f.type} ${f.reason} ${f.src?.ip}>${f.dst?.ip}:${f.dst?.port} ${f.policy} ${f.forward ?? ''}`).join(', ')})`);
      assert.ok([fdeny.policy, fdeny.forward].some((t) => t === 'gnp/fwd-deny-world ingress[0] Deny'), `names the forward rule: ${fdeny.policy} / ${fdeny.forward}`);

      // A user HostEndpoint for the node's "*" wins over the automatic one: other labels, so no
      // global policy selects the node any more (host default deny; forwarded traffic allowed).
      await l.apply([file('hep.yaml', USER_HEP)]);
      assert.equal(await probe('world', 'x/a', 80), true, 'no applyOnForward policy selects the user endpoint');
      assert.equal(await probe('world', 'host', 9100), false, 'gnp/allow-9100 selects role=worker only');
      assert.equal(await probe('world', 'host', 22), true, 'failsafe');
      flows.length = 0;
      assert.equal(await probe('x/a', 'host', 22), true, 'pod -> host failsafe');
      observer.drain();
      const mine = flows.find((f) => f.type === 'flow-start' && f.dst?.ip === LAB_NODE_V4 && f.dst?.port === 22);
      assert.equal(mine?.dst?.hostEndpoint?.name, 'mine', 'the user\'s endpoint covers the node');
    } finally {
      observer.close();
    }
    lab.close();
    lab = undefined;

    // The CLI: settings flags on apply, warnings on stderr, status, a bad list changes nothing.
    const cli = (...args: string[]) => run(process.execPath, [CLI, 'lab', ...args, '--name', name]);
    const off = await cli('apply', '--no-failsafes');
    assert.match(off.stderr, /weir: warning: failsafe ports are disabled: a host policy can lock you out of the node/);
    assert.equal(off.stdout, 'set failsafes disabled\n');
    assert.equal(readLabState(name).failsafes?.disabled, true);
    const status = (await cli('status')).stdout;
    assert.match(status, /HOST PROTECTION \(node lab-node; uplink uplink ifindex \d+/);
    assert.match(status, /HostEndpoint mine .*interface \*/);
    assert.doesNotMatch(status, /lab-node-auto-hep/);
    assert.match(status, /GlobalNetworkPolicy deny-ssh/);
    assert.match(status, /failsafes: DISABLED/);
    await assert.rejects(cli('apply', '--failsafes', '--failsafe-inbound', 'tcp:99999'), /failsafeInbound: entry 1 "tcp:99999": port must be 1-65535/);
    assert.equal(readLabState(name).failsafes?.disabled, true, 'unchanged');
    const on = await cli('apply', '--failsafes', '--failsafe-inbound', 'tcp:22,tcp:9100', '--no-auto-host-endpoints');
    assert.doesNotMatch(on.stderr, /failsafe ports are disabled/);
    assert.match(on.stderr, /deny-ssh: spec\.ingress\[0\]: this Deny rule would close failsafe TCP 22/);
    assert.equal(on.stdout, 'set auto-host-endpoints off\nset failsafes enabled\nset failsafe-inbound "tcp:22,tcp:9100"\n');
    assert.deepEqual(readLabState(name).failsafes, { inbound: 'tcp:22,tcp:9100' });
    assert.equal(readLabState(name).autoHostEndpoints, false);
    const reopened = Lab.open(name);
    try {
      assert.equal(connected(await probeLab(reopened.snapshot, { port: 9100, protocol: 'TCP', timeoutMs: 1500, from: 'world', to: 'host' }), 'world', 'host'), true, 'tcp:9100 is a failsafe now');
    } finally {
      reopened.close();
    }
  } finally {
    lab?.close();
    await Lab.down(name);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(existsSync(labPinRoot(name)), false, 'pins removed');
});

const LOG_THEN_ALLOW_SSH = `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: log-ssh}
spec:
  selector: {matchLabels: {role: worker}}
  ingress:
  - {action: Log, protocol: TCP, destination: {ports: [22]}}
  - {action: Allow, protocol: TCP, destination: {ports: [22]}}
`;

test('CLI: lab up --auto-host-endpoints --no-failsafes warns, locks the node down; Log rules make LOG records (IPv6)', async () => {
  if (process.getuid?.() !== 0) assert.fail('lab tests need root (network namespaces, BPF): run `sudo npm test`');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-lab-host-'));
  const file = (name: string, text: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const name = `th${process.pid % 10000}c`;
  try {
    const up = await run(process.execPath, [CLI, 'lab', 'up', '--name', name, '-f', file('node.yaml', NODE), '-f', file('pods.yaml', PODS), '--auto-host-endpoints', '--no-failsafes',
      '--no-agent']); // the test reads the ring itself (FlowObserver): a ring buffer has one reader
    assert.match(up.stdout, /lab ".*" is up: 1 pods, host endpoints lab-node-auto-hep/);
    assert.match(up.stderr, /^weir: warning: failsafe ports are disabled: a host policy can lock you out of the node$/m);
    const s = readLabState(name);
    assert.equal(s.autoHostEndpoints, true);
    assert.deepEqual(s.failsafes, { disabled: true });
    const probe = async (from: string, to: string, port: number, family: 4 | 6 = 4) =>
      connected(await probeLab(readLabState(name), { port, protocol: 'TCP', family, timeoutMs: 1500, from, to }), from, to);
    assert.equal(await probe('world', 'host', 22), false, 'no failsafes: the host endpoint is default deny on 22 too');

    const l = Lab.open(name);
    const observer = FlowObserver.forLab(l);
    const flows: FlowView[] = [];
    observer.onFlow((f) => flows.push(f));
    observer.start();
    try {
      await l.apply([file('log.yaml', LOG_THEN_ALLOW_SSH)]);
      assert.equal(await probe('world', 'host', 22, 6), true, 'allowed by gnp/log-ssh ingress[1]');
      await new Promise((r) => setTimeout(r, 200));
      observer.drain();
      const log = flows.find((f) => f.type === 'log' && f.dst?.port === 22);
      assert.ok(log, `a LOG record (got ${flows.map((f) => `${f.type} ${f.reason} ${f.policy}`).join(', ')})`);
      assert.equal(log.policy, 'log: gnp/log-ssh ingress[0] Log');
      assert.equal(log.src?.kind, 'world');
      assert.equal(log.dst?.name, 'lab-node');
      const allow = flows.find((f) => f.type === 'flow-start' && f.dst?.port === 22);
      assert.equal(allow?.policy, 'gnp/log-ssh ingress[1] Allow');
    } finally {
      observer.close();
      l.close();
    }
  } finally {
    await Lab.down(name);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(existsSync(labPinRoot(name)), false, 'pins removed');
});
