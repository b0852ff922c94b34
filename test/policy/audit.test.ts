// Audit mode in the reference evaluator: what would be denied passes as `audit`, and audit-mode
// policies never change what enforcing policies decide.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import { parseManifestText, type ManifestProblem } from '../../src/datastore/manifest.js';
import { evaluate, formatDecision } from '../../src/policy/reference.js';

const PODS = `
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: c}]}
status: {podIP: 10.244.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: c}]}
status: {podIP: 10.244.0.2}
`;

function world(extra: string) {
  const problems: ManifestProblem[] = [];
  const objects = parseManifestText(`${PODS}---\n${extra}`, 't.yaml', problems);
  assert.deepEqual(problems, []);
  const cluster = new ClusterState(objects.map((o) => o.object));
  const placement = new Map([...cluster.pods.values()].map((p) => [`${p.namespace}/${p.name}`, p.ips]));
  return (src: string, dst: string, port = 80) => evaluate(cluster, placement, { src, dst, protocol: 'TCP', dstPort: port });
}

const AUDIT_DENY = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: would-deny, namespace: x, annotations: {policy.weir.dev/audit: "true"}}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 80}]}]
`;

test('an audit-mode policy reports what it would deny and lets it pass', () => {
  const ev = world(AUDIT_DENY);
  const denied = ev('10.244.0.1', '10.244.0.2', 81);
  assert.equal(denied.verdict, 'audit');
  assert.deepEqual(denied.ingress, { verdict: 'audit', reason: 'audit', pod: 'x/b', policies: ['x/would-deny'] });
  assert.match(formatDecision(denied.ingress), /^audit \(would be denied/);
  const allowed = ev('10.244.0.1', '10.244.0.2', 80);
  assert.equal(allowed.verdict, 'allow');
  assert.equal(allowed.ingress.reason, 'policy');
});

test('an enforcing policy in the same direction wins: audit policies neither open nor report there', () => {
  const ev = world(`${AUDIT_DENY}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: enforce, namespace: x}
spec: {podSelector: {matchLabels: {app: b}}}
`);
  // the audit policy would allow a -> b:80, but it is not enforced: the enforcing default deny decides
  const r = ev('10.244.0.1', '10.244.0.2', 80);
  assert.equal(r.verdict, 'deny');
  assert.deepEqual(r.ingress, { verdict: 'deny', reason: 'default-deny', pod: 'x/b', policies: ['x/enforce'] });
});

test('a pod or namespace in audit mode turns its denials into audits', () => {
  const deny = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {}}
`;
  assert.equal(world(deny)('10.244.0.1', '10.244.0.2').verdict, 'deny');
  const nsAudit = `
apiVersion: v1
kind: Namespace
metadata: {name: x, annotations: {policy.weir.dev/audit: "true"}}
---${deny}`;
  assert.equal(world(nsAudit)('10.244.0.1', '10.244.0.2').verdict, 'audit');
});

test('the audit annotation takes "true" or "false" only', () => {
  const problems: ManifestProblem[] = [];
  parseManifestText(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x, annotations: {policy.weir.dev/audit: "yes"}}
spec: {podSelector: {}}
`, 'bad.yaml', problems);
  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.field, 'metadata.annotations.policy.weir.dev/audit');
  assert.equal(problems[0]!.message, '"yes": must be "true" or "false"');
});
