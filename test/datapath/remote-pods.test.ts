// Pods of other nodes in the real programs (BPF_PROG_TEST_RUN): compiled with remotePods as the
// node agent compiles them, a remote pod's address carries its identity, so a podSelector rule
// that selects it admits it at a local pod's ingress (TO_POD) and lets a local pod reach it at
// egress (FROM_POD), and one that does not select it denies it. Its entry is no local endpoint:
// no local pod may send from its address, and traffic to it is not policed at TO_POD here.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import { parseManifestText, type ManifestProblem } from '../../src/datastore/manifest.js';
import { compilePolicy, type CompiledDatapath, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import * as abi from '../../src/datapath/abi.js';
import type { Pod } from '../../src/datastore/objects.js';
import { TestDatapath, requireBpf } from '../helpers/datapath.js';
import { packet } from '../helpers/packets.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

// here: x/web (10.61.0.1). there: x/client (matches), x/stranger (does not), x/db (named port).
const MANIFESTS = `
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
spec: {nodeName: here, containers: [{name: c}]}
status: {podIPs: [{ip: 10.61.0.1}, {ip: "fd61::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: x, labels: {app: client}}
spec: {nodeName: there, containers: [{name: c}]}
status: {podIPs: [{ip: 10.61.1.1}, {ip: "fd61::1:1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: stranger, namespace: x, labels: {app: stranger}}
spec: {nodeName: there, containers: [{name: c}]}
status: {podIPs: [{ip: 10.61.1.2}, {ip: "fd61::1:2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: x, labels: {app: db}}
spec: {nodeName: there, containers: [{name: c, ports: [{name: sql, containerPort: 5432}]}]}
status: {podIPs: [{ip: 10.61.1.3}, {ip: "fd61::1:3"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 80}]}]
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: sql}]}]
`;

function compiled(labelsOfClient = 'client'): { out: CompiledDatapath; ids: IdAllocator } {
  const problems: ManifestProblem[] = [];
  const objects = parseManifestText(MANIFESTS.replace('labels: {app: client}}', `labels: {app: ${labelsOfClient}}}`), 't.yaml', problems);
  assert.deepEqual(problems, []);
  const cluster = new ClusterState(objects.map((o) => o.object));
  const placed: PlacedPod[] = [];
  const remote: Pod[] = [];
  for (const pod of cluster.pods.values()) {
    if (pod.nodeName === 'here') placed.push({ pod, ips: pod.ips, ifindex: 0 }); // test runs on lo
    else remote.push(pod);
  }
  const ids = new IdAllocator();
  return { out: compilePolicy(cluster, placed, ids, { remotePods: remote }), ids };
}

let sport = 20000;
const tcp = (src: string, dst: string, dport: number): Buffer => packet({ src, dst, l4: { proto: 'tcp', sport: sport++, dport, flags: 0x02 } });

for (const family of [4, 6] as const) {
  const a = family === 4
    ? { web: '10.61.0.1', client: '10.61.1.1', stranger: '10.61.1.2', db: '10.61.1.3' }
    : { web: 'fd61::1', client: 'fd61::1:1', stranger: 'fd61::1:2', db: 'fd61::1:3' };

  test(`IPv${family}: a remote pod a podSelector selects is admitted at ingress; one it does not select is denied`, async () => {
    requireBpf();
    const dp = await TestDatapath.load();
    try {
      const { out, ids } = compiled();
      dp.apply(out);
      assert.equal(dp.run('toPod', tcp(a.client, a.web, 80)), TC_ACT_OK, 'x/client (remote, selected) reaches web:80');
      const recs = TestDatapath.flows(dp.drain(), 'FLOW_START');
      assert.equal(recs.length, 1);
      assert.equal(recs[0]!.srcIdentity, out.endpoints.get(a.client)!.identity, 'the record names the remote pod\'s identity');
      assert.equal(abi.reasonName(recs[0]!.reason), 'ALLOW_POLICY');
      assert.deepEqual(ids.ruleInfo(recs[0]!.ingressRuleId), { kind: 'NetworkPolicy', policy: 'x/web', direction: 'Ingress', index: 0 });
      assert.equal(dp.run('toPod', tcp(a.client, a.web, 81)), TC_ACT_SHOT, 'not on another port');
      assert.equal(dp.run('toPod', tcp(a.stranger, a.web, 80)), TC_ACT_SHOT, 'x/stranger (remote, not selected) is denied');
      const deny = TestDatapath.flows(dp.drain(), 'DENY').at(-1)!;
      assert.equal(abi.reasonName(deny.reason), 'DENY_DEFAULT');
      assert.equal(deny.srcIdentity, out.endpoints.get(a.stranger)!.identity);
    } finally {
      dp.close();
    }
  });

  test(`IPv${family}: the same remote pod with labels the rule does not select is denied`, async () => {
    requireBpf();
    const dp = await TestDatapath.load();
    try {
      dp.apply(compiled('other').out);
      assert.equal(dp.run('toPod', tcp(a.client, a.web, 80)), TC_ACT_SHOT);
      // and allowed once its labels match again (a recompile of the changed view)
      dp.apply(compiled('client').out);
      assert.equal(dp.run('toPod', tcp(a.client, a.web, 80)), TC_ACT_OK);
    } finally {
      dp.close();
    }
  });

  test(`IPv${family}: egress to a remote pod: a podSelector peer with a named port resolved against it`, async () => {
    requireBpf();
    const dp = await TestDatapath.load();
    try {
      const { out } = compiled();
      dp.apply(out);
      assert.equal(dp.run('fromPod', tcp(a.web, a.db, 5432)), TC_ACT_OK, 'web reaches remote db on its "sql" port');
      const rec = TestDatapath.flows(dp.drain(), 'FLOW_START')[0]!;
      assert.equal(rec.dstIdentity, out.endpoints.get(a.db)!.identity);
      assert.equal(dp.run('fromPod', tcp(a.web, a.db, 5433)), TC_ACT_SHOT, 'not another port');
      assert.equal(dp.run('fromPod', tcp(a.web, a.stranger, 5432)), TC_ACT_SHOT, 'not a remote pod the rule does not select');
      // the packet leaves towards the remote pod: no TO_POD here polices it
      const unpoliced = dp.stat('ALLOW_UNPOLICED').packets;
      assert.equal(dp.run('toPod', tcp(a.web, a.db, 5432)), TC_ACT_OK);
      assert.equal(dp.stat('ALLOW_UNPOLICED').packets - unpoliced, 1n, 'a remote endpoint is not policed as a local one');
    } finally {
      dp.close();
    }
  });

  test(`IPv${family}: a local pod sending from a remote pod's address is spoofing`, async () => {
    requireBpf();
    const dp = await TestDatapath.load();
    try {
      dp.apply(compiled().out);
      const before = dp.stat('DROP_SPOOFED').packets;
      assert.equal(dp.run('fromPod', tcp(a.client, a.web, 80)), TC_ACT_SHOT);
      assert.equal(dp.stat('DROP_SPOOFED').packets - before, 1n);
    } finally {
      dp.close();
    }
  });
}
