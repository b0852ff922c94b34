// `weir lab probe`: every selected pod tries every selected pod (itself included) on one port, from
// inside its own network namespace, through the real datapath. All pairs run in parallel, so a
// matrix costs about one timeout.
//
// Besides pods, two endpoints named "host" (the node's own processes, in the node netns, at the
// node's uplink addresses) and "world" (an outside client behind the node's uplink) can be named
// with --from/--to; the full matrix has them as rows and columns when the lab has a Node object.
import type { L4Protocol } from '../datastore/objects.js';
import { probeMany } from './network.js';
import type { LabState } from './state.js';

export interface ProbeOptions {
  readonly port: number;
  readonly protocol: L4Protocol;
  readonly from?: string;
  readonly to?: string;
  readonly family?: 4 | 6;
  readonly timeoutMs?: number;
}

export interface ProbeResult {
  readonly from: string;
  readonly to: string;
  readonly connected: boolean;
}

export interface ProbeReport {
  readonly port: number;
  readonly protocol: L4Protocol;
  readonly results: ProbeResult[];
}

export const DEFAULT_PROBE_TIMEOUT_MS = 1500;

/** The endpoint names that are not pods. */
export const HOST_ENDPOINTS = ['host', 'world'] as const;

interface ProbeEndpoint { readonly ipv4?: string | undefined; readonly ipv6?: string | undefined; readonly socketPath: string }

function endpointOf(state: LabState, name: string): ProbeEndpoint | undefined {
  if (name === 'host') return state.host;
  if (name === 'world') return state.world;
  return state.pods[name];
}

function selectEndpoints(state: LabState, which: string | undefined, flag: string): string[] {
  const pods = Object.keys(state.pods).sort();
  const hosts = HOST_ENDPOINTS.filter((h) => endpointOf(state, h) !== undefined);
  if (which === undefined) {
    // host and world join the matrix only when the lab was given a Node (what they serve).
    return state.objects.some((o) => o.kind === 'Node') ? [...pods, ...hosts] : pods;
  }
  if (!endpointOf(state, which)) {
    throw new Error(`${flag} ${which}: no such pod in lab "${state.name}" (pods: ${pods.join(', ') || 'none'}${hosts.length > 0 ? `; or ${hosts.join(', ')}` : ''})`);
  }
  return [which];
}

export async function probeLab(state: LabState, opts: ProbeOptions): Promise<ProbeReport> {
  if (opts.protocol === 'SCTP') throw new Error('--protocol SCTP: this kernel has no SCTP sockets, so the lab cannot probe SCTP');
  const family = opts.family ?? 4;
  const froms = selectEndpoints(state, opts.from, '--from');
  const tos = selectEndpoints(state, opts.to, '--to');
  const pairs: { from: string; to: string; ip: string }[] = [];
  for (const from of froms) {
    for (const to of tos) {
      const src = endpointOf(state, from)!;
      const dst = endpointOf(state, to)!;
      const ip = family === 4 ? dst.ipv4 : dst.ipv6;
      // A single-stack pod cannot take part in the other family's matrix.
      if (!ip || !(family === 4 ? src.ipv4 : src.ipv6)) continue;
      pairs.push({ from, to, ip });
    }
  }
  const connected = await probeMany(
    pairs.map((p) => ({ from: { socketPath: endpointOf(state, p.from)!.socketPath }, to: { ip: p.ip, port: opts.port, protocol: opts.protocol } })),
    { timeoutMs: opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS },
  );
  return {
    port: opts.port,
    protocol: opts.protocol,
    results: pairs.map((p, i) => ({ from: p.from, to: p.to, connected: connected[i]! })),
  };
}

/** The matrix as the upstream network-policy e2e tests print it: '.' connected, 'X' not. */
export function formatProbeTable(report: ProbeReport): string {
  const froms = [...new Set(report.results.map((r) => r.from))];
  const tos = [...new Set(report.results.map((r) => r.to))];
  const cell = new Map(report.results.map((r) => [`${r.from}>${r.to}`, r.connected ? '.' : 'X']));
  const w = Math.max(4, ...froms.map((f) => f.length));
  const cw = Math.max(3, ...tos.map((t) => t.length));
  const lines = [`${report.protocol}/${report.port}  (rows: from, columns: to; . connected, X blocked)`];
  lines.push(`${''.padEnd(w)}  ${tos.map((t) => t.padEnd(cw)).join(' ')}`);
  for (const f of froms) lines.push(`${f.padEnd(w)}  ${tos.map((t) => (cell.get(`${f}>${t}`) ?? '-').padEnd(cw)).join(' ')}`);
  return lines.join('\n');
}
