import test from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import { parseManifestText, type ManifestProblem } from '../../src/datastore/manifest.js';
import { compilePolicy, EP_ISOLATED_EGRESS, EP_ISOLATED_INGRESS, EP_LOCAL, HOST_ENDPOINT_KEY, type CompiledDatapath, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { EndpointFlag, Identity } from '../../src/datapath/abi.js';
import type { Pod } from '../../src/datastore/objects.js';

const BASE = `
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: blue}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y}
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
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: y, labels: {app: a}}
spec: {containers: [{name: c}]}
status: {podIPs: [{ip: 10.244.0.3}, {ip: "fd00::3"}]}
`;

// Namespace y again, now in audit mode (a later document replaces the earlier one).
const BASE_AUDIT_NS = `
apiVersion: v1
kind: Namespace
metadata: {name: y, annotations: {policy.weir.dev/audit: "true"}}
`;

function build(extra: string, ids = new IdAllocator()): { out: CompiledDatapath; ids: IdAllocator; id: (ip: string) => number } {
  const problems: ManifestProblem[] = [];
  const objects = parseManifestText(BASE + '---\n' + extra, 't.yaml', problems);
  assert.deepEqual(problems, []);
  const cluster = new ClusterState(objects.map((o) => o.object));
  const placed: PlacedPod[] = [...cluster.pods.values()].map((pod: Pod, i) => ({ pod, ips: pod.ips, ifindex: 10 + i }));
  const out = compilePolicy(cluster, placed, ids);
  return { out, ids, id: (ip: string) => out.endpoints.get(ip)!.identity };
}

test('no policy: endpoints are local and not isolated, no policy entries', () => {
  const { out } = build('');
  assert.equal(out.endpoints.size, 4);
  for (const ep of out.endpoints.values()) assert.equal(ep.flags, EP_LOCAL);
  assert.equal(out.policy.size, 0);
  // both addresses of y/a are the same endpoint
  assert.equal(out.endpoints.get('10.244.0.3')!.id, out.endpoints.get('fd00::3')!.id);
});

test('default deny ingress isolates the selected pods for ingress only, with no keys', () => {
  const { out } = build(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {}}
`);
  assert.equal(out.endpoints.get('10.244.0.1')!.flags, EP_LOCAL | EP_ISOLATED_INGRESS);
  assert.equal(out.endpoints.get('10.244.0.2')!.flags, EP_LOCAL | EP_ISOLATED_INGRESS);
  assert.equal(out.endpoints.get('10.244.0.3')!.flags, EP_LOCAL);
  // Traffic with the node needs no key: the datapath allows it itself (reason ALLOW_HOST).
  assert.equal(out.policy.size, 0);
});

test('podSelector peers stay in the policy namespace; namespaceSelector picks namespaces; ports map to protocol numbers', () => {
  const { out, id, ids } = build(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{port: 80}, {protocol: UDP, port: 53}]
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]
  egress:
  - ports: [{protocol: TCP}]
`);
  const b = id('10.244.0.2');
  const entries = [...out.policy.values()].filter((e) => e.identity === b);
  const rule0 = ids.rule({ kind: 'NetworkPolicy', policy: 'x/allow', direction: 'Ingress', index: 0 });
  const rule1 = ids.rule({ kind: 'NetworkPolicy', policy: 'x/allow', direction: 'Ingress', index: 1 });
  const egress0 = ids.rule({ kind: 'NetworkPolicy', policy: 'x/allow', direction: 'Egress', index: 0 });
  const sort = (l: typeof entries) => l.map((e) => JSON.stringify(e)).sort();
  assert.deepEqual(sort(entries), sort([
    // x/a (same namespace, app=a) on TCP 80 and UDP 53; y/a (app=a but other namespace) is not a peer of rule 0
    { identity: b, peer: id('10.244.0.1'), direction: 0, proto: 6, port: 80, portBits: 16, ruleId: rule0, rank: 0 },
    { identity: b, peer: id('10.244.0.1'), direction: 0, proto: 17, port: 53, portBits: 16, ruleId: rule0, rank: 0 },
    // every pod of namespace y, every port
    { identity: b, peer: id('10.244.0.3'), direction: 0, proto: 0, port: 0, portBits: 0, ruleId: rule1, rank: 1 },
    // egress to anyone on any TCP port
    { identity: b, peer: Identity.ANY, direction: 1, proto: 6, port: 0, portBits: 0, ruleId: egress0, rank: 2 },
  ]));
  // isolation both ways, plus which kinds of keys exist so the datapath skips lookups that cannot hit
  assert.equal(out.endpoints.get('10.244.0.2')!.flags, EP_LOCAL | EP_ISOLATED_INGRESS | EP_ISOLATED_EGRESS
    | EndpointFlag.PEER_RULES_INGRESS | EndpointFlag.ANY_RULES_EGRESS);
  assert.equal(out.endpoints.get('10.244.0.1')!.flags, EP_LOCAL);
});

