// End-to-end: host and global policies in the lab, with real namespaces, real packets and the real
// BPF datapath. One lab for the whole file (own name, torn down in `finally`), scenarios in turn:
//  1. a deny-all host policy keeps the failsafe SSH port open and names its Deny rule elsewhere;
//  2. host ingress allowed only from pods with a label (others: end-of-tier deny);
//  3. world -> pod through the node keeps the world's own source address (uplink and pod hook);
//  4. ordered global policies with Log and Pass on pods, then the NetworkPolicy tier; reordered;
//  5. end-of-tier deny on a pod that no NetworkPolicy isolates;
//  6. audit mode: an audit global policy and an audited HostEndpoint pass what they would deny.
// Expected outcomes follow docs/policy.md ("Host protection") and src/policy/host-reference.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab } from '../../src/lab/lab.js';
import { labPinRoot } from '../../src/lab/state.js';
import { probeLab } from '../../src/lab/probe.js';
import { LAB_NODE_IPS, LAB_NODE_V4, LAB_NODE_V6, LAB_WORLD_V4, LAB_WORLD_V6 } from '../../src/lab/addresses.js';
import { FlowObserver } from '../../src/flows/observe.js';
import type { FlowView } from '../../src/flows/describe.js';

const NODE = `
apiVersion: v1
kind: Node
metadata:
  name: lab-node
  labels: {role: worker}
  annotations: {lab.weir.dev/ports: "22/TCP,9100/TCP"}
`;

// No pod carries role=worker: the host policies below select the node's host endpoint only.
const PODS = `
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a, access: node}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 81}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: c}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
`;

// (1) every packet to the host is denied (ingress, the host's own traffic)
const DENY_ALL_HOST = `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: deny-all-host}
spec:
  order: 10
  selector: {matchLabels: {role: worker}}
  ingress: [{action: Deny}]
`;

// (2) host:9100 only from endpoints labelled access=node
const HOST_FROM_ACCESS = `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: host-from-access}
spec:
  order: 10
  selector: {matchLabels: {role: worker}}
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: {matchLabels: {access: node}}}
    destination: {ports: [9100]}
`;

// (4) Log + Pass on app=b, a Deny-all after it, and a NetworkPolicy allowing app=a -> app=b:80
const logPassB = (order: number) => `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: log-pass-b}
spec:
  order: ${order}
  selector: {matchLabels: {app: b}}
  ingress:
  - {action: Log}
  - {action: Pass}
`;
const denyB = (order: number) => `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata: {name: deny-b}
spec:
  order: ${order}
  selector: {matchLabels: {app: b}}
  ingress: [{action: Deny}]
`;
const NP_A_TO_B = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a-to-b, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
    ports: [{protocol: TCP, port: 80}]
`;

// (5)/(6) a global policy selecting x/c whose only rule matches nothing of a probe to port 80
const only443C = (audit: boolean) => `
apiVersion: weir.dev/v1alpha1
kind: GlobalNetworkPolicy
metadata:
  name: only-443-c
${audit ? '  annotations: {policy.weir.dev/audit: "true"}\n' : ''}spec:
  order: 10
  selector: {matchLabels: {app: c}}
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [443]}}]
`;

// (6) a user HostEndpoint for the node's "*", in audit mode; no policy selects role=audited
const AUDITED_HEP = `
apiVersion: weir.dev/v1alpha1
kind: HostEndpoint
metadata:
  name: audited
  labels: {role: audited}
  annotations: {policy.weir.dev/audit: "true"}
spec: {node: lab-node, interfaceName: "*", expectedIPs: ["${LAB_NODE_V4}", "${LAB_NODE_V6}"]}
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function show(f: FlowView): string {
  return `${f.type}/${f.verdict} ${f.reason} @${f.hook} ${f.src?.ip}:${f.src?.port}(${f.src?.name ?? f.src?.kind})>${f.dst?.ip}:${f.dst?.port}(${f.dst?.name ?? f.dst?.kind}) [${f.policy}]${f.forward ? ` fwd[${f.forward}]` : ''}`;
}

