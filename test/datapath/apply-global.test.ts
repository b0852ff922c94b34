// applyCompiled with the host-protection maps, on in-memory maps (no BPF needed): everything goes
// into the inactive slot, stale keys go, the weir_grules array has its unused indexes zeroed
// (array elements cannot be deleted), and an unchanged state writes nothing.
import test from 'node:test';
import assert from 'node:assert/strict';
import { applyCompiled, encodeCompiled } from '../../src/datapath/datapath.js';
import type { BpfMap } from '../../src/datapath/libbpf.js';
import * as abi from '../../src/datapath/abi.js';
import { ClusterState } from '../../src/datastore/cluster.js';
import { parseManifestText, type ManifestProblem } from '../../src/datastore/manifest.js';
import { compilePolicy, type CompiledDatapath } from '../../src/policy/compile.js';
import { IdAllocator } from '../../src/policy/ids.js';
import { DEFAULT_FAILSAFES } from '../../src/policy/failsafe.js';

const GRULES_MAX = 16;

/** A hash map, or (array) an array of GRULES_MAX zeroed entries that cannot be deleted. */
class FakeMap {
  readonly data = new Map<string, Buffer>();
  constructor(readonly name: string, readonly array: boolean) {
    if (array) for (let i = 0; i < GRULES_MAX; i++) this.data.set(abi.encodeIndexKey(i).toString('hex'), Buffer.alloc(abi.Layouts.grule.size));
  }
  *entries(): Generator<[Buffer, Buffer]> {
    for (const [k, v] of this.data) yield [Buffer.from(k, 'hex'), v];
  }
  lookup(k: Buffer): Buffer | undefined {
    return this.data.get(k.toString('hex'));
  }
  update(k: Buffer, v: Buffer): void {
    if (this.array && !this.data.has(k.toString('hex'))) throw new Error(`${this.name}: index out of range`);
    this.data.set(k.toString('hex'), Buffer.from(v));
  }
  delete(k: Buffer): boolean {
    if (this.array) throw new Error(`${this.name}: array elements cannot be deleted`);
    return this.data.delete(k.toString('hex'));
  }
}

function compile(policies: string): CompiledDatapath {
  const problems: ManifestProblem[] = [];
  const objects = parseManifestText(`
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default, labels: {app: web}}
spec: {containers: [{}]}
status: {podIP: 10.0.0.1}
---
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: n1, labels: {role: node}}
spec: {node: n1, interfaceName: "*", expectedIPs: [192.0.2.1]}
---
${policies}`, 't.yaml', problems);
  assert.deepEqual(problems, []);
  const cluster = new ClusterState(objects.map((o) => o.object));
  const placed = [...cluster.pods.values()].map((pod) => ({ pod, ips: pod.ips, ifindex: 5 }));
  return compilePolicy(cluster, placed, new IdAllocator(), {
    hostIps: ['192.0.2.1'],
    host: { node: 'n1', hostEndpoints: [...cluster.hostEndpoints.values()], globalPolicies: [...cluster.globalPolicies.values()], failsafes: DEFAULT_FAILSAFES, interfaces: new Map([['eth0', 2]]) },
  });
}

const gnp = (name: string, rules: string) => `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: ${name}}
spec: {selector: {}, ingress: [${rules}]}
---`;

test('applyCompiled fills the inactive slot of every host-protection map, zeroes stale rules, deletes stale keys', () => {
  const maps = new Map<string, FakeMap>();
  const mapOf = (name: string): BpfMap => {
    let m = maps.get(name);
    if (!m) maps.set(name, (m = new FakeMap(name, name.startsWith('weir_grules'))));
    return m as unknown as BpfMap;
  };
  let generation = 0;
  const apply = (c: CompiledDatapath) => applyCompiled(mapOf, () => generation, () => ++generation, c);
  const slot = (kind: abi.SlotKind, s: number) => maps.get(abi.slotMapName(kind, s))!;
  const nonzero = (m: FakeMap) => [...m.data].filter(([, v]) => v.some((x) => x !== 0)).map(([k]) => k);

  const big = compile(gnp('p1', '{action: Allow, protocol: TCP, destination: {ports: [22, "80:83"]}}, {action: Log}, {action: Deny, source: {nets: [10.0.0.0/8]}}'));
  assert.equal(big.globalRules.length, 3);
  const want = encodeCompiled(big);
  apply(big);
  assert.equal(generation, 1);
  for (const kind of ['hostif', 'gtier', 'gset', 'gport'] as const) {
    assert.ok(want[kind].size > 0, kind);
    assert.deepEqual(new Map(slot(kind, 1).data), want[kind], `${kind} slot 1`);
    assert.equal(slot(kind, 0).data.size, 0, `${kind} slot 0 untouched`);
  }
  assert.deepEqual(nonzero(slot('grules', 1)), [0, 1, 2].map((i) => abi.encodeIndexKey(i).toString('hex')));
  assert.deepEqual(abi.decodeGlobalRule(slot('grules', 1).data.get(abi.encodeIndexKey(2).toString('hex'))!), { ...big.globalRules[2]! });
  // the endpoint entries carry sel_identity
  const node = abi.decodeEndpoint(slot('endpoints', 1).data.get(abi.ipToKey16('192.0.2.1').toString('hex'))!);
  assert.equal(node.selIdentity, big.hostInterfaces.get(0)!.identity);

  // Two smaller states: the second lands in slot 1 again, over `big`.
  const small = compile(gnp('p1', '{action: Allow}'));
  apply(small);
  apply(compile(gnp('p1', '{action: Deny}')));
  assert.equal(generation, 3);
  assert.deepEqual(nonzero(slot('grules', 1)), [abi.encodeIndexKey(0).toString('hex')], 'indexes 1 and 2 zeroed');
  assert.equal(abi.decodeGlobalRule(slot('grules', 1).data.get(abi.encodeIndexKey(0).toString('hex'))!).action, abi.GlobalAction.DENY);
  assert.equal(slot('gport', 1).data.size, 0, 'stale port blocks deleted');
  assert.deepEqual([...slot('gset', 1).data.keys()].map((k) => abi.decodeGlobalSetKey(Buffer.from(k, 'hex')).set).filter((s) => s >= abi.GlobalSet.FIRST_DYNAMIC), [], 'stale sets deleted');

  // the same state again: nothing written, no flip
  const stats = apply(compile(gnp('p1', '{action: Deny}')));
  assert.equal(generation, 3);
  assert.deepEqual(stats, { endpointsWritten: 0, endpointsDeleted: 0, policyWritten: 0, policyDeleted: 0 });
});
