import test from 'node:test';
import assert from 'node:assert/strict';
import { EndpointRegistry, canonicalIp, type PodInput } from '../../src/flows/registry.js';

const pod = (name: string, ips: string[], over: Partial<PodInput> = {}): PodInput => ({ namespace: 'api', name, labels: { app: name }, ips, ...over });

test('IP reuse within seconds: each record finds whoever held the address at its time', () => {
  const r = new EndpointRegistry({ node: 'n1' });
  r.upsertPod(pod('orders', ['10.244.0.11', 'fd00:10:244::b']), 1_000);
  r.deletePod('api', 'orders', 5_000);
  r.upsertPod(pod('payments', ['10.244.0.11']), 7_000);
  assert.equal(r.lookup('10.244.0.11', 999), undefined, 'before anyone had it');
  assert.equal(r.lookup('10.244.0.11', 1_000)?.pod, 'orders');
  assert.equal(r.lookup('10.244.0.11', 4_999)?.pod, 'orders');
  assert.equal(r.lookup('10.244.0.11', 5_000), undefined, 'deleted: [from, to) is half-open');
  assert.equal(r.lookup('10.244.0.11', 6_999), undefined);
  assert.equal(r.lookup('10.244.0.11', 7_000)?.pod, 'payments');
  assert.equal(r.lookup('10.244.0.11', 1e12)?.pod, 'payments');
  assert.equal(r.lookup('fd00:10:244::b', 2_000)?.pod, 'orders', 'both families of the pod');
  // the same pod version on both families: one endpoint
  assert.equal(r.lookup('fd00:10:244::b', 2_000), r.lookup('10.244.0.11', 2_000));
});

test('a new pod taking an address before the old one\'s delete is seen ends the old interval then', () => {
  const r = new EndpointRegistry();
  r.upsertPod(pod('a', ['10.0.0.1']), 1_000);
  r.upsertPod(pod('b', ['10.0.0.1']), 3_000); // the informer delivers b before a's delete
  r.deletePod('api', 'a', 3_500);
  assert.equal(r.lookup('10.0.0.1', 2_999)?.pod, 'a');
  assert.equal(r.lookup('10.0.0.1', 3_000)?.pod, 'b');
  assert.equal(r.lookup('10.0.0.1', 3_600)?.pod, 'b', 'a late delete of a does not release b');
  // an add stamped before the previous holder let go starts when it let go
  const s = new EndpointRegistry();
  s.upsertPod(pod('a', ['10.0.0.1']), 1_000);
  s.deletePod('api', 'a', 5_000);
  s.upsertPod(pod('b', ['10.0.0.1'], { since: 2_000 }), 6_000);
  assert.equal(s.lookup('10.0.0.1', 4_000)?.pod, 'a');
  assert.equal(s.lookup('10.0.0.1', 5_000)?.pod, 'b');
});

test('label changes are versions: records before the change keep the old labels', () => {
  const r = new EndpointRegistry();
  r.upsertPod(pod('web', ['10.0.0.5'], { labels: { app: 'web', v: '1' } }), 1_000);
  const v1 = r.lookup('10.0.0.5', 1_500)!;
  r.upsertPod(pod('web', ['10.0.0.5'], { labels: { app: 'web', v: '1' } }), 1_800);
  assert.equal(r.lookup('10.0.0.5', 1_900), v1, 'no change, no new version');
  r.upsertPod(pod('web', ['10.0.0.5'], { labels: { app: 'web', v: '2' } }), 2_000);
  assert.deepEqual(r.lookup('10.0.0.5', 1_999)?.labels, { app: 'web', v: '1' });
  assert.deepEqual(r.lookup('10.0.0.5', 2_000)?.labels, { app: 'web', v: '2' });
  assert.notEqual(r.lookup('10.0.0.5', 2_000)!.serial, v1.serial);
  // an address dropped by an update is released from then on
  r.upsertPod(pod('web', ['10.0.0.6'], { labels: { app: 'web', v: '2' } }), 3_000);
  assert.equal(r.lookup('10.0.0.5', 3_000), undefined);
  assert.equal(r.lookup('10.0.0.6', 3_000)?.pod, 'web');
});

test('pods seen first after they started (the initial list) are found from `since`', () => {
  const r = new EndpointRegistry();
  r.upsertPod(pod('old', ['10.0.0.9'], { since: 100 }), 50_000);
  assert.equal(r.lookup('10.0.0.9', 100)?.pod, 'old');
  assert.equal(r.lookup('10.0.0.9', 99), undefined);
});

