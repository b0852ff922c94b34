// The host-protection reference evaluator, rule by rule: host endpoints and unpoliced
// interfaces, failsafes, ordered global policies with Allow, Deny, Pass and Log, end-of-tier
// deny, the NetworkPolicy tier for pods, applyOnForward, and audit mode.
import test from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { ClusterState } from '../../src/datastore/cluster.js';
import { parseManifestText, type ManifestProblem } from '../../src/datastore/manifest.js';
import { parseHostObject } from '../../src/datastore/host-schema.js';
import type { GlobalNetworkPolicy, HostEndpoint, HostObject } from '../../src/datastore/host-objects.js';
import { DEFAULT_FAILSAFES, FAILSAFES_DISABLED, type Failsafes } from '../../src/policy/failsafe.js';
import {
  evaluateHost, formatHostDecision, hostEndpointFor, type HostEvaluation, type HostPacket, type HostWorld, type Subject,
} from '../../src/policy/host-reference.js';

const NODE_IP = '192.0.2.10';
const WORLD_IP = '198.51.100.7';
const POD_A = '10.0.0.1'; // x/a, app=web
const POD_B = '10.0.0.2'; // x/b, app=client
const POD_Y = '10.0.1.1'; // y/c, app=client

const BASE = `
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {team: b}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
spec: {containers: [{ports: [{containerPort: 8080, name: http}]}]}
status: {podIP: ${POD_A}}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: client}}
spec: {containers: [{}]}
status: {podIP: ${POD_B}}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: y, labels: {app: client}}
spec: {containers: [{}]}
status: {podIP: ${POD_Y}}
`;

/** One HostEndpoint for node1's eth0 (role=worker), unless `heps` says otherwise. */
const ETH0 = `
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: node1-eth0, labels: {role: worker}}
spec: {node: node1, interfaceName: eth0, expectedIPs: [${NODE_IP}]}
`;

function hostObjects(yaml: string): HostObject[] {
  return yaml.split(/^---$/m).filter((d) => d.trim() !== '').map((d) => {
    const r = parseHostObject(parse(d));
    assert.deepEqual(r.problems, [], d);
    return r.object!;
  });
}

function world(opts: { host?: string; k8s?: string; heps?: string; failsafes?: Failsafes } = {}): (subject: Subject, packet: HostPacket) => HostEvaluation {
  const problems: ManifestProblem[] = [];
  const k8s = parseManifestText(`${BASE}${opts.k8s ? `---\n${opts.k8s}` : ''}`, 'k8s.yaml', problems).map((o) => o.object);
  assert.deepEqual(problems, []);
  const cluster = new ClusterState(k8s);
  const placement = new Map([...cluster.pods.values()].map((p) => [`${p.namespace}/${p.name}`, p.ips]));
  const host = hostObjects(`${opts.heps ?? ETH0}\n---\n${opts.host ?? ''}`);
  const w: HostWorld = {
    cluster, placement, failsafes: opts.failsafes ?? DEFAULT_FAILSAFES, nodeIps: [NODE_IP],
    hostEndpoints: host.filter((o): o is HostEndpoint => o.kind === 'HostEndpoint'),
    globalPolicies: host.filter((o): o is GlobalNetworkPolicy => o.kind === 'GlobalNetworkPolicy'),
  };
  return (subject, packet) => evaluateHost(w, subject, packet);
}

const hostIn: Subject = { kind: 'host', node: 'node1', interfaceName: 'eth0', direction: 'Ingress' };
const hostOut: Subject = { kind: 'host', node: 'node1', interfaceName: 'eth0', direction: 'Egress' };
const tcp = (src: string, dst: string, dstPort: number, srcPort = 40000): HostPacket => ({ src, dst, protocol: 'TCP', srcPort, dstPort });
const udp = (src: string, dst: string, dstPort: number): HostPacket => ({ src, dst, protocol: 'UDP', srcPort: 40000, dstPort });
const line = (e: HostEvaluation) => `${e.verdict}: ${formatHostDecision(e.decision)}`;

