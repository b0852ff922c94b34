// Unit tests (no root): automatic host endpoints, the lab's host protection inputs from its state
// (node name, host endpoints in force, failsafes, warnings), and the settings merge.
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { autoHostEndpointName, autoHostEndpoints, withAutoHostEndpoints } from '../../src/datastore/auto-host-endpoints.js';
import type { HostEndpoint } from '../../src/datastore/host-objects.js';
import { parseManifestText } from '../../src/datastore/manifest.js';
import type { KubeObject } from '../../src/datastore/objects.js';
import {
  labFailsafes, labHostEndpointFor, labHostEndpoints, labHostWarnings, labNodeName, mergeFailsafeSettings,
} from '../../src/lab/host-protection.js';
import { Lab } from '../../src/lab/lab.js';
import { labExists, type LabState } from '../../src/lab/state.js';
import { FailsafeConfigError } from '../../src/policy/failsafe.js';

const objects = (text: string): KubeObject[] => {
  const problems: Parameters<typeof parseManifestText>[2] = [];
  const out = parseManifestText(text, 't.yaml', problems).map((o) => o.object);
  assert.deepEqual(problems, []);
  return out;
};

const NODE = `
apiVersion: v1
kind: Node
metadata: {name: lab-node, labels: {role: worker, zone: a}}
`;

const STAR_HEP = `
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: mine, labels: {role: mine}}
spec: {node: lab-node, interfaceName: "*", expectedIPs: [10.243.0.1]}
`;

const UPLINK_HEP = `
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata: {name: up, labels: {role: uplink}}
spec: {node: lab-node, interfaceName: uplink, expectedIPs: [10.243.0.1]}
`;

const DENY_SSH = `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: deny-ssh}
spec:
  selector: {}
  ingress: [{action: Deny, protocol: TCP, destination: {ports: [22]}}]
`;

function state(over: Partial<LabState>): LabState {
  return {
    version: 1, name: 't', createdAt: '', pinRoot: '/sys/fs/bpf/weir/lab-t', nodeNetns: 'weir-t-node',
    objects: [], pods: {}, ids: { identities: {}, endpoints: {}, rules: {}, ruleInfo: {}, next: { identity: 256, endpoint: 1, rule: 16 } },
    host: { netns: 'weir-t-node', ipv4: '10.243.0.1', ipv6: 'fd00:10:243::1', agentPid: 0, socketPath: '', ports: [] },
    ...over,
  };
}

test('autoHostEndpoints: one "*" endpoint per node with its labels and addresses', () => {
  const heps = autoHostEndpoints([
    { name: 'n1', labels: { role: 'worker' }, ips: ['10.0.0.1', 'fd00::1', '10.0.0.1'] },
    { name: 'n2', labels: {}, ips: [] },
    { name: 'n1', labels: { other: 'x' }, ips: ['10.9.9.9'] },
  ]);
  assert.deepEqual(heps, [
    { kind: 'HostEndpoint', name: 'n1-auto-hep', labels: { role: 'worker' }, annotations: {}, node: 'n1', interfaceName: '*', expectedIPs: ['10.0.0.1', 'fd00::1'] },
    { kind: 'HostEndpoint', name: 'n2-auto-hep', labels: {}, annotations: {}, node: 'n2', interfaceName: '*', expectedIPs: [] },
  ]);
  assert.equal(autoHostEndpointName('lab-node'), 'lab-node-auto-hep');
});

test('withAutoHostEndpoints: a user "*" endpoint of the node wins; a named interface does not replace it', () => {
  const auto = autoHostEndpoints([{ name: 'lab-node', labels: { role: 'worker' }, ips: ['10.243.0.1'] }, { name: 'n2', labels: {}, ips: [] }]);
  const user = [...objects(STAR_HEP), ...objects(UPLINK_HEP)] as HostEndpoint[];
  assert.deepEqual(withAutoHostEndpoints(user, auto).map((h) => h.name), ['mine', 'n2-auto-hep', 'up']);
  assert.deepEqual(withAutoHostEndpoints(user.filter((h) => h.name === 'up'), auto).map((h) => h.name), ['lab-node-auto-hep', 'n2-auto-hep', 'up']);
  // a user endpoint named like the automatic one (another interface) is kept, the automatic one dropped
  const named = { ...user[1]!, name: 'n2-auto-hep', node: 'n2' };
  assert.deepEqual(withAutoHostEndpoints([named], auto).map((h) => `${h.name}/${h.interfaceName}`), ['lab-node-auto-hep/*', 'n2-auto-hep/uplink']);
});

