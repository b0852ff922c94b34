// The same dashboards through the agent's read-only ClickHouse-HTTP-compatible endpoint
// (src/api/clickhouse-http.ts) over the embedded store, as Grafana's ClickHouse data source reaches
// it over HTTP: every ClickHouse target and variable query, expanded, must pass the endpoint's
// read-only checks and return what the store itself returns.

import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express from 'express';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createClickHouseEndpoint } from '../../src/api/clickhouse-http.js';
import { openStore, type FlowStore } from '../../src/store/store.js';
import { CLICKHOUSE_TYPE } from '../../src/dashboards/model.js';
import { tempDir } from '../store/fixtures.js';
import { runSql, targetsOf, variableStates, type DashboardFile } from './check.js';
import { expandQuery, type ExpandOptions } from './macros.js';
import { MIN, RANGE, SEED, loadDashboards } from './seed.js';

const PREFIX = '/clickhouse';
const USER = 'grafana';
const PASSWORD = 'dash-7f3e';

const dashboards = loadDashboards();
const tmp = tempDir('dashboards-endpoint');
let store: FlowStore;
let server: http.Server;
let client: ClickHouseClient;

before(async () => {
  store = await openStore({ dataDir: path.join(tmp.dir, 'data') });
  await store.insert(SEED, 'dashboards-endpoint-seed-1');
  const endpoint = createClickHouseEndpoint({ store, credentials: { user: USER, password: PASSWORD } });
  const app = express();
  app.use(PREFIX, endpoint.router);
  server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  client = createClient({ url: `http://127.0.0.1:${port}`, pathname: PREFIX, username: USER, password: PASSWORD, request_timeout: 30_000 });
});

after(async () => {
  await client?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await store?.close();
  tmp.remove();
});

function options(d: DashboardFile, current: Record<string, readonly string[] | 'all'>): ExpandOptions {
  return { ...RANGE, intervalMs: MIN, variables: variableStates(d, { namespace: ['api', 'ops', 'web'] }, current) };
}

async function viaEndpoint(sql: string): Promise<{ columns: string[]; rows: unknown[] }> {
  const rs = await client.query({ query: sql, format: 'JSON' });
  const body = await rs.json<Record<string, unknown>>();
  return { columns: (body.meta ?? []).map((c) => c.name), rows: body.data };
}

test('every ClickHouse target and variable query runs through the endpoint with the store\'s answer', async () => {
  let checked = 0;
  for (const current of [{}, { namespace: ['api'], label: ['app=orders'] }] as Record<string, readonly string[] | 'all'>[]) {
    for (const d of dashboards) {
      const queries = targetsOf(d)
        .filter((t) => t.target.datasource?.type === CLICKHOUSE_TYPE)
        .map((t) => ({ what: `${d.file}: panel "${t.panel.title}"`, rawSql: t.target.rawSql as string }));
      for (const v of d.json.templating.list.filter((x: any) => x.type === 'query' && x.datasource.type === CLICKHOUSE_TYPE)) {
        queries.push({ what: `${d.file}: variable ${v.name}`, rawSql: v.query.rawSql });
      }
      for (const q of queries) {
        const sql = expandQuery(q.rawSql, options(d, current));
        const direct = await runSql(store, sql);
        let got: { columns: string[]; rows: unknown[] };
        try {
          got = await viaEndpoint(sql);
        } catch (err) {
          throw new Error(`${q.what}: the endpoint refused it: ${(err as Error).message}`);
        }
        assert.deepEqual(got.columns, direct.columns.map((c) => c.name), `${q.what}: columns`);
        assert.deepEqual(got.rows, direct.rows, `${q.what}: rows`);
        checked++;
      }
    }
  }
  assert.ok(checked >= 20, `only ${checked} queries checked`);
});
