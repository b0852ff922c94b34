// The per-pod process of `weir lab`. It runs inside a pod's netns (started by LabNetwork.addPod
// through `ip netns exec`), serves the pod's declared ports, and answers probe requests on a unix
// socket. A unix socket lives on the filesystem, which every netns shares, so the CLI reaches any
// pod's agent without entering its netns; the probes the agent makes leave from the pod's eth0,
// through the node netns, like real pod traffic.
//
//   node pod-agent.js --socket /run/weir/lab/x/pods/ns_pod.sock --ports 80/TCP,81/UDP --name ns/pod
//
// Servers: every TCP port accepts, writes one line naming the pod, and ends; every UDP port echoes
// each datagram back to its sender. Both on IPv4 and IPv6 (one dual-stack socket on `::`). SCTP
// ports are skipped with a note: the lab's kernel may have no SCTP sockets.
// The control socket is opened last, so a successful ping means every server is listening.
import net from 'node:net';
import dgram from 'node:dgram';
import fs from 'node:fs';
import readline from 'node:readline';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import {
  AgentRequest,
  AgentResponse,
  DEFAULT_PROBE_TIMEOUT_MS,
  MAX_PROBE_TIMEOUT_MS,
  PodPort,
  parsePortSpec,
} from './agent-protocol.js';

/** A UDP probe sends its datagram this many times over the timeout (a lost first datagram is not a verdict). */
const UDP_PROBE_SENDS = 3;

function log(msg: string): void {
  process.stdout.write(`${new Date().toISOString()} ${msg}\n`);
}

interface Closable { close(): unknown }

// ---- servers ----------------------------------------------------------------------------------

async function listenTcp(port: number, name: string): Promise<net.Server> {
  const banner = `weir-lab ${name} tcp/${port}\n`;
  const server = net.createServer((sock) => {
    sock.on('error', () => { /* a probe resetting its side is not our problem */ });
    sock.end(banner);
  });
  await listenDualStack((host) => new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, ipv6Only: false }, () => {
      server.off('error', reject);
      resolve();
    });
  }));
  return server;
}

async function listenUdp(port: number): Promise<dgram.Socket> {
  let sock: dgram.Socket | undefined;
  await listenDualStack((host) => new Promise<void>((resolve, reject) => {
    const s = dgram.createSocket({ type: host === '::' ? 'udp6' : 'udp4', ipv6Only: false });
    s.once('error', (err) => { s.close(); reject(err); });
    s.bind({ port, address: host }, () => {
      s.removeAllListeners('error');
      s.on('error', (err) => log(`udp/${port}: ${err.message}`));
      sock = s;
      resolve();
    });
  }));
  const s = sock!;
  s.on('message', (msg, rinfo) => {
    s.send(msg, rinfo.port, rinfo.address, (err) => {
      if (err) log(`udp/${port}: echo to [${rinfo.address}]:${rinfo.port}: ${err.message}`);
    });
  });
  return s;
}

/** Listens on `::` (IPv4 and IPv6); falls back to 0.0.0.0 in a netns with IPv6 disabled. */
async function listenDualStack(listen: (host: string) => Promise<void>): Promise<void> {
  try {
    await listen('::');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') throw err;
    log(`IPv6 unavailable (${code}); serving IPv4 only`);
    await listen('0.0.0.0');
  }
}

// ---- probes -----------------------------------------------------------------------------------

interface ProbeResult { connected: boolean; error?: string }

function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? e.message ?? String(err);
}

/** Connected when the TCP handshake completes; a RST is ECONNREFUSED, a dropped SYN a timeout. */
function probeTcp(ip: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: ip, port });
    const finish = (r: ProbeResult): void => {
      clearTimeout(timer);
      sock.removeAllListeners('connect');
      sock.on('error', () => {});
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ connected: false, error: 'timeout' }), timeoutMs);
    sock.once('connect', () => finish({ connected: true }));
    sock.once('error', (err) => finish({ connected: false, error: errText(err) }));
  });
}

/**
 * UDP probes take their source ports in turn from this range instead of the kernel's random pick,
 * so a probe never reuses the 5-tuple of a recent one: the datapath remembers an allowed UDP flow
 * (60 s), and a reused tuple would be answered by conntrack, not by the policy in force now, which
 * is what a probe asks about. (TCP needs nothing: a closed connection's tuple is judged afresh.)
 */
const UDP_SOURCE_FIRST = 20_000;
const UDP_SOURCE_COUNT = 10_000;
let nextUdpSource = UDP_SOURCE_FIRST + (process.pid % UDP_SOURCE_COUNT);

function takeUdpSourcePort(): number {
  const port = nextUdpSource;
  nextUdpSource = UDP_SOURCE_FIRST + ((port - UDP_SOURCE_FIRST + 1) % UDP_SOURCE_COUNT);
  return port;
}

/** Binds to the next source port of the range, skipping ports in use. */
function bindUdpSource(sock: dgram.Socket, attempts = 8): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempts > 1) {
        bindUdpSource(sock, attempts - 1).then(resolve, reject);
      } else {
        reject(err);
      }
    };
    sock.once('error', onError);
    sock.bind(takeUdpSourcePort(), () => {
      sock.removeListener('error', onError);
      resolve();
    });
  });
}

/**
 * Connected when a datagram carrying a fresh nonce comes back within the timeout (the target's
 * echo server). The socket is connected, so an ICMP port-unreachable ends the probe early.
 */
