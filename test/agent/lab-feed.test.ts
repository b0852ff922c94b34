// The agent's view of a lab (no lab needed): lab states -> the endpoint registry, with change
// times, so an address handed from one pod to another names each at its own time; the agent.json
// claim that keeps a second agent off a lab's ring buffer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { EndpointRegistry } from '../../src/flows/registry.js';
import { applyLabState, LAB_WORLD_NAMES } from '../../src/agent/lab-feed.js';
import { labDir, type LabPodState, type LabState } from '../../src/lab/state.js';
import { agentInfoFile, claimAgentInfo, readAgentInfo, removeAgentInfo } from '../../src/agent/discovery.js';
import { observeLab } from '../../src/flows/observe.js';
import type { KubeObject, Pod } from '../../src/datastore/objects.js';

const placed = (ipv4: string, ipv6: string): LabPodState => ({
  ipv4, ipv6, netns: 'n', hostIfname: 'h', hostIfindex: 1, agentPid: 1, socketPath: '/s', ports: [],
});
const pod = (name: string, labels: Record<string, string>): Pod => ({ kind: 'Pod', namespace: 'x', name, labels, ports: [], ips: [] });

function state(objects: KubeObject[], pods: Record<string, LabPodState>): LabState {
  return {
    version: 1, name: 'feed', createdAt: new Date(1000).toISOString(), pinRoot: '/p', nodeNetns: 'weir-feed-node',
    objects: [{ kind: 'Namespace', name: 'x', labels: { team: 'blue' } }, ...objects], pods,
    ids: { nextIdentity: 256, identities: {}, endpoints: {}, nextEndpoint: 1, nextRule: 1, ruleInfo: {} } as unknown as LabState['ids'],
    host: { netns: 'n', ipv4: '10.243.0.1', ipv6: 'fd00:10:243::1', agentPid: 1, socketPath: '/s', ports: [] },
  };
}

test('lab feed: a reused address names the old pod before the change and the new one after', () => {
  const r = new EndpointRegistry({ node: 'weir-feed-node', worldNames: LAB_WORLD_NAMES });
  const s1 = state([pod('a', { app: 'a' }), pod('d', { app: 'd' })], { 'x/a': placed('10.244.0.10', 'fd00:10:244::a'), 'x/d': placed('10.244.0.11', 'fd00:10:244::b') });
  applyLabState(r, s1, undefined, 5000, 1000);
  assert.equal(r.lookup('10.244.0.11', 2000)?.pod, 'd', 'pods first listed hold their addresses since the lab was made');
  // d deleted at 10 s; e created with d's addresses at 20 s
  const s2 = state([pod('a', { app: 'a' })], { 'x/a': s1.pods['x/a']! });
  applyLabState(r, s2, s1, 10_000);
  const s3 = state([pod('a', { app: 'a' }), pod('e', { app: 'e' })], { 'x/a': s1.pods['x/a']!, 'x/e': placed('10.244.0.11', 'fd00:10:244::b') });
  applyLabState(r, s3, s2, 20_000);
  for (const ip of ['10.244.0.11', 'fd00:10:244::b']) {
    assert.equal(r.lookup(ip, 9_999)?.pod, 'd', `${ip} before d went`);
    assert.equal(r.lookup(ip, 15_000), undefined, `${ip} held by nobody in between`);
    assert.equal(r.lookup(ip, 20_001)?.pod, 'e', `${ip} after e came`);
  }
  assert.deepEqual(r.lookup('10.244.0.11', 25_000)?.labels, { app: 'e' });
  // the node's own addresses are the host; the world client has the lab's world name
  assert.equal(r.lookup('10.243.0.1', 25_000)?.kind, 'host');
  assert.equal(r.worldName('10.243.0.100'), 'lab-world');
  // delete and re-create in one change: the new pod holds the address from that change on
  const s4 = state([pod('a', { app: 'a' }), pod('f', { app: 'f' })], { 'x/a': s1.pods['x/a']!, 'x/f': placed('10.244.0.11', 'fd00:10:244::b') });
  applyLabState(r, s4, s3, 30_000);
  assert.equal(r.lookup('10.244.0.11', 29_999)?.pod, 'e');
  assert.equal(r.lookup('10.244.0.11', 30_000)?.pod, 'f');
});