const gnp = (name: string, spec: string, annotations = '') => `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: ${name}${annotations ? `, annotations: {${annotations}}` : ''}}
spec: ${spec}
---`;

test('an interface without a HostEndpoint is not policed; one with a HostEndpoint and no policy is default-deny apart from failsafes', () => {
  const ev = world();
  assert.equal(line(ev({ ...hostIn, interfaceName: 'eth1' }, tcp(WORLD_IP, NODE_IP, 80))), 'allow: allow (no host endpoint: not policed)');
  assert.equal(line(ev({ ...hostIn, node: 'node2' }, tcp(WORLD_IP, NODE_IP, 80))), 'allow: allow (no host endpoint: not policed)');
  assert.equal(line(ev(hostIn, tcp(WORLD_IP, NODE_IP, 80))), 'deny: deny (host endpoint node1-eth0 default)');
  assert.equal(line(ev(hostOut, tcp(NODE_IP, WORLD_IP, 443))), 'deny: deny (host endpoint node1-eth0 default)');
  assert.equal(line(ev(hostIn, tcp(WORLD_IP, NODE_IP, 22))), 'allow: allow (failsafe TCP/22 on node1-eth0)');
  assert.equal(line(ev(hostIn, udp(WORLD_IP, NODE_IP, 68))), 'allow: allow (failsafe UDP/68 on node1-eth0)');
  assert.equal(line(ev(hostOut, udp(NODE_IP, WORLD_IP, 53))), 'allow: allow (failsafe UDP/53 on node1-eth0)');
  assert.equal(ev(hostOut, tcp(NODE_IP, WORLD_IP, 22)).verdict, 'deny', 'SSH is an inbound failsafe, not an outbound one');
});

test('a named interface\'s HostEndpoint wins over the node\'s "*" endpoint', () => {
  const heps = hostObjects(`${ETH0}\n---\napiVersion: weir.dev/v1alpha1\nkind: HostEndpoint\nmetadata: {name: node1-all}\nspec: {node: node1, interfaceName: "*"}`) as HostEndpoint[];
  assert.equal(hostEndpointFor(heps, 'node1', 'eth0')?.name, 'node1-eth0');
  assert.equal(hostEndpointFor(heps, 'node1', 'eth1')?.name, 'node1-all');
  assert.equal(hostEndpointFor(heps, 'node2', 'eth0'), undefined);
});

test('failsafes come first: a deny-all host policy keeps SSH open, unless failsafes are disabled', () => {
  const host = gnp('deny-all', '{selector: {matchLabels: {role: worker}}, ingress: [{action: Deny}]}');
  assert.equal(line(world({ host })(hostIn, tcp(WORLD_IP, NODE_IP, 22))), 'allow: allow (failsafe TCP/22 on node1-eth0)');
  assert.equal(line(world({ host })(hostIn, tcp(WORLD_IP, NODE_IP, 80))), 'deny: deny (deny-all ingress[0] Deny)');
  assert.equal(line(world({ host, failsafes: FAILSAFES_DISABLED })(hostIn, tcp(WORLD_IP, NODE_IP, 22))), 'deny: deny (deny-all ingress[0] Deny)');
  assert.equal(line(world({ failsafes: FAILSAFES_DISABLED })(hostIn, tcp(WORLD_IP, NODE_IP, 22))), 'deny: deny (host endpoint node1-eth0 default)');
});

