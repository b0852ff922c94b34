// HostEndpoint and GlobalNetworkPolicy: the YAML shape, Calico's defaulting, and every bad input
// refused with its field path and the reason.
import test from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { parseHostObject } from '../../src/datastore/host-schema.js';
import type { GlobalNetworkPolicy, HostEndpoint } from '../../src/datastore/host-objects.js';
import { compareGlobalPolicies } from '../../src/datastore/host-objects.js';

function problemsOf(yaml: string): string[] {
  return parseHostObject(parse(yaml)).problems.map((p) => `${p.field}: ${p.message}`);
}

function objectOf<T>(yaml: string): T {
  const r = parseHostObject(parse(yaml));
  assert.deepEqual(r.problems, []);
  return r.object as T;
}

const hep = (spec: string, meta = 'name: n1-eth0') => `
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {${meta}}
spec: ${spec}
`;

const gnp = (spec: string, meta = 'name: p') => `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {${meta}}
spec: ${spec}
`;

const withIngress = (rule: string) => gnp(`{selector: {}, ingress: [${rule}]}`);

test('a HostEndpoint normalizes labels, node, interface and expected IPs', () => {
  const h = objectOf<HostEndpoint>(hep('{node: node1, interfaceName: "*", expectedIPs: [192.0.2.10, "2001:db8::10", 192.0.2.10]}', 'name: n1, labels: {role: worker}'));
  assert.deepEqual(h, {
    kind: 'HostEndpoint', name: 'n1', labels: { role: 'worker' }, annotations: {}, node: 'node1', interfaceName: '*',
    expectedIPs: ['192.0.2.10', '2001:db8::10'],
  });
  assert.equal(objectOf<HostEndpoint>(hep('{node: node1, interfaceName: eth0}')).interfaceName, 'eth0');
});

test('HostEndpoint bad input: field path and reason', () => {
  assert.deepEqual(problemsOf(hep('{interfaceName: eth0}')), ['spec.node: must be a string']);
  assert.deepEqual(problemsOf(hep('{node: node1}')), ['spec.interfaceName: is required: an interface name, or "*" for all of the node\'s interfaces']);
  assert.deepEqual(problemsOf(hep('{node: Node_1, interfaceName: "eth0:1", expectedIPs: [10.0.0.300, "fd00::1"]}')), [
    'spec.node: "Node_1": must be a lowercase RFC 1123 subdomain',
    'spec.interfaceName: "eth0:1": must be "*" or an interface name (1-15 characters, no "/", ":" or whitespace)',
    'spec.expectedIPs[0]: "10.0.0.300": must be an IPv4 or IPv6 address',
  ]);
  assert.deepEqual(problemsOf(hep('{node: n, interfaceName: averyveryverylongname}')),
    ['spec.interfaceName: "averyveryverylongname": must be "*" or an interface name (1-15 characters, no "/", ":" or whitespace)']);
  assert.deepEqual(problemsOf(hep('{node: n, interfaceName: eth0, ports: []}')), ['spec: Unrecognized key: "ports"']);
  assert.deepEqual(problemsOf(hep('{node: n, interfaceName: eth0}', 'name: h, namespace: x')),
    ['metadata.namespace: "x": must not be set: HostEndpoint is cluster-scoped']);
  assert.deepEqual(problemsOf(hep('{node: n, interfaceName: eth0}', 'name: h, labels: {"bad key!": x}')).map((p) => p.split(':')[0]),
    ['metadata.labels.bad key!']);
  assert.deepEqual(problemsOf(hep('{node: n, interfaceName: eth0}').replace('weir.dev/v1alpha1', 'projectcalico.org/v3')),
    ['apiVersion: "projectcalico.org/v3": must be weir.dev/v1alpha1']);
});

