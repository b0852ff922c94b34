// HostEndpoint and GlobalNetworkPolicy through the manifest reader and ClusterState. (The lab
// enforces them: test/lab/host-protection.test.ts.)
import test from 'node:test';
import assert from 'node:assert/strict';
import { checkDuplicates, parseManifestText, type LoadedObject, type ManifestProblem } from '../../src/datastore/manifest.js';
import { ClusterState, ClusterStateError } from '../../src/datastore/cluster.js';
import { objectKey } from '../../src/datastore/objects.js';

const HOST = `
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: node1-eth0, labels: {role: worker}}
spec: {node: node1, interfaceName: eth0, expectedIPs: [192.0.2.10]}
---
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: deny-ssh}
spec:
  order: 10
  selector: {matchLabels: {role: worker}}
  ingress: [{action: Deny, protocol: TCP, destination: {ports: [22]}}]
`;

function parse(text: string): { objects: LoadedObject[]; problems: ManifestProblem[] } {
  const problems: ManifestProblem[] = [];
  const objects = parseManifestText(text, 'f.yaml', problems);
  checkDuplicates(objects, problems);
  return { objects, problems };
}

test('HostEndpoint and GlobalNetworkPolicy are read from manifests, cluster-scoped, and held by ClusterState', () => {
  const { objects, problems } = parse(HOST);
  assert.deepEqual(problems, []);
  assert.deepEqual(objects.map((o) => `${o.object.kind} ${objectKey(o.object)}`), ['HostEndpoint node1-eth0', 'GlobalNetworkPolicy deny-ssh']);
  const cluster = new ClusterState(objects.map((o) => o.object));
  assert.equal(cluster.hostEndpoints.get('node1-eth0')!.interfaceName, 'eth0');
  assert.equal(cluster.globalPolicies.get('deny-ssh')!.order, 10);
  assert.deepEqual(cluster.objects().map((o) => o.kind), ['HostEndpoint', 'GlobalNetworkPolicy']);
  const { deleted, missing } = cluster.delete([objects[1]!.object]);
  assert.deepEqual(deleted, ['GlobalNetworkPolicy deny-ssh']);
  assert.deepEqual(missing, []);
  assert.equal(cluster.globalPolicies.size, 0);
  assert.equal(cluster.hostEndpoints.size, 1);
});

test('host objects: errors with object and field path; a namespace is refused; duplicates name both documents', () => {
  const { problems } = parse(`
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  selector: {}
  ingress: [{action: Drop}]
---
${HOST}
---
${HOST}`);
  const lines = problems.map((p) => `${p.document}: ${p.object}: ${p.field}: ${p.message}`);
  assert.ok(lines.some((l) => l.startsWith('1: GlobalNetworkPolicy bad: metadata.namespace: "x": must not be set')), lines.join('\n'));
  assert.ok(lines.some((l) => l.startsWith('1: GlobalNetworkPolicy bad: spec.ingress[0].action: "Drop"')), lines.join('\n'));
  assert.ok(lines.some((l) => /GlobalNetworkPolicy deny-ssh: metadata\.name: "deny-ssh": duplicate: .*also defined in f\.yaml: document 3/.test(l)), lines.join('\n'));
  assert.ok(lines.some((l) => /HostEndpoint node1-eth0: metadata\.name: "node1-eth0": duplicate/.test(l)), lines.join('\n'));
});

test('two HostEndpoints for the same node and interface are refused, naming both; nothing changes', () => {
  const cluster = new ClusterState(parse(HOST).objects.map((o) => o.object));
  const other = parse(HOST.replace('name: node1-eth0', 'name: z-other')).objects.map((o) => o.object).filter((o) => o.kind === 'HostEndpoint');
  assert.throws(() => cluster.apply(other), (e: unknown) => {
    assert.ok(e instanceof ClusterStateError);
    assert.match(e.message, /HostEndpoint z-other: spec\.interfaceName: "eth0": node node1 interface eth0 is already covered by HostEndpoint node1-eth0/);
    return true;
  });
  assert.deepEqual([...cluster.hostEndpoints.keys()], ['node1-eth0']);
  // the same node with "*" and with another interface is fine
  const star = parse(HOST.replace('name: node1-eth0', 'name: all').replace('interfaceName: eth0', 'interfaceName: "*"')).objects.map((o) => o.object);
  cluster.apply(star);
  assert.deepEqual([...cluster.hostEndpoints.keys()].sort(), ['all', 'node1-eth0']);
});
