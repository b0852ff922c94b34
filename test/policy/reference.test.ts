// The reference evaluator, rule by rule, and the upstream Kubernetes network-policy e2e truth
// tables (namespaces x, y, z × pods a, b, c; ports 80/81; TCP, UDP, SCTP) rebuilt from the
// upstream scenarios. Matrices read like `weir lab probe` prints them: rows from, columns to.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import { parseManifestText, type ManifestProblem } from '../../src/datastore/manifest.js';
import type { KubeObject, L4Protocol, NetworkPolicy, Pod } from '../../src/datastore/objects.js';
import { evaluate, formatDecision, type Evaluation, type Packet, type PacketProtocol } from '../../src/policy/reference.js';
import { formatProbeTable } from '../../src/lab/probe.js';

const NAMESPACES = ['x', 'y', 'z'];
const PODS = ['a', 'b', 'c'];
const NODE_V4 = '10.0.255.1';
const NODE_V6 = 'fd00::ff01';
const OUTSIDE = '192.0.2.7';

const v4 = (key: string): string => `10.0.${NAMESPACES.indexOf(key.split('/')[0]!)}.${PODS.indexOf(key.split('/')[1]!) + 1}`;
const v6 = (key: string): string => `fd00::${NAMESPACES.indexOf(key.split('/')[0]!)}:${PODS.indexOf(key.split('/')[1]!) + 1}`;
const ALL = NAMESPACES.flatMap((ns) => PODS.map((p) => `${ns}/${p}`));

/** The upstream model: namespace label ns=<name>, pod label pod=<name>, every pod serving 80 and
 * 81 on TCP, UDP and SCTP with ports named serve-<port>-<protocol>. */
function modelObjects(): KubeObject[] {
  const out: KubeObject[] = [];
  for (const ns of NAMESPACES) {
    out.push({ kind: 'Namespace', name: ns, labels: { ns, 'kubernetes.io/metadata.name': ns } });
    for (const p of PODS) {
      const key = `${ns}/${p}`;
      out.push({
        kind: 'Pod', namespace: ns, name: p, labels: { pod: p }, ips: [v4(key), v6(key)],
        ports: [80, 81].flatMap((port) => (['TCP', 'UDP', 'SCTP'] as const).map((protocol) => ({ port, protocol, name: `serve-${port}-${protocol.toLowerCase()}` }))),
      } satisfies Pod);
    }
  }
  return out;
}

function policies(yaml: string): NetworkPolicy[] {
  const problems: ManifestProblem[] = [];
  const objs = parseManifestText(yaml, 'policies.yaml', problems);
  assert.deepEqual(problems, []);
  return objs.map((o) => o.object as NetworkPolicy);
}

function world(yaml = ''): { cluster: ClusterState; eval: (p: Packet) => Evaluation } {
  const cluster = new ClusterState([...modelObjects(), ...policies(yaml)]);
  const placement = new Map([...cluster.pods.values()].map((p) => [`${p.namespace}/${p.name}`, p.ips]));
  return { cluster, eval: (p) => evaluate(cluster, placement, p, { nodeIps: [NODE_V4, NODE_V6] }) };
}

type Pattern = string; // 'x/a', 'x/*', '*/a', '*'
const matches = (pattern: Pattern, key: string): boolean => {
  if (pattern === '*') return true;
  const [ns, pod] = pattern.split('/');
  const [kns, kpod] = key.split('/');
  return (ns === '*' || ns === kns) && (pod === '*' || pod === kpod);
};

/** Like upstream's Reachability: a default, then overrides in order; loopback is always allowed. */
function expected(all: boolean, ...rules: [from: Pattern, to: Pattern, ok: boolean][]): Map<string, boolean> {
  const m = new Map<string, boolean>();
  for (const from of ALL) {
    for (const to of ALL) {
      let ok = all;
      for (const [f, t, v] of rules) if (matches(f, from) && matches(t, to)) ok = v;
      m.set(`${from}>${to}`, from === to ? true : ok);
    }
  }
  return m;
}

function table(port: number, protocol: L4Protocol, m: Map<string, boolean>): string {
  return formatProbeTable({ port, protocol, results: [...m].map(([k, connected]) => ({ from: k.split('>')[0]!, to: k.split('>')[1]!, connected })) });
}

