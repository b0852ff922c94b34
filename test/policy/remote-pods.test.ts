// compilePolicy's remotePods: pods of other nodes are peers (identity at their addresses, no
// LOCAL flag, ifindex 0) and never subjects (no policy keys, no flags, no global tier lists).
import test from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import { parseManifestText, type ManifestProblem } from '../../src/datastore/manifest.js';
import { compilePolicy, EP_LOCAL, type CompiledDatapath, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { EndpointFlag, Identity, FIRST_CIDR_CLASS } from '../../src/datapath/abi.js';
import type { Pod } from '../../src/datastore/objects.js';
import { failsafesFrom } from '../../src/policy/failsafe.js';

// x/web runs here; x/client and x/other on another node; x/db on another node, with a named port.
const BASE = `
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
spec: {nodeName: here, containers: [{name: c}]}
status: {podIP: 10.60.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: x, labels: {app: client}}
spec: {nodeName: there, containers: [{name: c}]}
status: {podIPs: [{ip: 10.60.1.1}, {ip: "fd60::1:1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: x, labels: {app: other}}
spec: {nodeName: there, containers: [{name: c}]}
status: {podIP: 10.60.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: x, labels: {app: db}}
spec: {nodeName: there, containers: [{name: c, ports: [{name: sql, containerPort: 5432}]}]}
status: {podIP: 10.60.1.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 80}]}]
  egress:
  - to: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: sql}]
  - to: [{ipBlock: {cidr: 10.60.1.0/24}}]
    ports: [{port: sql}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client, namespace: x}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {}}]}]
`;

function cluster(yaml: string): ClusterState {
  const problems: ManifestProblem[] = [];
  const objects = parseManifestText(yaml, 't.yaml', problems);
  assert.deepEqual(problems, []);
  return new ClusterState(objects.map((o) => o.object));
}

function compileHere(c: ClusterState, ids = new IdAllocator(), host = false): CompiledDatapath {
  const placed: PlacedPod[] = [];
  const remote: Pod[] = [];
  for (const pod of c.pods.values()) {
    if (pod.nodeName === 'here') placed.push({ pod, ips: pod.ips, ifindex: 7 });
    else remote.push(pod);
  }
  return compilePolicy(c, placed, ids, {
    remotePods: remote,
    ...(host ? { host: { node: 'here', hostEndpoints: [], globalPolicies: [...c.globalPolicies.values()], failsafes: failsafesFrom({}), interfaces: new Map() } } : {}),
  });
}

test('remote pods: an endpoint entry per address with their identity, no LOCAL, ifindex 0, no flags', () => {
  const out = compileHere(cluster(BASE));
  const web = out.endpoints.get('10.60.0.1')!;
  assert.equal(web.flags & EP_LOCAL, EP_LOCAL);
  assert.equal(web.ifindex, 7);
  for (const ip of ['10.60.1.1', 'fd60::1:1', '10.60.1.2', '10.60.1.3']) {
    const e = out.endpoints.get(ip);
    assert.ok(e, `${ip} has an endpoint entry`);
    assert.equal(e.flags, 0, `${ip}: no LOCAL, isolation or audit flags`);
    assert.equal(e.ifindex, 0);
    assert.ok(e.identity >= Identity.FIRST_DYNAMIC && e.identity < FIRST_CIDR_CLASS);
    assert.equal(e.selIdentity, e.identity);
    assert.notEqual(e.id, 0);
  }
  // both addresses of x/client are one endpoint; x/client is isolated by its own policy on its
  // own node, not here
  assert.equal(out.endpoints.get('10.60.1.1')!.id, out.endpoints.get('fd60::1:1')!.id);
  assert.equal(out.endpoints.get('10.60.1.1')!.key, 'x/client');
});

test('remote pods: peers of local subjects, never subjects', () => {
  const out = compileHere(cluster(BASE));
  const id = (ip: string) => out.endpoints.get(ip)!.identity;
  const web = id('10.60.0.1');
  const client = id('10.60.1.1');
  const db = id('10.60.1.3');
  const subjects = new Set([...out.policy.values()].map((e) => e.identity));
  assert.deepEqual([...subjects], [web], 'only the local pod is a subject (x/client\'s own policy compiles to nothing here)');
  // ingress from the remote client on 80
  assert.ok([...out.policy.values()].some((e) => e.identity === web && e.direction === 0 && e.peer === client && e.proto === 6 && e.port === 80 && e.portBits === 16));
  // the other remote pod is no peer of that rule
  assert.ok(![...out.policy.values()].some((e) => e.peer === id('10.60.1.2')));
  // egress named port resolved against the remote db pod: 5432
  assert.ok([...out.policy.values()].some((e) => e.identity === web && e.direction === 1 && e.peer === db && e.proto === 6 && e.port === 5432 && e.portBits === 16));
  // egress named port with an ipBlock peer: the remote db address gets a /32 class and a key
  const cls = out.cidrClasses.get('10.60.1.3/32');
  assert.ok(cls, 'the remote db address is a class of its own');
  assert.ok([...out.policy.values()].some((e) => e.identity === web && e.direction === 1 && e.peer === cls.classId && e.port === 5432));
  // identities of remote pods are known (display)
  assert.deepEqual(out.identities.get(client)?.labels, { app: 'client' });
});

test('remote pods: an identity shared with a local pod stays a subject', () => {
  const c = cluster(BASE + `
---
apiVersion: v1
kind: Pod
metadata: {name: web2, namespace: x, labels: {app: web}}
spec: {nodeName: there, containers: [{name: c}]}
status: {podIP: 10.60.1.9}
`);
  const out = compileHere(c);
  const e = out.endpoints.get('10.60.1.9')!;
  assert.equal(e.identity, out.endpoints.get('10.60.0.1')!.identity);
  assert.equal(e.flags, 0, 'the remote pod\'s entry still has no flags');
  assert.equal(e.ifindex, 0);
  // and the local one keeps its flags
  assert.ok((out.endpoints.get('10.60.0.1')!.flags & EndpointFlag.ISOLATED_INGRESS) !== 0);
});

test('remote pods: a pod listed both placed and remote is placed', () => {
  const c = cluster(BASE);
  const pods = [...c.pods.values()];
  const placed = pods.filter((p) => p.name === 'web').map((pod) => ({ pod, ips: pod.ips, ifindex: 7 }));
  const out = compilePolicy(c, placed, new IdAllocator(), { remotePods: pods });
  assert.equal(out.endpoints.get('10.60.0.1')!.flags & EP_LOCAL, EP_LOCAL);
  assert.equal(out.endpoints.get('10.60.0.1')!.ifindex, 7);
});

test('remote pods: the node\'s own addresses stay HOST', () => {
  const c = cluster(BASE);
  const pods = [...c.pods.values()];
  const placed = pods.filter((p) => p.name === 'web').map((pod) => ({ pod, ips: pod.ips, ifindex: 7 }));
  const out = compilePolicy(c, placed, new IdAllocator(), { remotePods: pods.filter((p) => p.name !== 'web'), hostIps: ['10.60.1.2'] });
  assert.equal(out.endpoints.get('10.60.1.2')!.identity, Identity.HOST);
});

test('remote pods: global selectors see them as peers; they get no tier lists', () => {
  const c = cluster(BASE + `
---
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: all}
spec:
  selector: {}
  ingress: [{action: Allow, source: {selector: {matchLabels: {app: client}}}}]
`);
  const out = compileHere(c, new IdAllocator(), true);
  const client = out.endpoints.get('10.60.1.1')!.identity;
  const web = out.endpoints.get('10.60.0.1')!.identity;
  const tierSubjects = new Set([...out.globalTiers.values()].map((t) => t.identity));
  assert.ok(tierSubjects.has(web), 'the local pod has its list');
  for (const ip of ['10.60.1.1', '10.60.1.2', '10.60.1.3']) assert.ok(!tierSubjects.has(out.endpoints.get(ip)!.identity), `${ip}: no list`);
  assert.ok([...out.globalSets.values()].some((s) => s.member === client), 'the remote client is a member of the selector set');
  assert.equal(out.endpoints.get('10.60.1.1')!.flags, 0);
});