test('the lab node: its Node\'s name (else the node netns); host endpoints in force; the one covering an interface', () => {
  assert.equal(labNodeName(state({})), 'weir-t-node');
  const s = state({ objects: objects(NODE), autoHostEndpoints: true });
  assert.equal(labNodeName(s), 'lab-node');
  assert.deepEqual(labHostEndpoints(s), [
    { kind: 'HostEndpoint', name: 'lab-node-auto-hep', labels: { role: 'worker', zone: 'a' }, annotations: {}, node: 'lab-node', interfaceName: '*', expectedIPs: ['10.243.0.1', 'fd00:10:243::1'] },
  ]);
  assert.deepEqual(labHostEndpoints({ ...s, autoHostEndpoints: false }), []);
  // without a Node: the netns name, no labels
  assert.deepEqual(labHostEndpoints(state({ autoHostEndpoints: true })).map((h) => [h.name, h.node, h.labels]), [['weir-t-node-auto-hep', 'weir-t-node', {}]]);
  // the user's "*" endpoint replaces the automatic one; a named interface's endpoint covers it
  const both = state({ objects: objects(NODE + '---' + STAR_HEP + '---' + UPLINK_HEP), autoHostEndpoints: true });
  assert.deepEqual(labHostEndpoints(both).map((h) => h.name), ['mine', 'up']);
  assert.equal(labHostEndpointFor(both, 'uplink')?.name, 'up');
  assert.equal(labHostEndpointFor(both, '*')?.name, 'mine');
  assert.equal(labHostEndpointFor(both, 'eth9')?.name, 'mine');
  assert.equal(labHostEndpointFor(state({ objects: objects(NODE) }), 'uplink'), undefined);
});

test('failsafe settings: defaults, merge field by field, disable and re-enable; warnings as policy check says them', () => {
  assert.equal(labFailsafes(state({})).enabled, true);
  assert.ok(labFailsafes(state({})).inbound.some((f) => f.protocol === 'TCP' && f.port === 22));
  const a = mergeFailsafeSettings(undefined, { inbound: 'tcp:2222' });
  assert.deepEqual(a, { inbound: 'tcp:2222' });
  const b = mergeFailsafeSettings(a, { disabled: true });
  assert.deepEqual(b, { inbound: 'tcp:2222', disabled: true });
  assert.deepEqual(mergeFailsafeSettings(b, { outbound: '' }), { inbound: 'tcp:2222', outbound: '', disabled: true });
  assert.deepEqual(mergeFailsafeSettings(b, { disabled: false }), { inbound: 'tcp:2222' }, 're-enabled keeps the lists');
  assert.deepEqual(labFailsafes(state({ failsafes: a })).inbound, [{ protocol: 'TCP', port: 2222 }]);
  assert.equal(labFailsafes(state({ failsafes: b })).enabled, false);

  assert.deepEqual(labHostWarnings(state({})), []);
  assert.deepEqual(labHostWarnings(state({ failsafes: { disabled: true } })), ['failsafe ports are disabled: a host policy can lock you out of the node']);
  const deny = state({ objects: objects(DENY_SSH) });
  assert.deepEqual(labHostWarnings(deny), [
    'GlobalNetworkPolicy deny-ssh: spec.ingress[0]: this Deny rule would close failsafe TCP 22; failsafe ports stay open unless failsafes are disabled',
  ]);
  assert.deepEqual(labHostWarnings({ ...deny, failsafes: { inbound: 'tcp:2222' } }), [], 'port 22 is no failsafe then');
});

test('Lab.up refuses a bad failsafe list before anything is made (no privileges needed)', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-host-settings-'));
  const name = `hs${process.pid % 10000}`;
  try {
    const file = path.join(dir, 'node.yaml');
    writeFileSync(file, NODE);
    await assert.rejects(Lab.up(name, [file], { failsafes: { inbound: 'tcp:99999' } }), (e: unknown) => {
      assert.ok(e instanceof FailsafeConfigError);
      assert.match(e.message, /failsafeInbound: entry 1 "tcp:99999": port must be 1-65535/);
      return true;
    });
    assert.equal(labExists(name), false, 'no lab was created');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a HostEndpoint of another node is noted: it covers nothing in the lab', async () => {
  const { labHostNotes } = await import('../../src/lab/host-protection.js');
  const other = objects(NODE + '---' + STAR_HEP.replace('node: lab-node', 'node: lab-nod'));
  assert.deepEqual(labHostNotes(state({ objects: other })), [
    'HostEndpoint mine: spec.node: "lab-nod" is not the lab\'s node "lab-node": it covers no interface of this lab (its expectedIPs still identify peers)',
  ]);
  assert.deepEqual(labHostNotes(state({ objects: objects(NODE + '---' + STAR_HEP) })), []);
});