function assertMatrix(yaml: string, port: number, protocol: L4Protocol, want: Map<string, boolean>, family: 4 | 6 = 4): void {
  const w = world(yaml);
  const got = new Map<string, boolean>();
  for (const from of ALL) {
    for (const to of ALL) {
      const ip = family === 4 ? v4 : v6;
      got.set(`${from}>${to}`, w.eval({ src: ip(from), dst: ip(to), protocol, dstPort: port }).verdict !== 'deny');
    }
  }
  assert.equal(table(port, protocol, got), table(port, protocol, want), `reachability on ${protocol}/${port} (IPv${family})`);
}

const np = (ns: string, name: string, spec: string) => `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ${name}, namespace: ${ns}}
spec:
${spec.split('\n').map((l) => `  ${l}`).join('\n')}
---`;

// ---- the upstream e2e scenarios ----

test('e2e: no policies: everything connects', () => {
  for (const protocol of ['TCP', 'UDP', 'SCTP'] as const) assertMatrix('', 80, protocol, expected(true));
});

test('e2e: default-deny-ingress in x', () => {
  const yaml = np('x', 'deny-ingress', 'podSelector: {}\npolicyTypes: [Ingress]');
  for (const protocol of ['TCP', 'UDP', 'SCTP'] as const) assertMatrix(yaml, 80, protocol, expected(true, ['*', 'x/*', false]));
  assertMatrix(yaml, 81, 'TCP', expected(true, ['*', 'x/*', false]), 6);
});

test('e2e: default-deny-all (ingress and egress) in x', () => {
  const yaml = np('x', 'deny-all', 'podSelector: {}\npolicyTypes: [Ingress, Egress]');
  assertMatrix(yaml, 80, 'TCP', expected(true, ['*', 'x/*', false], ['x/*', '*', false]));
});

test('e2e: default-deny-egress in x', () => {
  assertMatrix(np('x', 'deny-egress', 'podSelector: {}\npolicyTypes: [Egress]'), 80, 'UDP', expected(true, ['x/*', '*', false]));
});

test('e2e: allow-all ingress after default deny', () => {
  const yaml = np('x', 'deny', 'podSelector: {}') + np('x', 'allow-all', 'podSelector: {}\ningress: [{}]');
  assertMatrix(yaml, 80, 'TCP', expected(true));
});

test('e2e: allow ingress from the same namespace', () => {
  const yaml = np('x', 'allow-same-ns', 'podSelector: {}\ningress: [{from: [{podSelector: {}}]}]');
  assertMatrix(yaml, 80, 'TCP', expected(true, ['*', 'x/*', false], ['x/*', 'x/*', true]));
});

test('e2e: x/a allows ingress only from x/b (PodSelector in the server namespace)', () => {
  const yaml = np('x', 'allow-b', 'podSelector: {matchLabels: {pod: a}}\ningress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]');
  assertMatrix(yaml, 80, 'TCP', expected(true, ['*', 'x/a', false], ['x/b', 'x/a', true]));
});

test('e2e: x/a allows ingress from namespaces labelled ns=y', () => {
  const yaml = np('x', 'allow-y', 'podSelector: {matchLabels: {pod: a}}\ningress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]');
  assertMatrix(yaml, 80, 'TCP', expected(true, ['*', 'x/a', false], ['y/*', 'x/a', true]));
});

test('e2e: namespaceSelector with matchExpressions NotIn', () => {
  const yaml = np('x', 'not-y', 'podSelector: {matchLabels: {pod: a}}\ningress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [y]}]}}]}]');
  assertMatrix(yaml, 80, 'TCP', expected(true, ['y/*', 'x/a', false]));
});

test('e2e: podSelector AND namespaceSelector in one peer', () => {
  const yaml = np('x', 'and', `podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}, podSelector: {matchLabels: {pod: b}}}]}]`);
  assertMatrix(yaml, 80, 'TCP', expected(true, ['*', 'x/a', false], ['y/b', 'x/a', true], ['z/b', 'x/a', true]));
});

test('e2e: podSelector OR namespaceSelector as two peers', () => {
  const yaml = np('x', 'or', `podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}}, {podSelector: {matchLabels: {pod: b}}}]}]`);
  assertMatrix(yaml, 80, 'TCP', expected(true, ['x/c', 'x/a', false]));
});

test('e2e: matchExpressions on pods (In, Exists, DoesNotExist)', () => {
  const yaml = np('x', 'expr', `podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}
ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: Exists}]}, podSelector: {matchExpressions: [{key: app, operator: DoesNotExist}, {key: pod, operator: In, values: [c]}]}}]}]`);
  assertMatrix(yaml, 80, 'TCP', expected(true, ['*', 'x/a', false], ['*', 'x/b', false], ['*/c', 'x/a', true], ['*/c', 'x/b', true]));
});

