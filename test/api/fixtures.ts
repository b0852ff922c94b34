// Flow rows for the API's tests, and a real store (embedded chDB in a temp directory) seeded with them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openStore, type FlowStore } from '../../src/store/store.js';
import type { FlowRow, SideIdentity } from '../../src/store/row.js';

type SideOver = Partial<SideIdentity>;
export type RowOver = Partial<Omit<FlowRow, 'src' | 'dst'>> & { src?: SideOver; dst?: SideOver };

const side = (over: SideOver = {}): SideIdentity => ({
  kind: 'pod', ip: '::ffff:10.244.0.10', port: 0, namespace: 'web', pod: 'frontend', labels: { app: 'frontend' },
  workloadKind: 'Deployment', workload: 'frontend', serviceAccount: 'default', node: 'lab-node', hostEndpoint: '', name: '', ...over,
});

/** an hour ago, whole seconds: inside the store's retention whenever the tests run */
export const T0 = Math.floor(Date.now() / 1000) * 1000 - 3_600_000;

/** A row; `reporter` doubles as the row's name in the tests. */
export function row(over: RowOver = {}): FlowRow {
  const { src, dst, ...rest } = over;
  return {
    ts: T0, start: T0 - 15_000, kind: 'flow', verdict: 'allowed', reason: 'ALLOW_POLICY', direction: 'ingress', protocol: 6,
    src: side(src), dst: side({ ip: '::ffff:10.244.0.11', port: 8080, namespace: 'api', pod: 'orders', labels: { app: 'orders', tier: 'backend' }, workload: 'orders', ...dst }),
    policy: 'api/allow-frontend-to-orders ingress[0]', egressPolicy: '', ingressPolicy: 'api/allow-frontend-to-orders ingress[0]', forwardPolicy: '',
    packetsFwd: 3, bytesFwd: 180, packetsRev: 2, bytesRev: 120, connectionsStarted: 1, connectionsCompleted: 1, connectionsLive: 0, count: 0,
    reporter: 'r', ...rest,
  };
}

/** Rows covering every filter: names are in `reporter`. */
export function corpus(): FlowRow[] {
  return [
    row({ reporter: 'fe-orders', ts: T0 }),
    row({ reporter: 'debug-orders-denied', ts: T0 + 1000, kind: 'denied', verdict: 'denied', reason: 'DENY_DEFAULT', policy: '', ingressPolicy: '', count: 4, packetsFwd: 0, packetsRev: 0, bytesFwd: 0, bytesRev: 0,
      src: { namespace: 'ops', pod: 'debug', labels: { app: 'debug', 'example.com/team': 'sre' }, ip: '::ffff:10.244.0.13', port: 42568, workload: 'debug' } }),
    row({ reporter: 'orders-payments', ts: T0 + 2000, src: { namespace: 'api', pod: 'orders', labels: { app: 'orders', tier: 'backend' }, ip: '::ffff:10.244.0.11' },
      dst: { namespace: 'api', pod: 'payments', labels: { app: 'payments', tier: 'backend' }, ip: '::ffff:10.244.0.12', port: 8080 }, policy: 'api/allow-orders-to-payments ingress[0]', ingressPolicy: 'api/allow-orders-to-payments ingress[0]' }),
    row({ reporter: 'fe-orders-v6-udp', ts: T0 + 3000, protocol: 17, src: { ip: 'fd00:10:244::a' }, dst: { ip: 'fd00:10:244::b', port: 53 } }),
    row({ reporter: 'world-host-ssh-audit', ts: T0 + 4000, kind: 'audit', verdict: 'audit', reason: 'ALLOW_AUDIT', direction: 'ingress', policy: 'gnp/deny-ssh ingress[0] Deny', ingressPolicy: '', forwardPolicy: 'gnp/deny-ssh ingress[0] Deny',
      src: { kind: 'world', namespace: '', pod: '', labels: {}, workloadKind: '', workload: '', serviceAccount: '', node: '', ip: '::ffff:10.243.0.100', port: 51000, name: 'corp' },
      dst: { kind: 'host', namespace: '', pod: '', labels: { role: 'worker' }, workloadKind: '', workload: '', serviceAccount: '', node: 'lab-node', hostEndpoint: 'lab-node-auto-hep', ip: '::ffff:10.243.0.1', port: 22 } }),
    row({ reporter: 'icmp-denied', ts: T0 + 5000, kind: 'denied', verdict: 'denied', reason: 'DENY_POLICY', protocol: 1, policy: 'api/default-deny', ingressPolicy: '', count: 1,
      src: { namespace: 'web', pod: 'frontend', ip: '::ffff:10.244.0.10', labels: { app: 'frontend', canary: '' } }, dst: { namespace: 'api', pod: 'orders', port: 0, labels: { app: 'orders' } } }),
    row({ reporter: 'lost', ts: T0 + 6000, kind: 'lost', verdict: '', reason: '', direction: '', protocol: 0, policy: '', ingressPolicy: '', count: 7, packetsFwd: 0, packetsRev: 0, bytesFwd: 0, bytesRev: 0,
      src: { kind: '', ip: '::', namespace: '', pod: '', labels: {}, workloadKind: '', workload: '', serviceAccount: '', node: '' },
      dst: { kind: '', ip: '::', port: 0, namespace: '', pod: '', labels: {}, workloadKind: '', workload: '', serviceAccount: '', node: '' } }),
    row({ reporter: 'sctp-other-ns', ts: T0 + 7000, protocol: 132, src: { namespace: 'api', pod: 'frontend', labels: { app: 'frontend' }, ip: '::ffff:10.244.1.10' },
      dst: { namespace: 'web', pod: 'orders', labels: { app: 'orders' }, ip: '::ffff:10.244.1.11', port: 9000 }, policy: 'web/allow-all ingress[2]', ingressPolicy: 'web/allow-all ingress[2]' }),
  ];
}

export interface TempStore {
  readonly store: FlowStore;
  readonly dir: string;
  /** closes the store and removes the directory */
  cleanup(): Promise<void>;
}

/** A real embedded store in a fresh temp directory, seeded with `rows`. */
export async function tempStore(rows: readonly FlowRow[] = corpus(), opts: { keepDir?: boolean } = {}): Promise<TempStore> {
  const dir = mkdtempSync(path.join(tmpdir(), 'weir-api-test-'));
  const store = await openStore({ dataDir: dir });
  try {
    if (rows.length > 0) await store.insert(rows, `seed-${dir}`);
  } catch (err) {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    store, dir,
    async cleanup() {
      await store.close();
      if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const names = (rows: readonly FlowRow[]): string[] => rows.map((r) => r.reporter).sort();
