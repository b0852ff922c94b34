// Rows and temporary directories for the store tests.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FlowRow, SideIdentity } from '../../src/store/row.js';
import type { FlowFilter } from '../../src/store/filter.js';

export const T0 = Date.UTC(2026, 10, 26, 9, 0, 0);

export function side(over: Partial<SideIdentity> = {}): SideIdentity {
  return {
    kind: 'pod', ip: '::ffff:10.244.0.10', port: 0, namespace: 'web', pod: 'frontend', labels: { app: 'frontend' },
    workloadKind: 'Deployment', workload: 'frontend', serviceAccount: 'default', node: 'node-1', hostEndpoint: '', name: '',
    ...over,
  };
}

export type RowOver = Partial<Omit<FlowRow, 'src' | 'dst'>> & { src?: Partial<SideIdentity>; dst?: Partial<SideIdentity> };

export function row(over: RowOver = {}): FlowRow {
  const { src, dst, ...rest } = over;
  return {
    ts: T0, start: T0 - 15_000, kind: 'flow', verdict: 'allowed', reason: 'ALLOW_POLICY', direction: 'ingress', protocol: 6,
    src: side(src),
    dst: side({ ip: '::ffff:10.244.0.11', port: 8080, namespace: 'api', pod: 'orders', labels: { app: 'orders', tier: 'backend' }, workload: 'orders', ...dst }),
    policy: 'api/allow-frontend ingress[0]', egressPolicy: '', ingressPolicy: 'api/allow-frontend ingress[0]', forwardPolicy: '',
    packetsFwd: 10, bytesFwd: 1000, packetsRev: 8, bytesRev: 4000,
    connectionsStarted: 1, connectionsCompleted: 1, connectionsLive: 0, count: 0, reporter: 'node-1',
    ...rest,
  };
}

/** n rows of namespace `ns` (source side), one millisecond apart from `t`. */
export function rows(n: number, ns: string, t = T0): FlowRow[] {
  return Array.from({ length: n }, (_, i) => row({ ts: t + i, src: { namespace: ns, port: 30000 + (i % 30000) } }));
}

export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), `weir-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export const INJECTIONS = [
  "x' OR '1'='1",
  "'; DROP TABLE flows; --",
  'x} OR 1=1 --',
  '{evil:String}',
  "x\\' OR 1=1 --",
  'a`b"c',
  '\u0000\n\t; SELECT 1',
];

/** Every string field of a filter, each holding `s`. */
export function injectedFilters(s: string): FlowFilter[] {
  const sideFilters = (x: string) => [
    { namespace: [x] },
    { pod: [x] },
    { pod: [`${x}/${x}`] },
    { labels: [{ key: x, op: '=' as const, value: x }] },
    { labels: [{ key: 'app', op: '!=' as const, value: x }, { key: x, op: 'exists' as const }] },
    { labels: [{ key: x, op: '!exists' as const }, { key: 'app', op: 'exists' as const }] },
  ];
  return [
    ...sideFilters(s).flatMap((f) => [{ either: f }, { src: f }, { dst: f }]),
    { policy: [s] },
  ];
}