test('e2e: ingress on a specific port only', () => {
  const yaml = np('x', 'port-81', 'podSelector: {matchLabels: {pod: a}}\ningress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}], ports: [{port: 81}]}]');
  assertMatrix(yaml, 80, 'TCP', expected(true, ['*', 'x/a', false]));
  assertMatrix(yaml, 81, 'TCP', expected(true, ['*', 'x/a', false], ['*/b', 'x/a', true]));
  assertMatrix(yaml, 81, 'UDP', expected(true, ['*', 'x/a', false]));
});

test('e2e: stacked policies with overlapping podSelectors are a union', () => {
  const yaml = np('x', 'p80', 'podSelector: {matchLabels: {pod: a}}\ningress: [{from: [{namespaceSelector: {}}], ports: [{port: 80}]}]')
    + np('x', 'p81', 'podSelector: {}\ningress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 81}]}]');
  assertMatrix(yaml, 80, 'TCP', expected(true, ['*', 'x/*', false], ['*', 'x/a', true]));
  assertMatrix(yaml, 81, 'TCP', expected(true, ['*', 'x/*', false], ['y/*', 'x/*', true]));
});

test('e2e: ingress allowing any port of one protocol', () => {
  const yaml = np('x', 'udp', 'podSelector: {matchLabels: {pod: a}}\ningress: [{ports: [{protocol: UDP}]}]');
  assertMatrix(yaml, 80, 'UDP', expected(true));
  assertMatrix(yaml, 81, 'SCTP', expected(true, ['*', 'x/a', false]));
  assertMatrix(yaml, 81, 'TCP', expected(true, ['*', 'x/a', false]));
});

test('e2e: ingress on one named port (name and protocol must match)', () => {
  const yaml = np('x', 'named', 'podSelector: {}\ningress: [{ports: [{port: serve-81-tcp}, {port: serve-80-udp, protocol: UDP}, {port: serve-80-sctp}]}]');
  assertMatrix(yaml, 81, 'TCP', expected(true));
  assertMatrix(yaml, 80, 'TCP', expected(true, ['*', 'x/*', false]));
  assertMatrix(yaml, 80, 'UDP', expected(true));
  assertMatrix(yaml, 81, 'UDP', expected(true, ['*', 'x/*', false]));
  // serve-80-sctp with the default protocol TCP names no TCP port: it matches nothing
  assertMatrix(yaml, 80, 'SCTP', expected(true, ['*', 'x/*', false]));
});

test('e2e: egress on one named port, resolved against the destination pod', () => {
  const yaml = np('x', 'egress-named', 'podSelector: {}\npolicyTypes: [Egress]\negress: [{ports: [{port: serve-80-tcp}]}]');
  assertMatrix(yaml, 80, 'TCP', expected(true));
  assertMatrix(yaml, 81, 'TCP', expected(true, ['x/*', '*', false]));
});

test('e2e: port ranges with endPort, ingress and egress', () => {
  const ingress = np('x', 'range', 'podSelector: {matchLabels: {pod: a}}\ningress: [{ports: [{port: 80, endPort: 81, protocol: SCTP}]}]');
  assertMatrix(ingress, 80, 'SCTP', expected(true));
  assertMatrix(ingress, 81, 'SCTP', expected(true));
  assertMatrix(ingress, 82, 'SCTP', expected(true, ['*', 'x/a', false]));
  assertMatrix(ingress, 80, 'TCP', expected(true, ['*', 'x/a', false]));
  const egress = np('y', 'range', 'podSelector: {}\npolicyTypes: [Egress]\negress: [{to: [{namespaceSelector: {matchLabels: {ns: x}}}], ports: [{port: 79, endPort: 80}]}]');
  assertMatrix(egress, 79, 'TCP', expected(true, ['y/*', '*', false], ['y/*', 'x/*', true]));
  assertMatrix(egress, 80, 'TCP', expected(true, ['y/*', '*', false], ['y/*', 'x/*', true]));
  assertMatrix(egress, 81, 'TCP', expected(true, ['y/*', '*', false]));
});

