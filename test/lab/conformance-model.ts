// The upstream Kubernetes network-policy e2e model (test/e2e/network/netpol in kubernetes/kubernetes)
// for `weir lab`: namespaces x, y, z labelled ns=<name> (plus kubernetes.io/metadata.name, which the
// datastore adds as the API server does), each holding pods a, b, c labelled pod=<name>, every pod
// serving TCP and UDP on ports 80 and 81. Also: manifests for policies, and upstream's Reachability
// truth tables (a default, then exceptions) as matrices that formatProbeTable prints.
import { cidrContainsIp, parseCidr, parseIp } from '../../src/datastore/cidr.js';
import type { L4Protocol } from '../../src/datastore/objects.js';
import { formatProbeTable, type ProbeReport } from '../../src/lab/probe.js';

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const POD_NAMES = ['a', 'b', 'c'] as const;
/** Every pod of the model, "namespace/name", in the order matrices print them. */
export const ALL_PODS: readonly string[] = NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => `${ns}/${p}`));
export const MODEL_PORTS = [80, 81] as const;
export const MODEL_PROTOCOLS = ['TCP', 'UDP'] as const;

export type Labels = Readonly<Record<string, string>>;

export interface ModelOptions {
  /** labels added to a namespace's ns=<name>, by namespace name */
  readonly namespaceLabels?: Readonly<Record<string, Labels>>;
  /** labels added to a pod's pod=<name>, by "namespace/name" */
  readonly podLabels?: Readonly<Record<string, Labels>>;
}

// JSON is YAML: each document is emitted as one JSON line, so no indentation can go wrong.
const documents = (objects: readonly object[]): string => `${objects.map((o) => JSON.stringify(o)).join('\n---\n')}\n`;

/** The model's Namespaces and Pods as a manifest. Re-applying it (with other options) relabels
 * namespaces and pods in place: their ports and addresses do not change, so no pod is re-created. */
export function modelManifest(options: ModelOptions = {}): string {
  const objects: object[] = [];
  for (const ns of NAMESPACES) {
    objects.push({
      apiVersion: 'v1', kind: 'Namespace',
      metadata: { name: ns, labels: { ns, 'kubernetes.io/metadata.name': ns, ...options.namespaceLabels?.[ns] } },
    });
  }
  for (const ns of NAMESPACES) {
    for (const pod of POD_NAMES) {
      objects.push({
        apiVersion: 'v1', kind: 'Pod',
        metadata: { name: pod, namespace: ns, labels: { pod, ...options.podLabels?.[`${ns}/${pod}`] } },
        spec: {
          containers: [{
            name: 'cont',
            ports: MODEL_PORTS.flatMap((port) => MODEL_PROTOCOLS.map((protocol) => ({
              name: `serve-${port}-${protocol.toLowerCase()}`, containerPort: port, protocol,
            }))),
          }],
        },
      });
    }
  }
  return documents(objects);
}

/** One NetworkPolicy; `spec` is written as in a manifest. */
export interface PolicyDoc {
  readonly namespace: string;
  readonly name: string;
  readonly spec: Readonly<Record<string, unknown>>;
}

export const policy = (namespace: string, name: string, spec: Readonly<Record<string, unknown>>): PolicyDoc => ({ namespace, name, spec });

export function policyManifest(policies: readonly PolicyDoc[]): string {
  return documents(policies.map((p) => ({
    apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy',
    metadata: { name: p.name, namespace: p.namespace },
    spec: p.spec,
  })));
}

/** A pod, a namespace, or (both empty) every pod: upstream's Peer. */
export interface Peer {
  readonly namespace?: string;
  readonly pod?: string;
}

const inPeer = (peer: Peer, key: string): boolean => {
  const [ns, pod] = key.split('/');
  return (peer.namespace === undefined || peer.namespace === ns) && (peer.pod === undefined || peer.pod === pod);
};

/** A reachability matrix over the model's pods: "from>to" -> connected. */
export type Matrix = ReadonlyMap<string, boolean>;

export const pairKey = (from: string, to: string): string => `${from}>${to}`;

/**
 * Upstream's Reachability: every pair starts allowed or denied, then exceptions apply in order.
 * A pod to itself is always expected to connect: upstream ignores loopback (kubernetes#95879,
 * CNIs differ), and Weir, like its reference evaluator, always allows a pod to reach itself.
 */
export class Reachability {
  private readonly cells = new Map<string, boolean>();

