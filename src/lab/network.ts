// The network of `weir lab`: a Kubernetes "node" built from Linux network namespaces on this host.
//
//   pod netns weir-<lab>-w<hex>            node netns weir-<lab>-node
//   ┌──────────────────────────────┐      ┌────────────────────────────────────────────┐
//   │ eth0  10.x.y.z/32, fd..:z/128 │veth  │ w<hex> (MAC ee:ee:ee:ee:ee:ee, fe80::1/64) │
//   │ default via 169.254.1.1 onlink├──────┤ 10.x.y.z/32 dev w<hex>                     │
//   │ default via fe80::1           │      │ fd..:z/128 dev w<hex>   forwarding on      │
//   └──────────────────────────────┘      └────────────────────────────────────────────┘
//
// Calico's routed model: every pod has a host route in the node netns, the pod's only gateway is
// a link-local address that the node side "owns" through a permanent neighbour entry, so traffic
// between two pods always crosses the node netns and both node-side veths (where Weir's tc
// programs attach). Nothing is ever created in the root netns: the veth pair is made inside the
// node netns with its peer placed straight into the pod netns.
//
// The node's uplink and the world (an outside network):
//
//   node netns weir-<lab>-node                 world netns weir-<lab>-world
//   ┌─────────────────────────────┐  veth     ┌──────────────────────────────────┐
//   │ uplink 10.243.0.1/24        ├───────────┤ eth0 10.243.0.100/24              │
//   │        fd00:10:243::1/64    │           │      fd00:10:243::100/64          │
//   └─────────────────────────────┘           │ default via 10.243.0.1 / ::1      │
//                                             └──────────────────────────────────┘
//
// The world reaches pods through the node (which forwards, source addresses unchanged); the node
// reaches the world on the link; pods reach both through their default route. Weir's host-device
// programs are attached to the uplink (inside the node netns, never to an interface of the
// machine), where host endpoints police it. A "host" agent runs in the node
// netns (serving the Node object's declared ports) and a "world" agent in the world netns (the
// same ports), both pod agents, so probes can start and end there.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, runIdempotent } from './exec.js';
import { LAB_NODE_V4, LAB_NODE_V6, LAB_WORLD_V4, LAB_WORLD_V6 } from './addresses.js';
import {
  AgentRequest,
  AgentResponse,
  DEFAULT_PROBE_TIMEOUT_MS,
  L4Protocol,
  PodPort,
  formatPortSpec,
} from './agent-protocol.js';
import { processAlive } from '../process.js';

export type { L4Protocol, PodPort } from './agent-protocol.js';

export interface LabPodNet { key: string /* "namespace/name" */; ipv4: string; ipv6: string; ports: PodPort[] }

export interface PodAttachment {
  key: string;
  netns: string;
  hostIfname: string;
  hostIfindex: number;
  agentPid: number;
  socketPath: string;
}

/** A host process of the lab: "host" runs in the node netns, "world" in the world netns. */
export type LabHostRole = 'host' | 'world';

export interface HostAgent {
  readonly netns: string;
  readonly agentPid: number;
  readonly socketPath: string;
}

/** The node's end of the uplink (in the node netns) and the world's end (in the world netns). */
export const UPLINK_IFNAME = 'uplink';
export const WORLD_IFNAME = 'eth0';

export interface ProbeTarget { ip: string; port: number; protocol: L4Protocol }
export interface ProbeOutcome { connected: boolean; error?: string }

/** The node side of every pod veth: one fixed MAC, as Calico does (the pod only ever talks to it). */
export const HOST_VETH_MAC = 'ee:ee:ee:ee:ee:ee';
/** The pods' IPv4 gateway: link-local, never configured anywhere, answered by a permanent neighbour. */
export const POD_GATEWAY_V4 = '169.254.1.1';
/** The pods' IPv6 gateway, configured on every node-side veth. */
export const POD_GATEWAY_V6 = 'fe80::1';

/** How long addPod waits for a fresh agent to answer a ping. */
export const AGENT_START_TIMEOUT_MS = 10_000;
/** How long removePod/destroy wait after SIGTERM before SIGKILL. */
export const AGENT_STOP_TIMEOUT_MS = 2_000;
/** Extra time the client gives the agent beyond the probe's own timeout. */
const PROBE_CLIENT_SLACK_MS = 2_000;
/** probeMany's default parallelism: a 9x9 matrix (x protocols) fits in one wave. */
export const DEFAULT_PROBE_CONCURRENCY = 256;
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_UNIX_SOCKET_PATH = 107;