test('e2e: egress to a CIDR with an except matches pod addresses', () => {
  const yaml = np('x', 'cidr', `podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [${v4('x/b')}/32, 10.0.2.0/24]}}]}]`);
  assertMatrix(yaml, 80, 'TCP', expected(true, ['x/a', 'x/b', false], ['x/a', 'z/*', false]));
  // the ipBlock is IPv4: over IPv6, x/a reaches nobody
  assertMatrix(yaml, 80, 'TCP', expected(true, ['x/a', '*', false]), 6);
  const v6yaml = np('x', 'cidr6', `podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress: [{to: [{ipBlock: {cidr: "fd00::1:0/112"}}]}]`); // host bits set: means fd00::1:0/112, namespace y
  assertMatrix(v6yaml, 80, 'TCP', expected(true, ['x/a', '*', false], ['x/a', 'y/*', true]), 6);
});

test('e2e: ingress from a CIDR', () => {
  const yaml = np('x', 'from-cidr', `podSelector: {matchLabels: {pod: a}}
ingress: [{from: [{ipBlock: {cidr: 10.0.1.0/24}}]}]`);
  assertMatrix(yaml, 80, 'TCP', expected(true, ['*', 'x/a', false], ['y/*', 'x/a', true]));
});

test('e2e: egress to pods of another namespace by PodSelector and NamespaceSelector', () => {
  const yaml = np('x', 'to-y-a', 'podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]\negress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: a}}}]}]');
  assertMatrix(yaml, 80, 'TCP', expected(true, ['x/a', '*', false], ['x/a', 'y/a', true]));
});

test('e2e: pod-to-pod needs the sender egress AND the receiver ingress', () => {
  const yaml = np('y', 'egress-only-z', 'podSelector: {}\negress: [{to: [{namespaceSelector: {matchLabels: {ns: z}}}]}]')
    + np('x', 'ingress-from-y', 'podSelector: {}\ningress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]');
  // y may send only to z; x accepts only from y: so nobody reaches x, and y reaches only z. And
  // without policyTypes a policy with egress rules is Ingress too (API defaulting): y is
  // ingress-isolated with no ingress rule, so nobody reaches y either.
  assertMatrix(yaml, 80, 'TCP', expected(true, ['*', 'x/*', false], ['*', 'y/*', false], ['y/*', '*', false], ['y/*', 'z/*', true]));
});

test('e2e: policyTypes [Egress] ignores ingress rules and leaves ingress open', () => {
  const yaml = np('x', 'egress-type', 'podSelector: {}\npolicyTypes: [Egress]\ningress: [{from: [{podSelector: {matchLabels: {pod: none}}}]}]\negress: [{}]');
  assertMatrix(yaml, 80, 'TCP', expected(true));
});

// ---- unit rules and attribution ----

test('ICMP matches only rules without ports; node and self are always allowed', () => {
  const yaml = np('x', 'ports', 'podSelector: {matchLabels: {pod: a}}\ningress: [{ports: [{protocol: TCP}]}]')
    + np('x', 'any', 'podSelector: {matchLabels: {pod: b}}\ningress: [{from: [{namespaceSelector: {}}]}]')
    + np('x', 'deny-c', 'podSelector: {matchLabels: {pod: c}}\npolicyTypes: [Ingress, Egress]');
  const w = world(yaml);
  const icmp = (src: string, dst: string, protocol: PacketProtocol = 'ICMP') => w.eval({ src, dst, protocol }).verdict;
  assert.equal(icmp(v4('y/a'), v4('x/a')), 'deny', 'a ports rule never matches ICMP');
  assert.equal(icmp(v4('y/a'), v4('x/b')), 'allow', 'a rule without ports matches ICMP');
  assert.equal(icmp(v6('y/a'), v6('x/b'), 'ICMPv6'), 'allow');
  assert.equal(icmp(v4('x/c'), v4('x/c')), 'allow', 'a pod to itself, even fully isolated');
  assert.equal(icmp(NODE_V4, v4('x/c')), 'allow', 'the node to a pod');
  assert.equal(icmp(v6('x/c'), NODE_V6, 'ICMPv6'), 'allow', 'a pod to its node');
  assert.equal(icmp(OUTSIDE, v4('x/c')), 'deny', 'an outside address is no node');
  assert.equal(icmp(v4('x/c'), OUTSIDE), 'deny');
  const e = w.eval({ src: v4('x/c'), dst: NODE_V4, protocol: 'TCP', dstPort: 10250 });
  assert.deepEqual(e.egress, { verdict: 'allow', reason: 'node', pod: 'x/c' });
  assert.deepEqual(e.ingress, { verdict: 'allow', reason: 'not-applicable' });
});

