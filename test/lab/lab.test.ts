// End-to-end tests of `weir lab`: real network namespaces, the real datapath attached to the pod
// veths, real TCP/UDP probes, flow records read from the BPF ring buffer. Each test uses its own
// lab name (so its own netns, veth names and pin root) and tears everything down in `finally`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Lab } from '../../src/lab/lab.js';
import { labPinRoot } from '../../src/lab/state.js';
import { probeLab } from '../../src/lab/probe.js';
import { FlowObserver } from '../../src/flows/observe.js';
import type { FlowView } from '../../src/flows/describe.js';
import { ManifestError } from '../../src/datastore/manifest.js';
import { repoRoot } from '../../src/paths.js';

const run = promisify(execFile);
const CLI = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');

function requireRoot(): void {
  if (process.getuid?.() !== 0) assert.fail('lab tests need root (network namespaces, BPF): run `sudo npm test`');
}

const labName = (suffix: string) => `tl${process.pid % 10000}${suffix}`;

const PODS = `
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 81, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 81, protocol: UDP}]}]}
`;

const DENY_B = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-b, namespace: x}
spec: {podSelector: {matchLabels: {app: b}}}
`;

const ALLOW_A_TO_B = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 80}]}]
`;

async function withLab(suffix: string, body: (lab: Lab, file: (name: string, text: string) => string) => Promise<void>): Promise<void> {
  requireRoot();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-lab-e2e-'));
  const file = (name: string, text: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const name = labName(suffix);
  let lab: Lab | undefined;
  try {
    lab = (await Lab.up(name, [file('pods.yaml', PODS)])).lab;
    await body(lab, file);
  } finally {
    lab?.close();
    await Lab.down(name);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(existsSync(labPinRoot(name)), false, 'pins removed');
}

function connected(report: Awaited<ReturnType<typeof probeLab>>, from: string, to: string): boolean {
  const r = report.results.find((x) => x.from === from && x.to === to);
  assert.ok(r, `no probe result ${from} -> ${to}`);
  return r.connected;
}

test('pods talk; a policy blocks and unblocks; records carry the original source IPv4 and IPv6', async () => {
  await withLab('a', async (lab, file) => {
    const observer = FlowObserver.forLab(lab);
    const flows: FlowView[] = [];
    observer.onFlow((f) => flows.push(f));
    observer.start();
    try {
      const a = lab.snapshot.pods['x/a']!;
      const b = lab.snapshot.pods['x/b']!;
      const probe = (family: 4 | 6 = 4, protocol: 'TCP' | 'UDP' = 'TCP', port = 80) =>
        probeLab(lab.snapshot, { port: protocol === 'UDP' ? 81 : port, protocol, family, timeoutMs: 1500 });

      let r = await probe();
      assert.equal(r.results.length, 4);
      assert.ok(r.results.every((x) => x.connected), 'no policy: everything connects');
      assert.ok((await probe(6)).results.every((x) => x.connected), 'IPv6 too');
      assert.ok((await probe(4, 'UDP')).results.every((x) => x.connected), 'UDP too');

      await lab.apply([file('deny.yaml', DENY_B)]);
      r = await probe();
      assert.equal(connected(r, 'x/a', 'x/b'), false, 'b is isolated for ingress');
      assert.equal(connected(r, 'x/b', 'x/a'), true, 'b may still send');
      assert.equal(connected(r, 'x/b', 'x/b'), true, 'a pod always reaches itself');
      assert.equal(connected(await probe(6), 'x/a', 'x/b'), false, 'IPv6 is policed the same');
      assert.equal(connected(await probe(4, 'UDP'), 'x/a', 'x/b'), false, 'UDP is policed the same');

      observer.drain();
      const denies = flows.filter((f) => f.type === 'deny' && f.dst?.name === 'x/b' && f.src?.name === 'x/a');
      for (const [family, src, dst] of [[4, a.ipv4, b.ipv4], [6, a.ipv6, b.ipv6]] as const) {
        const d = denies.find((f) => f.src!.ip === src && f.protocol === 'TCP');
        assert.ok(d, `a DENY record for IPv${family} ${src} -> ${dst}`);
        assert.equal(d.dst!.ip, dst);
        assert.equal(d.dst!.port, 80);
        assert.equal(d.verdict, 'deny');
        assert.equal(d.direction, 'ingress');
        assert.equal(d.reason, 'DENY_DEFAULT');
        assert.equal(d.hook, 'TO_POD');
        assert.equal(d.policy, 'default deny: no ingress rule allows it (isolated by x/deny-b)');
      }

      flows.length = 0;
      await lab.apply([file('allow.yaml', ALLOW_A_TO_B)]);
      r = await probe();
      assert.equal(connected(r, 'x/a', 'x/b'), true, 'the allow policy opens a -> b:80');
      assert.equal(connected(await probe(4, 'UDP'), 'x/a', 'x/b'), false, 'but not UDP 81');
      observer.drain();
      const start = flows.find((f) => f.type === 'flow-start' && f.direction === 'ingress' && f.dst?.name === 'x/b' && f.src?.ip === a.ipv4 && f.verdict === 'allow');
      assert.ok(start, 'a FLOW_START for the allowed ingress');
      assert.equal(start.policy, 'x/allow-a ingress[0]');

      await lab.delete([file('allow2.yaml', ALLOW_A_TO_B)]);
      assert.equal(connected(await probe(), 'x/a', 'x/b'), false, 'deleting the allow blocks again');
      await lab.delete([file('deny2.yaml', DENY_B)]);
      assert.equal(connected(await probe(), 'x/a', 'x/b'), true, 'no policy left: open again');
    } finally {
      observer.close();
    }
  });
});

test('labels changed by apply take effect; a bad batch is refused whole and the last good policy stays', async () => {
  await withLab('b', async (lab, file) => {
    await lab.apply([file('deny.yaml', DENY_B), file('allow.yaml', ALLOW_A_TO_B)]);
    assert.equal(connected(await probeLab(lab.snapshot, { port: 80, protocol: 'TCP', timeoutMs: 1500 }), 'x/a', 'x/b'), true);

    // Relabel a: it no longer matches the allow rule's podSelector.
    await lab.apply([file('relabel.yaml', PODS.replace('labels: {app: a}', 'labels: {app: other}'))]);
    assert.equal(connected(await probeLab(lab.snapshot, { port: 80, protocol: 'TCP', timeoutMs: 1500 }), 'x/a', 'x/b'), false);

    // A batch with one invalid object changes nothing, and says where the problem is.
    const bad = file('bad.yaml', `${PODS.replace('labels: {app: other}', 'labels: {app: a}')}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 99999}]}]
`);
    await assert.rejects(lab.apply([bad]), (e: unknown) => {
      assert.ok(e instanceof ManifestError);
      assert.match(e.message, /bad\.yaml: document 4: NetworkPolicy x\/broken: spec\.ingress\[0\]\.ports\[0\]\.port: 99999: must be 1-65535/);
      return true;
    });
    assert.equal(lab.cluster().pods.get('x/a')!.labels.app, 'other', 'the relabel was not applied from the bad batch');
    assert.equal(lab.cluster().policies.has('x/broken'), false);
    assert.equal(connected(await probeLab(lab.snapshot, { port: 80, protocol: 'TCP', timeoutMs: 1500 }), 'x/a', 'x/b'), false, 'enforcement unchanged');

    // Host protection objects in a bad batch are refused with the rest, not half-applied.
    const host = file('host.yaml', `${PODS.replace('labels: {app: other}', 'labels: {app: a}')}
---
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: deny-all}
spec: {selector: {}, ingress: [{action: Deny}]}
---
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: broken}
spec: {node: n, interfaceName: eth0, expectedIPs: [not-an-ip]}
`);
    await assert.rejects(lab.apply([host]), (e: unknown) => {
      assert.ok(e instanceof ManifestError);
      assert.match(e.message, /HostEndpoint broken: spec\.expectedIPs\[0\]/);
      return true;
    });
    assert.equal(lab.cluster().pods.get('x/a')!.labels.app, 'other', 'nothing from the refused batch was applied');
    assert.equal(lab.cluster().globalPolicies.size, 0);

    await assert.rejects(Lab.up(lab.name, [bad]), /already up/);

    // An applied `default` Namespace (here: with a label) is kept across CLI invocations.
    await lab.apply([file('default-ns.yaml', 'apiVersion: v1\nkind: Namespace\nmetadata: {name: default, labels: {team: blue}}\n')]);
    const reopened = Lab.open(lab.name);
    try {
      assert.equal(reopened.cluster().namespaces.get('default')!.labels.team, 'blue');
    } finally {
      reopened.close();
    }
  });
});

test('CLI: probe -o json prints exactly one JSON object; status works; down twice is safe', async () => {
  requireRoot();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-lab-cli-'));
  const name = labName('c');
  const pods = path.join(dir, 'pods.yaml');
  writeFileSync(pods, PODS);
  const cli = (...args: string[]) => {
    const dash = args.indexOf('--'); // options go before a command's own arguments
    const at = dash >= 0 ? dash : args.length;
    return run(process.execPath, [CLI, ...args.slice(0, at), '--name', name, ...args.slice(at)]);
  };
  try {
    // no flow agent: observe below reads the ring itself, one line per record (test/lab/lab-agent.test.ts runs the agent)
    const up = await cli('lab', 'up', '-f', pods, '--no-agent');
    assert.match(up.stdout, /created Pod x\/a/);
    assert.doesNotMatch(up.stdout, /flow agent/);
    const again = await cli('lab', 'up', '-f', pods, '--no-agent').then(() => undefined, (e: { stderr: string; code: number }) => e);
    assert.ok(again && again.code === 1 && /already up/.test(again.stderr), 'a second up says the lab is up');

    const { stdout } = await cli('lab', 'probe', '--port', '80', '-o', 'json');
    const report = JSON.parse(stdout) as { port: number; protocol: string; results: { from: string; to: string; connected: boolean }[] };
    assert.deepEqual(Object.keys(report), ['port', 'protocol', 'results']);
    assert.equal(report.port, 80);
    assert.equal(report.protocol, 'TCP');
    assert.deepEqual(report.results.map((x) => `${x.from}>${x.to}:${x.connected}`).sort(),
      ['x/a>x/a:true', 'x/a>x/b:true', 'x/b>x/a:true', 'x/b>x/b:true']);

    const status = await cli('lab', 'status');
    assert.match(status.stdout, /x\/a\s+10\.244\./);

    const exec = await cli('lab', 'exec', 'x/a', '--', 'ip', '-o', 'addr', 'show', 'dev', 'eth0');
    assert.match(exec.stdout, /inet 10\.244\./);

    const bad = await cli('lab', 'probe', '--port', 'http').then(() => undefined, (e: { stderr: string }) => e);
    assert.match(bad!.stderr, /"http" is not a port number/);

    // observe prints one JSON object per record while traffic flows
    const observing = cli('lab', 'observe', '--json', '--duration', '3');
    await new Promise((r) => setTimeout(r, 1000));
    await cli('lab', 'probe', '--port', '80', '--from', 'x/a', '--to', 'x/b');
    const seen = (await observing).stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; src?: { name?: string }; dst?: { name?: string; port: number } });
    assert.ok(seen.some((f) => f.type === 'flow-start' && f.src?.name === 'x/a' && f.dst?.name === 'x/b' && f.dst.port === 80),
      `observe saw the probe's flow (got ${seen.length} records)`);
  } finally {
    const first = await cli('lab', 'down');
    assert.match(first.stdout, /is down/);
    const second = await cli('lab', 'down');
    assert.match(second.stdout, /was not up/);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('audit mode: traffic a policy would deny passes, reported as audit; removing the annotation enforces it', async () => {
  await withLab('e', async (lab, file) => {
    const observer = FlowObserver.forLab(lab);
    const flows: FlowView[] = [];
    observer.onFlow((f) => flows.push(f));
    observer.start();
    try {
      const audited = DENY_B.replace('metadata: {name: deny-b, namespace: x}', 'metadata: {name: deny-b, namespace: x, annotations: {policy.weir.dev/audit: "true"}}');
      await lab.apply([file('audit.yaml', audited)]);
      assert.equal(connected(await probeLab(lab.snapshot, { port: 80, protocol: 'TCP', timeoutMs: 1500 }), 'x/a', 'x/b'), true, 'audit mode lets it pass');
      observer.drain();
      const a = lab.snapshot.pods['x/a']!;
      const rec = flows.find((f) => f.type === 'flow-start' && f.verdict === 'audit' && f.src?.ip === a.ipv4 && f.dst?.name === 'x/b');
      assert.ok(rec, `an audit record (got ${flows.map((f) => `${f.type}/${f.verdict}`).join(' ')})`);
      assert.equal(rec.reason, 'AUDIT');
      assert.equal(rec.policy, 'audit: default deny would drop it (ingress) (isolated by x/deny-b)');

      await lab.apply([file('enforce.yaml', DENY_B)]); // the same policy, annotation gone
      assert.equal(connected(await probeLab(lab.snapshot, { port: 80, protocol: 'TCP', timeoutMs: 1500 }), 'x/a', 'x/b'), false, 'enforced now');
    } finally {
      observer.close();
    }
  });
});