const LAB_NAME = /^[a-z0-9-]{1,20}$/;

/** The compiled agent sits next to this module (dist/src/lab/pod-agent.js). */
export const podAgentPath = fileURLToPath(new URL('./pod-agent.js', import.meta.url));

function sha1hex(s: string): string {
  return createHash('sha1').update(s).digest('hex');
}

/** The node-side veth of a pod: 'w' + 10 hex chars of sha1(lab/key); 11 chars, unique per lab+pod. */
export function hostIfnameFor(lab: string, key: string): string {
  return 'w' + sha1hex(`${lab}/${key}`).slice(0, 10);
}

/** "ns/pod" -> "ns_pod" ('_' cannot occur in Kubernetes names, so this is one-to-one for them). */
function sanitizeKey(key: string): string {
  return key.replace(/[^A-Za-z0-9.-]/g, '_');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class LabNetwork {
  readonly lab: string;
  readonly stateDir: string;
  readonly nodeNetns: string;
  readonly worldNetns: string;
  /** Exactly the netns names this lab makes (a prefix alone would also match lab "a-b" for lab "a"). */
  private readonly ownNetns: RegExp;

  constructor(opts: { lab: string; stateDir: string }) {
    if (!LAB_NAME.test(opts.lab)) {
      throw new Error(`lab: "${opts.lab}" is not a lab name ([a-z0-9-]{1,20})`);
    }
    if (!path.isAbsolute(opts.stateDir)) throw new Error(`stateDir: "${opts.stateDir}" is not an absolute path`);
    this.lab = opts.lab;
    this.stateDir = opts.stateDir;
    this.nodeNetns = `weir-${opts.lab}-node`;
    this.worldNetns = `weir-${opts.lab}-world`;
    this.ownNetns = new RegExp(`^weir-${opts.lab}-(node|world|w[0-9a-f]{10})$`);
  }

  podNetnsName(key: string): string {
    return `weir-${this.lab}-${hostIfnameFor(this.lab, key)}`;
  }

  private get podsDir(): string {
    return path.join(this.stateDir, 'pods');
  }

  /** Where the agent of `key` keeps its socket, pid file and log (without extension). */
  private podFileBase(key: string): string {
    const readable = path.join(this.podsDir, sanitizeKey(key));
    if (Buffer.byteLength(readable + '.sock') <= MAX_UNIX_SOCKET_PATH) return readable;
    const short = path.join(this.podsDir, hostIfnameFor(this.lab, key));
    if (Buffer.byteLength(short + '.sock') > MAX_UNIX_SOCKET_PATH) {
      throw new Error(`stateDir: "${this.stateDir}" is too long for a unix socket path (max ${MAX_UNIX_SOCKET_PATH} bytes)`);
    }
    return short;
  }

  /** The node netns, with lo up and forwarding on. Idempotent. */
  async createNode(): Promise<void> {
    const ns = this.nodeNetns;
    if (!(await netnsExists(ns))) await ipNetnsAdd(ns);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await sysctls(ns, {
      'net.ipv4.ip_forward': '1',
      'net.ipv6.conf.all.forwarding': '1',
      // A new netns inherits the root netns' IPv4 conf; a strict rp_filter there must not judge
      // pod traffic here (the pods' routes are all /32s on the veths, but be explicit).
      'net.ipv4.conf.all.rp_filter': '0',
      'net.ipv4.conf.default.rp_filter': '0',
      // Node-side veths get their addresses at once (fe80::1 is added nodad anyway).
      'net.ipv6.conf.all.accept_dad': '0',
      'net.ipv6.conf.default.accept_dad': '0',
    });
  }

  /**
   * The world netns and the node's uplink to it, with addresses and routes (see the top of this
   * file). Call after createNode. Idempotent: an existing world is replaced.
   */
  async createUplink(): Promise<void> {
    const node = this.nodeNetns;
    const world = this.worldNetns;
    if (!(await netnsExists(node))) throw new Error(`uplink: node netns ${node} does not exist (call createNode first)`);
    await runIdempotent('ip', ['-n', node, 'link', 'del', UPLINK_IFNAME]);
    await ipNetnsDel(world);
    await ipNetnsAdd(world);
    await sysctls(world, {
      'net.ipv6.conf.all.accept_dad': '0',
      'net.ipv6.conf.default.accept_dad': '0',
      'net.ipv4.conf.all.rp_filter': '0',
      'net.ipv4.conf.default.rp_filter': '0',
    });
    await run('ip', ['-n', world, 'link', 'set', 'lo', 'up']);
    await run('ip', ['-n', node, 'link', 'add', 'name', UPLINK_IFNAME, 'type', 'veth', 'peer', 'name', WORLD_IFNAME, 'netns', world]);
    await run('ip', ['-n', node, 'addr', 'add', `${LAB_NODE_V4}/24`, 'dev', UPLINK_IFNAME]);
    await run('ip', ['-n', node, 'addr', 'add', `${LAB_NODE_V6}/64`, 'dev', UPLINK_IFNAME, 'nodad']);
    await run('ip', ['-n', node, 'link', 'set', UPLINK_IFNAME, 'up']);
    await run('ip', ['-n', world, 'addr', 'add', `${LAB_WORLD_V4}/24`, 'dev', WORLD_IFNAME]);
    await run('ip', ['-n', world, 'addr', 'add', `${LAB_WORLD_V6}/64`, 'dev', WORLD_IFNAME, 'nodad']);
    await run('ip', ['-n', world, 'link', 'set', WORLD_IFNAME, 'up']);
    // The world reaches the pods (whatever their addresses) through the node.
    await run('ip', ['-n', world, 'route', 'replace', 'default', 'via', LAB_NODE_V4, 'dev', WORLD_IFNAME]);
    await run('ip', ['-n', world, '-6', 'route', 'replace', 'default', 'via', LAB_NODE_V6, 'dev', WORLD_IFNAME]);
  }

  /** The node's uplink, as the node netns numbers it (what the host-device programs see). */
  async uplinkIfindex(): Promise<number> {
    return (await linkInfo(this.nodeNetns, UPLINK_IFNAME)).ifindex;
  }

  /**
   * (Re)starts the host process of `role` serving `ports`: in the node netns ("host") or the world
   * netns ("world"). Resolves once it answers a ping.
   */
  async startHostAgent(role: LabHostRole, ports: PodPort[], old?: HostAgent): Promise<HostAgent> {
    const netns = role === 'host' ? this.nodeNetns : this.worldNetns;
    if (!(await netnsExists(netns))) throw new Error(`${role}: netns ${netns} does not exist`);
    const base = path.join(this.podsDir, `_${role}`);
    await this.stopHostAgent(role, old);
    const agentPid = await this.startAgent({ key: role, ipv4: '', ipv6: '', ports }, netns, base);
    return { netns, agentPid, socketPath: `${base}.sock` };
  }

  /** Stops the host process of `role` (given, or found through its pid file). Idempotent. */
  async stopHostAgent(role: LabHostRole, known?: HostAgent): Promise<void> {
    const base = path.join(this.podsDir, `_${role}`);
    const pids = new Set<number>();
    if (known && known.agentPid > 0) pids.add(known.agentPid);
    const filePid = readPidFile(`${base}.pid`);
    if (filePid) pids.add(filePid);
    await Promise.all([...pids].map((pid) => stopAgent(pid, `${base}.sock`)));
    fs.rmSync(`${base}.sock`, { force: true });
    fs.rmSync(`${base}.pid`, { force: true });
  }

  /**
   * A pod: its netns, the veth pair, addresses, routes and neighbours, and its agent. Resolves once
   * the agent answers a ping (its servers are listening by then). A pod of the same key left by an
   * earlier run is removed first.
   */
  async addPod(pod: LabPodNet): Promise<PodAttachment> {
    if (net.isIPv4(pod.ipv4) === false) throw new Error(`${pod.key}: ipv4: "${pod.ipv4}" is not an IPv4 address`);
    if (net.isIPv6(pod.ipv6) === false) throw new Error(`${pod.key}: ipv6: "${pod.ipv6}" is not an IPv6 address`);
    const node = this.nodeNetns;
    if (!(await netnsExists(node))) throw new Error(`${pod.key}: node netns ${node} does not exist (call createNode first)`);
    const podNs = this.podNetnsName(pod.key);
    const hostIf = hostIfnameFor(this.lab, pod.key);
    const base = this.podFileBase(pod.key);
    const att0 = { key: pod.key, netns: podNs, hostIfname: hostIf, socketPath: `${base}.sock` };
    await this.teardownPod({ ...att0, agentPid: 0 });

    try {
      await ipNetnsAdd(podNs);
      // Before eth0 exists, so it is created with DAD off and its /128 is usable immediately.
      await sysctls(podNs, {
        'net.ipv6.conf.all.accept_dad': '0',
        'net.ipv6.conf.default.accept_dad': '0',
      });
      await run('ip', ['-n', podNs, 'link', 'set', 'lo', 'up']);
      await run('ip', ['-n', node, 'link', 'add', 'name', hostIf, 'address', HOST_VETH_MAC,
        'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs]);

      // Pod side.
      await run('ip', ['-n', podNs, 'addr', 'add', `${pod.ipv4}/32`, 'dev', 'eth0']);
      await run('ip', ['-n', podNs, 'addr', 'add', `${pod.ipv6}/128`, 'dev', 'eth0', 'nodad']);
      await run('ip', ['-n', podNs, 'link', 'set', 'eth0', 'up']);
      await run('ip', ['-n', podNs, 'neigh', 'replace', POD_GATEWAY_V4, 'lladdr', HOST_VETH_MAC, 'dev', 'eth0', 'nud', 'permanent']);
      await run('ip', ['-n', podNs, 'neigh', 'replace', POD_GATEWAY_V6, 'lladdr', HOST_VETH_MAC, 'dev', 'eth0', 'nud', 'permanent']);
      await run('ip', ['-n', podNs, 'route', 'replace', 'default', 'via', POD_GATEWAY_V4, 'dev', 'eth0', 'onlink']);
      await run('ip', ['-n', podNs, '-6', 'route', 'replace', 'default', 'via', POD_GATEWAY_V6, 'dev', 'eth0']);
      const podMac = (await linkInfo(podNs, 'eth0')).address;

      // Node side. The node has no IPv4 address to ARP from, so it gets the pod's MAC as a
      // permanent neighbour too (Calico relies on the pod answering ARP; this is simpler and
      // makes the first packet of every flow go through without resolution).
      await run('ip', ['-n', node, 'addr', 'add', `${POD_GATEWAY_V6}/64`, 'dev', hostIf, 'nodad']);
      await run('ip', ['-n', node, 'link', 'set', hostIf, 'up']);
      // `add`, not `replace`: the old routes of this pod went with its old veth, so an existing
      // route means another pod of the lab has the address.
      for (const [family, addr, len] of [['-4', pod.ipv4, 32], ['-6', pod.ipv6, 128]] as const) {
        try {
          await run('ip', ['-n', node, family, 'route', 'add', `${addr}/${len}`, 'dev', hostIf]);
        } catch (err) {
          if (!/file exists/i.test((err as Error).message)) throw err;
          const existing = (await run('ip', ['-n', node, family, 'route', 'show', `${addr}/${len}`])).stdout.trim();
          throw new Error(`${pod.key}: ${addr} is already routed in ${node} (${existing}); is it another pod's address?`);
        }
      }
      await run('ip', ['-n', node, 'neigh', 'replace', pod.ipv4, 'lladdr', podMac, 'dev', hostIf, 'nud', 'permanent']);
      await run('ip', ['-n', node, 'neigh', 'replace', pod.ipv6, 'lladdr', podMac, 'dev', hostIf, 'nud', 'permanent']);
      const hostIfindex = (await linkInfo(node, hostIf)).ifindex;

      const agentPid = await this.startAgent(pod, podNs, base);
      return { ...att0, hostIfindex, agentPid };
    } catch (err) {
      await this.teardownPod({ ...att0, agentPid: 0 }).catch(() => {});
      throw err;
    }
  }

  private async startAgent(pod: LabPodNet, podNs: string, base: string): Promise<number> {
    if (!fs.existsSync(podAgentPath)) throw new Error(`pod agent ${podAgentPath} is missing (build with: npx tsc -p .)`);
    fs.mkdirSync(this.podsDir, { recursive: true });
    const socketPath = `${base}.sock`;
    const logPath = `${base}.log`;
    fs.rmSync(socketPath, { force: true });
    const logFd = fs.openSync(logPath, 'a');
    let pid: number;
    let exited: string | undefined;
    try {
      // `ip netns exec` execs node in place (no fork), so the child's pid is the agent's pid.
      const child = spawn('ip', ['netns', 'exec', podNs, process.execPath, podAgentPath,
        '--socket', socketPath, '--ports', formatPortSpec(pod.ports), '--name', pod.key], {
        detached: true,
        stdio: ['ignore', logFd, logFd],
      });
      child.on('exit', (code, signal) => { exited = signal ? `killed by ${signal}` : `exited with code ${code}`; });
      child.on('error', (err) => { exited = `failed to start: ${err.message}`; });
      child.unref();
      if (child.pid === undefined) {
        await sleep(0);
        throw new Error(`${pod.key}: pod agent ${exited ?? 'did not start'}`);
      }
      pid = child.pid;
    } finally {
      fs.closeSync(logFd);
    }
    fs.writeFileSync(`${base}.pid`, `${pid}\n`);

    const deadline = Date.now() + AGENT_START_TIMEOUT_MS;
    let lastErr = 'no answer';
    for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
      if (exited) {
        throw new Error(`${pod.key}: pod agent ${exited} before answering; log ${logPath}:\n${tail(logPath)}`);
      }
      try {
        const res = await agentRequest(socketPath, { op: 'ping' }, 1_000);
        if (res.ok) return pid;
        lastErr = res.error;
      } catch (err) {
        lastErr = (err as Error).message;
      }
      if (Date.now() > deadline) {
        throw new Error(`${pod.key}: pod agent (pid ${pid}) did not answer within ${AGENT_START_TIMEOUT_MS} ms ` +
          `(${lastErr}); log ${logPath}:\n${tail(logPath)}`);
      }
      await sleep(delay);
    }
  }

  /** Kills the pod's agent and deletes its netns (and with it both ends of the veth). Idempotent. */
  async removePod(att: PodAttachment): Promise<void> {
    await this.teardownPod(att);
  }

  private async teardownPod(att: Pick<PodAttachment, 'key' | 'netns' | 'hostIfname' | 'socketPath' | 'agentPid'>): Promise<void> {
    const base = att.socketPath.replace(/\.sock$/, '');
    const pids = new Set<number>();
    if (att.agentPid > 0) pids.add(att.agentPid);
    const filePid = readPidFile(`${base}.pid`);
    if (filePid) pids.add(filePid);
    await Promise.all([...pids].map((pid) => stopAgent(pid, att.socketPath)));
    // Deleting the host side first is synchronous; a deleted netns is torn down by the kernel
    // later, and a quick re-add of the same pod would find the old veth still there.
    if (await netnsExists(this.nodeNetns)) {
      await runIdempotent('ip', ['-n', this.nodeNetns, 'link', 'del', att.hostIfname]);
    }
    await ipNetnsDel(att.netns);
    fs.rmSync(att.socketPath, { force: true });
    fs.rmSync(`${base}.pid`, { force: true });
  }

  /**
   * Everything this lab made: the agents (given, found through pid files in stateDir, or running
   * inside one of the lab's netns), then the pod netns, then the node netns. Idempotent. Log files
   * are kept (stateDir belongs to the caller).
   */
  async destroy(knownPods: PodAttachment[] = []): Promise<void> {
    const agents = new Map<number, string | undefined>();
    for (const att of knownPods) if (att.agentPid > 0) agents.set(att.agentPid, att.socketPath);
    let pidFiles: string[] = [];
    try {
      pidFiles = fs.readdirSync(this.podsDir).filter((f) => f.endsWith('.pid')).map((f) => path.join(this.podsDir, f));
    } catch { /* no pods dir: nothing started */ }
    for (const f of pidFiles) {
      const pid = readPidFile(f);
      if (pid) agents.set(pid, f.replace(/\.pid$/, '.sock'));
    }
    const namespaces = (await listNetns()).filter((n) => this.ownNetns.test(n));
    for (const ns of namespaces) {
      for (const pid of await netnsPids(ns)) if (!agents.has(pid)) agents.set(pid, undefined);
    }
    await Promise.all([...agents].map(([pid, sock]) => stopAgent(pid, sock)));

    // Pods (and the world) first, so no veth is torn down by the node's deletion while its agent lingers.
    const pods = namespaces.filter((n) => n !== this.nodeNetns);
    await Promise.all(pods.map((n) => ipNetnsDel(n)));
    if (namespaces.includes(this.nodeNetns)) await ipNetnsDel(this.nodeNetns);
    for (const f of pidFiles) {
      fs.rmSync(f, { force: true });
      fs.rmSync(f.replace(/\.pid$/, '.sock'), { force: true });
    }
  }
}

// ---- probes -----------------------------------------------------------------------------------

/** One probe, made by the agent of `from` (so it leaves from that pod's eth0). */
export async function probe(
  from: PodAttachment | { socketPath: string },
  to: ProbeTarget,
  timeoutMs: number = DEFAULT_PROBE_TIMEOUT_MS,
): Promise<ProbeOutcome> {
  const res = await agentRequest(
    from.socketPath,
    { op: 'probe', ip: to.ip, port: to.port, protocol: to.protocol, timeoutMs },
    timeoutMs + PROBE_CLIENT_SLACK_MS,
  );
  if (!res.ok) throw new Error(`probe from ${from.socketPath} to ${to.protocol} [${to.ip}]:${to.port}: ${res.error}`);
  const out: ProbeOutcome = { connected: res.connected === true };
  if (res.error !== undefined) out.error = res.error;
  return out;
}

/**
 * Many probes at once (up to `concurrency` in flight), so a matrix costs about one timeout rather
 * than one per cell. Returns `connected` per request, in order; an agent that cannot be reached
 * makes the whole call reject.
 */
export async function probeMany(
  requests: Array<{ from: { socketPath: string }; to: ProbeTarget }>,
  opts: { timeoutMs?: number; concurrency?: number } = {},
): Promise<boolean[]> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const concurrency = Math.max(1, opts.concurrency ?? DEFAULT_PROBE_CONCURRENCY);
  const results = new Array<boolean>(requests.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < requests.length) {
      const i = next++;
      const r = requests[i]!;
      results[i] = (await probe(r.from, r.to, timeoutMs)).connected;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, requests.length) }, worker));
  return results;
}

