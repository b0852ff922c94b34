// The global tier and host endpoints through the real compiler (compilePolicy with opts.host) and
// weir.o, case by case with BPF_PROG_TEST_RUN: Allow/Deny first match by order and name, Pass to
// the NetworkPolicy tier, Log records, end-of-tier deny; selector and namespaceSelector peers (pods,
// and host endpoints by expectedIPs), nets/notNets, ports (numbers, ranges, names)/notPorts,
// protocols; failsafes; forwarded traffic with and without applyOnForward; the host's own traffic;
// traffic between pods and their node through the "*" host endpoint; audit; the rule each record
// names. The host interface under test is lo (ifindex 1), where test runs put their packets.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterState } from '../../src/datastore/cluster.js';
import { AUDIT_ANNOTATION } from '../../src/datastore/objects.js';
import type { KubeObject, LabelSelector, NetworkPolicy, Pod } from '../../src/datastore/objects.js';
import type { EntityRule, GlobalNetworkPolicy, GlobalRule, HostEndpoint, RuleAction, RuleProtocol } from '../../src/datastore/host-objects.js';
import { compilePolicy, type PlacedPod } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { DEFAULT_FAILSAFES, FAILSAFES_DISABLED, type Failsafes } from '../../src/policy/failsafe.js';
import * as abi from '../../src/datapath/abi.js';
import { TestDatapath, type ProgramKey } from '../helpers/datapath.js';
import { packet } from '../helpers/packets.js';
import { ruleName } from '../helpers/host-policy-gen.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

const NODE = 'node1';
const NODE_IP = '10.5.255.1';
const NODE_IP6 = 'fd05::ff01';
const WEB = '10.5.0.1';
const CLIENT = '10.5.0.2';
const DB = '10.5.0.3';
const PROBE = '10.5.0.4';
const CLIENT6 = 'fd05::2';
const NODE2 = '192.0.2.20'; // node2's host endpoint (role: node)
const NODE3 = '192.0.2.21'; // node3's host endpoint (role: other)
const OUTSIDE = '198.51.100.7';
const OUTSIDE2 = '203.0.113.9';

const sel = (matchLabels: Record<string, string> = {}): LabelSelector => ({ matchLabels, matchExpressions: [] });
const ALL = sel();
const side = (e: Partial<EntityRule> = {}): EntityRule => ({ nets: [], notNets: [], ports: [], notPorts: [], ...e });
const rule = (action: RuleAction, r: { protocol?: RuleProtocol; source?: Partial<EntityRule>; destination?: Partial<EntityRule> } = {}): GlobalRule => ({
  action, ...(r.protocol !== undefined ? { protocol: r.protocol } : {}), source: side(r.source), destination: side(r.destination),
});
const one = (port: number) => ({ from: port, to: port });
const gnp = (name: string, spec: {
  order?: number; selector?: LabelSelector; namespaceSelector?: LabelSelector; types?: ('Ingress' | 'Egress')[];
  ingress?: GlobalRule[]; egress?: GlobalRule[]; applyOnForward?: boolean; audit?: boolean;
}): GlobalNetworkPolicy => ({
  kind: 'GlobalNetworkPolicy', name, annotations: spec.audit ? { [AUDIT_ANNOTATION]: 'true' } : {},
  ...(spec.order !== undefined ? { order: spec.order } : {}),
  selector: spec.selector ?? ALL,
  ...(spec.namespaceSelector ? { namespaceSelector: spec.namespaceSelector } : {}),
  types: spec.types ?? (spec.egress && spec.ingress ? ['Ingress', 'Egress'] : spec.egress ? ['Egress'] : ['Ingress']),
  ingress: spec.ingress ?? [], egress: spec.egress ?? [], applyOnForward: spec.applyOnForward ?? false,
});
const hep = (name: string, node: string, interfaceName: string, expectedIPs: string[], labels: Record<string, string>, audit = false): HostEndpoint => ({
  kind: 'HostEndpoint', name, labels, annotations: audit ? { [AUDIT_ANNOTATION]: 'true' } : {}, node, interfaceName, expectedIPs,
});

const pod = (namespace: string, name: string, ip: string, ip6: string, labels: Record<string, string>, ports: Pod['ports'] = []): Pod => ({
  kind: 'Pod', namespace, name, labels, ports, ips: [ip, ip6],
});
const BASE: KubeObject[] = [
  { kind: 'Namespace', name: 'x', labels: { team: 'a', 'kubernetes.io/metadata.name': 'x' } },
  { kind: 'Namespace', name: 'y', labels: { team: 'b', 'kubernetes.io/metadata.name': 'y' } },
  pod('x', 'web', WEB, 'fd05::1', { app: 'web' }, [{ name: 'http', port: 8080, protocol: 'TCP' }]),
  pod('x', 'client', CLIENT, CLIENT6, { app: 'client' }),
  pod('y', 'db', DB, 'fd05::3', { app: 'db' }, [{ name: 'pg', port: 5432, protocol: 'TCP' }]),
  pod('y', 'probe', PROBE, 'fd05::4', { app: 'probe' }),
];
/** This node's "*" endpoint (role node), the one naming lo (role uplink), other nodes'. */
const STAR = hep('node1-star', NODE, '*', [NODE_IP, NODE_IP6], { role: 'node' });
const LO = hep('node1-lo', NODE, 'lo', [], { role: 'uplink' });
const OTHERS = [hep('node2-star', 'node2', '*', [NODE2], { role: 'node' }), hep('node3-star', 'node3', '*', [NODE3], { role: 'other' })];