test('a GlobalNetworkPolicy normalizes rules: protocols, nets, every port form', () => {
  const p = objectOf<GlobalNetworkPolicy>(gnp(`
  order: 10.5
  selector: {matchLabels: {role: worker}}
  applyOnForward: true
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: {matchLabels: {app: bastion}}, nets: [10.0.0.0/8, 192.0.2.1, "fd00::1"], notNets: [10.9.0.0/16]}
    destination: {ports: [22, "6000:6010", {port: 7000, endPort: 7010}, {port: 8080}, ssh], notPorts: [6005]}
  - action: Log
  - {action: Deny, protocol: 47}`, 'name: p, annotations: {policy.weir.dev/audit: "true"}'));
  assert.equal(p.order, 10.5);
  assert.equal(p.applyOnForward, true);
  assert.deepEqual(p.annotations, { 'policy.weir.dev/audit': 'true' });
  assert.deepEqual(p.types, ['Ingress']);
  assert.deepEqual(p.ingress[0], {
    action: 'Allow', protocol: 'TCP',
    source: { selector: { matchLabels: { app: 'bastion' }, matchExpressions: [] }, nets: ['10.0.0.0/8', '192.0.2.1/32', 'fd00::1/128'], notNets: ['10.9.0.0/16'], ports: [], notPorts: [] },
    destination: {
      nets: [], notNets: [],
      ports: [{ from: 22, to: 22 }, { from: 6000, to: 6010 }, { from: 7000, to: 7010 }, { from: 8080, to: 8080 }, { name: 'ssh' }],
      notPorts: [{ from: 6005, to: 6005 }],
    },
  });
  assert.deepEqual(p.ingress[1], { action: 'Log', source: { nets: [], notNets: [], ports: [], notPorts: [] }, destination: { nets: [], notNets: [], ports: [], notPorts: [] } });
  assert.equal(p.ingress[2]!.protocol, 47);
});

test('types default as in Calico: from the rule lists present', () => {
  const types = (spec: string) => objectOf<GlobalNetworkPolicy>(gnp(spec)).types;
  assert.deepEqual(types('{selector: {}}'), ['Ingress']);
  assert.deepEqual(types('{selector: {}, ingress: [{action: Deny}]}'), ['Ingress']);
  assert.deepEqual(types('{selector: {}, egress: [{action: Deny}]}'), ['Egress']);
  assert.deepEqual(types('{selector: {}, ingress: [{action: Deny}], egress: [{action: Deny}]}'), ['Ingress', 'Egress']);
  assert.deepEqual(types('{selector: {}, types: [Egress, Ingress, Egress]}'), ['Egress', 'Ingress']);
  assert.equal(objectOf<GlobalNetworkPolicy>(gnp('{selector: {}}')).order, undefined, 'absent order stays absent (evaluated last)');
});

test('GlobalNetworkPolicy bad input: spec, selector, order, types, applyOnForward, audit annotation', () => {
  assert.deepEqual(problemsOf(gnp('{order: 1}')).map((p) => p.split(':')[0]), ['spec.selector']);
  assert.deepEqual(problemsOf(gnp('{selector: {}}').replace(/spec:.*\n/, '')), ['spec: is required (spec.selector must be given; {} selects every host endpoint and pod)']);
  assert.deepEqual(problemsOf(gnp('{selector: {matchExpressions: [{key: app, operator: In}]}, order: first, types: [Forward], applyOnForward: "yes"}')), [
    'spec.order: "first": must be a number (lower is evaluated first)',
    'spec.selector.matchExpressions[0].values: must be non-empty when operator is In',
    'spec.types[0]: "Forward": must be Ingress or Egress',
    'spec.applyOnForward: "yes": must be true or false',
  ]);
  assert.deepEqual(problemsOf(gnp('{selector: {}, types: [Ingress], egress: [{action: Allow}]}')),
    ['spec.egress: has rules but spec.types does not include Egress; add it or remove the rules']);
  assert.deepEqual(problemsOf(gnp('{selector: {}, namespaceSelector: {matchLabels: {"a b": x}}}')).map((p) => p.split(':')[0]),
    ['spec.namespaceSelector.matchLabels.a b']);
  assert.deepEqual(problemsOf(gnp('{selector: {}}', 'name: p, annotations: {policy.weir.dev/audit: "yes"}')),
    ['metadata.annotations.policy.weir.dev/audit: "yes": must be "true" or "false"']);
  assert.deepEqual(problemsOf(gnp('{selector: {}}', 'name: p, namespace: x')),
    ['metadata.namespace: "x": must not be set: GlobalNetworkPolicy is cluster-scoped']);
  assert.deepEqual(problemsOf(gnp('{selector: {}}', 'name: Bad_Name')), ['metadata.name: "Bad_Name": must be a lowercase RFC 1123 subdomain']);
  assert.deepEqual(problemsOf(gnp('{selector: {}, preDNAT: true}')), ['spec: Unrecognized key: "preDNAT"']);
});