test('global policies run by order, lower first; ties by name; no order last; the first Allow or Deny decides', () => {
  const allow80 = '{action: Allow, protocol: TCP, destination: {ports: [80]}}';
  const deny80 = '{action: Deny, protocol: TCP, destination: {ports: [80]}}';
  const sel = 'selector: {matchLabels: {role: worker}}';
  const ev = world({
    host: gnp('a-unordered', `{${sel}, ingress: [${deny80}]}`)
      + gnp('b-deny', `{order: 10, ${sel}, ingress: [${deny80}]}`)
      + gnp('c-allow', `{order: 5, ${sel}, ingress: [${allow80}]}`)
      + gnp('d-tie', `{order: 20, ${sel}, ingress: [{action: Allow, protocol: TCP, destination: {ports: [81]}}]}`)
      + gnp('c-tie', `{order: 20, ${sel}, ingress: [{action: Deny, protocol: TCP, destination: {ports: [81]}}]}`)
      + gnp('z-last', `{${sel}, ingress: [{action: Allow, protocol: TCP, destination: {ports: [82]}}]}`),
  });
  assert.equal(line(ev(hostIn, tcp(WORLD_IP, NODE_IP, 80))), 'allow: allow (c-allow ingress[0] Allow)');
  assert.equal(line(ev(hostIn, tcp(WORLD_IP, NODE_IP, 81))), 'deny: deny (c-tie ingress[0] Deny)');
  assert.equal(line(ev(hostIn, tcp(WORLD_IP, NODE_IP, 82))), 'allow: allow (z-last ingress[0] Allow)', 'policies without order run last, by name');
});

test('end-of-tier deny: policies selected the endpoint in that direction and none decided', () => {
  const ev = world({
    host: gnp('p2', '{order: 2, selector: {}, ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]}')
      + gnp('p1', '{order: 1, selector: {}, ingress: [{action: Log, protocol: TCP}]}')
      + gnp('out', '{selector: {matchLabels: {role: worker}}, egress: [{action: Allow}]}'),
  });
  const e = ev(hostIn, tcp(WORLD_IP, NODE_IP, 443));
  assert.equal(line(e), 'deny: deny (end of tier: selected by p1, p2, no rule decided)');
  assert.deepEqual(e.logs, [{ policy: 'p1', direction: 'Ingress', index: 0, action: 'Log' }]);
  // The egress-only policy does not select the endpoint for ingress, and vice versa.
  assert.equal(line(ev(hostOut, tcp(NODE_IP, WORLD_IP, 443))), 'allow: allow (out egress[0] Allow)');
});

test('Log records and continues; every matching Log rule is reported, in order', () => {
  const ev = world({
    host: gnp('log', '{order: 1, selector: {}, ingress: [{action: Log}, {action: Log, protocol: UDP}, {action: Log, protocol: TCP}]}')
      + gnp('allow', '{order: 2, selector: {}, ingress: [{action: Log, source: {nets: [198.51.100.0/24]}}, {action: Allow}]}'),
  });
  const e = ev(hostIn, tcp(WORLD_IP, NODE_IP, 80));
  assert.equal(line(e), 'allow: allow (allow ingress[1] Allow)');
  assert.deepEqual(e.logs.map((r) => `${r.policy}[${r.index}]`), ['log[0]', 'log[2]', 'allow[0]']);
});

