// The policy features the compiler maps onto weir.o, case by case through BPF_PROG_TEST_RUN: port
// ranges at their edges, ipBlock with except in both families (and an IPv6 ::/0 that must not
// reach IPv4), named ports resolved per destination pod, SCTP, attribution in reference order.
// Policies are written as Kubernetes objects, compiled by the real compiler and applied to the
// maps through the same slot fill and flip as Datapath.apply.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import type { KubeObject, NetworkPolicy, Pod, PolicyRule } from '../../src/datastore/objects.js';
import { compilePolicy, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { TestDatapath } from '../helpers/datapath.js';
import { packet } from '../helpers/packets.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

const ns = (name: string): KubeObject => ({ kind: 'Namespace', name, labels: { 'kubernetes.io/metadata.name': name } });
const pod = (name: string, n: number, ports: Pod['ports'] = []): Pod => ({
  kind: 'Pod', namespace: 'x', name, labels: { app: name.replace(/[0-9]+$/, '') }, ports, ips: [`10.7.0.${n}`, `fd07::${n}`],
});
const ingressPolicy = (name: string, app: string, rules: PolicyRule[]): NetworkPolicy => ({
  kind: 'NetworkPolicy', namespace: 'x', name, annotations: {}, podSelector: { matchLabels: { app }, matchExpressions: [] },
  policyTypes: ['Ingress'], ingress: rules, egress: [],
});

let port = 20000;
const tcp = (src: string, dst: string, dport: number) => packet({ src, dst, l4: { proto: 'tcp', sport: port++, dport, flags: 0x02 } });
const udp = (src: string, dst: string, dport: number) => packet({ src, dst, l4: { proto: 'udp', sport: port++, dport } });
const sctp = (src: string, dst: string, dport: number) => packet({ src, dst, l4: { proto: 'sctp', sport: port++, dport } });

describe('policy features through the compiler and weir.o', () => {
  let dp: TestDatapath;
  let ids: IdAllocator;
  const objects: KubeObject[] = [
    ns('x'),
    pod('web1', 1, [{ name: 'http', port: 8080, protocol: 'TCP' }]),
    pod('web2', 2, [{ name: 'http', port: 9090, protocol: 'TCP' }, { name: 'sig', port: 3868, protocol: 'SCTP' }]),
    pod('client', 3),
    ingressPolicy('b-ranges', 'web', [
      { ports: [{ protocol: 'TCP', port: 1000, endPort: 1999 }, { protocol: 'UDP', port: 32768, endPort: 65535 }] },
    ]),
    ingressPolicy('a-named', 'web', [{ peers: [{ podSelector: { matchLabels: { app: 'client' }, matchExpressions: [] } }], ports: [{ protocol: 'TCP', port: 'http' }, { protocol: 'SCTP', port: 'sig' }] }]),
    ingressPolicy('c-blocks', 'web', [
      { peers: [{ ipBlock: { cidr: '192.0.2.0/24', except: ['192.0.2.128/25'] } }, { ipBlock: { cidr: '::/0', except: ['fd07::/64'] } }] },
    ]),
    // a rule that sorts before c-blocks and overlaps it: attribution must name a-wide for UDP 53
    ingressPolicy('a-wide', 'web', [{ peers: [{ ipBlock: { cidr: '0.0.0.0/0', except: [] } }], ports: [{ protocol: 'UDP', port: 53 }] }]),
    // egress: ipBlock peers with a named port: the destination must be a pod inside the block
    // (not in the except) with a container port of that name and protocol, on that pod's number
    pod('out', 4),
    pod('web3', 5, [{ name: 'http', port: 7070, protocol: 'TCP' }]),
    {
      kind: 'NetworkPolicy', namespace: 'x', name: 'e-blocks', annotations: {}, podSelector: { matchLabels: { app: 'out' }, matchExpressions: [] },
      policyTypes: ['Egress'], ingress: [],
      egress: [{
        peers: [{ ipBlock: { cidr: '10.7.0.0/24', except: ['10.7.0.5/32'] } }, { ipBlock: { cidr: 'fd07::/64', except: [] } }],
        ports: [{ protocol: 'TCP', port: 'http' }, { protocol: 'SCTP', port: 'sig' }],
      }],
    } satisfies NetworkPolicy,
  ];
  const rule = (policy: string, index = 0) => ids.rule({ kind: 'NetworkPolicy', policy: `x/${policy}`, direction: 'Ingress', index });
  const egressRule = (policy: string, index = 0) => ids.rule({ kind: 'NetworkPolicy', policy: `x/${policy}`, direction: 'Egress', index });

  before(async () => {
    dp = await TestDatapath.load();
    ids = new IdAllocator();
    const cluster = new ClusterState(objects);
    const placed: PlacedPod[] = [...cluster.pods.values()].map((p) => ({ pod: p, ips: p.ips, ifindex: 0 }));
    dp.apply(compilePolicy(cluster, placed, ids));
  });
  after(() => dp?.close());

  /** Runs one packet at TO_POD (the destination's ingress); returns [action, rule named]. */
  const ingress = (pkt: Buffer): [number, number] => {
    const rc = dp.run('toPod', pkt);
    const rec = TestDatapath.flows(dp.drain()).find((r) => r.type === 'FLOW_START' || r.type === 'DENY');
    return [rc, rec?.ingressRuleId ?? -1];
  };

  /** Runs one packet at FROM_POD (the source's egress); returns [action, rule named]. */
  const egress = (pkt: Buffer): [number, number] => {
    const rc = dp.run('fromPod', pkt);
    const rec = TestDatapath.flows(dp.drain()).find((r) => r.type === 'FLOW_START' || r.type === 'DENY');
    return [rc, rec?.egressRuleId ?? -1];
  };

  test('egress named ports with ipBlock peers: pods inside the block with the port, on their own number', () => {
    const out = '10.7.0.4';
    // web1 (http 8080) and web2 (http 9090, sig SCTP 3868) are inside 10.7.0.0/24
    assert.deepEqual(egress(tcp(out, '10.7.0.1', 8080)), [TC_ACT_OK, egressRule('e-blocks')]);
    assert.deepEqual(egress(tcp(out, '10.7.0.1', 9090)), [TC_ACT_SHOT, 0], "9090 is web2's http, not web1's");
    assert.deepEqual(egress(tcp(out, '10.7.0.2', 9090)), [TC_ACT_OK, egressRule('e-blocks')]);
    assert.deepEqual(egress(tcp(out, '10.7.0.2', 8080)), [TC_ACT_SHOT, 0], "8080 is web1's http, not web2's");
    assert.deepEqual(egress(sctp(out, '10.7.0.2', 3868)), [TC_ACT_OK, egressRule('e-blocks')]);
    assert.deepEqual(egress(sctp(out, '10.7.0.1', 3868)), [TC_ACT_SHOT, 0], 'web1 has no port "sig"');
    assert.deepEqual(egress(udp(out, '10.7.0.2', 9090)), [TC_ACT_SHOT, 0], 'http is TCP');
    // the client pod has no named ports at all
    assert.deepEqual(egress(tcp(out, '10.7.0.3', 8080)), [TC_ACT_SHOT, 0], 'a pod without the port');
    // web3 has http 7070 but sits in the except
    assert.deepEqual(egress(tcp(out, '10.7.0.5', 7070)), [TC_ACT_SHOT, 0], 'a pod in the except');
    // world addresses inside the block never match a named port, whatever the number
    assert.deepEqual(egress(tcp(out, '10.7.0.200', 8080)), [TC_ACT_SHOT, 0], 'not a pod');
    assert.deepEqual(egress(tcp(out, '10.7.0.200', 9090)), [TC_ACT_SHOT, 0], 'not a pod');
    // outside the block: nothing
    assert.deepEqual(egress(tcp(out, '10.8.0.1', 8080)), [TC_ACT_SHOT, 0], 'outside the block');
    // IPv6: the fd07::/64 block holds every pod's IPv6 address, web3's included
    assert.deepEqual(egress(tcp('fd07::4', 'fd07::1', 8080)), [TC_ACT_OK, egressRule('e-blocks')]);
    assert.deepEqual(egress(tcp('fd07::4', 'fd07::5', 7070)), [TC_ACT_OK, egressRule('e-blocks')], 'web3 is outside the IPv4 except only');
    assert.deepEqual(egress(tcp('fd07::4', 'fd07::5', 8080)), [TC_ACT_SHOT, 0]);
    assert.deepEqual(egress(tcp('fd07::4', 'fd07::99', 8080)), [TC_ACT_SHOT, 0], 'not a pod');
  });

  test('port ranges: both ends included, one past each end denied, up to 65535', () => {
    const world = '198.51.100.1';
    assert.deepEqual(ingress(tcp(world, '10.7.0.1', 999)), [TC_ACT_SHOT, 0]);
    assert.deepEqual(ingress(tcp(world, '10.7.0.1', 1000)), [TC_ACT_OK, rule('b-ranges')]);
    assert.deepEqual(ingress(tcp(world, '10.7.0.1', 1500)), [TC_ACT_OK, rule('b-ranges')]);
    assert.deepEqual(ingress(tcp(world, '10.7.0.1', 1999)), [TC_ACT_OK, rule('b-ranges')]);
    assert.deepEqual(ingress(tcp(world, '10.7.0.1', 2000)), [TC_ACT_SHOT, 0]);
    assert.deepEqual(ingress(udp(world, '10.7.0.2', 32767)), [TC_ACT_SHOT, 0]);
    assert.deepEqual(ingress(udp(world, '10.7.0.2', 32768)), [TC_ACT_OK, rule('b-ranges')]);
    assert.deepEqual(ingress(udp(world, '10.7.0.2', 65535)), [TC_ACT_OK, rule('b-ranges')]);
    assert.deepEqual(ingress(tcp(world, '10.7.0.2', 40000)), [TC_ACT_SHOT, 0], 'the UDP range is not TCP');
  });

  test('named ports: resolved against each destination pod (name and protocol), SCTP included', () => {
    const client = '10.7.0.3';
    assert.deepEqual(ingress(tcp(client, '10.7.0.1', 8080)), [TC_ACT_OK, rule('a-named')]);
    assert.deepEqual(ingress(tcp(client, '10.7.0.1', 9090)), [TC_ACT_SHOT, 0], "web1's http is 8080");
    assert.deepEqual(ingress(tcp(client, '10.7.0.2', 9090)), [TC_ACT_OK, rule('a-named')]);
    assert.deepEqual(ingress(sctp(client, '10.7.0.2', 3868)), [TC_ACT_OK, rule('a-named')]);
    assert.deepEqual(ingress(sctp(client, '10.7.0.1', 3868)), [TC_ACT_SHOT, 0], 'web1 has no port "sig"');
    assert.deepEqual(ingress(udp(client, '10.7.0.2', 9090)), [TC_ACT_SHOT, 0], 'http is TCP');
  });

  test('ipBlock with except, IPv4 and IPv6; an IPv6 ::/0 does not reach IPv4 addresses', () => {
    assert.deepEqual(ingress(udp('192.0.2.1', '10.7.0.1', 7)), [TC_ACT_OK, rule('c-blocks')]);
    assert.deepEqual(ingress(udp('192.0.2.200', '10.7.0.1', 7)), [TC_ACT_SHOT, 0], 'in the except');
    assert.deepEqual(ingress(udp('203.0.113.9', '10.7.0.1', 7)), [TC_ACT_SHOT, 0], 'IPv4 outside every IPv4 block; ::/0 is IPv6 only');
    assert.deepEqual(ingress(udp('2001:db8::1', 'fd07::1', 7)), [TC_ACT_OK, rule('c-blocks')]);
    assert.deepEqual(ingress(udp('fd07::3', 'fd07::1', 7)), [TC_ACT_SHOT, 0], 'the client pod, in the except');
    assert.deepEqual(ingress(udp('fd07:0:0:1::5', 'fd07::1', 7)), [TC_ACT_OK, rule('c-blocks')], 'next to the except');
  });

  test('attribution follows the reference order across peer kinds and maps', () => {
    // UDP 53 from 192.0.2.1: a-wide (ipBlock 0.0.0.0/0, UDP 53) and c-blocks (192.0.2.0/24, all
    // ports) both allow; x/a-wide sorts first
    assert.deepEqual(ingress(udp('192.0.2.1', '10.7.0.1', 53)), [TC_ACT_OK, rule('a-wide')]);
    // the client pod's address is inside 0.0.0.0/0 too: an ipBlock matches pod addresses
    assert.deepEqual(ingress(udp('10.7.0.3', '10.7.0.1', 53)), [TC_ACT_OK, rule('a-wide')]);
    // TCP 1000 from the client: b-ranges (any peer) only; a-named covers 8080 only
    assert.deepEqual(ingress(tcp('10.7.0.3', '10.7.0.1', 1000)), [TC_ACT_OK, rule('b-ranges')]);
  });
});