test('host and global policies in the lab: deny-all host + failsafe, label-gated host ingress, world source address, Log/Pass/order, end-of-tier, audit', async () => {
  if (process.getuid?.() !== 0) assert.fail('lab tests need root (network namespaces, BPF): run `sudo npm test`');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-lab-hp-'));
  const file = (name: string, text: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const name = `hp${process.pid % 10000}`;
  let lab: Lab | undefined;
  try {
    lab = (await Lab.up(name, [file('node.yaml', NODE), file('pods.yaml', PODS)], { autoHostEndpoints: true })).lab;
    const l = lab;
    const a = l.snapshot.pods['x/a']!;
    const b = l.snapshot.pods['x/b']!;
    const c = l.snapshot.pods['x/c']!;
    assert.ok(a && b && c, 'three pods');

    const observer = FlowObserver.forLab(l);
    const flows: FlowView[] = [];
    observer.onFlow((f) => flows.push(f));
    observer.start();
    try {
      const probe = async (from: string, to: string, port: number, family: 4 | 6 = 4) => {
        const report = await probeLab(l.snapshot, { port, protocol: 'TCP', family, timeoutMs: 1500, from, to });
        const r = report.results.find((x) => x.from === from && x.to === to);
        assert.ok(r, `no probe result ${from} -> ${to}`);
        return r.connected;
      };
      /** The first record matching `pred`, polling the ring a bounded number of times. */
      const waitFor = async (what: string, pred: (f: FlowView) => boolean): Promise<FlowView> => {
        for (let i = 0; i < 20; i++) {
          observer.drain();
          const f = flows.find(pred);
          if (f) return f;
          await sleep(100);
        }
        assert.fail(`no record: ${what}\n  got:\n    ${flows.map(show).join('\n    ')}`);
      };
      /** Everything that arrived so far (after a short bounded settle), for absence checks. */
      const settle = async () => {
        observer.drain();
        await sleep(300);
        observer.drain();
      };

      // ---- (3) world -> pod through the node: the world's own address, at the uplink and the pod.
      flows.length = 0;
      for (const family of [4, 6] as const) {
        assert.equal(await probe('world', 'x/a', 80, family), true, `world -> x/a:80 IPv${family} (forwarded: allowed by the host endpoint's default)`);
      }
      for (const [world, pod] of [[LAB_WORLD_V4, a.ipv4], [LAB_WORLD_V6, a.ipv6]] as const) {
        const up = await waitFor(`FLOW_START at the uplink ${world} -> ${pod}`, (f) => f.type === 'flow-start' && f.hook === 'FROM_HOST_DEV' && f.dst?.ip === pod && f.dst?.port === 80);
        assert.equal(up.src?.ip, world, `uplink record: source is the world's address: ${show(up)}`);
        assert.equal(up.src?.kind, 'world');
        assert.equal(up.reason, 'ALLOW_FORWARDED', show(up));
        assert.equal(up.verdict, 'allow');
        const atPod = await waitFor(`FLOW_START at the pod hook ${world} -> ${pod}`, (f) => f.type === 'flow-start' && f.hook === 'TO_POD' && f.dst?.ip === pod && f.dst?.port === 80);
        assert.equal(atPod.src?.ip, world, `pod-hook record: source is the world's address: ${show(atPod)}`);
        assert.equal(atPod.src?.kind, 'world');
        assert.equal(atPod.dst?.name, 'x/a');
        assert.equal(atPod.verdict, 'allow');
      }
      await settle();
      const masqueraded = flows.filter((f) => f.dst?.name === 'x/a' && f.src !== undefined && LAB_NODE_IPS.includes(f.src.ip));
      assert.deepEqual(masqueraded.map(show), [], 'no record of the pod flows names the node as source');

      // ---- (1) deny-all on the host: failsafe SSH stays open, 9100 is denied by the rule.
      await l.apply([file('deny-all-host.yaml', DENY_ALL_HOST)]);
      assert.ok(l.warnings().some((w) => /^GlobalNetworkPolicy deny-all-host: spec\.ingress\[0\]: this Deny rule would close failsafes? TCP 22\b/.test(w)),
        `warned about the failsafe: ${JSON.stringify(l.warnings())}`);
      flows.length = 0;
      assert.equal(await probe('world', 'host', 22), true, 'failsafe TCP 22 beats the deny-all');
      assert.equal(await probe('world', 'host', 9100), false, 'world -> host:9100 denied by gnp/deny-all-host');
      const ssh = await waitFor('FLOW_START world -> host:22', (f) => f.type === 'flow-start' && f.src?.ip === LAB_WORLD_V4 && f.dst?.ip === LAB_NODE_V4 && f.dst?.port === 22);
      assert.equal(ssh.reason, 'ALLOW_FAILSAFE', show(ssh));
      assert.equal(ssh.verdict, 'allow');
      const d9100 = await waitFor('DENY world -> host:9100', (f) => f.type === 'deny' && f.src?.ip === LAB_WORLD_V4 && f.dst?.ip === LAB_NODE_V4 && f.dst?.port === 9100);
      assert.equal(d9100.verdict, 'deny');
      assert.equal(d9100.reason, 'DENY_POLICY', show(d9100));
      assert.equal(d9100.policy, 'gnp/deny-all-host ingress[0] Deny', show(d9100));
      assert.equal(d9100.dst?.name, 'lab-node');
      await l.delete([file('deny-all-host.yaml', DENY_ALL_HOST)]);

      // ---- (2) host:9100 only from pods labelled access=node.
      await l.apply([file('host-from-access.yaml', HOST_FROM_ACCESS)]);
      flows.length = 0;
      assert.equal(await probe('x/a', 'host', 9100), true, 'x/a (access=node) -> host:9100');
      assert.equal(await probe('x/b', 'host', 9100), false, 'x/b (no label) -> host:9100');
      assert.equal(await probe('world', 'host', 9100), false, 'world -> host:9100');
      const okA = await waitFor('FLOW_START x/a -> host:9100', (f) => f.type === 'flow-start' && f.src?.ip === a.ipv4 && f.dst?.port === 9100);
      assert.equal(okA.reason, 'ALLOW_GLOBAL', show(okA));
      assert.equal(okA.policy, 'gnp/host-from-access ingress[0] Allow', show(okA));
      // The endpoint is selected by a policy and no rule decided: end-of-tier deny (reference
      // semantics, step 3), not the host endpoint's default (only when no policy selects it).
      for (const [who, ip] of [['x/b', b.ipv4], ['world', LAB_WORLD_V4]] as const) {
        const d = await waitFor(`DENY ${who} -> host:9100`, (f) => f.type === 'deny' && f.src?.ip === ip && f.dst?.ip === LAB_NODE_V4 && f.dst?.port === 9100);
        assert.equal(d.verdict, 'deny');
        assert.equal(d.reason, 'DENY_END_OF_TIER', `${who}: ${show(d)}`);
        assert.match(d.policy, /selected by gnp\/host-from-access\)$/, `${who}: ${show(d)}`);
      }
      await l.delete([file('host-from-access.yaml', HOST_FROM_ACCESS)]);

      // ---- (4) Log then Pass (order 10), Deny (order 20, never reached), NetworkPolicy a -> b:80.
      await l.apply([file('log-pass-b.yaml', logPassB(10)), file('deny-b.yaml', denyB(20)), file('np.yaml', NP_A_TO_B)]);
      flows.length = 0;
      assert.equal(await probe('x/a', 'x/b', 80), true, 'passed to the NetworkPolicy tier, which allows a -> b:80');
      assert.equal(await probe('x/a', 'x/b', 81), false, 'passed to the NetworkPolicy tier: default deny for 81');
      const log80 = await waitFor('LOG x/a -> x/b:80', (f) => f.type === 'log' && f.src?.ip === a.ipv4 && f.dst?.ip === b.ipv4 && f.dst?.port === 80);
      assert.equal(log80.policy, 'log: gnp/log-pass-b ingress[0] Log', show(log80));
      const log81 = await waitFor('LOG x/a -> x/b:81', (f) => f.type === 'log' && f.src?.ip === a.ipv4 && f.dst?.ip === b.ipv4 && f.dst?.port === 81);
      assert.equal(log81.policy, 'log: gnp/log-pass-b ingress[0] Log', show(log81));
      const np80 = await waitFor('FLOW_START x/a -> x/b:80 at x/b', (f) => f.type === 'flow-start' && f.hook === 'TO_POD' && f.src?.ip === a.ipv4 && f.dst?.ip === b.ipv4 && f.dst?.port === 80);
      assert.equal(np80.verdict, 'allow');
      assert.equal(np80.reason, 'ALLOW_POLICY', show(np80));
      assert.match(np80.policy, /allow-a-to-b ingress\[0\]$/, show(np80));
      const np81 = await waitFor('DENY x/a -> x/b:81', (f) => f.type === 'deny' && f.src?.ip === a.ipv4 && f.dst?.ip === b.ipv4 && f.dst?.port === 81);
      assert.equal(np81.verdict, 'deny');
      assert.equal(np81.reason, 'DENY_DEFAULT', show(np81));
      assert.match(np81.policy, /isolated by .*allow-a-to-b/, show(np81));
      await settle();
      assert.deepEqual(flows.filter((f) => f.policy.includes('deny-b')).map(show), [], 'gnp/deny-b is never reached after the Pass');

      // Reordered: deny-b (order 5) comes before log-pass-b (order 10) and decides first.
      await l.apply([file('deny-b.yaml', denyB(5))]);
      flows.length = 0;
      assert.equal(await probe('x/a', 'x/b', 80), false, 'gnp/deny-b (order 5) denies before the Pass');
      const d80 = await waitFor('DENY x/a -> x/b:80', (f) => f.type === 'deny' && f.src?.ip === a.ipv4 && f.dst?.ip === b.ipv4 && f.dst?.port === 80);
      assert.equal(d80.verdict, 'deny');
      assert.equal(d80.reason, 'DENY_POLICY', show(d80));
      assert.equal(d80.policy, 'gnp/deny-b ingress[0] Deny', show(d80));
      await settle();
      assert.deepEqual(flows.filter((f) => f.type === 'log').map(show), [], 'the Log rule (order 10) is never reached after the Deny (order 5)');
      await l.delete([file('log-pass-b.yaml', logPassB(10)), file('deny-b.yaml', denyB(5)), file('np.yaml', NP_A_TO_B)]);

      // ---- (5) end-of-tier: a global policy selects x/c, its only rule (TCP 443) does not match.
      await l.apply([file('only-443-c.yaml', only443C(false))]);
      flows.length = 0;
      assert.equal(await probe('x/a', 'x/c', 80), false, 'end-of-tier deny though no NetworkPolicy isolates x/c');
      const eot = await waitFor('DENY x/a -> x/c:80', (f) => f.type === 'deny' && f.src?.ip === a.ipv4 && f.dst?.ip === c.ipv4 && f.dst?.port === 80);
      assert.equal(eot.verdict, 'deny');
      assert.equal(eot.reason, 'DENY_END_OF_TIER', show(eot));
      assert.match(eot.policy, /selected by gnp\/only-443-c\)$/, show(eot));

      // ---- (6) the same policy in audit mode: enforcement unchanged (connects), verdict audit.
      await l.apply([file('only-443-c.yaml', only443C(true))]);
      flows.length = 0;
      assert.equal(await probe('x/a', 'x/c', 80), true, 'an audit-mode policy does not enforce');
      // judged where x/c's ingress is: its pod hook (x/a's egress side, at FROM_POD, is a plain allow)
      const aud = await waitFor('FLOW_START x/a -> x/c:80 at x/c', (f) => f.type === 'flow-start' && f.hook === 'TO_POD' && f.src?.ip === a.ipv4 && f.dst?.ip === c.ipv4 && f.dst?.port === 80);
      assert.equal(aud.verdict, 'audit', `${show(aud)}\n  all:\n    ${flows.map(show).join('\n    ')}`);
      assert.equal(aud.reason, 'AUDIT', show(aud));
      await l.delete([file('only-443-c.yaml', only443C(true))]);

      // A HostEndpoint in audit mode: the host's default deny becomes an audit.
      await l.apply([file('hep.yaml', AUDITED_HEP)]);
      flows.length = 0;
      assert.equal(await probe('world', 'host', 9100), true, 'audited host endpoint: the default deny only reports');
      assert.equal(await probe('world', 'host', 22), true, 'failsafe');
      const haud = await waitFor('FLOW_START world -> host:9100', (f) => f.type === 'flow-start' && f.src?.ip === LAB_WORLD_V4 && f.dst?.ip === LAB_NODE_V4 && f.dst?.port === 9100);
      assert.equal(haud.verdict, 'audit', show(haud));
      assert.equal(haud.reason, 'AUDIT', show(haud));
      assert.equal(haud.dst?.hostEndpoint?.name, 'audited', show(haud));
      const hssh = await waitFor('FLOW_START world -> host:22', (f) => f.type === 'flow-start' && f.src?.ip === LAB_WORLD_V4 && f.dst?.ip === LAB_NODE_V4 && f.dst?.port === 22);
      assert.equal(hssh.verdict, 'allow', show(hssh));
      assert.equal(hssh.reason, 'ALLOW_FAILSAFE', show(hssh));
    } finally {
      observer.close();
    }
  } finally {
    lab?.close();
    await Lab.down(name);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(existsSync(labPinRoot(name)), false, 'pins removed');
});
