// The agent serves the read-only ClickHouse-compatible endpoint on its API port (what Grafana's
// ClickHouse data source points at): a real lab, real traffic, the agent's own store, and
// @clickhouse/client over HTTP as the client, authenticated with the API token as a bearer.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ClickHouseLogLevel, createClient } from '@clickhouse/client';
import { Lab } from '../../src/lab/lab.js';
import { probeLab } from '../../src/lab/probe.js';
import { runAgent, CLICKHOUSE_PATH, CLICKHOUSE_USER, type Agent } from '../../src/agent/agent.js';

const LAB = `tce${process.pid % 10000}`;
const TOKEN = 'endpoint-test-token-0123456789';

const MANIFEST = `
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, labels: {app: client}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: srv, namespace: a, labels: {app: srv}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: a}
spec: {podSelector: {matchLabels: {app: srv}}, policyTypes: [Ingress]}
`;

test('the agent serves its store to a ClickHouse client at /clickhouse: reads only, behind the token', async () => {
  if (process.getuid?.() !== 0) assert.fail('this test needs root (network namespaces, BPF): run `sudo npm test`');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-ch-endpoint-'));
  let agent: Agent | undefined;
  try {
    const manifest = path.join(dir, 'lab.yaml');
    writeFileSync(manifest, MANIFEST);
    const { lab } = await Lab.up(LAB, [manifest]);
    agent = await runAgent({ lab: LAB, store: { dataDir: path.join(dir, 'chdb') }, intervalMs: 1000, spoolDir: path.join(dir, 'spool'), token: TOKEN });
    // client -> srv is denied (srv is isolated for ingress)
    const report = await probeLab(lab.snapshot, { from: 'a/client', to: 'a/srv', port: 80, protocol: 'TCP', family: 4, timeoutMs: 500 });
    assert.ok(report.results.every((r) => !r.connected), 'client -> srv is denied');
    agent.drain();
    await agent.flush();

    const url = `${agent.url}${CLICKHOUSE_PATH}`;
    // Grafana's data source: the agent's address, HTTP, path /clickhouse
    const ch = createClient({ url: agent.url, pathname: CLICKHOUSE_PATH, access_token: TOKEN, log: { level: ClickHouseLogLevel.OFF } });
    try {
      assert.equal((await ch.ping()).success, true);
      const rs = await ch.query({
        query: "SELECT src_pod, dst_pod, verdict FROM flows WHERE verdict = {v:String} AND dst_namespace = 'a'",
        query_params: { v: 'denied' },
        format: 'JSONEachRow',
      });
      const rows = await rs.json<{ src_pod: string; dst_pod: string; verdict: string }>();
      assert.ok(rows.some((r) => r.src_pod === 'client' && r.dst_pod === 'srv'), `the denied flow is readable: ${JSON.stringify(rows)}`);
      // reads only
      await assert.rejects(ch.command({ query: 'DROP TABLE flows' }), /not allowed|READONLY|readonly|only/i);
      await assert.rejects(ch.query({ query: "SELECT * FROM file('/etc/passwd', 'LineAsString')" }), /file|not allowed|READONLY/i);
    } finally {
      await ch.close();
    }
    // Grafana's way: basic auth, the API token as the password of the user "weir"
    const basic = createClient({ url: agent.url, pathname: CLICKHOUSE_PATH, username: CLICKHOUSE_USER, password: TOKEN, log: { level: ClickHouseLogLevel.OFF } });
    try {
      const one = await (await basic.query({ query: 'SELECT 1 AS one', format: 'JSONEachRow' })).json<{ one: number }>();
      assert.equal(Number(one[0]!.one), 1);
    } finally {
      await basic.close();
    }
    // the token is required
    const anonymous = await fetch(`${url}/?query=${encodeURIComponent('SELECT 1')}`);
    assert.equal(anonymous.status, 401);
    const wrong = createClient({ url: agent.url, pathname: CLICKHOUSE_PATH, access_token: 'wrong-token-0123456789', log: { level: ClickHouseLogLevel.OFF } });
    try {
      await assert.rejects(wrong.query({ query: 'SELECT 1' }));
    } finally {
      await wrong.close();
    }
    // the flows are all still there after the refused statements
    const still = await agent.store.count({});
    assert.ok(still > 0);
  } finally {
    await agent?.close().catch(() => undefined);
    await Lab.down(LAB).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});
