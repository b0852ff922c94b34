import test from 'node:test';
import assert from 'node:assert/strict';
import { ManifestError, parseManifestText, type ManifestProblem } from '../../src/datastore/manifest.js';
import { ClusterState, ClusterStateError } from '../../src/datastore/cluster.js';
import type { NetworkPolicy, Pod } from '../../src/datastore/objects.js';

function parse(text: string): { objects: ReturnType<typeof parseManifestText>; problems: ManifestProblem[] } {
  const problems: ManifestProblem[] = [];
  const objects = parseManifestText(text, 'f.yaml', problems);
  return { objects, problems };
}

test('multi-document YAML yields namespaces (with the metadata.name label), pods and policies', () => {
  const { objects, problems } = parse(`
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec:
  containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 81, protocol: UDP, name: dns}]}]
status: {podIPs: [{ip: 10.244.1.5}, {ip: "fd00::5"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  egress: [{to: [{namespaceSelector: {matchLabels: {team: a}}}], ports: [{port: 53, protocol: UDP}]}]
---
`);
  assert.deepEqual(problems, []);
  assert.equal(objects.length, 3);
  const ns = objects[0]!.object;
  assert.deepEqual(ns.kind === 'Namespace' && ns.labels, { team: 'a', 'kubernetes.io/metadata.name': 'x' });
  const pod = objects[1]!.object as Pod;
  assert.deepEqual(pod.ports, [{ port: 80, protocol: 'TCP' }, { port: 81, protocol: 'UDP', name: 'dns' }]);
  assert.deepEqual(pod.ips, ['10.244.1.5', 'fd00::5']);
  const pol = objects[2]!.object as NetworkPolicy;
  // API defaulting: egress rules present and no policyTypes -> Ingress and Egress
  assert.deepEqual(pol.policyTypes, ['Ingress', 'Egress']);
  assert.deepEqual(pol.egress[0]!.ports, [{ protocol: 'UDP', port: 53 }]);
  assert.equal(pol.ingress.length, 0);
});

test('errors name the file, document, object and field, quoting the bad value', () => {
  const { problems } = parse(`
apiVersion: v1
kind: Namespace
metadata: {name: ok}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80}, {port: 70000}]}]
---
apiVersion: v1
kind: Service
metadata: {name: s}
`);
  assert.equal(problems.length, 2);
  assert.deepEqual(problems[0], {
    file: 'f.yaml', document: 2, object: 'NetworkPolicy x/bad', field: 'spec.ingress[0].ports[1].port',
    message: '70000: must be 1-65535',
  });
  assert.equal(problems[1]!.document, 3);
  assert.equal(problems[1]!.field, 'kind');
  assert.match(problems[1]!.message, /"Service": unknown kind/);
});

test('selector requirements are checked like the API server does', () => {
  const { problems } = parse(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In}, {key: x, operator: Exists, values: [a]}, {key: y, operator: Like, values: [a]}]}
`);
  assert.deepEqual(problems.map((p) => p.field), [
    'spec.podSelector.matchExpressions[0].values',
    'spec.podSelector.matchExpressions[1].values',
    'spec.podSelector.matchExpressions[2].operator',
  ]);
});

test('features this version cannot enforce are rejected, not enforced partially', () => {
  const { problems } = parse(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: http}, {port: 80, endPort: 90}]}]
`);
  assert.deepEqual(problems.map((p) => p.field), ['spec.ingress[0].from[0].ipBlock', 'spec.ingress[0].ports[0].port', 'spec.ingress[0].ports[1].endPort']);
  assert.match(problems[1]!.message, /"http": named ports is not supported/);
});

test('YAML syntax errors are reported per document', () => {
  const { problems } = parse('kind: Pod\nmetadata: {name: [\n');
  assert.equal(problems.length > 0, true);
  assert.match(problems[0]!.message, /^YAML syntax/);
});

test('ClusterState refuses a batch with a dangling namespace or a duplicate address, changing nothing', () => {
  const state = new ClusterState();
  const pod = (name: string, namespace: string, ip: string): Pod => ({ kind: 'Pod', namespace, name, labels: {}, ports: [], ips: [ip] });
  state.apply([pod('a', 'default', '10.0.0.1')]);
  assert.throws(() => state.apply([pod('b', 'nope', '10.0.0.2')]), (e: unknown) => e instanceof ClusterStateError && /"nope" does not exist/.test(e.message));
  assert.throws(() => state.apply([pod('c', 'default', '10.0.0.1')]), /already the address of Pod default\/a/);
  assert.deepEqual([...state.pods.keys()], ['default/a']);
});

test('deleting a namespace deletes its pods and policies', () => {
  const state = new ClusterState([
    { kind: 'Namespace', name: 'x', labels: {} },
    { kind: 'Pod', namespace: 'x', name: 'a', labels: {}, ports: [], ips: [] },
  ]);
  const r = state.delete([{ kind: 'Namespace', name: 'x', labels: {} }]);
  assert.deepEqual(r, { deleted: ['Namespace x'], missing: [] });
  assert.equal(state.pods.size, 0);
});

test('ManifestError lists every problem', () => {
  const e = new ManifestError([{ file: 'a.yaml', document: 1, object: 'Pod default/x', field: 'spec', message: 'is required' }]);
  assert.match(e.message, /a\.yaml: document 1: Pod default\/x: spec: is required/);
});
