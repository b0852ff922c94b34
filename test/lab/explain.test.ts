// `weir policy explain` end to end: a real lab (its own name, torn down in `finally`), the pinned
// weir_policy_explain run over the lab's live maps, compared with the reference evaluator, with
// real traffic as a witness; then the CLI's JSON shape and its error for a pod that is not there.
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
import { explainLab, formatExplanation, type Explanation } from '../../src/policy/explain.js';
import { repoRoot } from '../../src/paths.js';

const run = promisify(execFile);
const CLI = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');

const OBJECTS = `
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 81, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: c}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-b, namespace: x}
spec: {podSelector: {matchLabels: {app: b}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: c}}}]
    ports: [{port: 9999}]
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: audit-c, namespace: x, annotations: {policy.weir.dev/audit: "true"}}
spec: {podSelector: {matchLabels: {app: c}}, policyTypes: [Ingress]}
`;

test('policy explain: reference and datapath agree on allowed, default-denied, audited and not-isolated pairs; CLI', async () => {
  if (process.getuid?.() !== 0) assert.fail('lab tests need root (network namespaces, BPF): run `sudo npm test`');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-explain-e2e-'));
  const file = path.join(dir, 'objects.yaml');
  writeFileSync(file, OBJECTS);
  const name = `tx${process.pid % 10000}e`;
  const cli = (...args: string[]) => run(process.execPath, [CLI, ...args, '--name', name]);
  let lab: Lab | undefined;
  try {
    lab = (await Lab.up(name, [file])).lab;
    const state = lab.snapshot;
    const explain = (from: string, to: string, port: number, more: { protocol?: 'TCP' | 'UDP' | 'SCTP'; family?: 4 | 6 } = {}): Explanation => {
      const e = explainLab(state, { from, to, port, protocol: more.protocol ?? 'TCP', family: more.family ?? 4 });
      assert.ok(e.agree, `reference and datapath disagree:\n${formatExplanation(e)}`);
      assert.deepEqual(e.differences, []);
      return e;
    };

    // allowed: a's egress is not isolated, b's ingress is allowed by allow-a's second rule
    for (const family of [4, 6] as const) {
      const ok = explain('x/a', 'x/b', 80, { family });
      assert.equal(ok.reference.verdict, 'allow');
      assert.equal(ok.datapath.verdict, 'allow');
      assert.deepEqual(ok.datapath.ingress.rule, { policy: 'x/allow-a', direction: 'Ingress', index: 1 });
      assert.deepEqual(ok.reference.ingress.rule, { policy: 'x/allow-a', direction: 'Ingress', index: 1 });
      assert.equal(ok.datapath.egress.reason, 'not-isolated');
      assert.match(formatExplanation(ok), /x\/allow-a ingress\[1\][^\n]*x\/allow-a ingress\[1\]/);
      assert.match(formatExplanation(ok), /\nAGREE$/);
    }

    // default-denied: c reaches b only on 9999; both sides name the policies that isolate b
    const denied = explain('x/c', 'x/b', 80);
    assert.equal(denied.datapath.verdict, 'deny');
    assert.equal(denied.datapath.ingress.reason, 'default-deny');
    assert.deepEqual(denied.datapath.ingress.policies, ['x/allow-a', 'x/deny-b']);
    assert.deepEqual(denied.reference.ingress.policies, ['x/allow-a', 'x/deny-b']);
    assert.match(formatExplanation(denied), /selected by x\/allow-a, x\/deny-b/);
    assert.equal(explain('x/c', 'x/b', 9999).datapath.ingress.rule?.index, 0);
    assert.equal(explain('x/a', 'x/b', 81, { protocol: 'UDP' }).datapath.verdict, 'deny');
    assert.equal(explain('x/a', 'x/b', 80, { protocol: 'SCTP' }).datapath.verdict, 'deny'); // port 80 means TCP

    // not isolated either way
    const open = explain('x/b', 'x/a', 80);
    assert.equal(open.datapath.verdict, 'allow');
    assert.equal(open.datapath.egress.reason, 'not-isolated');
    assert.equal(open.datapath.ingress.reason, 'not-isolated');

    // audit mode: c is isolated only by an audit-mode policy; both sides report, neither drops
    const audited = explain('x/a', 'x/c', 80);
    assert.equal(audited.reference.verdict, 'audit');
    assert.equal(audited.datapath.verdict, 'audit');
    assert.equal(audited.datapath.ingress.reason, 'audit');
    assert.deepEqual(audited.datapath.ingress.policies, ['x/audit-c']);

    // a pod to itself: never reaches a hook; both say so
    assert.equal(explain('x/b', 'x/b', 80).datapath.egress.reason, 'self');

    // what explain says is what real traffic gets
    const probed = await probeLab(state, { port: 80, protocol: 'TCP', to: 'x/b' });
    const reach = new Map(probed.results.map((r) => [r.from, r.connected]));
    assert.equal(reach.get('x/a'), true);
    assert.equal(reach.get('x/c'), false);
    // and explaining left nothing behind: running it again is still a first packet
    assert.ok(explain('x/c', 'x/b', 80).agree);

    // the CLI: one JSON object, its shape; the table ends with AGREE; a bad --from says which pod
    const { stdout } = await cli('policy', 'explain', '--from', 'x/a', '--to', 'x/b', '--port', '80', '-o', 'json');
    const json = JSON.parse(stdout) as Explanation;
    assert.deepEqual(Object.keys(json), [
      'lab', 'from', 'to', 'src', 'dst', 'sourcePort', 'port', 'protocol', 'family', 'reference', 'datapath', 'agree', 'differences',
    ]);
    assert.deepEqual(Object.keys(json.reference), ['verdict', 'egress', 'ingress']);
    assert.deepEqual(Object.keys(json.datapath), ['verdict', 'egress', 'ingress', 'generation']);
    assert.equal(json.agree, true);
    assert.equal(json.src, state.pods['x/a']!.ipv4);
    assert.equal(json.datapath.ingress.rule?.policy, 'x/allow-a');
    const table = await cli('policy', 'explain', '--from', 'x/c', '--to', 'x/b', '--port', '80', '-6');
    assert.match(table.stdout, /^x\/c \(fd00:[^)]*\) -> x\/b \(\[fd00:/);
    assert.match(table.stdout, /verdict\s+DENY\s+DENY\n/);
    assert.match(table.stdout, /\nAGREE\n$/);
    const bad = await cli('policy', 'explain', '--from', 'x/nope', '--to', 'x/b', '--port', '80').then(() => undefined, (e: { stderr: string; code: number }) => e);
    assert.ok(bad, 'a pod that is not there fails');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--from x\/nope: no such pod in lab "[^"]+" \(pods: x\/a, x\/b, x\/c\)/);
    const badRef = await cli('policy', 'explain', '--from', 'nope', '--to', 'x/b', '--port', '80').then(() => undefined, (e: { stderr: string }) => e);
    assert.match(badRef!.stderr, /"nope" is not NAMESPACE\/POD/);

    // Global policies come first, and explain shows them on both sides: a Deny of c's egress to
    // port 80, a Pass for b's ingress (then NetworkPolicy decides), end of tier for a's ingress.
    const gnp = path.join(dir, 'global.yaml');
    writeFileSync(gnp, `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: deny-c-80}
spec:
  order: 1
  selector: {matchLabels: {app: c}}
  egress: [{action: Deny, protocol: TCP, destination: {ports: [80]}}, {action: Allow}]
---
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: pass-b}
spec:
  order: 2
  selector: {matchLabels: {app: b}}
  ingress: [{action: Pass}]
---
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: only-443-to-a}
spec:
  selector: {matchLabels: {app: a}}
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [443]}}]
`);
    await lab.apply([gnp]);
    const g = lab.snapshot;
    const gexplain = (from: string, to: string, port: number): Explanation => {
      const e = explainLab(g, { from, to, port, protocol: 'TCP' });
      assert.ok(e.agree, `reference and datapath disagree:\n${formatExplanation(e)}`);
      return e;
    };
    const cDenied = gexplain('x/c', 'x/b', 80);
    assert.equal(cDenied.datapath.egress.reason, 'global-rule');
    assert.deepEqual(cDenied.datapath.egress.globalRule, { policy: 'deny-c-80', direction: 'Egress', index: 0, action: 'Deny' });
    assert.match(formatExplanation(cDenied), /deny: gnp\/deny-c-80 egress\[0\] Deny/);
    const passed = gexplain('x/a', 'x/b', 80);
    assert.equal(passed.datapath.verdict, 'allow');
    assert.deepEqual(passed.datapath.ingress.rule, { policy: 'x/allow-a', direction: 'Ingress', index: 1 });
    const endOfTier = gexplain('x/b', 'x/a', 80);
    assert.equal(endOfTier.datapath.verdict, 'deny');
    assert.equal(endOfTier.datapath.ingress.reason, 'end-of-tier');
    assert.equal(gexplain('x/b', 'x/a', 443).datapath.ingress.reason, 'global-rule');
  } finally {
    lab?.close();
    await Lab.down(name);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(existsSync(labPinRoot(name)), false, 'pins removed');
});
