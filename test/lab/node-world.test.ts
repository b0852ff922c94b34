// End-to-end: the lab's node (a Node object, host processes on declared ports), its uplink and the
// world behind it. World -> pod goes through the node with the world's own source address; the
// node's addresses are the host identity, so host <-> pod traffic passes an isolated pod
// (ALLOW_HOST). Own lab name; everything is torn down in `finally`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Lab } from '../../src/lab/lab.js';
import { labPinRoot } from '../../src/lab/state.js';
import { probeLab, type ProbeReport } from '../../src/lab/probe.js';
import { LAB_NODE_V4, LAB_NODE_V6, LAB_WORLD_V4, LAB_WORLD_V6 } from '../../src/lab/addresses.js';
import { FlowObserver } from '../../src/flows/observe.js';
import type { FlowView } from '../../src/flows/describe.js';
import { ManifestError } from '../../src/datastore/manifest.js';
import { ClusterStateError } from '../../src/datastore/cluster.js';
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

const DENY_INGRESS = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}}
`;

function connected(report: ProbeReport, from: string, to: string): boolean {
  const r = report.results.find((x) => x.from === from && x.to === to);
  assert.ok(r, `no probe result ${from} -> ${to}`);
  return r.connected;
}

test('the lab node: world -> pod through the node with the original source; host <-> pod passes isolation; probe names host and world', async () => {
  if (process.getuid?.() !== 0) assert.fail('lab tests need root (network namespaces, BPF): run `sudo npm test`');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-lab-node-'));
  const file = (name: string, text: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const name = `tn${process.pid % 10000}`;
  let lab: Lab | undefined;
  try {
    lab = (await Lab.up(name, [file('node.yaml', NODE), file('pods.yaml', PODS)])).lab;
    const l = lab;
    assert.equal(l.cluster().node?.name, 'lab-node');
    assert.deepEqual(l.snapshot.host?.ports, ['22/TCP', '80/TCP', '9100/TCP']);
    const a = l.snapshot.pods['x/a']!;
    const observer = FlowObserver.forLab(l);
    const flows: FlowView[] = [];
    observer.onFlow((f) => flows.push(f));
    observer.start();
    try {
      const probe = (o: { from?: string; to?: string; port?: number; family?: 4 | 6 }) =>
        probeLab(l.snapshot, { port: o.port ?? 80, protocol: 'TCP', family: o.family ?? 4, timeoutMs: 1500, ...(o.from ? { from: o.from } : {}), ...(o.to ? { to: o.to } : {}) });

      // The full matrix has host and world rows and columns (a Node was given).
      const full = await probe({});
      const names = [...new Set(full.results.map((r) => r.from))];
      assert.deepEqual(names, ['x/a', 'host', 'world']);
      assert.ok(full.results.every((r) => r.connected), `no policy: everything connects on 80 (${JSON.stringify(full.results)})`);

      // No policy: world -> pod connects, and the record shows the world's own address.
      for (const family of [4, 6] as const) {
        assert.equal(connected(await probe({ from: 'world', to: 'x/a', family }), 'world', 'x/a'), true, `world -> pod IPv${family}`);
      }
      observer.drain();
      for (const [src, dst] of [[LAB_WORLD_V4, a.ipv4], [LAB_WORLD_V6, a.ipv6]] as const) {
        const rec = flows.find((f) => f.type === 'flow-start' && f.src?.ip === src && f.dst?.ip === dst && f.verdict === 'allow');
        assert.ok(rec, `a FLOW_START from the world's ${src} (got ${flows.map((f) => `${f.type} ${f.src?.ip}>${f.dst?.ip}`).join(', ')})`);
        assert.equal(rec.src!.kind, 'world');
        assert.equal(rec.dst!.name, 'x/a');
      }

      // The pod reaches the node's declared ports, and only those.
      assert.equal(connected(await probe({ from: 'x/a', to: 'host', port: 9100 }), 'x/a', 'host'), true, 'pod -> host:9100');
      assert.equal(connected(await probe({ from: 'x/a', to: 'host', port: 22, family: 6 }), 'x/a', 'host'), true, 'pod -> host:22 IPv6');
      assert.equal(connected(await probe({ from: 'x/a', to: 'host', port: 8081 }), 'x/a', 'host'), false, 'nothing listens on 8081');
      assert.equal(connected(await probe({ from: 'world', to: 'host', port: 22 }), 'world', 'host'), true, 'world -> host:22 (the uplink is not policed)');

      // Isolated: the world is denied, the node still gets through (ALLOW_HOST).
      flows.length = 0;
      await l.apply([file('deny.yaml', DENY_INGRESS)]);
      const isolated = await probe({});
      assert.equal(connected(isolated, 'world', 'x/a'), false, 'world -> isolated pod is denied');
      assert.equal(connected(isolated, 'host', 'x/a'), true, 'host -> isolated pod connects');
      assert.equal(connected(isolated, 'x/a', 'world'), true, 'the pod is not isolated for egress');
      assert.equal(connected(await probe({ from: 'host', to: 'x/a', family: 6 }), 'host', 'x/a'), true, 'host -> isolated pod IPv6');
      observer.drain();
      const deny = flows.find((f) => f.type === 'deny' && f.src?.ip === LAB_WORLD_V4 && f.dst?.ip === a.ipv4);
      assert.ok(deny, `a DENY record from the world's ${LAB_WORLD_V4}`);
      assert.equal(deny.src!.kind, 'world');
      assert.equal(deny.reason, 'DENY_DEFAULT');
      for (const src of [LAB_NODE_V4, LAB_NODE_V6]) {
        const allow = flows.find((f) => f.type === 'flow-start' && f.src?.ip === src && f.dst?.name === 'x/a');
        assert.ok(allow, `a FLOW_START from the node's ${src}`);
        assert.equal(allow.reason, 'ALLOW_HOST');
        assert.equal(allow.src!.kind, 'host');
        assert.equal(allow.src!.name, 'lab-node');
      }

      // The CLI: --from world --to host, JSON names host and world.
      const { stdout } = await run(process.execPath, [CLI, 'lab', 'probe', '--name', name, '--from', 'world', '--to', 'host', '--port', '22', '-o', 'json']);
      const report = JSON.parse(stdout) as ProbeReport;
      assert.deepEqual(report.results, [{ from: 'world', to: 'host', connected: true }]);
      await assert.rejects(run(process.execPath, [CLI, 'lab', 'probe', '--name', name, '--from', 'nowhere']), /not NAMESPACE\/POD, host or world/);

      // A changed port list restarts the host processes on the new ports.
      await l.apply([file('node2.yaml', NODE.replace('22/TCP,80/TCP,9100/TCP', '2222/TCP'))]);
      assert.deepEqual(l.snapshot.host?.ports, ['2222/TCP']);
      assert.equal(connected(await probe({ from: 'x/a', to: 'host', port: 2222 }), 'x/a', 'host'), true);
      assert.equal(connected(await probe({ from: 'x/a', to: 'host', port: 22 }), 'x/a', 'host'), false);
      // Two Nodes are refused, whole.
      await assert.rejects(l.apply([file('node3.yaml', NODE.replace('name: lab-node', 'name: other'))]), ClusterStateError);
    } finally {
      observer.close();
    }
  } finally {
    lab?.close();
    await Lab.down(name);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(existsSync(labPinRoot(name)), false, 'pins removed');
  for (const ns of ['node', 'world']) assert.equal(existsSync(`/run/netns/weir-${name}-${ns}`), false, `netns ${ns} removed`);
});