/** One request on a fresh connection to an agent's control socket. */
export function agentRequest(socketPath: string, req: AgentRequest, timeoutMs: number): Promise<AgentResponse> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socketPath);
    let buf = '';
    const fail = (msg: string): void => {
      clearTimeout(timer);
      conn.destroy();
      reject(new Error(`pod agent ${socketPath}: ${msg}`));
    };
    const timer = setTimeout(() => fail(`no answer to ${req.op} within ${timeoutMs} ms`), timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(JSON.stringify(req) + '\n'));
    conn.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      conn.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as AgentResponse);
      } catch {
        reject(new Error(`pod agent ${socketPath}: not JSON: ${buf.slice(0, nl).slice(0, 200)}`));
      }
    });
    conn.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
    conn.on('close', () => fail('closed the connection without answering'));
  });
}

// ---- netns and process helpers ----------------------------------------------------------------

const NETNS_DIR = '/run/netns';

async function netnsExists(name: string): Promise<boolean> {
  return fs.existsSync(path.join(NETNS_DIR, name));
}

async function listNetns(): Promise<string[]> {
  try {
    return fs.readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
}

async function ipNetnsAdd(name: string): Promise<void> {
  try {
    await run('ip', ['netns', 'add', name]);
  } catch (err) {
    if (/file exists/i.test((err as Error).message)) return;
    throw err;
  }
}

async function ipNetnsDel(name: string): Promise<void> {
  if (!(await netnsExists(name))) return;
  await runIdempotent('ip', ['netns', 'del', name]);
}

async function netnsPids(name: string): Promise<number[]> {
  const { stdout } = await runIdempotent('ip', ['netns', 'pids', name]);
  return stdout.split(/\s+/).filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

async function sysctls(netns: string, values: Record<string, string>): Promise<void> {
  const args = Object.entries(values).map(([k, v]) => `${k}=${v}`);
  await run('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', ...args]);
}

async function linkInfo(netns: string, ifname: string): Promise<{ ifindex: number; address: string }> {
  const { stdout } = await run('ip', ['-n', netns, '-j', 'link', 'show', 'dev', ifname]);
  const [link] = JSON.parse(stdout) as Array<{ ifindex: number; address: string }>;
  if (!link) throw new Error(`ip -n ${netns} link show dev ${ifname}: no such link`);
  return { ifindex: link.ifindex, address: link.address };
}

function readPidFile(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True when `pid` is one of our pod agents (and, given a socket path, that pod's agent). Guards
 * every kill against a pid file that outlived its process and a pid the system reused.
 */
function isPodAgent(pid: number, socketPath?: string): boolean {
  let argv: string[];
  try {
    argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return false;
  }
  if (!argv.some((a) => a.endsWith('/pod-agent.js'))) return false;
  return socketPath === undefined || argv.includes(socketPath);
}

async function stopAgent(pid: number, socketPath?: string): Promise<void> {
  if (!isPodAgent(pid, socketPath)) return;
  try { process.kill(pid, 'SIGTERM'); } catch { return; }
  const deadline = Date.now() + AGENT_STOP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!processAlive(pid) || !isPodAgent(pid)) return;
    await sleep(20);
  }
  try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  while (processAlive(pid) && isPodAgent(pid)) await sleep(20);
}

function tail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