test('owning workloads: ReplicaSet -> Deployment, StatefulSet, DaemonSet, Job -> CronJob, none', () => {
  const r = new EndpointRegistry();
  const wl = (over: Partial<PodInput>) => r.workloadOf({ namespace: 'api', labels: {}, ...over });
  const rs = (name: string) => [{ kind: 'ReplicaSet', name, controller: true }];
  assert.deepEqual(wl({ ownerReferences: rs('orders-7d4b9c8f6'), labels: { 'pod-template-hash': '7d4b9c8f6' } }), ['Deployment', 'orders']);
  assert.deepEqual(wl({ ownerReferences: rs('my-app-v2-5f8c7b9d4x') }), ['Deployment', 'my-app-v2'], 'by the naming convention alone');
  assert.deepEqual(wl({ ownerReferences: rs('standalone') }), ['ReplicaSet', 'standalone']);
  assert.deepEqual(wl({ ownerReferences: [{ kind: 'StatefulSet', name: 'db', controller: true }] }), ['StatefulSet', 'db']);
  assert.deepEqual(wl({ ownerReferences: [{ kind: 'DaemonSet', name: 'agent' }] }), ['DaemonSet', 'agent']);
  assert.deepEqual(wl({ ownerReferences: [{ kind: 'Job', name: 'backup-29123456' }] }), ['CronJob', 'backup']);
  assert.deepEqual(wl({ ownerReferences: [{ kind: 'Job', name: 'migrate' }] }), ['Job', 'migrate']);
  assert.deepEqual(wl({}), ['', '']);
  // the controller reference wins over others
  assert.deepEqual(wl({ ownerReferences: [{ kind: 'Foo', name: 'x' }, { kind: 'StatefulSet', name: 'db', controller: true }] }), ['StatefulSet', 'db']);

  // known owners beat the convention, and pods already known are resolved again
  r.upsertPod(pod('o-1', ['10.0.1.1'], { ownerReferences: rs('orders-7d4b9c8f6') }), 1_000);
  assert.equal(r.lookup('10.0.1.1', 1_000)?.workload, 'orders');
  r.setOwner('ReplicaSet', 'api', 'orders-7d4b9c8f6', { kind: 'Deployment', name: 'orders-v2', controller: true }, 2_000);
  assert.deepEqual([r.lookup('10.0.1.1', 1_500)?.workload, r.lookup('10.0.1.1', 2_000)?.workload], ['orders', 'orders-v2']);
  r.setOwner('Job', 'api', 'backup-29123456', null, 2_000);
  assert.deepEqual(wl({ ownerReferences: [{ kind: 'Job', name: 'backup-29123456' }] }), ['Job', 'backup-29123456'], 'a Job known to have no owner');
  r.setOwner('Job', 'api', 'nightly', { kind: 'CronJob', name: 'reports' }, 2_000);
  assert.deepEqual(wl({ ownerReferences: [{ kind: 'Job', name: 'nightly' }] }), ['CronJob', 'reports']);
});

test('pods carry node, service account and workload; hostNetwork pods are not registered by address', () => {
  const r = new EndpointRegistry({ node: 'n1' });
  r.upsertPod(pod('w', ['10.0.2.1'], { node: 'n2', serviceAccount: 'sa-w', ownerReferences: [{ kind: 'DaemonSet', name: 'ds' }] }), 0);
  const e = r.lookup('10.0.2.1', 1)!;
  assert.deepEqual([e.kind, e.namespace, e.pod, e.node, e.serviceAccount, e.workloadKind, e.workload], ['pod', 'api', 'w', 'n2', 'sa-w', 'DaemonSet', 'ds']);
  r.setNodeAddresses(['192.0.2.1'], 0);
  r.upsertPod(pod('hn', ['192.0.2.1'], { hostNetwork: true }), 0);
  assert.equal(r.lookup('192.0.2.1', 1)?.kind, 'host');
});

