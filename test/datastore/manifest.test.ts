import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadManifests, ManifestError, parseManifestText, type ManifestProblem } from '../../src/datastore/manifest.js';
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

test('ipBlock, named ports and endPort are modelled; the datapath-support check refuses them with the same field paths', () => {
  const { objects, problems } = parse(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: http}, {port: 80, endPort: 90}]}]
  egress: [{to: [{ipBlock: {cidr: "fd00::1/64", except: ["fd00::/80"]}}]}]
`);
  assert.deepEqual(problems, []);
  const pol = objects[0]!.object as NetworkPolicy;
  assert.deepEqual(pol.ingress[0]!.peers, [{ ipBlock: { cidr: '10.0.0.0/8', except: [] } }]);
  assert.deepEqual(pol.ingress[0]!.ports, [{ protocol: 'TCP', port: 'http' }, { protocol: 'TCP', port: 80, endPort: 90 }]);
  // host bits in cidr are accepted and kept as written (they mean the network fd00::/64)
  assert.deepEqual(pol.egress[0]!.peers, [{ ipBlock: { cidr: 'fd00::1/64', except: ['fd00::/80'] } }]);
});

const policyWith = (peerOrPorts: string) => `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress: [${peerOrPorts}]
`;

function problemsOf(text: string): string[] {
  return parse(text).problems.map((p) => `${p.field}: ${p.message}`);
}

test('ipBlock: valid CIDRs, excepts of the same family strictly inside, exclusive with selectors', () => {
  assert.deepEqual(problemsOf(policyWith('{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}')),
    ['spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.0/33": must be a CIDR (a.b.c.d/n or x:x::/n)']);
  assert.deepEqual(problemsOf(policyWith('{from: [{ipBlock: {cidr: 10.0.0.1}}]}')),
    ['spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.1": must be a CIDR (a.b.c.d/n or x:x::/n)']);
  assert.deepEqual(problemsOf(policyWith('{from: [{ipBlock: {}}]}')).map((p) => p.split(':')[0]), ['spec.ingress[0].from[0].ipBlock.cidr']);
  assert.deepEqual(problemsOf(policyWith('{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 11.0.0.0/16, 10.0.0.0/8, "fd00::/64", bogus]}}]}')), [
    'spec.ingress[0].from[0].ipBlock.except[1]: "11.0.0.0/16": must be strictly inside cidr "10.0.0.0/8"',
    'spec.ingress[0].from[0].ipBlock.except[2]: "10.0.0.0/8": must be strictly inside cidr "10.0.0.0/8"',
    'spec.ingress[0].from[0].ipBlock.except[3]: "fd00::/64": must be an IPv4 CIDR, like cidr "10.0.0.0/8"',
    'spec.ingress[0].from[0].ipBlock.except[4]: "bogus": must be a CIDR (a.b.c.d/n or x:x::/n)',
  ]);
  assert.deepEqual(problemsOf(policyWith('{from: [{ipBlock: {cidr: "2001:db8::/32", except: ["2001:db8:1::/48"]}}]}')), []);
  assert.deepEqual(problemsOf(policyWith('{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}')),
    ['spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector in one peer; list them as separate peers']);
});

test('ports: numbers 1-65535, IANA_SVC_NAME names, endPort needs a numeric port at or below it, known protocols', () => {
  assert.deepEqual(problemsOf(policyWith('{ports: [{port: 0}, {port: 65536}, {port: http-80}, {port: "80"}, {port: "-http"}, {port: "a--b"}, {port: "123-456"}, {port: averyveryverylongname}, {port: HTTP}]}')), [
    'spec.ingress[0].ports[0].port: 0: must be 1-65535',
    'spec.ingress[0].ports[1].port: 65536: must be 1-65535',
    'spec.ingress[0].ports[3].port: "80": is a quoted number; write it as a number',
    'spec.ingress[0].ports[4].port: "-http": is neither a port number nor a port name: must be an IANA_SVC_NAME: 1-15 characters [a-z0-9-] with at least one letter, no leading, trailing or double "-"',
    'spec.ingress[0].ports[5].port: "a--b": is neither a port number nor a port name: must be an IANA_SVC_NAME: 1-15 characters [a-z0-9-] with at least one letter, no leading, trailing or double "-"',
    'spec.ingress[0].ports[6].port: "123-456": is neither a port number nor a port name: must be an IANA_SVC_NAME: 1-15 characters [a-z0-9-] with at least one letter, no leading, trailing or double "-"',
    'spec.ingress[0].ports[7].port: "averyveryverylongname": is neither a port number nor a port name: must be an IANA_SVC_NAME: 1-15 characters [a-z0-9-] with at least one letter, no leading, trailing or double "-"',
    'spec.ingress[0].ports[8].port: "HTTP": is neither a port number nor a port name: must be an IANA_SVC_NAME: 1-15 characters [a-z0-9-] with at least one letter, no leading, trailing or double "-"',
  ]);
  assert.deepEqual(problemsOf(policyWith('{ports: [{endPort: 90}, {port: http, endPort: 90}, {port: 90, endPort: 80}, {port: 80, endPort: 70000}, {port: 80, endPort: 80}, {port: 53, protocol: ICMP}]}')), [
    'spec.ingress[0].ports[0].endPort: 90: requires a numeric port (the start of the range)',
    'spec.ingress[0].ports[1].endPort: 90: cannot be used with a named port ("http")',
    'spec.ingress[0].ports[2].endPort: 80: must be greater than or equal to port (90)',
    'spec.ingress[0].ports[3].endPort: 70000: must be 1-65535',
    'spec.ingress[0].ports[5].protocol: "ICMP": must be TCP, UDP or SCTP',
  ]);
});

test('duplicate container port names within a pod are refused, across containers too', () => {
  assert.deepEqual(problemsOf(`
