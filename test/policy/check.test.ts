// `weir policy check`, through the compiled CLI as a user runs it (no root, no lab).
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../../src/paths.js';
import type { PolicyCheckResult } from '../../src/policy/check.js';

const run = promisify(execFile);
const CLI = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');

const POLICIES = `
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: blue}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 80}, {port: dns, protocol: UDP}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress, namespace: y}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {team: blue}}}], ports: [{port: 80}]}]
`;

const PODS = `
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: c, ports: [{containerPort: 5353, protocol: UDP, name: dns}]}]}
status: {podIP: 10.244.7.7}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: y, labels: {app: a}}
spec: {containers: [{name: c}]}
`;

async function withFiles(body: (file: (name: string, text: string) => string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-policy-check-'));
  try {
    await body((name, text) => {
      const p = path.join(dir, name);
      writeFileSync(p, text);
      return p;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const cli = (...args: string[]) => run(process.execPath, [CLI, ...args]);
const fails = (...args: string[]) => cli(...args).then(
  (r) => assert.fail(`expected exit 1, got success: ${r.stdout}`),
  (e: { code: number; stdout: string; stderr: string }) => e,
);

test('policy check: valid policies without pods', async () => {
  await withFiles(async (file) => {
    const { stdout } = await cli('policy', 'check', '-f', file('p.yaml', POLICIES));
    assert.match(stdout, /^3 objects valid \(2 NetworkPolicies, 0 Pods\)$/m);
    assert.match(stdout, /note: Namespace y has no manifest/);
    assert.doesNotMatch(stdout, /not enforced/, 'named ports are enforced by the datapath');
    assert.doesNotMatch(stdout, /rows: from/, 'no pods, no matrix');
  });
});

test('policy check: every error with its file, document, object and field path; exit 1', async () => {
  await withFiles(async (file) => {
    const bad = file('bad.yaml', `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  podSelector: {matchExpressions: [{key: app, operator: Like, values: [a]}]}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}, podSelector: {}}]
    ports: [{port: 0}, {port: 80, endPort: 70}, {port: 53, protocol: ICMP}, {port: Http}]
`);
    const e = await fails('policy', 'check', '-f', bad, file('p.yaml', POLICIES), file('p2.yaml', POLICIES));
    assert.equal(e.code, 1);
    const lines = e.stderr.trim().split('\n');
    assert.equal(lines[0], 'weir: 10 problems:', 'seven in bad.yaml, three duplicates in p2.yaml');
    const at = (field: string, message: RegExp) => assert.ok(lines.some((l) => l.includes(`bad.yaml: document 1: NetworkPolicy x/bad: ${field}: `) && message.test(l)), `${field} ${message}`);
    at('spec.podSelector.matchExpressions[0].operator', /"Like": must be In, NotIn, Exists or DoesNotExist/);
    at('spec.ingress[0].from[0]', /ipBlock cannot be combined with podSelector/);
    at('spec.ingress[0].from[0].ipBlock.except[0]', /"11\.0\.0\.0\/16": must be strictly inside cidr "10\.0\.0\.0\/8"/);
    at('spec.ingress[0].ports[0].port', /0: must be 1-65535/);
    at('spec.ingress[0].ports[1].endPort', /70: must be greater than or equal to port \(80\)/);
    at('spec.ingress[0].ports[2].protocol', /"ICMP": must be TCP, UDP or SCTP/);
    at('spec.ingress[0].ports[3].port', /"Http": is neither a port number nor a port name/);
    assert.ok(lines.some((l) => /p2\.yaml: document 2: NetworkPolicy x\/allow-a: metadata\.name: "allow-a": duplicate: .* also defined in .*p\.yaml: document 2/.test(l)), 'duplicates name both documents');
  });
});

test('policy check with pods: a matrix per port the policies name, from the reference evaluator', async () => {
  await withFiles(async (file) => {
    const { stdout } = await cli('policy', 'check', '-f', file('p.yaml', POLICIES), '--pods', file('pods.yaml', PODS));
    const tables = stdout.split('\n\n').slice(1);
    // ports named: TCP/80 (numbers) and UDP/5353 (the named port "dns" resolved against x/b)
    assert.deepEqual(tables.map((t) => t.split(' ')[0]), ['TCP/80', 'UDP/5353']);
    assert.equal(tables[0], [
      'TCP/80  (rows: from, columns: to; . connected, X denied; by the reference evaluator)',
      '      x/a x/b y/c',
      'x/a   .   .   .  ',
      'x/b   .   .   .  ',
      // y/c may egress to namespaces labelled team=blue (x) on 80, but x/b admits only x's app=a
      'y/c   .   X   .  ',
    ].join('\n'));
    assert.equal(tables[1]!.split('\n')[4], 'y/c   X   X   .  ', 'y egress allows port 80 only');
  });
});

test('policy check -o json: one object with addresses, per-pair verdicts and decisions; --port/--protocol', async () => {
  await withFiles(async (file) => {
    const { stdout } = await cli('policy', 'check', '-f', file('p.yaml', POLICIES), '--pods', file('pods.yaml', PODS), '--port', '81', '--protocol', 'TCP', '-o', 'json');
    const r = JSON.parse(stdout) as PolicyCheckResult;
    assert.equal(r.pods, 3);
    assert.equal(r.addresses['x/b']![0], '10.244.7.7', 'status.podIP is used');
    assert.match(r.addresses['x/a']![0]!, /^10\.244\.0\.\d+$/, 'others get lab addresses');
    assert.deepEqual(r.reports.map((x) => `${x.protocol}/${x.port}`), ['TCP/81']);
    const pair = (from: string, to: string) => r.reports[0]!.results.find((x) => x.from === from && x.to === to)!;
    assert.equal(pair('x/a', 'x/b').connected, false);
    assert.deepEqual(pair('x/a', 'x/b').ingress, { verdict: 'deny', reason: 'default-deny', pod: 'x/b', policies: ['x/allow-a'] });
    assert.deepEqual(pair('y/c', 'x/a').egress, { verdict: 'deny', reason: 'default-deny', pod: 'y/c', policies: ['y/egress'] });
    assert.deepEqual(pair('x/b', 'x/a'), { from: 'x/b', to: 'x/a', connected: true,
      egress: { verdict: 'allow', reason: 'not-isolated', pod: 'x/b' }, ingress: { verdict: 'allow', reason: 'not-isolated', pod: 'x/a' } });
    const tcp80 = JSON.parse((await cli('policy', 'check', '-f', file('p2.yaml', POLICIES), '--pods', file('pods2.yaml', PODS), '-6', '-o', 'json')).stdout) as PolicyCheckResult;
    const allowed = tcp80.reports[0]!.results.find((x) => x.from === 'x/a' && x.to === 'x/b')!;
    assert.deepEqual(allowed.ingress, { verdict: 'allow', reason: 'policy', pod: 'x/b', rule: { policy: 'x/allow-a', direction: 'Ingress', index: 0 } });
  });
});

const HOST_POLICIES = `
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: node1, labels: {role: worker}}
spec: {node: node1, interfaceName: "*", expectedIPs: [192.0.2.10]}
---
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: lockdown}
spec:
  order: 100
  selector: {matchLabels: {role: worker}}
  types: [Ingress, Egress]
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [80]}}
  - {action: Deny, protocol: TCP, destination: {ports: ["20:30"]}}
  egress:
  - {action: Deny, protocol: UDP}
---
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: harmless}
spec: {selector: {}, ingress: [{action: Deny, protocol: TCP, destination: {ports: [8080]}}]}
`;

test('policy check: host protection objects validate; Deny rules closing failsafe ports are warned about', async () => {
  await withFiles(async (file) => {
    const { stdout } = await cli('policy', 'check', '-f', file('h.yaml', HOST_POLICIES));
    const lines = stdout.trim().split('\n');
    assert.equal(lines[0], '3 objects valid (0 NetworkPolicies, 0 Pods, 2 GlobalNetworkPolicies, 1 HostEndpoint)');
    assert.deepEqual(lines.filter((l) => l.startsWith('warning: ')), [
      'warning: GlobalNetworkPolicy lockdown: spec.ingress[1]: this Deny rule would close failsafe TCP 22; failsafe ports stay open unless failsafes are disabled',
      'warning: GlobalNetworkPolicy lockdown: spec.egress[0]: this Deny rule would close failsafes UDP 53, UDP 67; failsafe ports stay open unless failsafes are disabled',
    ]);
    // other failsafe lists: the warnings follow them
    const custom = await cli('policy', 'check', '-f', file('h2.yaml', HOST_POLICIES), '--failsafe-inbound', 'tcp:8080', '--failsafe-outbound', '', '-o', 'json');
    const r = JSON.parse(custom.stdout) as PolicyCheckResult;
    assert.equal(r.globalPolicies, 2);
    assert.equal(r.hostEndpoints, 1);
    assert.deepEqual(r.warnings, [
      'GlobalNetworkPolicy harmless: spec.ingress[0]: this Deny rule would close failsafe TCP 8080; failsafe ports stay open unless failsafes are disabled',
    ]);
    assert.match(custom.stderr, /weir: warning: GlobalNetworkPolicy harmless/, 'json output repeats the warnings on stderr');
  });
});

test('policy check --no-failsafes warns loudly; a bad failsafe list or host object fails with its field', async () => {
  await withFiles(async (file) => {
    const { stdout } = await cli('policy', 'check', '-f', file('h.yaml', HOST_POLICIES), '--no-failsafes');
    assert.deepEqual(stdout.trim().split('\n').filter((l) => l.startsWith('warning: ')),
      ['warning: failsafe ports are disabled: a host policy can lock you out of the node'], 'nothing is shadowed when there are no failsafes');

    const badList = await fails('policy', 'check', '-f', file('h2.yaml', HOST_POLICIES), '--failsafe-inbound', 'tcp:22,tcp:99999');
    assert.match(badList.stderr, /failsafeInbound: entry 2 "tcp:99999": port must be 1-65535/);

    const bad = await fails('policy', 'check', '-f', file('bad.yaml', `
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: n1}
spec: {node: n1, interfaceName: "eth0/1"}
---
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: g}
spec: {selector: {}, ingress: [{action: Allow, destination: {ports: [22]}}]}
`));
    const lines = bad.stderr.trim().split('\n');
    assert.ok(lines.some((l) => /bad\.yaml: document 1: HostEndpoint n1: spec\.interfaceName: "eth0\/1"/.test(l)), bad.stderr);
    assert.ok(lines.some((l) => /bad\.yaml: document 2: GlobalNetworkPolicy g: spec\.ingress\[0\]/.test(l)), bad.stderr);
  });
});
