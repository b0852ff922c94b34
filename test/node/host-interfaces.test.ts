// Which interfaces a node's host endpoints select (src/node/host-interfaces.ts): pure functions
// over a node's links as `ip -d addr` shows them.
import test from 'node:test';
import assert from 'node:assert/strict';
import { resolveStyle } from '../../src/datapath/discovery/styles.js';
import type { HostEndpoint } from '../../src/datastore/host-objects.js';
import { allHostInterfaces, nodeAddresses, parseInterfacePatterns, wantedHostInterfaces, type NodeLink } from '../../src/node/host-interfaces.js';

const link = (ifindex: number, ifname: string, kind: string, globalIps: string[] = []): NodeLink => ({ ifindex, ifname, kind, globalIps });

// a Flannel node with kube-proxy in IPVS mode and nodelocaldns, two NICs in a bond and a VLAN
const NODE: NodeLink[] = [
  link(1, 'lo', '', []),
  link(2, 'eth0', '', []),
  link(3, 'eth1', '', []),
  link(4, 'bond0', 'bond', ['192.168.1.10']),
  link(5, 'bond0.100', 'vlan', ['10.100.0.10']),
  link(6, 'cni0', 'bridge', ['10.244.0.1']),
  link(7, 'flannel.1', 'vxlan', ['10.244.0.0']),
  link(8, 'veth1a2b3c4d', 'veth', []),
  link(9, 'kube-ipvs0', 'dummy', ['10.96.0.1']),
  link(10, 'nodelocaldns', 'dummy', ['169.254.20.10']),
  link(11, 'docker0', 'bridge', ['172.17.0.1']),
  link(12, 'wg0', 'wireguard', ['10.200.0.1']),
  link(13, 'cilium_host', 'veth', ['10.0.0.5']),
  link(14, 'mgmt', 'veth', ['10.9.0.2']), // a kind-style node's uplink is a veth
];

test('default: interfaces with a global address that are no pod veth, bridge, tunnel, dummy or lo', () => {
  assert.deepEqual(allHostInterfaces(NODE, resolveStyle('flannel'), new Set([8])), ['bond0', 'bond0.100', 'mgmt']);
});

test('a pod interface by name or by discovery is never a host interface, even when a pattern matches it', () => {
  const withPodAddr = [...NODE, link(20, 'veth9f9f9f9f', 'veth', ['10.244.0.9']), link(21, 'mystery', 'veth', ['10.244.0.7'])];
  assert.deepEqual(allHostInterfaces(withPodAddr, resolveStyle('flannel'), new Set([21])), ['bond0', 'bond0.100', 'mgmt']);
  assert.deepEqual(allHostInterfaces(withPodAddr, resolveStyle('flannel'), new Set([21]), parseInterfacePatterns('*')),
    ['bond0', 'bond0.100', 'cilium_host', 'eth0', 'eth1', 'flannel.1', 'kube-ipvs0', 'mgmt', 'nodelocaldns', 'wg0'],
    'an explicit pattern may select any device but lo, bridges and pod interfaces');
});

test('--host-interfaces patterns select by name', () => {
  assert.deepEqual(allHostInterfaces(NODE, resolveStyle('flannel'), new Set(), parseInterfacePatterns('eth*, bond0')), ['bond0', 'eth0', 'eth1']);
  assert.deepEqual(allHostInterfaces(NODE, resolveStyle('flannel'), new Set(), parseInterfacePatterns('bond0.1??')), ['bond0.100']);
  assert.deepEqual(allHostInterfaces(NODE, resolveStyle('flannel'), new Set(), parseInterfacePatterns('nothing*')), []);
});

test('bad patterns are refused naming the flag', () => {
  assert.throws(() => parseInterfacePatterns(''), /--host-interfaces: "" names no interface/);
  assert.throws(() => parseInterfacePatterns('eth0,a/b'), /--host-interfaces: "a\/b" is not an interface name or pattern/);
  assert.throws(() => parseInterfacePatterns('averyveryverylongname'), /is not an interface name/);
});

const hep = (name: string, node: string, interfaceName: string): HostEndpoint => ({ kind: 'HostEndpoint', name, labels: {}, annotations: {}, node, interfaceName, expectedIPs: [] });

test('host endpoints of this node select their interface, "*" the default set; other nodes\' none', () => {
  const all = () => ['bond0', 'mgmt'];
  assert.deepEqual(wantedHostInterfaces([], 'n1', all), []);
  assert.deepEqual(wantedHostInterfaces([hep('a', 'n1', 'eth9'), hep('b', 'n2', 'eth7')], 'n1', all), ['eth9']);
  assert.deepEqual(wantedHostInterfaces([hep('a', 'n1', 'eth9'), hep('c', 'n1', '*'), hep('d', 'n1', 'mgmt')], 'n1', all), ['bond0', 'eth9', 'mgmt']);
});

test('the node\'s addresses are every global address, once', () => {
  assert.deepEqual(nodeAddresses([link(1, 'a', '', ['10.0.0.1', '10.0.0.2']), link(2, 'b', '', ['10.0.0.1'])]), ['10.0.0.1', '10.0.0.2']);
});
