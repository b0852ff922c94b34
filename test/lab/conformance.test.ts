// Conformance in the lab: the upstream Kubernetes network-policy e2e scenarios
// (test/e2e/network/netpol/network_policy.go in kubernetes/kubernetes) on `weir lab`, with real
// TCP and UDP traffic through the real datapath. One lab holds the upstream model (namespaces x, y,
// z × pods a, b, c; ports 80 and 81, TCP and UDP; see conformance-model.ts) for the whole file;
// each scenario applies its policies, probes the full 9×9 matrix on the ports it is about, and
// removes its policies (and any label it changed) afterwards, so scenarios are independent.
//
// Every observed matrix must equal two expectations that must also agree with each other: the
// truth table written here in upstream's Reachability style, and the reference evaluator
// (src/policy/reference.ts) run over the lab's own objects and addresses.
//
// Named ports (the model's pods name their container ports serve-<port>-<tcp|udp>, as upstream's
// do), ipBlock (CIDRs built from the lab's own pod addresses, so nothing depends on allocation
// order) and endPort ranges are here too.
//
// SCTP scenarios (the SCTP copies of default-deny-ingress, Ports and PodSelector+NamespaceSelector,
// and "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP'" / "should properly isolate
// pods that are selected by a policy allowing SCTP") need SCTP sockets this kernel lacks: they are
// BPF_PROG_TEST_RUN tests in test/datapath, not lab tests.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { L4Protocol } from '../../src/datastore/objects.js';
import { Lab } from '../../src/lab/lab.js';
import { formatProbeTable, probeLab } from '../../src/lab/probe.js';
import { labPinRoot } from '../../src/lab/state.js';
import { evaluate, formatDecision } from '../../src/policy/reference.js';
import {
  ALL_PODS, Reachability, cidrHolds, coveringCidr, differingPairs, formatMatrix, hostCidr, modelManifest, pairKey, policy,
  policyManifest, sideBySide,
  type Matrix, type ModelOptions, type PolicyDoc,
} from './conformance-model.js';

const LAB_NAME = `tc${process.pid % 10000}`;
/** Denied pairs cost one timeout; all pairs of a step run in parallel. */
const PROBE_TIMEOUT_MS = 1000;

interface Check {
  readonly port: number;
  readonly protocol: L4Protocol;
  readonly family?: 4 | 6;
  readonly want: Reachability;
}

const tcp80 = (want: Reachability, family: 4 | 6 = 4): Check => ({ port: 80, protocol: 'TCP', family, want });
const tcp81 = (want: Reachability, family: 4 | 6 = 4): Check => ({ port: 81, protocol: 'TCP', family, want });
const udp80 = (want: Reachability, family: 4 | 6 = 4): Check => ({ port: 80, protocol: 'UDP', family, want });
const udp81 = (want: Reachability, family: 4 | 6 = 4): Check => ({ port: 81, protocol: 'UDP', family, want });