test('Pass skips to the NetworkPolicy tier: for a pod its NetworkPolicies decide; a host endpoint has none, so its default applies', () => {
  const k8s = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec: {podSelector: {matchLabels: {app: web}}, ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]}
`;
  const ev = world({
    k8s,
    host: gnp('pass', '{order: 1, selector: {}, ingress: [{action: Pass}]}') + gnp('deny', '{order: 2, selector: {}, ingress: [{action: Deny}]}'),
  });
  const podIn: Subject = { kind: 'pod', pod: 'x/a', direction: 'Ingress' };
  assert.equal(line(ev(podIn, tcp(POD_B, POD_A, 8080))), 'allow: allow (NetworkPolicy tier, after pass ingress[0] Pass: allow (x/web ingress[0]))');
  assert.equal(line(ev(podIn, tcp(POD_Y, POD_A, 8080))).split(':')[0], 'deny', 'a pod of another namespace: the NetworkPolicy denies');
  assert.equal(line(ev(hostIn, tcp(WORLD_IP, NODE_IP, 80))), 'deny: deny (host endpoint node1-eth0 default, after pass ingress[0] Pass)');
});

test('pods: global policies select pods by labels and namespaceSelector; Allow and Deny there are final; unselected pods go to NetworkPolicy', () => {
  const k8s = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}}
`;
  const ev = world({
    k8s,
    host: gnp('web', '{selector: {matchLabels: {app: web}}, namespaceSelector: {matchLabels: {team: a}}, ingress: [{action: Allow, protocol: TCP, destination: {ports: [http]}}, {action: Deny, protocol: UDP}]}'),
  });
  const podIn = (pod: string): Subject => ({ kind: 'pod', pod, direction: 'Ingress' });
  assert.equal(line(ev(podIn('x/a'), tcp(POD_Y, POD_A, 8080))), 'allow: allow (web ingress[0] Allow)', 'a global Allow is final: the NetworkPolicy is not consulted');
  assert.equal(line(ev(podIn('x/a'), udp(POD_Y, POD_A, 53))), 'deny: deny (web ingress[1] Deny)');
  assert.equal(line(ev(podIn('x/a'), tcp(POD_Y, POD_A, 9090))), 'deny: deny (end of tier: selected by web, no rule decided)');
  assert.equal(line(ev(podIn('x/b'), tcp(POD_Y, POD_B, 80))).split(' (')[0], 'deny: deny', 'not selected: the NetworkPolicy tier decides');
  assert.equal(ev(podIn('x/b'), tcp(POD_Y, POD_B, 80)).decision.reason, 'network-policy');
  assert.equal(line(ev(podIn('y/c'), tcp(POD_B, POD_Y, 80))), 'allow: allow (NetworkPolicy tier: allow (y/c not isolated))');
  // The policy's namespaceSelector never matches a host endpoint, even with selector {}.
  const nsOnly = world({ host: gnp('pods-only', '{selector: {}, namespaceSelector: {}, ingress: [{action: Allow}]}') });
  assert.equal(line(nsOnly(hostIn, tcp(WORLD_IP, NODE_IP, 80))), 'deny: deny (host endpoint node1-eth0 default)');
});

test('rule peers: host ingress allowed only from pods with a label; selectors find host endpoints by expectedIPs', () => {
  const ev = world({
    host: gnp('from-clients', '{selector: {matchLabels: {role: worker}}, ingress: [{action: Allow, protocol: TCP, source: {selector: {matchLabels: {app: client}}}, destination: {ports: [9100]}}]}')
      + gnp('to-workers', '{selector: {}, namespaceSelector: {}, egress: [{action: Allow, destination: {selector: {matchLabels: {role: worker}}}}, {action: Deny}]}')
      + gnp('ns-peer', '{selector: {matchLabels: {app: client}}, namespaceSelector: {}, ingress: [{action: Allow, source: {namespaceSelector: {matchLabels: {team: a}}}}, {action: Deny}]}'),
  });
  assert.equal(line(ev(hostIn, tcp(POD_B, NODE_IP, 9100))), 'allow: allow (from-clients ingress[0] Allow)');
  assert.equal(line(ev(hostIn, tcp(POD_Y, NODE_IP, 9100))), 'allow: allow (from-clients ingress[0] Allow)', 'no namespaceSelector: pods of every namespace');
  assert.equal(line(ev(hostIn, tcp(POD_A, NODE_IP, 9100))), 'deny: deny (end of tier: selected by from-clients, no rule decided)');
  assert.equal(ev(hostIn, tcp(WORLD_IP, NODE_IP, 9100)).verdict, 'deny', 'an outside address matches no selector');
  assert.equal(line(ev({ kind: 'pod', pod: 'x/a', direction: 'Egress' }, tcp(POD_A, NODE_IP, 80))), 'allow: allow (to-workers egress[0] Allow)', 'the node is found by its expectedIPs');
  assert.equal(line(ev({ kind: 'pod', pod: 'x/a', direction: 'Egress' }, tcp(POD_A, WORLD_IP, 80))), 'deny: deny (to-workers egress[1] Deny)');
  // A rule namespaceSelector: pods of those namespaces; the host is no pod.
  assert.equal(line(ev({ kind: 'pod', pod: 'y/c', direction: 'Ingress' }, tcp(POD_A, POD_Y, 80))), 'allow: allow (ns-peer ingress[0] Allow)');
  assert.equal(line(ev({ kind: 'pod', pod: 'y/c', direction: 'Ingress' }, tcp(NODE_IP, POD_Y, 80))), 'deny: deny (ns-peer ingress[1] Deny)');
});