async function probeUdp(ip: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  const sock = dgram.createSocket(net.isIPv6(ip) ? 'udp6' : 'udp4');
  try {
    await bindUdpSource(sock);
  } catch (err) {
    try { sock.close(); } catch { /* already closed */ }
    return { connected: false, error: errText(err as Error) };
  }
  return probeUdpFrom(sock, ip, port, timeoutMs);
}

function probeUdpFrom(sock: dgram.Socket, ip: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const payload = Buffer.from(`weir-probe ${randomBytes(8).toString('hex')}\n`);
    const timers: NodeJS.Timeout[] = [];
    let done = false;
    const finish = (r: ProbeResult): void => {
      if (done) return;
      done = true;
      for (const t of timers) clearTimeout(t);
      sock.removeAllListeners('message');
      sock.on('error', () => {});
      try { sock.close(); } catch { /* already closed */ }
      resolve(r);
    };
    timers.push(setTimeout(() => finish({ connected: false, error: 'timeout' }), timeoutMs));
    sock.on('message', (msg) => {
      if (msg.equals(payload)) finish({ connected: true });
    });
    sock.on('error', (err) => finish({ connected: false, error: errText(err) }));
    sock.connect(port, ip, () => {
      const send = (): void => {
        if (done) return;
        sock.send(payload, (err) => { if (err) finish({ connected: false, error: errText(err) }); });
      };
      send();
      for (let i = 1; i < UDP_PROBE_SENDS; i++) {
        timers.push(setTimeout(send, Math.floor((timeoutMs * i) / UDP_PROBE_SENDS)));
      }
    });
  });
}

// ---- control socket ---------------------------------------------------------------------------

async function handle(req: AgentRequest, name: string, shutdown: () => void): Promise<AgentResponse> {
  switch (req.op) {
    case 'ping':
      return { ok: true, name };
    case 'exit':
      setImmediate(shutdown);
      return { ok: true };
    case 'probe': {
      if (typeof req.ip !== 'string' || net.isIP(req.ip) === 0) {
        return { ok: false, error: `probe.ip: ${JSON.stringify(req.ip)} is not an IP address` };
      }
      if (!Number.isInteger(req.port) || req.port < 1 || req.port > 65535) {
        return { ok: false, error: `probe.port: ${JSON.stringify(req.port)} is not in 1..65535` };
      }
      const timeoutMs = req.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
      if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || timeoutMs > MAX_PROBE_TIMEOUT_MS) {
        return { ok: false, error: `probe.timeoutMs: ${JSON.stringify(req.timeoutMs)} is not in 1..${MAX_PROBE_TIMEOUT_MS}` };
      }
      switch (req.protocol) {
        case 'TCP': return { ok: true, ...(await probeTcp(req.ip, req.port, timeoutMs)) };
        case 'UDP': return { ok: true, ...(await probeUdp(req.ip, req.port, timeoutMs)) };
        case 'SCTP': return { ok: true, connected: false, error: 'SCTP probes are not supported by the lab agent' };
        default: return { ok: false, error: `probe.protocol: ${JSON.stringify(req.protocol)} is not TCP, UDP or SCTP` };
      }
    }
    default:
      return { ok: false, error: `op: ${JSON.stringify((req as { op?: unknown }).op)} is not ping, probe or exit` };
  }
}

function serveControl(socketPath: string, name: string, shutdown: () => void): Promise<net.Server> {
  const server = net.createServer((conn) => {
    conn.on('error', () => {});
    const lines = readline.createInterface({ input: conn, crlfDelay: Infinity });
    lines.on('line', (line) => {
      if (line.trim() === '') return;
      let req: AgentRequest;
      try {
        req = JSON.parse(line) as AgentRequest;
      } catch {
        conn.write(JSON.stringify({ ok: false, error: `not JSON: ${line.slice(0, 200)}` }) + '\n');
        return;
      }
      handle(req, name, shutdown).then(
        (res) => {
          if (req.id !== undefined) res.id = req.id;
          if (!conn.destroyed) conn.write(JSON.stringify(res) + '\n');
        },
        (err) => {
          if (!conn.destroyed) conn.write(JSON.stringify({ ok: false, id: req.id, error: String(err) }) + '\n');
        },
      );
    });
  });
  // A socket file left by a killed agent would make listen() fail with EADDRINUSE.
  fs.rmSync(socketPath, { force: true });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

// ---- main -------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      socket: { type: 'string' },
      ports: { type: 'string', default: '' },
      name: { type: 'string', default: 'pod' },
    },
    strict: true,
  });
  if (!values.socket) throw new Error('--socket PATH is required');
  const socketPath = values.socket;
  const name = values.name!;
  const ports: PodPort[] = parsePortSpec(values.ports!);

  const closables: Closable[] = [];
  let stopping = false;
  const shutdown = (): void => {
    if (stopping) return;
    stopping = true;
    log('stopping');
    for (const c of closables) {
      try { c.close(); } catch { /* closing anyway */ }
    }
    fs.rmSync(socketPath, { force: true });
    // Open probe or client connections must not keep the process alive.
    setTimeout(() => process.exit(0), 200).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  for (const p of ports) {
    switch (p.protocol) {
      case 'TCP':
        closables.push(await listenTcp(p.port, name));
        break;
      case 'UDP':
        closables.push(await listenUdp(p.port));
        break;
      case 'SCTP':
        log(`${p.port}/SCTP: skipped (no SCTP sockets in the lab)`);
        continue;
    }
    log(`${p.port}/${p.protocol}: listening`);
  }
  closables.push(await serveControl(socketPath, name, shutdown));
  log(`${name}: ready on ${socketPath} (pid ${process.pid})`);
}

main().catch((err) => {
  log(`fatal: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