test('podSelector AND namespaceSelector in one peer is an intersection; separate peers are a union', () => {
  const { out, id } = build(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: and, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Ingress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: blue}}, podSelector: {matchLabels: {app: b}}}]
`);
  const peers = [...out.policy.values()].filter((e) => e.identity === id('10.244.0.1')).map((e) => e.peer);
  assert.deepEqual(peers, [id('10.244.0.2')]);
});

test('the same key from two rules names the first rule in the reference order; ids are stable across compiles', () => {
  const policy = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p1, namespace: x}
spec: {podSelector: {}, ingress: [{}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p2, namespace: x}
spec: {podSelector: {}, ingress: [{}]}
`;
  const first = build(policy);
  const r1 = first.ids.rule({ kind: 'NetworkPolicy', policy: 'x/p1', direction: 'Ingress', index: 0 });
  const any = [...first.out.policy.values()].filter((e) => e.peer === Identity.ANY);
  assert.equal(any.length, 2);
  for (const e of any) assert.equal(e.ruleId, r1);
  const again = build(policy, new IdAllocator(first.ids.toJSON()));
  assert.deepEqual([...again.out.policy.entries()], [...first.out.policy.entries()]);
});

test('a policy type without rules isolates but allows nothing (egress default deny)', () => {
  const { out } = build(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: y}
spec: {podSelector: {}, policyTypes: [Egress]}
`);
  assert.equal(out.endpoints.get('fd00::3')!.flags, EP_LOCAL | EP_ISOLATED_EGRESS);
  assert.equal(out.policy.size, 0);
});

test('rule order is the reference order (policy key, then index), not rule-id order, and general entries fold into specific ones', () => {
  const ids = new IdAllocator();
  // allocate ids in the reverse of the reference order
  const late = ids.rule({ kind: 'NetworkPolicy', policy: 'x/b-ports', direction: 'Ingress', index: 0 });
  const { out, id } = build(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-ports, namespace: x}
spec: {podSelector: {matchLabels: {app: b}}, ingress: [{ports: [{port: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-any, namespace: x}
spec: {podSelector: {matchLabels: {app: b}}, ingress: [{ports: [{protocol: TCP}]}]}
`, ids);
  const early = ids.rule({ kind: 'NetworkPolicy', policy: 'x/a-any', direction: 'Ingress', index: 0 });
  assert.ok(late < early);
  const b = id('10.244.0.2');
  const port80 = [...out.policy.values()].find((e) => e.identity === b && e.port === 80)!;
  // x/a-any sorts first and covers TCP 80: the more specific key carries it
  assert.equal(port80.ruleId, early);
});

test('port ranges become aligned power-of-two blocks', async () => {
  const { portBlocks } = await import('../../src/policy/compile.js');
  assert.deepEqual(portBlocks(80, 80), [{ port: 80, bits: 16 }]);
  assert.deepEqual(portBlocks(8080, 8083), [{ port: 8080, bits: 14 }]);
  assert.deepEqual(portBlocks(1, 65535).length, 16);
  const worst = portBlocks(1, 65534);
  assert.equal(worst.length, 30);
  let covered = 0;
  for (const b of worst) covered += 1 << (16 - b.bits);
  assert.equal(covered, 65534);
});

test('ipBlock with except: every listed prefix is a CIDR class; the block covers its cidr minus the excepts', () => {
  const { out, id } = build(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: blocks, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.244.0.0/16]}}, {ipBlock: {cidr: "::/0"}}]
`);
  const classes = [...out.cidrClasses.values()].map((c) => c.cidr).sort();
  // ::/0 contains the IPv4-mapped space, which is listed as an IPv4 class of its own
  assert.deepEqual(classes, ['0.0.0.0/0', '0:0:0:0:0:0:0:0/0', '10.0.0.0/8', '10.244.0.0/16'].sort());
  const peers = new Set([...out.policy.values()].filter((e) => e.identity === id('10.244.0.2')).map((e) => e.peer));
  const cls = (c: string) => out.cidrClasses.get(c)!.classId;
  assert.deepEqual(peers, new Set([cls('10.0.0.0/8'), cls('0:0:0:0:0:0:0:0/0')]));
  assert.ok(out.endpoints.get('10.244.0.2')!.flags & EndpointFlag.CIDR_RULES_INGRESS);
});

test('named ports resolve against the destination pod: its identity includes its named ports', () => {
  const extra = `