test('rule matching: protocol by name or number, nets and notNets, port ranges, notPorts, source ports, named ports', () => {
  const ev = world({
    host: gnp('rules', `{selector: {}, ingress: [
      {action: Allow, protocol: TCP, source: {nets: [198.51.100.0/24], notNets: [198.51.100.128/25]}, destination: {ports: ["8000:8040", {port: 9000, endPort: 9001}], notPorts: [8020]}},
      {action: Allow, protocol: UDP, source: {ports: [123]}},
      {action: Allow, protocol: 47},
      {action: Allow, protocol: ICMP},
      {action: Allow, protocol: TCP, destination: {ports: [http]}}]}`),
  });
  const hostTcp = (src: string, port: number, srcPort?: number) => ev(hostIn, tcp(src, NODE_IP, port, srcPort)).decision;
  assert.equal(formatHostDecision(hostTcp(WORLD_IP, 8000)), 'allow (rules ingress[0] Allow)');
  assert.equal(formatHostDecision(hostTcp(WORLD_IP, 9001)), 'allow (rules ingress[0] Allow)');
  assert.equal(hostTcp(WORLD_IP, 8020).reason, 'end-of-tier', 'notPorts');
  assert.equal(hostTcp(WORLD_IP, 8041).reason, 'end-of-tier', 'past the range');
  assert.equal(hostTcp('198.51.100.200', 8000).reason, 'end-of-tier', 'notNets');
  assert.equal(hostTcp('203.0.113.1', 8000).reason, 'end-of-tier', 'outside nets');
  assert.equal(formatHostDecision(ev(hostIn, { src: WORLD_IP, dst: NODE_IP, protocol: 'UDP', srcPort: 123, dstPort: 5000 }).decision), 'allow (rules ingress[1] Allow)');
  assert.equal(ev(hostIn, { src: WORLD_IP, dst: NODE_IP, protocol: 'UDP', srcPort: 124, dstPort: 123 }).decision.reason, 'end-of-tier', 'source ports are the source\'s');
  assert.equal(formatHostDecision(ev(hostIn, { src: WORLD_IP, dst: NODE_IP, protocol: 47 }).decision), 'allow (rules ingress[2] Allow)');
  assert.equal(formatHostDecision(ev(hostIn, { src: WORLD_IP, dst: NODE_IP, protocol: 1 }).decision), 'allow (rules ingress[3] Allow)', 'protocol number 1 is ICMP');
  assert.equal(ev(hostIn, { src: WORLD_IP, dst: NODE_IP, protocol: 'ICMPv6' }).decision.reason, 'end-of-tier');
  // A named port is a container port of the pod on that side; host endpoints have none.
  assert.equal(hostTcp(WORLD_IP, 8080).reason, 'end-of-tier');
  assert.equal(formatHostDecision(ev({ kind: 'pod', pod: 'x/a', direction: 'Ingress' }, tcp(WORLD_IP, POD_A, 8080)).decision), 'allow (rules ingress[4] Allow)');
  assert.equal(ev({ kind: 'pod', pod: 'x/a', direction: 'Ingress' }, tcp(WORLD_IP, POD_A, 8081)).decision.reason, 'end-of-tier');
});