apiVersion: v1
kind: Pod
metadata: {name: a}
spec:
  containers:
  - {name: c1, ports: [{containerPort: 80, name: http}, {containerPort: 81, name: metrics}]}
  - {name: c2, ports: [{containerPort: 8080, name: http}, {containerPort: 9, name: "9"}]}
`), [
    'spec.containers[1].ports[1].name: "9": must be an IANA_SVC_NAME: 1-15 characters [a-z0-9-] with at least one letter, no leading, trailing or double "-"',
    'spec.containers[1].ports[0].name: "http": duplicate port name: spec.containers[0].ports[0].name has it already',
  ]);
});

test('two objects of the same kind, namespace and name in one batch are refused, naming both documents', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-manifest-'));
  try {
    const a = path.join(dir, 'a.yaml');
    const b = path.join(dir, 'b.yaml');
    writeFileSync(a, `${policyWith('{}')}\n---\n${policyWith('{}').replace('name: p,', 'name: q,')}`);
    writeFileSync(b, `apiVersion: v1\nkind: Namespace\nmetadata: {name: p}\n---\n${policyWith('{}')}`);
    assert.throws(() => loadManifests([a, b]), (e: unknown) => {
      assert.ok(e instanceof ManifestError);
      assert.equal(e.problems.length, 1, 'a Namespace named like a policy is no duplicate');
      assert.equal(e.message.split('\n')[1], `  ${b}: document 2: NetworkPolicy x/p: metadata.name: "p": duplicate: NetworkPolicy x/p is also defined in ${a}: document 1`);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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

const podWith = (metadataExtra: string, specExtra: string) => `
apiVersion: v1
kind: Pod
metadata: {name: w, namespace: x, labels: {app: web}${metadataExtra}}
spec: {containers: [{name: c}]${specExtra}}
`;

test('pods keep owner references, the service account (defaulted like the API server) and the node name', () => {
  const one = (text: string): Pod => {
    const { objects, problems } = parse(text);
    assert.deepEqual(problems, []);
    return objects[0]!.object as Pod;
  };
  assert.deepEqual(one(podWith(
    ', ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7d4b9c8f6d, uid: 1234, controller: true, blockOwnerDeletion: true}, {kind: Other, name: o}]',
    ', serviceAccountName: web-sa, serviceAccount: old-sa, nodeName: node-1',
  )), {
    kind: 'Pod', namespace: 'x', name: 'w', labels: { app: 'web' }, ports: [], ips: [],
    ownerReferences: [{ kind: 'ReplicaSet', name: 'web-7d4b9c8f6d', controller: true }, { kind: 'Other', name: 'o' }],
    serviceAccount: 'web-sa', nodeName: 'node-1',
  });
  // no owners, no node, no service account: "default", as the API server sets it
  assert.deepEqual(one(podWith('', '')), { kind: 'Pod', namespace: 'x', name: 'w', labels: { app: 'web' }, ports: [], ips: [], serviceAccount: 'default' });
  // the deprecated spec.serviceAccount when serviceAccountName is not given; empty means not set
  assert.equal(one(podWith('', ', serviceAccount: old-sa')).serviceAccount, 'old-sa');
  assert.equal(one(podWith('', ', serviceAccountName: "", nodeName: ""')).serviceAccount, 'default');
  assert.equal(one(podWith('', ', nodeName: ""')).nodeName, undefined);
  assert.equal(one(podWith(', ownerReferences: []', '')).ownerReferences, undefined);
  assert.equal(one(podWith(', ownerReferences: null', '')).ownerReferences, undefined);
});

test('pod owner references, service account and node name are validated, naming the field', () => {
  assert.deepEqual(problemsOf(podWith(', ownerReferences: [{name: web-1}, {kind: ReplicaSet}, {kind: 5, name: ""}, {kind: Job, name: j, controller: "yes"}]', '')), [
    'metadata.ownerReferences[0].kind: is required (the owner\'s kind, e.g. ReplicaSet)',
    'metadata.ownerReferences[1].name: is required (the owner\'s name)',
    'metadata.ownerReferences[2].kind: 5: must be a string (the owner\'s kind, e.g. ReplicaSet)',
    'metadata.ownerReferences[2].name: "": must not be empty (the owner\'s name)',
    'metadata.ownerReferences[3].controller: "yes": must be true or false',
  ]);
  assert.deepEqual(problemsOf(podWith(', ownerReferences: {kind: ReplicaSet, name: r}', '')), [
    'metadata.ownerReferences: must be a list of owner references ({kind, name, controller})',
  ]);
  assert.deepEqual(problemsOf(podWith(', ownerReferences: [{kind: ReplicaSet, name: r, controller: true}, {kind: Job, name: j, controller: true}]', '')), [
    'metadata.ownerReferences[1].controller: true: only one owner reference can be the controller; ownerReferences[0] is already',
  ]);
  assert.deepEqual(problemsOf(podWith('', ', serviceAccountName: Web_SA, serviceAccount: 7, nodeName: "-node"')), [
    'spec.serviceAccountName: "Web_SA": must be a lowercase RFC 1123 subdomain',
    'spec.serviceAccount: 7: must be a string',
    'spec.nodeName: "-node": must be a lowercase RFC 1123 subdomain',
  ]);
});

test('ReplicaSets and Jobs are read for their owners only, namespaced, and go with their namespace', () => {
  const { objects, problems } = parse(`
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web-7d4b9c8f6d, namespace: x, ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, controller: true}]}
spec: {replicas: 2, selector: {matchLabels: {app: web}}, template: {metadata: {labels: {app: web}}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: backup-29000000, namespace: x, ownerReferences: [{kind: CronJob, name: backup}]}
spec: {template: {spec: {containers: [{name: c}]}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
`);
  assert.deepEqual(problems, []);
  assert.deepEqual(objects.slice(1).map((o) => o.object), [
    { kind: 'ReplicaSet', namespace: 'x', name: 'web-7d4b9c8f6d', ownerReferences: [{ kind: 'Deployment', name: 'web', controller: true }] },
    { kind: 'Job', namespace: 'x', name: 'backup-29000000', ownerReferences: [{ kind: 'CronJob', name: 'backup' }] },
    { kind: 'Job', namespace: 'default', name: 'once' },
  ]);
  const state = new ClusterState(objects.map((o) => o.object));
  assert.deepEqual([...state.replicaSets.keys(), ...state.jobs.keys()], ['x/web-7d4b9c8f6d', 'x/backup-29000000', 'default/once']);
  assert.equal(state.objects().length, 4);
  state.delete([{ kind: 'Namespace', name: 'x', labels: {} }]);
  assert.deepEqual([...state.replicaSets.keys(), ...state.jobs.keys()], ['default/once']);
  assert.throws(() => state.apply([{ kind: 'ReplicaSet', namespace: 'nope', name: 'r' }]), /ReplicaSet nope\/r: metadata.namespace: "nope" does not exist/);
});

test('ReplicaSet and Job bad input: apiVersion, name, owner references', () => {
  assert.deepEqual(problemsOf(`
apiVersion: v1
kind: ReplicaSet
metadata: {name: Web, ownerReferences: [{kind: Deployment}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: j, ownerReferences: [{kind: CronJob, name: c, controller: true}, {kind: Other, name: o, controller: true}]}
`), [
    'apiVersion: "v1": must be apps/v1',
    'metadata.name: "Web": must be a lowercase RFC 1123 subdomain',
    'metadata.ownerReferences[0].name: is required (the owner\'s name)',
    'metadata.ownerReferences[1].controller: true: only one owner reference can be the controller; ownerReferences[0] is already',
  ]);
});
