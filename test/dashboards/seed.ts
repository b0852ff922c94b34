// The flows the dashboard tests seed a store with, the time range they query, and the dashboard
// files as users import them.

import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { FlowRow, SideIdentity } from '../../src/store/row.js';
import { DASHBOARDS_DIR } from '../../src/dashboards/generate.js';
import { T0, row } from '../store/fixtures.js';
import type { DashboardFile } from './check.js';

export { T0 };

// ---- the seeded flows ------------------------------------------------------------------------

export const MIN = 60_000;
export const RANGE = { from: T0 - 60 * MIN, to: T0 + 60 * MIN };

function world(ip: string, name: string, port = 0): Partial<SideIdentity> {
  return { kind: 'world', ip, port, name, namespace: '', pod: '', labels: {}, workloadKind: '', workload: '', serviceAccount: '', node: '' };
}

function host(ip: string, port: number, hostEndpoint: string): Partial<SideIdentity> {
  return { kind: 'host', ip, port, hostEndpoint, namespace: '', pod: '', labels: { role: 'node' }, workloadKind: '', workload: '', serviceAccount: '', node: 'node-1' };
}

const DEBUG = { namespace: 'ops', pod: 'debug', ip: '::ffff:10.244.0.13', port: 42568, labels: { app: 'debug' }, workload: 'debug' };
const PAYMENTS = { namespace: 'api', pod: 'payments', ip: '::ffff:10.244.0.12', port: 8080, labels: { app: 'payments' }, workload: 'payments' };
const deny = { kind: 'denied', verdict: 'denied', bytesFwd: 0, packetsRev: 0, bytesRev: 0, connectionsStarted: 0, connectionsCompleted: 0 } as const;

export const SEED: FlowRow[] = [
  // allowed flows (the fixture's default: web/frontend -> api/orders:8080)
  row({ ts: T0 - 30 * MIN, count: 2 }),
  row({ ts: T0 - 10 * MIN, count: 1, bytesFwd: 2000, bytesRev: 3000, packetsFwd: 20, packetsRev: 15 }),
  row({ ts: T0 - 20 * MIN, count: 1, src: { namespace: 'api', pod: 'orders', labels: { app: 'orders', tier: 'backend' }, workload: 'orders' }, dst: PAYMENTS, policy: 'api/allow-orders ingress[0]' }),
  row({ ts: T0 - 5 * MIN, count: 3, bytesFwd: 500, bytesRev: 90_000, dst: world('::', 'internet', 443), direction: 'egress', policy: '' }),
  // denied: ops/debug -> api/orders twice (default deny), over IPv6 to api/payments (a rule)
  row({ ...deny, ts: T0 - 15 * MIN, start: T0 - 15 * MIN, count: 3, packetsFwd: 3, reason: 'DENY_DEFAULT', policy: '', src: DEBUG }),
  row({ ...deny, ts: T0 - 14 * MIN, start: T0 - 14 * MIN, count: 2, packetsFwd: 2, reason: 'DENY_DEFAULT', policy: '', src: DEBUG }),
  row({ ...deny, ts: T0 - 12 * MIN, start: T0 - 12 * MIN, count: 4, packetsFwd: 4, reason: 'DENY_POLICY', policy: 'api/deny-debug ingress[0]', src: { ...DEBUG, ip: 'fd00:10:244::d' }, dst: { ...PAYMENTS, ip: 'fd00:10:244::c' } }),
  // denied: the world at the node's SSH and telnet ports
  row({ ...deny, ts: T0 - 8 * MIN, start: T0 - 9 * MIN, count: 5, packetsFwd: 5, reason: 'DENY_HOST_DEFAULT', policy: '', src: world('::ffff:203.0.113.7', 'scanners', 51000), dst: host('::ffff:192.168.1.10', 22, 'node-1-eth0') }),
  row({ ...deny, ts: T0 - 7 * MIN, start: T0 - 7 * MIN, count: 1, packetsFwd: 1, reason: 'DENY_HOST_DEFAULT', policy: '', src: world('::ffff:203.0.113.7', 'scanners', 51001), dst: host('::ffff:192.168.1.10', 23, 'node-1-eth0') }),
  row({ ...deny, ts: T0 - 6 * MIN, start: T0 - 6 * MIN, count: 2, packetsFwd: 2, reason: 'DENY_HOST_DEFAULT', policy: '', src: world('::ffff:198.51.100.9', '', 40000), dst: host('::ffff:192.168.1.10', 22, 'node-1-eth0') }),
  // audit: web/frontend -> api/payments passed only by audit mode
  row({ ts: T0 - 25 * MIN, kind: 'audit', verdict: 'audit', reason: 'AUDIT', count: 1, dst: PAYMENTS, policy: 'api/audit-payments ingress[0]' }),
  // loss
  row({
    ts: T0 - 3 * MIN, kind: 'lost', verdict: '', reason: 'ring_buffer', count: 7, policy: '', ingressPolicy: '',
    packetsFwd: 0, bytesFwd: 0, packetsRev: 0, bytesRev: 0, connectionsStarted: 0, connectionsCompleted: 0,
    src: { kind: '', ip: '::', namespace: '', pod: '', labels: {}, workloadKind: '', workload: '', serviceAccount: '', node: '' },
    dst: { kind: '', ip: '::', port: 0, namespace: '', pod: '', labels: {}, workloadKind: '', workload: '', serviceAccount: '', node: '' },
  }),
  // outside the time range: must not count anywhere
  row({ ...deny, ts: T0 - 2 * 86_400_000, start: T0 - 2 * 86_400_000, count: 100, packetsFwd: 100, reason: 'DENY_DEFAULT', policy: '', src: DEBUG }),
];

export const inRange = (r: FlowRow): boolean => r.ts >= RANGE.from && r.ts <= RANGE.to;
export const hasLabel = (r: FlowRow, labels: readonly string[]): boolean =>
  [r.src, r.dst].some((s) => Object.entries(s.labels).some(([k, v]) => labels.includes(`${k}=${v}`)));
export const inNamespaces = (r: FlowRow, ns: readonly string[]): boolean => ns.includes(r.src.namespace) || ns.includes(r.dst.namespace);
export const sum = (rows: readonly FlowRow[], f: (r: FlowRow) => number): number => rows.reduce((a, r) => a + f(r), 0);

// ---- loading ---------------------------------------------------------------------------------

export function loadDashboards(): DashboardFile[] {
  return readdirSync(DASHBOARDS_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => {
      const text = readFileSync(path.join(DASHBOARDS_DIR, file), 'utf8');
      try {
        return { file, json: JSON.parse(text) };
      } catch (err) {
        throw new Error(`dashboards/${file} is not valid JSON: ${(err as Error).message}`);
      }
    });
}