test('forwarded traffic: only applyOnForward policies apply; no failsafes; allowed when none selects the endpoint', () => {
  const fwd: Subject = { ...hostIn, forwarded: true };
  const plain = world({ host: gnp('deny-all', '{selector: {}, ingress: [{action: Deny}]}') });
  assert.equal(line(plain(fwd, tcp(WORLD_IP, POD_A, 80))), 'allow: allow (host endpoint node1-eth0 default for forwarded traffic)');
  const onForward = world({ host: gnp('deny-fwd', '{selector: {}, applyOnForward: true, ingress: [{action: Deny, protocol: TCP}]}') });
  assert.equal(line(onForward(fwd, tcp(WORLD_IP, POD_A, 80))), 'deny: deny (deny-fwd ingress[0] Deny)');
  assert.equal(line(onForward(fwd, tcp(WORLD_IP, POD_A, 22))), 'deny: deny (deny-fwd ingress[0] Deny)', 'failsafes are for the host\'s own traffic');
  assert.equal(line(onForward(fwd, udp(WORLD_IP, POD_A, 53))), 'deny: deny (end of tier: selected by deny-fwd, no rule decided)');
  assert.equal(line(onForward(hostIn, tcp(WORLD_IP, NODE_IP, 22))), 'allow: allow (failsafe TCP/22 on node1-eth0)', 'applyOnForward policies police host traffic too');
  const passed = world({ host: gnp('pass-fwd', '{selector: {}, applyOnForward: true, ingress: [{action: Pass}]}') });
  assert.equal(line(passed(fwd, tcp(WORLD_IP, POD_A, 80))), 'allow: allow (host endpoint node1-eth0 default for forwarded traffic, after pass-fwd ingress[0] Pass)');
});

test('audit: audit-mode global policies never change enforcement and report what they would deny; an audit-mode endpoint reports its denials', () => {
  const AUDIT = 'policy.weir.dev/audit: "true"';
  const ev = world({
    host: gnp('allow-web', '{order: 10, selector: {}, ingress: [{action: Allow, protocol: TCP, destination: {ports: [80, 443]}}]}')
      + gnp('trial', '{order: 1, selector: {}, ingress: [{action: Deny, protocol: TCP, destination: {ports: [443]}}]}', AUDIT),
  });
  const would = ev(hostIn, tcp(WORLD_IP, NODE_IP, 443));
  assert.equal(line(would), 'audit: allow (allow-web ingress[0] Allow)');
  assert.equal(would.wouldDeny && formatHostDecision(would.wouldDeny), 'deny (trial ingress[0] Deny)');
  assert.equal(line(ev(hostIn, tcp(WORLD_IP, NODE_IP, 80))), 'allow: allow (allow-web ingress[0] Allow)');
  assert.equal(line(ev(hostIn, tcp(WORLD_IP, NODE_IP, 8080))), 'deny: deny (end of tier: selected by allow-web, no rule decided)');
  // An audit-mode Allow cannot open a host endpoint's default deny.
  const onlyAudit = world({ host: gnp('trial-allow', '{selector: {}, ingress: [{action: Allow}]}', AUDIT) });
  assert.equal(line(onlyAudit(hostIn, tcp(WORLD_IP, NODE_IP, 80))), 'deny: deny (host endpoint node1-eth0 default)');
  // The annotation on the HostEndpoint: every denial there passes, reported.
  const auditedHep = world({ heps: ETH0.replace('labels: {role: worker}', `labels: {role: worker}, annotations: {${AUDIT}}`) });
  assert.equal(line(auditedHep(hostIn, tcp(WORLD_IP, NODE_IP, 80))), 'audit: deny (host endpoint node1-eth0 default)');
  // On a pod's namespace, a global Deny for that pod only reports.
  const nsAudit = world({
    k8s: `apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {team: a}, annotations: {${AUDIT}}}`,
    host: gnp('deny-web', '{selector: {matchLabels: {app: web}}, ingress: [{action: Deny}]}'),
  });
  assert.equal(line(nsAudit({ kind: 'pod', pod: 'x/a', direction: 'Ingress' }, tcp(POD_Y, POD_A, 80))), 'audit: deny (deny-web ingress[0] Deny)');
  assert.equal(line(ev({ kind: 'pod', pod: 'y/c', direction: 'Ingress' }, tcp(POD_A, POD_Y, 443))), 'audit: allow (allow-web ingress[0] Allow)', 'pods too');
});