const allowAll = () => new Reachability(true);
const pod = (labels: Record<string, string>) => ({ matchLabels: labels });
const ns = (labels: Record<string, string>) => ({ matchLabels: labels });
const expr = (key: string, operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist', values?: string[]) =>
  ({ matchExpressions: [{ key, operator, ...(values ? { values } : {}) }] });
const NS_NAME = 'kubernetes.io/metadata.name';

let lab: Lab | undefined;
let dir = '';
let fileCount = 0;
let relabelled = false;

function file(text: string): string {
  const p = path.join(dir, `m${fileCount++}.yaml`);
  writeFileSync(p, text);
  return p;
}

function theLab(): Lab {
  assert.ok(lab, `lab "${LAB_NAME}" is not up (see the failure of the setup)`);
  return lab;
}

async function applyPolicies(...policies: PolicyDoc[]): Promise<void> {
  await theLab().apply([file(policyManifest(policies))]);
}

async function deletePolicies(...policies: PolicyDoc[]): Promise<void> {
  const { missing } = await theLab().delete([file(policyManifest(policies))]);
  assert.deepEqual(missing, [], 'deleted policies existed');
}

/** Re-applies the model's Namespaces and Pods with extra labels (upstream's AddNamespaceLabel /
 * AddPodLabels); the scenario's cleanup puts the plain model back. */
async function relabel(options: ModelOptions): Promise<void> {
  relabelled = true;
  await theLab().apply([file(modelManifest(options))]);
}

/** What the reference evaluator says of every pair, from the lab's objects and addresses. */
function referenceMatrix(check: Check): { matrix: Matrix; explain: (from: string, to: string) => string } {
  const l = theLab();
  const cluster = l.cluster();
  const pods = l.snapshot.pods;
  const placement = new Map(Object.entries(pods).map(([key, p]) => [key, [p.ipv4, p.ipv6].filter((ip): ip is string => !!ip)]));
  const ipOf = (key: string): string => {
    const p = pods[key];
    const ip = check.family === 6 ? p?.ipv6 : p?.ipv4;
    assert.ok(ip, `pod ${key} has no IPv${check.family ?? 4} address in the lab`);
    return ip;
  };
  const run = (from: string, to: string) => evaluate(cluster, placement, { src: ipOf(from), dst: ipOf(to), protocol: check.protocol, dstPort: check.port });
  const matrix = new Map<string, boolean>();
  for (const from of ALL_PODS) for (const to of ALL_PODS) matrix.set(pairKey(from, to), run(from, to).verdict === 'allow');
  return {
    matrix,
    explain: (from, to) => {
      const e = run(from, to);
      return `${from} -> ${to}: reference ${e.verdict}: egress ${formatDecision(e.egress)}; ingress ${formatDecision(e.ingress)}`;
    },
  };
}

/** Probes every check's matrix (all in parallel) and compares each with its truth table and
 * with the reference evaluator; one failure lists every matrix that disagreed. */
async function expectMatrices(step: string, ...checks: Check[]): Promise<void> {
  const l = theLab();
  const reports = await Promise.all(checks.map((c) =>
    probeLab(l.snapshot, { port: c.port, protocol: c.protocol, family: c.family ?? 4, timeoutMs: PROBE_TIMEOUT_MS })));
  const failures: string[] = [];
  checks.forEach((check, i) => {
    const report = reports[i]!;
    const observed = new Map(report.results.map((r) => [pairKey(r.from, r.to), r.connected]));
    assert.equal(observed.size, ALL_PODS.length ** 2, `${step}: probed every pair of the model`);
    const truth = check.want.matrix();
    const reference = referenceMatrix(check);
    const vsTruth = differingPairs(observed, truth);
    const refVsTruth = differingPairs(reference.matrix, truth);
    if (vsTruth.length === 0 && refVsTruth.length === 0) return;
    const pairs = [...new Set([...vsTruth, ...refVsTruth])];
    failures.push([
      `${step}: ${check.protocol}/${check.port} IPv${check.family ?? 4}`,
      sideBySide([
        { title: 'observed (datapath)', text: formatProbeTable(report) },
        { title: 'expected (truth table)', text: formatMatrix(check.port, check.protocol, truth) },
        { title: 'reference evaluator', text: formatMatrix(check.port, check.protocol, reference.matrix) },
      ]),
      vsTruth.length > 0 ? `datapath differs from the truth table on: ${vsTruth.join(', ')}` : 'datapath agrees with the truth table',
      refVsTruth.length > 0 ? `reference differs from the truth table on: ${refVsTruth.join(', ')}` : 'reference agrees with the truth table',
      ...pairs.map((p) => `  ${reference.explain(...(p.split(' -> ') as [string, string]))}`),
    ].join('\n'));
  });
  if (failures.length > 0) assert.fail(`\n${failures.join('\n\n')}`);
}

/** A pod's address in the lab (the ipBlock scenarios build their CIDRs from these, so they do
 * not depend on the order addresses were allocated in). */
function addr(key: string, family: 4 | 6 = 4): string {
  const p = theLab().snapshot.pods[key];
  const ip = family === 6 ? p?.ipv6 : p?.ipv4;
  assert.ok(ip, `pod ${key} has no IPv${family} address in the lab`);
  return ip;
}

/** The smallest CIDR around these pods' addresses, and "ip/32" ("ip/128") of every other pod of
 * the model that falls inside it, for `except`: the block then holds exactly these pods. */
function blockOf(keys: readonly string[], family: 4 | 6): { cidr: string; except?: string[] } {
  const cidr = coveringCidr(keys.map((k) => addr(k, family)));
  const others = ALL_PODS.filter((k) => !keys.includes(k) && cidrHolds(cidr, addr(k, family))).map((k) => hostCidr(addr(k, family)));
  return others.length > 0 ? { cidr, except: others } : { cidr };
}

/** Runs a scenario, then removes every policy it left and undoes its relabelling. */
async function scenario(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } finally {
    const l = theLab();
    const left = [...l.cluster().policies.values()].map((p) => policy(p.namespace, p.name, { podSelector: {} }));
    if (left.length > 0) await l.delete([file(policyManifest(left))]);
    if (relabelled) {
      relabelled = false;
      await l.apply([file(modelManifest())]);
    }
  }
}