apiVersion: v1
kind: Pod
metadata: {name: web1, namespace: x, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.244.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: web2, namespace: x, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 9090}]}]}
status: {podIP: 10.244.0.12}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: named, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: http}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: out, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Egress]
  egress: [{ports: [{port: http}]}]
`;
  const { out, id } = build(extra);
  const w1 = id('10.244.0.11');
  const w2 = id('10.244.0.12');
  assert.notEqual(w1, w2, 'same labels, different named ports');
  const ports = (identity: number, direction: number) => [...out.policy.values()].filter((e) => e.identity === identity && e.direction === direction).map((e) => `${e.peer}:${e.port}`).sort();
  assert.deepEqual(ports(w1, 0), [`${Identity.ANY}:8080`]);
  assert.deepEqual(ports(w2, 0), [`${Identity.ANY}:9090`]);
  // egress to any peer on "http": per destination identity that has it
  assert.deepEqual(ports(id('10.244.0.1'), 1), [`${w1}:8080`, `${w2}:9090`].sort());
});

test('audit mode: audit-only isolation is flagged AUDIT; an enforcing policy in the same direction ignores audit policies', () => {
  const { out, id } = build(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: audit-deny, namespace: x, annotations: {policy.weir.dev/audit: "true"}}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  egress: [{ports: [{port: 53, protocol: UDP}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: enforce-b, namespace: x}
spec: {podSelector: {matchLabels: {app: b}}, policyTypes: [Ingress]}
`);
  const a = out.endpoints.get('10.244.0.1')!;
  const b = out.endpoints.get('10.244.0.2')!;
  // x/a: isolated both ways by the audit policy alone -> both directions audit; its egress rule compiled
  assert.equal(a.flags & (EP_ISOLATED_INGRESS | EP_ISOLATED_EGRESS | EndpointFlag.AUDIT_INGRESS | EndpointFlag.AUDIT_EGRESS),
    EP_ISOLATED_INGRESS | EP_ISOLATED_EGRESS | EndpointFlag.AUDIT_INGRESS | EndpointFlag.AUDIT_EGRESS);
  assert.ok([...out.policy.values()].some((e) => e.identity === id('10.244.0.1') && e.direction === 1 && e.port === 53));
  // x/b: ingress enforced by enforce-b (no audit there), egress audit-only
  assert.equal(b.flags & EndpointFlag.AUDIT_INGRESS, 0);
  assert.equal(b.flags & EndpointFlag.AUDIT_EGRESS, EndpointFlag.AUDIT_EGRESS);
  assert.ok(b.flags & EP_ISOLATED_INGRESS);
  // y/a is untouched
  assert.equal(out.endpoints.get('10.244.0.3')!.flags, EP_LOCAL);
});

test('audit mode on a namespace or a pod flags its endpoints both ways', () => {
  const { out } = build(BASE_AUDIT_NS);
  assert.equal(out.endpoints.get('10.244.0.3')!.flags & (EndpointFlag.AUDIT_INGRESS | EndpointFlag.AUDIT_EGRESS), EndpointFlag.AUDIT_INGRESS | EndpointFlag.AUDIT_EGRESS);
  assert.equal(out.endpoints.get('10.244.0.1')!.flags & (EndpointFlag.AUDIT_INGRESS | EndpointFlag.AUDIT_EGRESS), 0);
});

test('hostIps: the node\'s addresses are endpoints with identity HOST; without the option nothing changes', () => {
  const problems: ManifestProblem[] = [];
  const objects = parseManifestText(BASE, 't.yaml', problems);
  assert.deepEqual(problems, []);
  const cluster = new ClusterState(objects.map((o) => o.object));
  const placed: PlacedPod[] = [...cluster.pods.values()].map((pod: Pod, i) => ({ pod, ips: pod.ips, ifindex: 10 + i }));
  const plain = compilePolicy(cluster, placed, new IdAllocator());
  assert.equal(plain.endpoints.size, 4);
  // 10.244.0.1 is a pod's: a pod's address is never taken over by the host.
  const out = compilePolicy(cluster, placed, new IdAllocator(), { hostIps: ['10.243.0.1', 'fd00:10:243::1', '10.244.0.1'] });
  assert.equal(out.endpoints.size, 6);
  for (const ip of ['10.243.0.1', 'fd00:10:243::1']) {
    assert.deepEqual(out.endpoints.get(ip), { key: HOST_ENDPOINT_KEY, id: 0, identity: Identity.HOST, ifindex: 0, flags: 0 });
  }
  assert.equal(out.endpoints.get('10.244.0.1')!.key, 'x/a');
  assert.equal(out.policy.size, 0);
});