test('hosts: this node\'s addresses with the host endpoint covering it, other nodes by their endpoints\' expectedIPs', () => {
  const r = new EndpointRegistry({ node: 'n1' });
  r.setNodeAddresses(['10.243.0.1', 'fd00:10:243:0:0:0:0:1'], 1_000);
  let h = r.lookup('10.243.0.1', 1_000)!;
  assert.deepEqual([h.kind, h.node, h.hostEndpoint], ['host', 'n1', '']);
  assert.equal(r.lookup('fd00:10:243::1', 1_000)?.node, 'n1', 'addresses are canonical');
  r.upsertHostEndpoint({ name: 'n1-auto', node: 'n1', labels: { role: 'worker' }, expectedIPs: ['10.243.0.1'], interfaceName: '*' }, 2_000);
  r.upsertHostEndpoint({ name: 'n2-eth0', node: 'n2', labels: { role: 'db' }, expectedIPs: ['192.0.2.7'], interfaceName: 'eth0' }, 2_000);
  h = r.lookup('10.243.0.1', 2_000)!;
  assert.deepEqual([h.kind, h.node, h.hostEndpoint, h.labels], ['host', 'n1', 'n1-auto', { role: 'worker' }]);
  assert.equal(r.lookup('10.243.0.1', 1_999)?.hostEndpoint, '', 'before the endpoint existed');
  assert.equal(r.lookup('fd00:10:243::1', 2_000)?.hostEndpoint, 'n1-auto', 'the node\'s "*" endpoint covers its other addresses');
  const other = r.lookup('192.0.2.7', 2_000)!;
  assert.deepEqual([other.kind, other.node, other.hostEndpoint, other.labels], ['host', 'n2', 'n2-eth0', { role: 'db' }]);
  r.deleteHostEndpoint('n2-eth0', 3_000);
  assert.equal(r.lookup('192.0.2.7', 3_000), undefined);
  assert.equal(r.lookup('192.0.2.7', 2_999)?.hostEndpoint, 'n2-eth0');
  assert.equal(r.host.node, 'n1', 'the HOST identity\'s endpoint');
});

test('world names: longest prefix wins, IPv4 and IPv6, IPv4-mapped CIDRs too', () => {
  const r = new EndpointRegistry({ worldNames: [
    { cidr: '0.0.0.0/0', name: 'internet' }, { cidr: '10.0.0.0/8', name: 'corp' }, { cidr: '10.1.0.0/16', name: 'corp-db' },
    { cidr: '2001:db8::/32', name: 'v6-doc' }, { cidr: '::ffff:192.0.2.0/120', name: 'test-net-1' },
  ] });
  assert.equal(r.worldName('10.1.2.3'), 'corp-db');
  assert.equal(r.worldName('10.2.0.1'), 'corp');
  assert.equal(r.worldName('8.8.8.8'), 'internet');
  assert.equal(r.worldName('192.0.2.9'), 'test-net-1', 'an IPv4-mapped CIDR matches dotted IPv4');
  assert.equal(r.worldName('2001:db8::1'), 'v6-doc');
  assert.equal(r.worldName('2001:db9::1'), '', '0.0.0.0/0 covers IPv4 only');
  assert.equal(r.worldName('10.1.2.3'), 'corp-db', 'cached');
  assert.throws(() => r.setWorldNames([{ cidr: '10.0.0.0/33', name: 'x' }]), /"10\.0\.0\.0\/33" is not a CIDR/);
  assert.equal(new EndpointRegistry().worldName('1.2.3.4'), '');
});

test('history older than the retention window is dropped; live holders are kept', () => {
  const r = new EndpointRegistry({ retentionMs: 60_000 });
  for (let i = 0; i < 100; i++) {
    r.upsertPod(pod(`p${i}`, ['10.0.3.1']), i * 1_000);
    r.deletePod('api', `p${i}`, i * 1_000 + 500);
  }
  r.upsertPod(pod('live', ['10.0.3.2']), 0);
  assert.equal(r.stats().intervals, 101);
  r.expire(100_000); // cutoff 40 000: intervals ending before it go
  assert.equal(r.lookup('10.0.3.1', 39_000), undefined);
  assert.equal(r.lookup('10.0.3.1', 40_000)?.pod, 'p40');
  assert.equal(r.stats().intervals, 61);
  r.expire(1e9);
  assert.deepEqual(r.stats(), { pods: 1, addresses: 1, intervals: 1 });
  assert.equal(r.lookup('10.0.3.2', 1e9)?.pod, 'live');
});

test('canonicalIp writes addresses as records do', () => {
  assert.equal(canonicalIp('::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(canonicalIp('FD00:0:0::0001'), 'fd00::1');
});