describe('conformance: upstream network-policy e2e scenarios in weir lab', () => {
  before(async () => {
    if (process.getuid?.() !== 0) assert.fail('lab conformance tests need root (network namespaces, BPF): run `sudo npm test`');
    dir = mkdtempSync(path.join(os.tmpdir(), 'weir-conformance-'));
    lab = (await Lab.up(LAB_NAME, [file(modelManifest())])).lab;
  });

  after(async () => {
    try {
      lab?.close();
    } finally {
      if (process.getuid?.() === 0) await Lab.down(LAB_NAME);
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
    assert.equal(existsSync(labPinRoot(LAB_NAME)), false, 'pins removed');
  });

  it('the model: no policy, every pod reaches every pod on TCP and UDP 80/81, IPv4 and IPv6', () => scenario(async () => {
    assert.deepEqual(Object.keys(theLab().snapshot.pods).sort(), [...ALL_PODS]);
    await expectMatrices('no policy', tcp80(allowAll()), tcp81(allowAll()), udp80(allowAll()), udp81(allowAll()), tcp80(allowAll(), 6), udp81(allowAll(), 6));
  }));

  it("should support a 'default-deny-ingress' policy", () => scenario(async () => {
    await applyPolicies(policy('x', 'deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] }));
    const want = allowAll().expectPeer({}, { namespace: 'x' }, false);
    await expectMatrices('deny-ingress in x', tcp80(want), udp80(want), tcp81(want, 6));
  }));

  it("should support a 'default-deny-all' policy", () => scenario(async () => {
    await applyPolicies(policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }));
    const want = allowAll().expectPeer({}, { namespace: 'x' }, false).expectPeer({ namespace: 'x' }, {}, false);
    await expectMatrices('deny-all in x', tcp80(want), udp81(want), tcp80(want, 6));
  }));

  it('should enforce policy to allow traffic from pods within server namespace based on PodSelector', () => scenario(async () => {
    await applyPolicies(policy('x', 'x-a-allows-x-b', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: pod({ pod: 'b' }) }] }],
    }));
    await expectMatrices('x/a from x/b', tcp80(allowAll().expectAllIngress('x/a', false).expect('x/b', 'x/a', true)));
  }));

  it('should enforce policy to allow ingress traffic for a target', () => scenario(async () => {
    await applyPolicies(
      policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress'] }),
      policy('x', 'allow-all-to-a', {
        podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: {}, namespaceSelector: {} }] }],
      }),
    );
    const want = allowAll().expectPeer({}, { namespace: 'x' }, false).expectAllIngress('x/a', true);
    await expectMatrices('deny x, allow all to x/a', tcp80(want));
  }));

  it('should enforce policy to allow ingress traffic from pods in all namespaces', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-from-another-ns', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: {} }] }],
    }));
    await expectMatrices('x/a from every namespace', tcp80(allowAll()));
  }));

  it('should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector (ns=y)', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-client-a-via-ns-selector', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: ns({ ns: 'y' }) }] }],
    }));
    const want = allowAll().expectPeer({ namespace: 'x' }, { namespace: 'x', pod: 'a' }, false).expectPeer({ namespace: 'z' }, { namespace: 'x', pod: 'a' }, false);
    await expectMatrices('x/a from ns=y', tcp80(want), tcp80(want, 6));
  }));

  it('should enforce policy based on PodSelector with MatchExpressions (In)', () => scenario(async () => {
    await applyPolicies(policy('x', 'x-a-allows-x-b', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: expr('pod', 'In', ['b']) }] }],
    }));
    await expectMatrices('x/a from pod In [b]', tcp80(allowAll().expectAllIngress('x/a', false).expect('x/b', 'x/a', true)));
  }));

  it('should enforce policy based on NamespaceSelector with MatchExpressions (In)', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-ns-y-match-selector', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: expr('ns', 'In', ['y']) }] }],
    }));
    const want = allowAll().expectPeer({ namespace: 'x' }, { namespace: 'x', pod: 'a' }, false).expectPeer({ namespace: 'z' }, { namespace: 'x', pod: 'a' }, false);
    await expectMatrices('x/a from ns In [y]', tcp80(want));
  }));

  it('should enforce policy based on PodSelector or NamespaceSelector (two peers: OR; NotIn)', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-ns-y-match-selector', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'],
      ingress: [{ from: [{ namespaceSelector: expr('ns', 'NotIn', ['x']) }, { podSelector: pod({ pod: 'b' }) }] }],
    }));
    // upstream also expects x/a -> x/a blocked, and ignores loopback: here a pod always reaches itself
    await expectMatrices('x/a from ns NotIn [x] OR pod=b', tcp80(allowAll().expect('x/c', 'x/a', false)));
  }));

  it('should enforce policy based on PodSelector and NamespaceSelector (one peer: AND)', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-ns-y-podselector-and-nsselector', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'],
      ingress: [{ from: [{ namespaceSelector: expr('ns', 'NotIn', ['x']), podSelector: pod({ pod: 'b' }) }] }],
    }));
    const want = allowAll().expectAllIngress('x/a', false).expect('y/b', 'x/a', true).expect('z/b', 'x/a', true);
    await expectMatrices('x/a from ns NotIn [x] AND pod=b', tcp80(want));
  }));

  it('should enforce policy based on Multiple PodSelectors and NamespaceSelectors', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-ns-y-z-pod-b-c', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'],
      ingress: [{ from: [{ namespaceSelector: expr('ns', 'NotIn', ['x']), podSelector: expr('pod', 'In', ['b', 'c']) }] }],
    }));
    const want = allowAll().expectPeer({ namespace: 'x' }, { namespace: 'x', pod: 'a' }, false)
      .expect('y/a', 'x/a', false).expect('z/a', 'x/a', false);
    await expectMatrices('x/a from ns NotIn [x] AND pod In [b, c]', tcp80(want));
  }));

  it('should enforce policy based on any PodSelectors', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-ns-x-pod-b-c', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'],
      ingress: [{ from: [{ podSelector: pod({ pod: 'b' }) }, { podSelector: pod({ pod: 'c' }) }] }],
    }));
    await expectMatrices('x/a from pod=b OR pod=c', tcp80(allowAll().expectAllIngress('x/a', false).expect('x/b', 'x/a', true).expect('x/c', 'x/a', true)));
  }));

  it('should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-ns-y-pod-a-via-namespace-pod-selector', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'],
      ingress: [{ from: [{ namespaceSelector: ns({ ns: 'y' }), podSelector: pod({ pod: 'a' }) }] }],
    }));
    const want = allowAll().expectAllIngress('x/a', false).expect('y/a', 'x/a', true);
    await expectMatrices('x/a from y/a only', tcp80(want), udp80(want));
  }));

  it('should enforce policy based on Ports (TCP 81 allowed from ns=y, 80 not)', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-client-a-via-ns-selector', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'],
      ingress: [{ from: [{ namespaceSelector: ns({ ns: 'y' }) }], ports: [{ port: 81, protocol: 'TCP' }] }],
    }));
    const open81 = allowAll().expectPeer({ namespace: 'x' }, { namespace: 'x', pod: 'a' }, false)
      .expectPeer({ namespace: 'y' }, { namespace: 'x', pod: 'a' }, true)
      .expectPeer({ namespace: 'z' }, { namespace: 'x', pod: 'a' }, false);
    const closed = allowAll().expectAllIngress('x/a', false);
    await expectMatrices('x/a TCP 81 from ns=y', tcp81(open81), tcp80(closed), udp81(closed), tcp81(open81, 6), tcp80(closed, 6));
  }));

  it('should enforce policy based on Ports (UDP 81 allowed from ns=y, not TCP 81 nor UDP 80)', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-ingress-on-port-81-ns-x', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'],
      ingress: [{ from: [{ namespaceSelector: ns({ ns: 'y' }) }], ports: [{ port: 81, protocol: 'UDP' }] }],
    }));
    const open = allowAll().expectPeer({ namespace: 'x' }, { namespace: 'x', pod: 'a' }, false).expectPeer({ namespace: 'z' }, { namespace: 'x', pod: 'a' }, false);
    const closed = allowAll().expectAllIngress('x/a', false);
    await expectMatrices('x/a UDP 81 from ns=y', udp81(open), udp80(closed), tcp81(closed));
  }));

  it('should enforce multiple, stacked policies with overlapping podSelectors', () => scenario(async () => {
    const from = [{ namespaceSelector: ns({ ns: 'y' }) }];
    await applyPolicies(policy('x', 'allow-client-a-via-ns-selector', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ from, ports: [{ port: 81, protocol: 'TCP' }] }],
    }));
    const allowY = () => allowAll().expectPeer({ namespace: 'x' }, { namespace: 'x', pod: 'a' }, false)
      .expectPeer({ namespace: 'y' }, { namespace: 'x', pod: 'a' }, true)
      .expectPeer({ namespace: 'z' }, { namespace: 'x', pod: 'a' }, false);
    await expectMatrices('port 81 policy only', tcp81(allowY()), tcp80(allowAll().expectAllIngress('x/a', false)));
    await applyPolicies(policy('x', 'allow-client-a-via-ns-selector-80', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ from, ports: [{ port: 80, protocol: 'TCP' }] }],
    }));
    await expectMatrices('port 80 policy added: the union', tcp80(allowY()), tcp81(allowY()));
  }));

  it('should support allow-all policy', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-all', { podSelector: {}, policyTypes: ['Ingress'], ingress: [{}] }));
    await expectMatrices('allow-all in x', tcp80(allowAll()), tcp81(allowAll()), udp80(allowAll()));
  }));

  it('should enforce updated policy (allow-all replaced by deny-all)', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-all-mutate-to-deny-all', { podSelector: {}, policyTypes: ['Ingress'], ingress: [{}] }));
    await expectMatrices('allow-all', tcp81(allowAll()));
    await applyPolicies(policy('x', 'allow-all-mutate-to-deny-all', { podSelector: {}, policyTypes: ['Ingress'], ingress: [] }));
    await expectMatrices('updated to deny-all', tcp81(allowAll().expectPeer({}, { namespace: 'x' }, false)));
  }));

  it('should allow ingress access from updated namespace', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-client-a-via-ns-selector', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: ns({ ns2: 'updated' }) }] }],
    }));
    const closed = () => allowAll().expectAllIngress('x/a', false);
    await expectMatrices('no namespace labelled ns2=updated', tcp80(closed()));
    await relabel({ namespaceLabels: { y: { ns2: 'updated' } } });
    await expectMatrices('y labelled ns2=updated', tcp80(closed().expectPeer({ namespace: 'y' }, {}, true)));
    await relabel({});
    await expectMatrices('label removed again', tcp80(closed()));
  }));

  it('should allow ingress access from updated pod', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-client-a-via-pod-selector', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: pod({ pod: 'b', pod2: 'updated' }) }] }],
    }));
    const closed = () => allowAll().expectAllIngress('x/a', false);
    await expectMatrices('x/b not labelled yet', tcp80(closed()));
    await relabel({ podLabels: { 'x/b': { pod2: 'updated' } } });
    await expectMatrices('x/b labelled pod2=updated', tcp80(closed().expect('x/b', 'x/a', true)));
  }));

  it('should deny ingress from pods on other namespaces', () => scenario(async () => {
    await applyPolicies(policy('x', 'deny-empty-policy', { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: {} }] }] }));
    const want = allowAll().expectPeer({ namespace: 'y' }, { namespace: 'x' }, false).expectPeer({ namespace: 'z' }, { namespace: 'x' }, false);
    await expectMatrices('x from its own namespace only', tcp80(want), udp81(want));
  }));

  it('should deny ingress access to updated pod', () => scenario(async () => {
    await applyPolicies(policy('x', 'deny-ingress-via-label-selector', { podSelector: pod({ target: 'isolated' }), policyTypes: ['Ingress'] }));
    await expectMatrices('no pod labelled target=isolated', tcp80(allowAll()));
    await relabel({ podLabels: { 'x/a': { target: 'isolated' } } });
    await expectMatrices('x/a labelled target=isolated', tcp80(allowAll().expectAllIngress('x/a', false)));
  }));

  it('should deny egress from pods based on PodSelector', () => scenario(async () => {
    await applyPolicies(policy('x', 'deny-egress-pod-a', { podSelector: pod({ pod: 'a' }), policyTypes: ['Egress'] }));
    const want = allowAll().expectAllEgress('x/a', false);
    await expectMatrices('x/a egress denied', tcp80(want), udp80(want));
  }));

  it('should deny egress from all pods in a namespace', () => scenario(async () => {
    await applyPolicies(policy('x', 'deny-egress-ns-x', { podSelector: {}, policyTypes: ['Egress'] }));
    const want = allowAll().expectPeer({ namespace: 'x' }, {}, false);
    await expectMatrices('x egress denied', tcp80(want), udp81(want), tcp80(want, 6));
  }));

  it('should work with Ingress, Egress specified together', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-client-a-via-pod-selector', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Egress', 'Ingress'],
      ingress: [{ from: [{ podSelector: pod({ pod: 'b' }) }] }],
      egress: [{ ports: [{ port: 80 }] }],
    }));
    await expectMatrices('x/a ingress from x/b; egress on 80 only',
      tcp80(allowAll().expectAllIngress('x/a', false).expect('x/b', 'x/a', true)),
      tcp81(allowAll().expectAllIngress('x/a', false).expectAllEgress('x/a', false).expect('x/b', 'x/a', true)));
  }));

  it('should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)', () => scenario(async () => {
    const fromXa = [{ from: [{ namespaceSelector: ns({ [NS_NAME]: 'x' }), podSelector: pod({ pod: 'a' }) }] }];
    await applyPolicies(
      policy('x', 'allow-to-ns-y-pod-a', {
        podSelector: pod({ pod: 'a' }), policyTypes: ['Egress'],
        egress: [{ to: [{ namespaceSelector: ns({ [NS_NAME]: 'y' }), podSelector: pod({ pod: 'a' }) }] }],
      }),
      policy('y', 'allow-from-xa-on-ya-match-selector', { podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: fromXa }),
      policy('y', 'allow-from-xa-on-yb-match-selector', { podSelector: pod({ pod: 'b' }), policyTypes: ['Ingress'], ingress: fromXa }),
    );
    const want = allowAll().expectPeer({ namespace: 'x', pod: 'a' }, {}, false)
      .expectPeer({}, { namespace: 'y', pod: 'a' }, false)
      .expectPeer({ namespace: 'x', pod: 'a' }, { namespace: 'y', pod: 'a' }, true)
      .expectPeer({}, { namespace: 'y', pod: 'b' }, false);
    await expectMatrices('x/a may send to y/a only; y/a and y/b accept x/a only', tcp80(want), udp80(want));
  }));

  it('pod-to-pod needs both sides: egress allowed but ingress denied is blocked', () => scenario(async () => {
    await applyPolicies(
      policy('y', 'egress-to-x', { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: ns({ ns: 'x' }) }] }] }),
      policy('x', 'deny-ingress-a', { podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'] }),
    );
    const want = allowAll().expectPeer({ namespace: 'y' }, {}, false).expectPeer({ namespace: 'y' }, { namespace: 'x' }, true).expectAllIngress('x/a', false);
    await expectMatrices('y sends to x only; x/a accepts nobody', tcp80(want), udp80(want));
  }));

  it('should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-to-ns-y-pod-a', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Egress'],
      egress: [{ to: [{ namespaceSelector: ns({ ns: 'y' }), podSelector: pod({ pod: 'a' }) }] }],
    }));
    const want = allowAll().expectAllEgress('x/a', false).expect('x/a', 'y/a', true);
    await expectMatrices('x/a egress to y/a only', tcp80(want), udp81(want), tcp80(want, 6));
  }));

  it('should enforce ingress policy allowing any port traffic to a server on a specific protocol (TCP)', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-ingress-by-proto', { podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ ports: [{ protocol: 'TCP' }] }] }));
    await expectMatrices('x/a: every TCP port', tcp80(allowAll()), tcp81(allowAll()), udp80(allowAll().expectAllIngress('x/a', false)));
  }));

  it('ingress allowing every port of one protocol (UDP)', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-ingress-udp', { podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ ports: [{ protocol: 'UDP' }] }] }));
    await expectMatrices('x/a: every UDP port', udp80(allowAll()), udp81(allowAll()), tcp81(allowAll().expectAllIngress('x/a', false)), udp81(allowAll(), 6));
  }));

  it('should enforce multiple ingress policies with ingress allow-all policy taking precedence', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-ingress-port-80', { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ ports: [{ port: 80 }] }] }));
    await expectMatrices('x: ingress on 80 only', tcp81(allowAll().expectPeer({}, { namespace: 'x' }, false)), tcp80(allowAll()));
    await applyPolicies(policy('x', 'allow-ingress', { podSelector: {}, policyTypes: ['Ingress'], ingress: [{}] }));
    await expectMatrices('allow-all added', tcp81(allowAll()));
  }));

  it('should enforce multiple egress policies with egress allow-all policy taking precedence', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-egress-port-80', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ port: 80 }] }] }));
    await expectMatrices('x: egress on 80 only', tcp81(allowAll().expectPeer({ namespace: 'x' }, {}, false)), tcp80(allowAll()));
    await applyPolicies(policy('x', 'allow-egress', { podSelector: {}, policyTypes: ['Egress'], egress: [{}] }));
    await expectMatrices('allow-all added', tcp81(allowAll()));
  }));

  it('should stop enforcing policies after they are deleted', () => scenario(async () => {
    const denyAll = policy('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] });
    await applyPolicies(denyAll);
    const want = allowAll().expectPeer({ namespace: 'x' }, {}, false).expectPeer({}, { namespace: 'x' }, false);
    await expectMatrices('deny-all in x', tcp80(want), udp80(want));
    await deletePolicies(denyAll);
    await expectMatrices('deleted', tcp80(allowAll()), udp80(allowAll()));
  }));

  it('should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-egress-for-target', { podSelector: pod({ pod: 'a' }), policyTypes: ['Egress'], egress: [{}] }));
    await expectMatrices('x/a egress allow-all', tcp80(allowAll()));
    await applyPolicies(policy('x', 'deny-ingress-via-label-selector', { podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'] }));
    await expectMatrices('x/a ingress denied too', tcp80(allowAll().expectAllIngress('x/a', false)));
  }));

  it('should not allow access by TCP when a policy specifies only UDP', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-only-udp-ingress-on-port-81', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ ports: [{ port: 81, protocol: 'UDP' }] }],
    }));
    await expectMatrices('x/a: UDP 81 only', tcp81(allowAll().expectAllIngress('x/a', false)), udp81(allowAll()));
  }));

  it('should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-client-a-via-ns-selector-for-immutable-ns-label', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: ns({ [NS_NAME]: 'y' }) }] }],
    }));
    const want = allowAll().expectPeer({ namespace: 'x' }, { namespace: 'x', pod: 'a' }, false).expectPeer({ namespace: 'z' }, { namespace: 'x', pod: 'a' }, false);
    await expectMatrices('x/a from kubernetes.io/metadata.name=y', tcp80(want));
  }));

  it('should enforce policy based on NamespaceSelector with MatchExpressions using default ns label', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-ns-y-match-selector-for-immutable-ns-label', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: expr(NS_NAME, 'NotIn', ['y']) }] }],
    }));
    await expectMatrices('x/a egress to kubernetes.io/metadata.name NotIn [y]', tcp80(allowAll().expectPeer({ namespace: 'x', pod: 'a' }, { namespace: 'y' }, false)));
  }));

  it('matchExpressions Exists and DoesNotExist, on namespaces and on pods', () => scenario(async () => {
    await relabel({ namespaceLabels: { z: { team: 'blue' } }, podLabels: { 'y/b': { canary: 'true' } } });
    await applyPolicies(policy('x', 'exists', {
      podSelector: expr('pod', 'In', ['a', 'b']), policyTypes: ['Ingress'],
      ingress: [{
        from: [
          { namespaceSelector: expr('team', 'Exists') },
          {
            namespaceSelector: expr('team', 'DoesNotExist'),
            podSelector: { matchExpressions: [{ key: 'pod', operator: 'NotIn', values: ['c'] }, { key: 'canary', operator: 'DoesNotExist' }] },
          },
        ],
      }],
    }));
    // x/a and x/b accept all of z (team exists), and pods of x and y that are not c and not canaries
    const want = allowAll();
    for (const to of ['x/a', 'x/b']) for (const from of ['x/c', 'y/b', 'y/c']) want.expect(from, to, false);
    await expectMatrices('z labelled team=blue, y/b canary=true', tcp80(want), udp81(want));
  }));

  it('a policy in one namespace does not affect pods of another', () => scenario(async () => {
    await applyPolicies(policy('y', 'deny-a', { podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress', 'Egress'] }));
    const want = allowAll().expectAllIngress('y/a', false).expectAllEgress('y/a', false);
    await expectMatrices('only y/a isolated; x/a and z/a untouched', tcp80(want), udp80(want));
  }));

  // ---- named ports: the model's pods name their container ports serve-<port>-<tcp|udp> ----------

  it('should allow ingress access on one named port', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-all', { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ ports: [{ port: 'serve-81-tcp' }] }] }));
    const closedX = allowAll().expectPeer({}, { namespace: 'x' }, false);
    await expectMatrices('x: ingress on serve-81-tcp only', tcp81(allowAll()), tcp80(closedX), udp81(closedX), tcp81(allowAll(), 6));
  }));

  it('should allow ingress access from namespace on one named port', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-client-a-via-ns-selector-80', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'],
      ingress: [{ from: [{ namespaceSelector: ns({ ns: 'y' }) }], ports: [{ port: 'serve-80-tcp', protocol: 'TCP' }] }],
    }));
    const open80 = allowAll().expectPeer({ namespace: 'x' }, { namespace: 'x', pod: 'a' }, false).expectPeer({ namespace: 'z' }, { namespace: 'x', pod: 'a' }, false);
    const closed = allowAll().expectAllIngress('x/a', false);
    await expectMatrices('x/a from ns=y on serve-80-tcp', tcp80(open80), tcp81(closed), udp80(closed), tcp80(open80, 6));
  }));

  it('should allow egress access on one named port', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-egress', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'serve-80-tcp' }] }] }));
    const closedX = allowAll().expectPeer({ namespace: 'x' }, {}, false);
    await expectMatrices('x: egress to serve-80-tcp only', tcp80(allowAll()), tcp81(closedX), udp80(closedX), tcp80(allowAll(), 6));
  }));

  it('a named port whose protocol does not match allows nothing (ingress and egress)', () => scenario(async () => {
    await applyPolicies(
      // serve-80-tcp is a TCP port: as UDP it names no port of x/a; serve-81-udp as UDP does
      policy('x', 'named-port-protocol', {
        podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'],
        ingress: [{ ports: [{ port: 'serve-80-tcp', protocol: 'UDP' }, { port: 'serve-81-udp', protocol: 'UDP' }] }],
      }),
      // resolved per destination pod: serve-81-udp as TCP matches nothing, serve-80-udp as UDP does
      policy('y', 'named-port-protocol-egress', {
        podSelector: pod({ pod: 'b' }), policyTypes: ['Egress'],
        egress: [{ to: [{ namespaceSelector: {} }], ports: [{ port: 'serve-81-udp', protocol: 'TCP' }, { port: 'serve-80-udp', protocol: 'UDP' }] }],
      }),
    );
    await expectMatrices('x/a: UDP serve-81-udp only; y/b: UDP serve-80-udp only',
      tcp80(allowAll().expectAllIngress('x/a', false).expectAllEgress('y/b', false)),
      udp80(allowAll().expectAllIngress('x/a', false)),
      udp81(allowAll().expectAllEgress('y/b', false)),
      tcp81(allowAll().expectAllIngress('x/a', false).expectAllEgress('y/b', false)));
  }));

  // ---- ipBlock: CIDRs built from the lab's pod addresses; ipBlocks match pod addresses too -------

  it('should allow egress access to server in CIDR block (y/b/32 and y/b/128)', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-client-a-via-cidr-egress-rule', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Egress'],
      egress: [{ to: [{ ipBlock: { cidr: hostCidr(addr('y/b')) } }, { ipBlock: { cidr: hostCidr(addr('y/b', 6)) } }] }],
    }));
    const want = allowAll().expectAllEgress('x/a', false).expect('x/a', 'y/b', true);
    await expectMatrices('x/a egress to y/b by address only', tcp80(want), udp81(want), tcp80(want, 6));
  }));

  it('should enforce except clause while egress access to server in CIDR block', () => scenario(async () => {
    // as upstream: x/a's address with /4 (host bits set, as the API server accepts), except x/b;
    // and the same over IPv6 with /48
    await applyPolicies(policy('x', 'deny-client-a-via-except-cidr-egress-rule', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Egress'],
      egress: [{
        to: [
          { ipBlock: { cidr: `${addr('x/a')}/4`, except: [hostCidr(addr('x/b'))] } },
          { ipBlock: { cidr: `${addr('x/a', 6)}/48`, except: [hostCidr(addr('x/b', 6))] } },
        ],
      }],
    }));
    const want = allowAll().expect('x/a', 'x/b', false);
    await expectMatrices('x/a egress to every pod but x/b', tcp80(want), udp80(want), tcp80(want, 6));
  }));

  it('should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed', () => scenario(async () => {
    const name = 'allow-client-a-via-cidr-egress-rule';
    await applyPolicies(policy('x', name, {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Egress'],
      egress: [{ to: [{ ipBlock: { cidr: `${addr('x/a')}/4`, except: [hostCidr(addr('x/b'))] } }] }],
    }));
    await expectMatrices('x/b in the except', tcp80(allowAll().expect('x/a', 'x/b', false)));
    // the same policy updated: x/b's address is now the allowed CIDR itself
    await applyPolicies(policy('x', name, {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Egress'],
      egress: [{ to: [{ ipBlock: { cidr: hostCidr(addr('x/b')) } }] }],
    }));
    await expectMatrices('updated: x/b/32 allowed', tcp80(allowAll().expectAllEgress('x/a', false).expect('x/a', 'x/b', true)));
  }));

  it('ingress from an ipBlock with except: the pods\' network minus one pod, per family', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-pod-network-except', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'],
      ingress: [{
        from: [
          { ipBlock: { cidr: coveringCidr(ALL_PODS.map((k) => addr(k))), except: [hostCidr(addr('y/b'))] } },
          { ipBlock: { cidr: coveringCidr(ALL_PODS.map((k) => addr(k, 6))), except: [hostCidr(addr('z/c', 6))] } },
        ],
      }],
    }));
    await expectMatrices('x/a from every pod but y/b (IPv4) and z/c (IPv6)',
      tcp80(allowAll().expect('y/b', 'x/a', false)),
      udp81(allowAll().expect('y/b', 'x/a', false)),
      tcp80(allowAll().expect('z/c', 'x/a', false), 6));
  }));

  it('ingress from a CIDR holding some pods\' addresses (z\'s), or from pod=b', () => scenario(async () => {
    const z = ALL_PODS.filter((k) => k.startsWith('z/'));
    await applyPolicies(policy('x', 'allow-from-z-block', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'],
      ingress: [{ from: [{ ipBlock: blockOf(z, 4) }, { ipBlock: blockOf(z, 6) }, { podSelector: pod({ pod: 'b' }) }] }],
    }));
    const want = allowAll().expectAllIngress('x/a', false).expectPeer({ namespace: 'z' }, { namespace: 'x', pod: 'a' }, true).expect('x/b', 'x/a', true);
    await expectMatrices('x/a from z\'s block or x/b', tcp80(want), udp80(want), tcp81(want, 6));
  }));

  // ---- endPort: port ranges ---------------------------------------------------------------------

  it('endPort: a range 80-81 allows both ports', () => scenario(async () => {
    await applyPolicies(policy('x', 'allow-ns-y-80-81', {
      podSelector: pod({ pod: 'a' }), policyTypes: ['Ingress'],
      ingress: [{ from: [{ namespaceSelector: ns({ ns: 'y' }) }], ports: [{ port: 80, endPort: 81, protocol: 'TCP' }] }],
    }));
    const openY = allowAll().expectPeer({ namespace: 'x' }, { namespace: 'x', pod: 'a' }, false).expectPeer({ namespace: 'z' }, { namespace: 'x', pod: 'a' }, false);
    const closed = allowAll().expectAllIngress('x/a', false);
    await expectMatrices('x/a from ns=y on TCP 80-81', tcp80(openY), tcp81(openY), udp80(closed), tcp81(openY, 6));
  }));

  it('endPort: ranges that exclude 81 (egress TCP 1-80, ingress TCP 81-1000) or start at it (UDP 81-90)', () => scenario(async () => {
    await applyPolicies(
      policy('x', 'egress-ranges', {
        podSelector: {}, policyTypes: ['Egress'],
        egress: [{ ports: [{ port: 1, endPort: 80, protocol: 'TCP' }, { port: 81, endPort: 90, protocol: 'UDP' }] }],
      }),
      policy('y', 'ingress-range', { podSelector: pod({ pod: 'b' }), policyTypes: ['Ingress'], ingress: [{ ports: [{ port: 81, endPort: 1000, protocol: 'TCP' }] }] }),
    );
    await expectMatrices('x sends TCP 1-80 and UDP 81-90; y/b accepts TCP 81-1000',
      tcp80(allowAll().expectAllIngress('y/b', false)),
      tcp81(allowAll().expectPeer({ namespace: 'x' }, {}, false)),
      udp80(allowAll().expectPeer({ namespace: 'x' }, {}, false).expectAllIngress('y/b', false)),
      udp81(allowAll().expectAllIngress('y/b', false)),
      tcp81(allowAll().expectPeer({ namespace: 'x' }, {}, false), 6));
  }));
});