  constructor(allowed: boolean) {
    for (const from of ALL_PODS) for (const to of ALL_PODS) this.cells.set(pairKey(from, to), allowed);
  }

  expectPeer(from: Peer, to: Peer, connected: boolean): this {
    for (const f of ALL_PODS) {
      if (!inPeer(from, f)) continue;
      for (const t of ALL_PODS) if (inPeer(to, t)) this.cells.set(pairKey(f, t), connected);
    }
    return this;
  }

  expect(from: string, to: string, connected: boolean): this {
    if (!this.cells.has(pairKey(from, to))) throw new Error(`expect(${from}, ${to}): not pods of the model`);
    this.cells.set(pairKey(from, to), connected);
    return this;
  }

  expectAllIngress(to: string, connected: boolean): this {
    for (const from of ALL_PODS) this.expect(from, to, connected);
    return this;
  }

  expectAllEgress(from: string, connected: boolean): this {
    for (const to of ALL_PODS) this.expect(from, to, connected);
    return this;
  }

  matrix(): Matrix {
    const m = new Map(this.cells);
    for (const p of ALL_PODS) m.set(pairKey(p, p), true);
    return m;
  }
}

export function matrixReport(port: number, protocol: L4Protocol, m: Matrix): ProbeReport {
  return {
    port, protocol,
    results: ALL_PODS.flatMap((from) => ALL_PODS.map((to) => ({ from, to, connected: m.get(pairKey(from, to)) ?? false }))),
  };
}

/** Pairs where two matrices differ, "from -> to". */
export function differingPairs(a: Matrix, b: Matrix): string[] {
  const out: string[] = [];
  for (const from of ALL_PODS) {
    for (const to of ALL_PODS) if (a.get(pairKey(from, to)) !== b.get(pairKey(from, to))) out.push(`${from} -> ${to}`);
  }
  return out;
}

/** Tables printed next to each other, each under its title. */
export function sideBySide(columns: readonly { title: string; text: string }[]): string {
  const blocks = columns.map((c) => [c.title, ...c.text.split('\n')]);
  const widths = blocks.map((b) => Math.max(...b.map((l) => l.length)));
  const rows = Math.max(...blocks.map((b) => b.length));
  const lines: string[] = [];
  for (let i = 0; i < rows; i++) lines.push(blocks.map((b, j) => (b[i] ?? '').padEnd(widths[j]!)).join('   |   ').trimEnd());
  return lines.join('\n');
}

export const formatMatrix = (port: number, protocol: L4Protocol, m: Matrix): string => formatProbeTable(matrixReport(port, protocol, m));

// ---- CIDRs from the lab's own pod addresses (ipBlock scenarios) ----------------------------------

function ipOrThrow(ip: string): { family: 4 | 6; value: bigint } {
  const p = parseIp(ip);
  if (!p) throw new Error(`not an IP address: ${ip}`);
  return p;
}

function formatIp(family: 4 | 6, value: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => ((value >> s) & 255n).toString()).join('.');
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((value >> BigInt(i * 16)) & 0xffffn).toString(16));
  return groups.join(':');
}

/** The block holding exactly this address: "ip/32" or "ip/128". */
export const hostCidr = (ip: string): string => `${ip}/${ipOrThrow(ip).family === 4 ? 32 : 128}`;

/** The smallest CIDR (written as its network) holding every address given; all of one family. */
export function coveringCidr(ips: readonly string[]): string {
  const parsed = ips.map(ipOrThrow);
  const family = parsed[0]?.family;
  if (family === undefined || parsed.some((p) => p.family !== family)) throw new Error(`coveringCidr: ${ips.join(', ')}: one family, at least one address`);
  const bits = family === 4 ? 32 : 128;
  for (let prefix = bits; prefix >= 0; prefix--) {
    const shift = BigInt(bits - prefix);
    const net = parsed[0]!.value >> shift;
    if (parsed.every((p) => p.value >> shift === net)) return `${formatIp(family, net << shift)}/${prefix}`;
  }
  throw new Error('unreachable: /0 holds every address of its family');
}

/** Does `cidr` hold `ip` (same family, inside the prefix)? */
export function cidrHolds(cidr: string, ip: string): boolean {
  const c = parseCidr(cidr);
  if (!c) throw new Error(`not a CIDR: ${cidr}`);
  return cidrContainsIp(c, ipOrThrow(ip));
}