test('rule bad input: action, protocol, peers, nets', () => {
  assert.deepEqual(problemsOf(withIngress('{action: Reject}')), ['spec.ingress[0].action: "Reject": must be Allow, Deny, Pass or Log']);
  assert.deepEqual(problemsOf(withIngress('{protocol: TCP}')).map((p) => p.split(':')[0]), ['spec.ingress[0].action']);
  assert.deepEqual(problemsOf(withIngress('{action: Allow, protocol: tcp}')),
    ['spec.ingress[0].protocol: "tcp": must be TCP, UDP, SCTP, ICMP, ICMPv6 or a protocol number 1-255']);
  assert.deepEqual(problemsOf(withIngress('{action: Allow, protocol: 256}')),
    ['spec.ingress[0].protocol: 256: must be TCP, UDP, SCTP, ICMP, ICMPv6 or a protocol number 1-255']);
  assert.deepEqual(problemsOf(withIngress('{action: Allow, source: {nets: [10.0.0.0/33, bogus], notNets: ["fd00::/129"]}}')), [
    'spec.ingress[0].source.nets[0]: "10.0.0.0/33": must be a CIDR (a.b.c.d/n or x:x::/n) or an address',
    'spec.ingress[0].source.nets[1]: "bogus": must be a CIDR (a.b.c.d/n or x:x::/n) or an address',
    'spec.ingress[0].source.notNets[0]: "fd00::/129": must be a CIDR (a.b.c.d/n or x:x::/n) or an address',
  ]);
  assert.deepEqual(problemsOf(withIngress('{action: Allow, source: {podSelector: {}}}')), ['spec.ingress[0].source: Unrecognized key: "podSelector"']);
  assert.deepEqual(problemsOf(withIngress('{action: Allow, destination: {selector: {matchExpressions: [{key: a, operator: Like}]}}}')),
    ['spec.ingress[0].destination.selector.matchExpressions[0].operator: "Like": must be In, NotIn, Exists or DoesNotExist']);
});

test('port bad input: range, order, names, quoted numbers, and a protocol that has ports', () => {
  assert.deepEqual(problemsOf(withIngress('{action: Allow, protocol: TCP, destination: {ports: [0, 65536, "90:80", "0:10", "80", "-ssh", {port: 90, endPort: 80}, {port: 0}, [1]]}}')), [
    'spec.ingress[0].destination.ports[0]: 0: must be 1-65535',
    'spec.ingress[0].destination.ports[1]: 65536: must be 1-65535',
    'spec.ingress[0].destination.ports[2]: "90:80": range end must be greater than or equal to its start (90)',
    'spec.ingress[0].destination.ports[3]: "0:10": range bounds must be 1-65535',
    'spec.ingress[0].destination.ports[4]: "80": is a quoted number; write it as a number',
    'spec.ingress[0].destination.ports[5]: "-ssh": must be a port number, a range "lo:hi", {port, endPort} or a port name; a port name must be an IANA_SVC_NAME (1-15 characters [a-z0-9-], a letter, no leading, trailing or double "-")',
    'spec.ingress[0].destination.ports[6].endPort: 80: must be greater than or equal to port (90)',
    'spec.ingress[0].destination.ports[7].port: 0: must be 1-65535',
    'spec.ingress[0].destination.ports[8]: must be a port number, a range "lo:hi", {port, endPort} or a port name',
  ]);
  assert.deepEqual(problemsOf(withIngress('{action: Allow, destination: {ports: [22]}}')),
    ['spec.ingress[0].destination.ports: requires the rule\'s protocol to be TCP, UDP or SCTP (protocol is not set)']);
  assert.deepEqual(problemsOf(withIngress('{action: Allow, protocol: ICMP, source: {notPorts: [22]}}')),
    ['spec.ingress[0].source.notPorts: requires the rule\'s protocol to be TCP, UDP or SCTP (it is "ICMP")']);
  assert.deepEqual(problemsOf(withIngress('{action: Allow, protocol: 17, destination: {ports: [53]}}')), [], 'a numbered UDP has ports');
});

test('a policy that would block failsafe ports is accepted (failsafes still win at evaluation)', () => {
  assert.deepEqual(problemsOf(withIngress('{action: Deny, protocol: TCP, destination: {ports: [22]}}')), []);
});

test('an unknown kind is refused by name', () => {
  assert.deepEqual(problemsOf('{apiVersion: v1, kind: Node, metadata: {name: n}}'),
    ['kind: "Node": not a host protection kind; expected HostEndpoint or GlobalNetworkPolicy']);
});

test('global policies sort by order (absent last), ties by name', () => {
  const mk = (name: string, order?: number) => ({ name, ...(order !== undefined ? { order } : {}) }) as GlobalNetworkPolicy;
  const sorted = [mk('z'), mk('b', 10), mk('a', 10), mk('c', -1), mk('y')].sort(compareGlobalPolicies).map((p) => p.name);
  assert.deepEqual(sorted, ['c', 'a', 'b', 'y', 'z']);
});