let sport = 20000;
const tcp = (src: string, dst: string, dport: number, sp = sport++) => packet({ src, dst, l4: { proto: 'tcp', sport: sp, dport, flags: 0x02 } });
const udp = (src: string, dst: string, dport: number, sp = sport++) => packet({ src, dst, l4: { proto: 'udp', sport: sp, dport } });
const sctp = (src: string, dst: string, dport: number) => packet({ src, dst, l4: { proto: 'sctp', sport: sport++, dport } });
const icmp = (src: string, dst: string) => packet({ src, dst, l4: { proto: 'icmp', type: 8, id: sport++ } });

interface Outcome {
  rc: number;
  /** "FLOW_START ALLOW ALLOW_GLOBAL", "DENY DENY_POLICY", or "(none)" */
  rec: string;
  /** rule names of the main record's fields */
  egress: string;
  ingress: string;
  forward: string;
  /** the main record's direction */
  dir: number;
  /** LOG records: "dir rule verdict" */
  logs: string[];
  /** the main record's "src_identity -> dst_identity" */
  identities: string;
}

describe('the global tier and host endpoints through the compiler and weir.o', () => {
  let dp: TestDatapath;
  let ids: IdAllocator;

  before(async () => {
    dp = await TestDatapath.load();
  });
  after(() => dp?.close());
  beforeEach(() => {
    dp.drain();
  });

  /** Compiles and applies a world: BASE's pods plus `objects`, host endpoints, global policies. */
  const world = (o: { objects?: KubeObject[]; heps?: HostEndpoint[]; gnps?: GlobalNetworkPolicy[]; failsafes?: Failsafes }): void => {
    ids = new IdAllocator();
    const cluster = new ClusterState([...BASE, ...(o.objects ?? [])]);
    const placed: PlacedPod[] = [...cluster.pods.values()].map((p) => ({ pod: p, ips: p.ips, ifindex: 0 }));
    dp.apply(compilePolicy(cluster, placed, ids, {
      hostIps: [NODE_IP, NODE_IP6],
      host: {
        node: NODE, hostEndpoints: o.heps ?? [STAR, LO, ...OTHERS], globalPolicies: o.gnps ?? [], failsafes: o.failsafes ?? DEFAULT_FAILSAFES,
        interfaces: new Map([['lo', 1]]),
      },
    }));
    dp.drain();
  };

  const run = (prog: ProgramKey, pkt: Buffer): Outcome => {
    const rc = dp.run(prog, pkt, prog === 'fromHostDev' || prog === 'toHostDev' ? { ifindex: 1 } : {});
    const recs = TestDatapath.flows(dp.drain());
    const main = recs.filter((r) => r.type === 'FLOW_START' || r.type === 'DENY');
    assert.ok(main.length <= 1, `one record per packet: ${JSON.stringify(main.map((r) => r.type))}`);
    const r = main[0];
    return {
      rc,
      rec: r ? `${r.type}${r.type === 'FLOW_START' ? ` ${abi.verdictName(r.verdict)}` : ''} ${abi.reasonName(r.reason)}` : '(none)',
      egress: r ? ruleName(ids, r.egressRuleId) : '',
      ingress: r ? ruleName(ids, r.ingressRuleId) : '',
      forward: r ? ruleName(ids, r.forwardRuleId) : '',
      dir: r ? r.direction : -1,
      identities: r ? `${r.srcIdentity} -> ${r.dstIdentity}` : '',
      logs: recs.filter((l) => l.type === 'LOG').map((l) => `${l.direction} ${ruleName(ids, l.direction === 1 ? l.egressRuleId : l.ingressRuleId)} ${abi.verdictName(l.verdict)}`),
    };
  };
  const allowed = (o: Outcome, rec: string) => {
    assert.equal(o.rc, TC_ACT_OK, `passes (${o.rec})`);
    assert.equal(o.rec, rec);
  };
  const denied = (o: Outcome, rec: string, dir: number) => {
    assert.equal(o.rc, TC_ACT_SHOT, `dropped (${o.rec})`);
    assert.equal(o.rec, rec);
    assert.equal(o.dir, dir, 'the denying side\'s direction');
  };

  test('Allow and Deny: the first matching rule decides, policies by order (absent last), ties by name, rules in order', () => {
    world({
      gnps: [
        gnp('b-deny', { order: 10, selector: sel({ app: 'client' }), egress: [rule('Deny', { protocol: 'TCP', destination: { ports: [one(80)] } })] }),
        gnp('a-allow', { order: 10, selector: sel({ app: 'client' }), egress: [rule('Allow', { protocol: 'TCP', destination: { ports: [one(80), one(443)] } })] }),
        gnp('c-first', { order: 5, selector: sel({ app: 'client' }), egress: [
          rule('Deny', { protocol: 'TCP', destination: { ports: [one(443)] } }),
          rule('Allow', { protocol: 'TCP', destination: { ports: [one(443), one(444)] } }),
        ] }),
        gnp('a-unordered', { selector: sel({ app: 'client' }), egress: [rule('Allow', { protocol: 'UDP' })] }),
        gnp('z-unordered', { selector: sel({ app: 'client' }), egress: [rule('Deny', { protocol: 'UDP' }), rule('Allow')] }),
      ],
    });
    let o = run('fromPod', tcp(CLIENT, WEB, 80)); // a-allow and b-deny tie on order: a-allow first
    allowed(o, 'FLOW_START ALLOW ALLOW_GLOBAL');
    assert.equal(o.egress, 'gnp a-allow Egress[0] Allow');
    o = run('fromPod', tcp(CLIENT, WEB, 443)); // c-first (order 5) before a-allow; its rule 0 before rule 1
    denied(o, 'DENY DENY_POLICY', abi.Direction.EGRESS);
    assert.equal(o.egress, 'gnp c-first Egress[0] Deny');
    o = run('fromPod', tcp(CLIENT, WEB, 444));
    allowed(o, 'FLOW_START ALLOW ALLOW_GLOBAL');
    assert.equal(o.egress, 'gnp c-first Egress[1] Allow');
    o = run('fromPod', udp(CLIENT, OUTSIDE, 53)); // unordered policies after ordered ones, by name
    allowed(o, 'FLOW_START ALLOW ALLOW_GLOBAL');
    assert.equal(o.egress, 'gnp a-unordered Egress[0] Allow');
    o = run('fromPod', tcp(CLIENT, WEB, 22));
    allowed(o, 'FLOW_START ALLOW ALLOW_GLOBAL');
    assert.equal(o.egress, 'gnp z-unordered Egress[1] Allow');
    // a pod no global policy selects: the NetworkPolicy tier alone (not isolated)
    allowed(run('fromPod', tcp(PROBE, WEB, 443)), 'FLOW_START ALLOW ALLOW_NOT_ISOLATED');
  });

  test('Pass ends the global tier and the NetworkPolicy tier decides; no rule deciding or passing is an end-of-tier deny', () => {
    const np: NetworkPolicy = {
      kind: 'NetworkPolicy', namespace: 'x', name: 'web-from-client', annotations: {}, podSelector: sel({ app: 'web' }), policyTypes: ['Ingress'],
      ingress: [{ peers: [{ podSelector: sel({ app: 'client' }) }], ports: [{ protocol: 'TCP', port: 8080 }] }], egress: [],
    };
    world({
      objects: [np],
      gnps: [
        gnp('pass-clients', { order: 1, selector: sel({ app: 'web' }), ingress: [rule('Pass', { source: { selector: sel({ app: 'client' }) } })] }),
        gnp('later', { order: 2, selector: sel({ app: 'web' }), ingress: [rule('Allow', { protocol: 'TCP' })] }),
        gnp('pass-db', { selector: sel({ app: 'db' }), ingress: [rule('Pass')] }),
        gnp('nothing', { selector: sel({ app: 'probe' }), types: ['Ingress'] }),
      ],
    });
    let o = run('toPod', tcp(CLIENT, WEB, 8080));
    allowed(o, 'FLOW_START ALLOW ALLOW_POLICY');
    assert.equal(o.ingress, 'np x/web-from-client Ingress[0]', 'the NetworkPolicy rule, not the Pass rule');
    o = run('toPod', tcp(CLIENT, WEB, 9090)); // passed: the global Allow after it is never reached
    denied(o, 'DENY DENY_DEFAULT', abi.Direction.INGRESS);
    assert.equal(o.ingress, '');
    o = run('toPod', udp(PROBE, WEB, 53)); // no Pass for probe; "later" allows only TCP: end of tier
    denied(o, 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
    assert.equal(o.ingress, '');
    o = run('toPod', tcp(PROBE, WEB, 53));
    allowed(o, 'FLOW_START ALLOW ALLOW_GLOBAL');
    assert.equal(o.ingress, 'gnp later Ingress[0] Allow');
    allowed(run('toPod', tcp(WEB, DB, 1)), 'FLOW_START ALLOW ALLOW_NOT_ISOLATED'); // db: Pass, no NetworkPolicy
    denied(run('toPod', tcp(WEB, PROBE, 1)), 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS); // selected, no rules
    allowed(run('fromPod', tcp(PROBE, WEB, 1)), 'FLOW_START ALLOW ALLOW_NOT_ISOLATED'); // "nothing" is Ingress only
  });

  test('Log rules make a LOG record each, in order, and evaluation goes on', () => {
    world({
      gnps: [
        gnp('log', { order: 1, selector: sel({ app: 'db' }), ingress: [
          rule('Log'),
          rule('Log', { protocol: 'TCP', destination: { ports: [one(5432)] } }),
          rule('Allow', { protocol: 'TCP', destination: { ports: [{ name: 'pg' }] } }),
          rule('Log', { protocol: 'TCP' }),
        ] }),
      ],
    });
    let o = run('toPod', tcp(CLIENT, DB, 5432));
    allowed(o, 'FLOW_START ALLOW ALLOW_GLOBAL');
    assert.equal(o.ingress, 'gnp log Ingress[2] Allow');
    assert.deepEqual(o.logs, ['0 gnp log Ingress[0] Log ALLOW', '0 gnp log Ingress[1] Log ALLOW']);
    o = run('toPod', tcp(CLIENT, DB, 80));
    denied(o, 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
    assert.deepEqual(o.logs, ['0 gnp log Ingress[0] Log DENY', '0 gnp log Ingress[3] Log DENY']);
    o = run('toPod', udp(CLIENT, DB, 80));
    denied(o, 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
    assert.deepEqual(o.logs, ['0 gnp log Ingress[0] Log DENY']);
    o = run('toPod', tcp(CLIENT, WEB, 80)); // not selected: no logs
    assert.deepEqual(o.logs, []);
  });

  test('peers: selector and namespaceSelector over pods, host endpoints by expectedIPs, outside addresses match no selector', () => {
    world({
      gnps: [
        gnp('peers', { selector: sel({ app: 'web' }), ingress: [
          rule('Deny', { source: { selector: sel({ app: 'probe' }), namespaceSelector: sel({ team: 'b' }) } }),
          rule('Allow', { source: { namespaceSelector: sel({ team: 'b' }) } }),
          rule('Allow', { protocol: 'TCP', source: { selector: sel({ role: 'node' }) } }),
          rule('Allow', { protocol: 'TCP', source: { selector: ALL, namespaceSelector: ALL }, destination: { ports: [one(80)] } }),
          rule('Allow', { protocol: 'UDP', source: { selector: ALL } }),
        ] }),
      ],
    });
    let o = run('toPod', tcp(PROBE, WEB, 80));
    denied(o, 'DENY DENY_POLICY', abi.Direction.INGRESS);
    assert.equal(o.ingress, 'gnp peers Ingress[0] Deny');
    assert.equal(run('toPod', tcp(DB, WEB, 80)).ingress, 'gnp peers Ingress[1] Allow');
    assert.equal(run('toPod', tcp(NODE2, WEB, 81)).ingress, 'gnp peers Ingress[2] Allow', 'another node\'s host endpoint, by its labels');
    denied(run('toPod', tcp(NODE3, WEB, 81)), 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
    // a namespaceSelector never matches a host endpoint, selector {} matches any endpoint
    denied(run('toPod', tcp(NODE3, WEB, 80)), 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
    assert.equal(run('toPod', tcp(CLIENT, WEB, 80)).ingress, 'gnp peers Ingress[3] Allow');
    assert.equal(run('toPod', udp(NODE3, WEB, 80)).ingress, 'gnp peers Ingress[4] Allow');
    denied(run('toPod', udp(OUTSIDE, WEB, 80)), 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
    denied(run('toPod', tcp(OUTSIDE, WEB, 80)), 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
  });

  test('nets and notNets, per family', () => {
    world({
      gnps: [
        gnp('nets', { selector: sel({ app: 'client' }), egress: [
          rule('Deny', { destination: { nets: ['203.0.113.0/24'], notNets: ['203.0.113.128/25'] } }),
          rule('Allow', { destination: { nets: ['203.0.113.0/24', '2001:db8::/32'] } }),
          rule('Allow', { source: { nets: ['fd05::/64'] }, destination: { nets: ['fd05::/120'] } }),
          rule('Deny', { destination: { nets: ['::/0'] } }), // every IPv6 address, no IPv4 one
          rule('Allow', { destination: { notNets: ['10.0.0.0/8'] } }),
        ] }),
      ],
    });
    assert.equal(run('fromPod', tcp(CLIENT, OUTSIDE2, 80)).egress, 'gnp nets Egress[0] Deny');
    assert.equal(run('fromPod', tcp(CLIENT, '203.0.113.200', 80)).egress, 'gnp nets Egress[1] Allow');
    assert.equal(run('fromPod', tcp(CLIENT6, '2001:db8::5', 80)).egress, 'gnp nets Egress[1] Allow');
    assert.equal(run('fromPod', tcp(CLIENT6, 'fd05::1', 80)).egress, 'gnp nets Egress[2] Allow');
    assert.equal(run('fromPod', tcp(CLIENT6, '2001:db9::1', 80)).egress, 'gnp nets Egress[3] Deny');
    assert.equal(run('fromPod', tcp(CLIENT, OUTSIDE, 80)).egress, 'gnp nets Egress[4] Allow');
    denied(run('fromPod', tcp(CLIENT, WEB, 80)), 'DENY DENY_END_OF_TIER', abi.Direction.EGRESS);
  });

  test('ports (numbers, ranges, names), notPorts, source ports and protocols', () => {
    world({
      gnps: [
        gnp('ports', { selector: { matchLabels: {}, matchExpressions: [{ key: 'app', operator: 'In', values: ['db', 'web'] }] }, ingress: [
          rule('Deny', { protocol: 'TCP', destination: { ports: [{ from: 1000, to: 1999 }], notPorts: [one(1500)] } }),
          rule('Allow', { protocol: 'TCP', destination: { ports: [one(1500), { name: 'pg' }] } }),
          rule('Allow', { protocol: 'UDP', source: { ports: [one(53)] } }),
          rule('Allow', { protocol: 'SCTP' }),
          rule('Deny', { protocol: 'ICMP' }),
          rule('Allow', { protocol: 47 }),
        ] }),
      ],
    });
    for (const port of [1000, 1001, 1499, 1501, 1999]) assert.equal(run('toPod', tcp(CLIENT, DB, port)).ingress, 'gnp ports Ingress[0] Deny', `port ${port}`);
    assert.equal(run('toPod', tcp(CLIENT, DB, 1500)).ingress, 'gnp ports Ingress[1] Allow');
    assert.equal(run('toPod', tcp(CLIENT, DB, 5432)).ingress, 'gnp ports Ingress[1] Allow', 'db\'s container port pg');
    denied(run('toPod', tcp(CLIENT, WEB, 5432)), 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS); // web has no port pg
    denied(run('toPod', tcp(CLIENT, DB, 999)), 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
    denied(run('toPod', tcp(CLIENT, DB, 2000)), 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
    assert.equal(run('toPod', udp(CLIENT, DB, 9999, 53)).ingress, 'gnp ports Ingress[2] Allow', 'source port 53');
    denied(run('toPod', udp(CLIENT, DB, 53, 54)), 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
    assert.equal(run('toPod', sctp(CLIENT, DB, 1000)).ingress, 'gnp ports Ingress[3] Allow');
    const o = run('toPod', icmp(CLIENT, DB));
    denied(o, 'DENY DENY_POLICY', abi.Direction.INGRESS);
    assert.equal(o.ingress, 'gnp ports Ingress[4] Deny');
    assert.equal(run('toPod', packet({ src: CLIENT, dst: DB, l4: { proto: 47, raw: Buffer.alloc(8) } })).ingress, 'gnp ports Ingress[5] Allow');
  });

  test('failsafes: the host\'s own traffic on failsafe ports passes a deny-all, both ways; not forwarded traffic; disabled: denied', () => {
    const lockdown = gnp('lockdown', { selector: sel({ role: 'uplink' }), ingress: [rule('Deny')], egress: [rule('Deny')], applyOnForward: true });
    world({ gnps: [lockdown] });
    let o = run('fromHostDev', tcp(OUTSIDE, NODE_IP, 22));
    allowed(o, 'FLOW_START ALLOW ALLOW_FAILSAFE');
    assert.equal(o.ingress, '');
    o = run('fromHostDev', tcp(OUTSIDE, NODE_IP, 80));
    denied(o, 'DENY DENY_POLICY', abi.Direction.INGRESS);
    assert.equal(o.ingress, 'gnp lockdown Ingress[0] Deny');
    allowed(run('toHostDev', udp(NODE_IP, OUTSIDE, 53)), 'FLOW_START ALLOW ALLOW_FAILSAFE');
    allowed(run('toHostDev', tcp(NODE_IP6, '2001:db8::1', 6443)), 'FLOW_START ALLOW ALLOW_FAILSAFE');
    o = run('toHostDev', tcp(NODE_IP, OUTSIDE, 22)); // tcp 22 is inbound only
    denied(o, 'DENY DENY_POLICY', abi.Direction.EGRESS);
    assert.equal(o.egress, 'gnp lockdown Egress[0] Deny');
    o = run('fromHostDev', tcp(OUTSIDE, OUTSIDE2, 22)); // forwarded: no failsafe
    denied(o, 'DENY DENY_POLICY', abi.Direction.INGRESS);
    assert.equal(o.forward, 'gnp lockdown Ingress[0] Deny');
    assert.equal(o.ingress, '');
    world({ gnps: [lockdown], failsafes: FAILSAFES_DISABLED });
    denied(run('fromHostDev', tcp(OUTSIDE, NODE_IP, 22)), 'DENY DENY_POLICY', abi.Direction.INGRESS);
    denied(run('toHostDev', udp(NODE_IP, OUTSIDE, 53)), 'DENY DENY_POLICY', abi.Direction.EGRESS);
  });

  test('host endpoints: default deny for the host\'s own traffic, allow for forwarded traffic; "*" covers an interface no endpoint names; no endpoint: not policed', () => {
    world({});
    let o = run('fromHostDev', tcp(OUTSIDE, NODE_IP, 80));
    denied(o, 'DENY DENY_HOST_DEFAULT', abi.Direction.INGRESS);
    denied(run('toHostDev', tcp(NODE_IP, OUTSIDE, 80)), 'DENY DENY_HOST_DEFAULT', abi.Direction.EGRESS);
    o = run('fromHostDev', tcp(OUTSIDE, OUTSIDE2, 80));
    allowed(o, 'FLOW_START ALLOW ALLOW_FORWARDED');
    assert.equal(o.forward, '');
    assert.equal(o.identities, `${abi.Identity.WORLD} -> ${abi.Identity.WORLD}`);
    // lo covered by "*" alone: its policies apply there (Log rules too)
    world({ heps: [STAR], gnps: [gnp('node-in', { selector: sel({ role: 'node' }), ingress: [rule('Log', { protocol: 'TCP' }), rule('Allow', { protocol: 'TCP', destination: { ports: [one(80)] } })] })] });
    o = run('fromHostDev', tcp(OUTSIDE, NODE_IP, 80));
    allowed(o, 'FLOW_START ALLOW ALLOW_GLOBAL');
    assert.equal(o.ingress, 'gnp node-in Ingress[1] Allow');
    assert.deepEqual(o.logs, ['0 gnp node-in Ingress[0] Log ALLOW']);
    assert.equal(o.identities, `${abi.Identity.WORLD} -> ${abi.Identity.HOST}`, 'the node\'s address is HOST');
    o = run('fromHostDev', tcp(OUTSIDE, NODE_IP, 81));
    denied(o, 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
    assert.deepEqual(o.logs, ['0 gnp node-in Ingress[0] Log DENY']);
    // a named endpoint wins over "*"
    world({ heps: [STAR, LO], gnps: [gnp('node-in', { selector: sel({ role: 'node' }), ingress: [rule('Allow', { protocol: 'TCP', destination: { ports: [one(80)] } })] })] });
    denied(run('fromHostDev', tcp(OUTSIDE, NODE_IP, 80)), 'DENY DENY_HOST_DEFAULT', abi.Direction.INGRESS);
    // no host endpoint for this node: nothing on lo is policed or recorded
    world({ heps: OTHERS, gnps: [gnp('deny-all', { selector: ALL, ingress: [rule('Deny')], egress: [rule('Deny')], applyOnForward: true })] });
    for (const [prog, pkt] of [['fromHostDev', tcp(OUTSIDE, NODE_IP, 80)], ['toHostDev', tcp(NODE_IP, OUTSIDE, 80)], ['fromHostDev', tcp(OUTSIDE, OUTSIDE2, 80)]] as const) {
      o = run(prog, pkt);
      assert.equal(o.rc, TC_ACT_OK);
      assert.equal(o.rec, '(none)');
    }
  });

  test('forwarded traffic: only applyOnForward policies, the rule in forward_rule_id; pods behind the interface', () => {
    world({
      gnps: [
        gnp('own-only', { order: 1, selector: sel({ role: 'uplink' }), ingress: [rule('Deny', { protocol: 'TCP', destination: { ports: [one(81)] } })] }),
        gnp('fwd', { order: 2, selector: sel({ role: 'uplink' }), ingress: [rule('Deny', { protocol: 'TCP', destination: { ports: [one(80)] } }), rule('Pass')], applyOnForward: true }),
        gnp('fwd-out', { order: 3, selector: sel({ role: 'uplink' }), egress: [
          rule('Deny', { protocol: 'TCP', destination: { ports: [one(443)] } }),
          rule('Allow', { protocol: 'TCP', destination: { ports: [one(444)] } }),
        ], applyOnForward: true }),
      ],
    });
    let o = run('fromHostDev', tcp(OUTSIDE, OUTSIDE2, 80));
    denied(o, 'DENY DENY_POLICY', abi.Direction.INGRESS);
    assert.equal(o.forward, 'gnp fwd Ingress[0] Deny');
    o = run('fromHostDev', tcp(OUTSIDE, OUTSIDE2, 81)); // own-only does not apply; fwd passes: allowed by default
    allowed(o, 'FLOW_START ALLOW ALLOW_FORWARDED');
    assert.equal(o.forward, 'gnp fwd Ingress[1] Pass', 'the Pass rule that led to the default');
    o = run('fromHostDev', tcp(OUTSIDE, NODE_IP, 81)); // the host's own: every policy selecting it
    denied(o, 'DENY DENY_POLICY', abi.Direction.INGRESS);
    assert.equal(o.ingress, 'gnp own-only Ingress[0] Deny');
    assert.equal(o.forward, '');
    o = run('fromHostDev', tcp(OUTSIDE, NODE_IP, 82)); // passed: the host's default deny
    denied(o, 'DENY DENY_HOST_DEFAULT', abi.Direction.INGRESS);
    assert.equal(o.ingress, 'gnp fwd Ingress[1] Pass');
    // to a pod behind the interface: forwarded at the device, then the pod's ingress
    o = run('fromHostDev', tcp(OUTSIDE, WEB, 80));
    denied(o, 'DENY DENY_POLICY', abi.Direction.INGRESS);
    assert.equal(o.forward, 'gnp fwd Ingress[0] Deny');
    const pkt = tcp(OUTSIDE, WEB, 8080);
    allowed(run('fromHostDev', pkt), 'FLOW_START ALLOW ALLOW_FORWARDED');
    o = run('toPod', pkt);
    allowed(o, 'FLOW_START ALLOW ALLOW_NOT_ISOLATED');
    assert.equal(o.forward, 'gnp fwd Ingress[1] Pass', 'conntrack carries the forwarded rule');
    // a pod's flow leaving through the interface: its egress at FROM_POD, then forwarded egress
    const out = tcp(CLIENT, OUTSIDE, 443);
    allowed(run('fromPod', out), 'FLOW_START ALLOW ALLOW_NOT_ISOLATED');
    o = run('toHostDev', out);
    denied(o, 'DENY DENY_POLICY', abi.Direction.EGRESS);
    assert.equal(o.forward, 'gnp fwd-out Egress[0] Deny');
    const ok = tcp(CLIENT, OUTSIDE, 444);
    allowed(run('fromPod', ok), 'FLOW_START ALLOW ALLOW_NOT_ISOLATED');
    o = run('toHostDev', ok);
    allowed(o, 'FLOW_START ALLOW ALLOW_GLOBAL');
    assert.equal(o.forward, 'gnp fwd-out Egress[1] Allow');
    // the host's own egress on 443: fwd-out selects it too (it is not forwarded-only)
    denied(run('toHostDev', tcp(NODE_IP, OUTSIDE, 443)), 'DENY DENY_POLICY', abi.Direction.EGRESS);
  });

  test('a flow forwarded in and out through host interfaces meets the egress interface\'s forwarded policy too', () => {
    world({
      gnps: [gnp('fwd-out', { selector: sel({ role: 'uplink' }), egress: [rule('Deny', { protocol: 'TCP', destination: { ports: [one(443)] } })], applyOnForward: true })],
    });
    const pkt = tcp(OUTSIDE, OUTSIDE2, 443);
    allowed(run('fromHostDev', pkt), 'FLOW_START ALLOW ALLOW_FORWARDED'); // entering: no ingress policy
    // leaving (here through the same lo, as a second policed interface would): the reference
    // judges the egress side on its own, and fwd-out denies it
    const o = run('toHostDev', pkt);
    assert.equal(o.rc, TC_ACT_SHOT, `the forwarded egress side must be judged at weir_to_host_dev too (got ${o.rec}, ` +
      'nothing judged: each host-device hook must judge a forwarded flow on its own)');
    denied(o, 'DENY DENY_POLICY', abi.Direction.EGRESS);
    assert.equal(o.forward, 'gnp fwd-out Egress[0] Deny');
  });

  test('pods and their node: the "*" host endpoint judges the host\'s side at the pod hooks', () => {
    world({
      gnps: [
        gnp('node', { selector: sel({ role: 'node' }), types: ['Ingress', 'Egress'],
          ingress: [rule('Allow', { protocol: 'TCP', destination: { ports: [one(10250)] } })],
          egress: [rule('Allow', { protocol: 'TCP', destination: { ports: [one(8080)] } })] }),
        gnp('client-out', { selector: sel({ app: 'client' }), egress: [rule('Deny', { protocol: 'TCP', destination: { ports: [one(10255)] } }), rule('Allow')] }),
      ],
    });
    let o = run('fromPod', tcp(CLIENT, NODE_IP, 10250));
    allowed(o, 'FLOW_START ALLOW ALLOW_GLOBAL');
    assert.equal(o.ingress, 'gnp node Ingress[0] Allow', 'the host\'s ingress rule');
    assert.equal(o.egress, 'gnp client-out Egress[1] Allow', 'the pod\'s egress rule');
    o = run('fromPod', tcp(CLIENT, NODE_IP, 10255)); // the pod's egress denies first
    denied(o, 'DENY DENY_POLICY', abi.Direction.EGRESS);
    assert.equal(o.egress, 'gnp client-out Egress[0] Deny');
    o = run('fromPod', tcp(CLIENT6, NODE_IP6, 80));
    denied(o, 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
    assert.equal(o.egress, 'gnp client-out Egress[1] Allow');
    allowed(run('fromPod', tcp(CLIENT, NODE_IP, 22)), 'FLOW_START ALLOW ALLOW_FAILSAFE');
    o = run('toPod', tcp(NODE_IP, WEB, 8080));
    allowed(o, 'FLOW_START ALLOW ALLOW_GLOBAL');
    assert.equal(o.egress, 'gnp node Egress[0] Allow');
    o = run('toPod', tcp(NODE_IP, WEB, 9090));
    denied(o, 'DENY DENY_END_OF_TIER', abi.Direction.EGRESS);
    allowed(run('toPod', udp(NODE_IP, WEB, 53)), 'FLOW_START ALLOW ALLOW_FAILSAFE'); // outbound failsafe
    // without a "*" endpoint the pod hooks leave the host's side alone
    world({ heps: [LO], gnps: [gnp('deny-all', { selector: ALL, ingress: [rule('Deny')], egress: [rule('Deny')] })] });
    o = run('fromPod', tcp(PROBE, NODE_IP, 80));
    denied(o, 'DENY DENY_POLICY', abi.Direction.EGRESS); // the pod's own global tier still applies
    world({ heps: [LO], gnps: [gnp('deny-all', { selector: sel({ role: 'uplink' }), ingress: [rule('Deny')], egress: [rule('Deny')] })] });
    allowed(run('fromPod', tcp(PROBE, NODE_IP, 80)), 'FLOW_START ALLOW ALLOW_NOT_ISOLATED');
    allowed(run('toPod', tcp(NODE_IP, PROBE, 80)), 'FLOW_START ALLOW ALLOW_NOT_ISOLATED');
  });

  test('audit: audit-mode global policies never change enforcement, they turn allows they would deny into AUDIT; a host endpoint in audit passes its denials', () => {
    world({
      gnps: [
        gnp('audit-deny', { selector: sel({ app: 'web' }), audit: true, ingress: [rule('Deny', { protocol: 'TCP', destination: { ports: [one(8080)] } }), rule('Allow')] }),
        gnp('audit-allow', { selector: sel({ app: 'db' }), audit: true, ingress: [rule('Allow')] }),
        gnp('db-deny', { order: 1, selector: sel({ app: 'db' }), ingress: [rule('Deny', { protocol: 'TCP', destination: { ports: [one(7000)] } }), rule('Allow', { protocol: 'UDP' })] }),
        gnp('fwd-audit', { selector: sel({ role: 'uplink' }), audit: true, applyOnForward: true, ingress: [rule('Deny', { protocol: 'TCP', destination: { ports: [one(25)] } })] }),
      ],
    });
    let o = run('toPod', tcp(CLIENT, WEB, 8080));
    allowed(o, 'FLOW_START AUDIT AUDIT');
    assert.equal(o.ingress, 'gnp audit-deny Ingress[0] Deny', 'the record names the audit-mode rule that would deny it');
    allowed(run('toPod', tcp(CLIENT, WEB, 80)), 'FLOW_START ALLOW ALLOW_NOT_ISOLATED');
    o = run('toPod', tcp(CLIENT, DB, 7000)); // an audit-mode Allow opens nothing
    denied(o, 'DENY DENY_POLICY', abi.Direction.INGRESS);
    assert.equal(o.ingress, 'gnp db-deny Ingress[0] Deny');
    denied(run('toPod', tcp(CLIENT, DB, 7001)), 'DENY DENY_END_OF_TIER', abi.Direction.INGRESS);
    o = run('toPod', udp(CLIENT, DB, 7001));
    allowed(o, 'FLOW_START ALLOW ALLOW_GLOBAL');
    assert.equal(o.ingress, 'gnp db-deny Ingress[1] Allow');
    o = run('fromHostDev', tcp(OUTSIDE, OUTSIDE2, 25)); // forwarded, allowed by default; the audit-mode policy would deny
    allowed(o, 'FLOW_START AUDIT AUDIT');
    assert.equal(o.forward, 'gnp fwd-audit Ingress[0] Deny', 'the record names the audit-mode rule that would deny it');
    // an audit-mode policy cannot open the host's default deny
    world({ gnps: [gnp('open', { selector: sel({ role: 'uplink' }), audit: true, ingress: [rule('Allow')] })] });
    denied(run('fromHostDev', tcp(OUTSIDE, NODE_IP, 80)), 'DENY DENY_HOST_DEFAULT', abi.Direction.INGRESS);
    // the host endpoint in audit mode: its denials pass as AUDIT, naming the rule
    world({ heps: [STAR, hep('node1-lo', NODE, 'lo', [], { role: 'uplink' }, true), ...OTHERS], gnps: [gnp('lockdown', { selector: sel({ role: 'uplink' }), ingress: [rule('Deny')] })] });
    o = run('fromHostDev', tcp(OUTSIDE, NODE_IP, 80));
    allowed(o, 'FLOW_START AUDIT AUDIT');
    assert.equal(o.ingress, 'gnp lockdown Ingress[0] Deny');
    allowed(run('toHostDev', tcp(NODE_IP, OUTSIDE, 80)), 'FLOW_START AUDIT AUDIT'); // default deny, audited
    // a pod whose namespace is in audit mode: global denials pass as AUDIT too
    world({
      objects: [{ kind: 'Namespace', name: 'y', labels: { team: 'b', 'kubernetes.io/metadata.name': 'y' }, annotations: { [AUDIT_ANNOTATION]: 'true' } }],
      gnps: [gnp('deny-db', { selector: sel({ app: 'db' }), ingress: [rule('Deny')] })],
    });
    o = run('toPod', tcp(CLIENT, DB, 80));
    allowed(o, 'FLOW_START AUDIT AUDIT');
    assert.equal(o.ingress, 'gnp deny-db Ingress[0] Deny');
  });
});