test('sides that are not local pods are not policed; named ports never match a non-pod destination', () => {
  const yaml = np('x', 'egress-named', 'podSelector: {}\npolicyTypes: [Egress]\negress: [{ports: [{port: serve-80-tcp}, {port: 443}]}]');
  const w = world(yaml);
  assert.equal(w.eval({ src: v4('x/a'), dst: OUTSIDE, protocol: 'TCP', dstPort: 80 }).verdict, 'deny', 'serve-80-tcp names no port of an outside address');
  assert.equal(w.eval({ src: v4('x/a'), dst: OUTSIDE, protocol: 'TCP', dstPort: 443 }).verdict, 'allow');
  assert.equal(w.eval({ src: v4('x/a'), dst: v4('y/a'), protocol: 'TCP', dstPort: 80 }).verdict, 'allow');
  // a pod not placed here is an address like any other
  const cluster = new ClusterState([...modelObjects(), ...policies(yaml)]);
  const onlyX = new Map([...cluster.pods.values()].filter((p) => p.namespace === 'x').map((p) => [`${p.namespace}/${p.name}`, p.ips]));
  const r = evaluate(cluster, onlyX, { src: v4('y/a'), dst: v4('x/a'), protocol: 'TCP', dstPort: 81 });
  assert.deepEqual(r, { verdict: 'allow', egress: { verdict: 'allow', reason: 'not-applicable' }, ingress: { verdict: 'allow', reason: 'not-isolated', pod: 'x/a' } });
  assert.equal(evaluate(cluster, onlyX, { src: v4('x/a'), dst: v4('y/a'), protocol: 'TCP', dstPort: 80 }).verdict, 'deny', 'y/a is not a pod here: its named port is unknown');
});

test('attribution: the lowest policy key, then the lowest rule index; a default deny lists the selecting policies', () => {
  const yaml = np('x', 'b-policy', 'podSelector: {}\ningress: [{ports: [{port: 81}]}, {}]')
    + np('x', 'a-policy', 'podSelector: {matchLabels: {pod: a}}\ningress: [{ports: [{port: 9}]}, {from: [{podSelector: {}}], ports: [{port: 80}]}]')
    + np('x', 'c-policy', 'podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Ingress, Egress]\negress: [{to: [{namespaceSelector: {matchLabels: {ns: x}}}]}]');
  const w = world(yaml);
  const ingress80 = w.eval({ src: v4('x/b'), dst: v4('x/a'), protocol: 'TCP', dstPort: 80 }).ingress;
  assert.deepEqual(ingress80, { verdict: 'allow', reason: 'policy', pod: 'x/a', rule: { policy: 'x/a-policy', direction: 'Ingress', index: 1 } },
    'x/a-policy sorts before x/b-policy, whose rule 1 allows it too');
  const ingress81 = w.eval({ src: v4('y/b'), dst: v4('x/a'), protocol: 'TCP', dstPort: 81 }).ingress;
  assert.equal(formatDecision(ingress81), 'allow (x/b-policy ingress[0])');
  const out = w.eval({ src: v4('x/a'), dst: v4('y/b'), protocol: 'TCP', dstPort: 80 });
  assert.equal(out.verdict, 'deny');
  assert.deepEqual(out.egress, { verdict: 'deny', reason: 'default-deny', pod: 'x/a', policies: ['x/c-policy'] });
  assert.deepEqual(out.ingress, { verdict: 'allow', reason: 'not-isolated', pod: 'y/b' });
  const none = np('y', 'z2', 'podSelector: {}') + np('y', 'z1', 'podSelector: {matchLabels: {pod: a}}\ningress: [{ports: [{port: 1}]}]');
  const d = world(none).eval({ src: v4('x/a'), dst: v4('y/a'), protocol: 'UDP', dstPort: 80 });
  assert.deepEqual(d.ingress, { verdict: 'deny', reason: 'default-deny', pod: 'y/a', policies: ['y/z1', 'y/z2'] });
  assert.equal(formatDecision(d.ingress), 'deny (no rule allowed it; y/a selected by y/z1, y/z2)');
});

test('a policy selects only pods of its own namespace', () => {
  const w = world(np('y', 'deny', 'podSelector: {matchLabels: {pod: a}}'));
  assert.equal(w.eval({ src: v4('z/a'), dst: v4('x/a'), protocol: 'TCP', dstPort: 80 }).verdict, 'allow');
  assert.equal(w.eval({ src: v4('z/a'), dst: v4('y/a'), protocol: 'TCP', dstPort: 80 }).verdict, 'deny');
});