test('lab feed: owner references, service account and node reach the registry (workload from the ReplicaSet name)', () => {
  const r = new EndpointRegistry({ node: 'weir-feed-node' });
  const web: Pod = {
    ...pod('w', { app: 'web' }), serviceAccount: 'web-sa',
    ownerReferences: [{ kind: 'ReplicaSet', name: 'web-7d4b9c8f6d', controller: true }],
  };
  const s = state([web, pod('old', {}), { ...pod('n', {}), nodeName: 'node-2' }], {
    'x/w': placed('10.244.0.10', 'fd00:10:244::a'), 'x/old': placed('10.244.0.11', 'fd00:10:244::b'), 'x/n': placed('10.244.0.12', 'fd00:10:244::c'),
  });
  applyLabState(r, s, undefined, 5000, 1000);
  const w = r.lookup('fd00:10:244::a', 5000);
  assert.deepEqual([w?.workloadKind, w?.workload, w?.serviceAccount, w?.node], ['Deployment', 'web', 'web-sa', 'weir-feed-node']);
  // a pod of a state written before pods kept these: no owner, the "default" service account
  const old = r.lookup('10.244.0.11', 5000);
  assert.deepEqual([old?.workloadKind, old?.workload, old?.serviceAccount, old?.node], ['', '', 'default', 'weir-feed-node']);
  assert.equal(r.lookup('10.244.0.12', 5000)?.node, 'node-2', 'spec.nodeName when the manifest gives one');
  // the lab's Node object names the node
  const named = state([{ kind: 'Node', name: 'lab-node', labels: {}, ports: [] }, web], { 'x/w': s.pods['x/w']! });
  applyLabState(r, named, s, 6000);
  assert.equal(r.lookup('10.244.0.10', 6000)?.node, 'lab-node');
});

test('lab feed: ReplicaSet and Job objects make the owner exact, whatever the names say', () => {
  const r = new EndpointRegistry({ node: 'weir-feed-node' });
  const owned = (name: string, kind: 'ReplicaSet' | 'Job', owner: string): Pod => ({
    ...pod(name, {}), ownerReferences: [{ kind, name: owner, controller: true }],
  });
  const pods = { 'x/p': placed('10.244.0.10', 'fd00:10:244::a'), 'x/q': placed('10.244.0.11', 'fd00:10:244::b') };
  const objects: KubeObject[] = [
    { kind: 'ReplicaSet', namespace: 'x', name: 'frontend', ownerReferences: [{ kind: 'Deployment', name: 'shop', controller: true }] },
    { kind: 'Job', namespace: 'x', name: 'nightly-29000000' }, // made by hand: no CronJob, whatever its name says
    owned('p', 'ReplicaSet', 'frontend'), owned('q', 'Job', 'nightly-29000000'),
  ];
  const s1 = state(objects, pods);
  applyLabState(r, s1, undefined, 5000, 1000);
  const who = (ip: string, at: number) => { const e = r.lookup(ip, at); return [e?.workloadKind, e?.workload]; };
  assert.deepEqual(who('10.244.0.10', 2000), ['Deployment', 'shop'], 'from the lab\'s creation on');
  assert.deepEqual(who('10.244.0.11', 2000), ['Job', 'nightly-29000000']);
  // the ReplicaSet goes: the registry falls back to names for pods (re)resolved later
  const s2 = state(objects.slice(1), pods);
  applyLabState(r, s2, s1, 6000);
  r.upsertPod({ namespace: 'x', name: 'p', labels: { changed: 'yes' }, ips: ['10.244.0.10'], ownerReferences: [{ kind: 'ReplicaSet', name: 'frontend', controller: true }] }, 7000);
  assert.deepEqual(who('10.244.0.10', 7000), ['ReplicaSet', 'frontend']);
});

test('agent.json: one agent per lab; a dead agent\'s file does not block; weir lab observe gives way', async () => {
  const lab = `claim${process.pid % 10000}`;
  try {
    const info = { version: 1 as const, lab, pid: process.pid, url: 'http://127.0.0.1:1', tokenRequired: false, store: '/d', startedAt: new Date().toISOString() };
    const file = agentInfoFile(lab);
    // a file left by a process that is gone (pid 2^22 + 1 is above pid_max's default)
    claimAgentInfo({ ...info, pid: 4_194_305 });
    assert.equal(readAgentInfo(lab), undefined, 'a dead agent is no agent');
    claimAgentInfo(info);
    assert.equal(readAgentInfo(lab)?.pid, process.pid);
    // another live process holds it (pid 1 is alive)
    writeFileSync(file, JSON.stringify({ ...info, pid: 1 }));
    assert.throws(() => claimAgentInfo(info), /has an agent already \(pid 1/);
    removeAgentInfo(lab); // not ours: stays
    assert.equal(readAgentInfo(lab)?.pid, 1);
    // a ring buffer has one reader: while an agent reads the lab, weir lab observe follows the
    // agent's stream (and says so when it cannot reach it) instead of opening the ring
    await assert.rejects(observeLab(lab, { json: false }), /cannot follow the flow agent of lab "claim\d+" \(http:\/\/127\.0\.0\.1:1\): fetch failed/);
  } finally {
    rmSync(labDir(lab), { recursive: true, force: true });
  }
});