test('a lab without a Node still has its uplink and world, with no host listeners; the matrix is pods only', async () => {
  if (process.getuid?.() !== 0) assert.fail('lab tests need root (network namespaces, BPF): run `sudo npm test`');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-lab-node-'));
  const name = `tn${process.pid % 10000}b`;
  let lab: Lab | undefined;
  try {
    const p = path.join(dir, 'pods.yaml');
    writeFileSync(p, PODS);
    lab = (await Lab.up(name, [p])).lab;
    const full = await probeLab(lab.snapshot, { port: 80, protocol: 'TCP', timeoutMs: 1500 });
    assert.deepEqual(full.results.map((r) => `${r.from}>${r.to}`), ['x/a>x/a']);
    assert.deepEqual(lab.snapshot.host?.ports, []);
    const w = await probeLab(lab.snapshot, { port: 80, protocol: 'TCP', from: 'world', to: 'x/a', timeoutMs: 1500 });
    assert.equal(connected(w, 'world', 'x/a'), true, 'world reaches the pod');
    const h = await probeLab(lab.snapshot, { port: 22, protocol: 'TCP', from: 'x/a', to: 'host', timeoutMs: 1500 });
    assert.equal(connected(h, 'x/a', 'host'), false, 'no host listeners');
    assert.ok(existsSync(`/run/netns/weir-${name}-world`));
  } finally {
    lab?.close();
    await Lab.down(name);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(existsSync(`/run/netns/weir-${name}-world`), false, 'world netns removed');
});

test('Node manifests: field paths for a bad port list and a namespace', async () => {
  const { parseManifestText } = await import('../../src/datastore/manifest.js');
  const problems: Parameters<typeof parseManifestText>[2] = [];
  parseManifestText(`${NODE.replace('22/TCP,80/TCP,9100/TCP', '22/TCP,http/TCP')}---
apiVersion: v1
kind: Node
metadata: {name: n2, namespace: x}
`, 'n.yaml', problems);
  const text = problems.map((p) => `${p.object}: ${p.field}: ${p.message}`);
  assert.equal(problems.length, 2, text.join('\n'));
  assert.match(text[0]!, /^Node lab-node: metadata\.annotations\.lab\.weir\.dev\/ports: .*entry 2 "http\/TCP" is not PORT\/PROTOCOL/);
  assert.match(text[1]!, /^Node n2: metadata\.namespace: .*cluster-scoped/);
  assert.ok(ManifestError);
});
