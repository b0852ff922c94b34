// The pod agent's control protocol: JSON lines over a unix socket, one response line per request
// line, in any order when requests are pipelined (match them by `id`). Shared by the agent
// (pod-agent.ts, running inside the pod netns) and its client (network.ts, in the CLI).

export type L4Protocol = 'TCP' | 'UDP' | 'SCTP';
export const L4_PROTOCOLS: readonly L4Protocol[] = ['TCP', 'UDP', 'SCTP'];

export interface PodPort { port: number; protocol: L4Protocol }

export type AgentRequest =
  | { op: 'ping'; id?: number }
  | { op: 'probe'; id?: number; ip: string; port: number; protocol: L4Protocol; timeoutMs?: number }
  | { op: 'exit'; id?: number };

export type AgentResponse =
  | { ok: true; id?: number; connected?: boolean; error?: string; name?: string }
  | { ok: false; id?: number; error: string };

/** A probe the caller gave no timeout for waits this long for a handshake or an echo. */
export const DEFAULT_PROBE_TIMEOUT_MS = 1_000;
/** Upper bound on a probe's timeout, so a typo cannot park an agent request for hours. */
export const MAX_PROBE_TIMEOUT_MS = 60_000;

/** "80/TCP,81/UDP" -> ports; the empty string is no ports. Throws naming the bad entry. */
export function parsePortSpec(spec: string): PodPort[] {
  if (spec.trim() === '') return [];
  return spec.split(',').map((entry, i) => {
    const m = /^\s*(\d{1,5})\/([A-Za-z]+)\s*$/.exec(entry);
    if (!m) throw new Error(`ports[${i}]: "${entry}" is not PORT/PROTOCOL (e.g. 80/TCP)`);
    const port = Number(m[1]);
    const protocol = m[2]!.toUpperCase() as L4Protocol;
    if (port < 1 || port > 65535) throw new Error(`ports[${i}]: "${entry}": port ${port} is not in 1..65535`);
    if (!L4_PROTOCOLS.includes(protocol)) {
      throw new Error(`ports[${i}]: "${entry}": protocol "${m[2]}" is not one of ${L4_PROTOCOLS.join(', ')}`);
    }
    return { port, protocol };
  });
}

export function formatPortSpec(ports: readonly PodPort[]): string {
  return ports.map((p) => `${p.port}/${p.protocol}`).join(',');
}
