// Real node layouts of the common veth CNIs, built inside a network namespace that plays the node
// (never the machine's own): pods are namespaces joined by veth pairs made inside the node netns,
// with the addresses, routes, neighbours and bridges each CNI would leave. Every namespace name
// starts with the test file's own prefix; destroy() removes them all (and is safe twice).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export type LayoutStyle = 'calico' | 'cilium' | 'flannel' | 'kindnet';

/** Calico's host-side MAC (every cali* veth), used by the routed layouts here. */
export const HOST_VETH_MAC = 'ee:ee:ee:ee:ee:ee';
const GW4_LINK_LOCAL = '169.254.1.1';
const GW6_LINK_LOCAL = 'fe80::1';

export async function sh(file: string, args: readonly string[]): Promise<string> {
  try {
    return (await execFileP(file, args, { encoding: 'utf8', timeout: 30_000 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${file} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

export const ip = (ns: string, ...args: string[]): Promise<string> => sh('ip', ['-n', ns, ...args]);

export interface PodSpec {
  readonly name: string;
  readonly ifname: string;
  readonly v4: string;
  readonly v6?: string;
  /** routed styles: install the pod's host routes (Cilium without endpoint routes has none) */
  readonly routes?: boolean;
}

export interface BuiltPod extends PodSpec {
  readonly netns: string;
}

export class NodeLayout {
  readonly node: string;
  private readonly made = new Set<string>();

  /** prefix: unique to the test file (and short: netns names end up in interface-free places only) */
  constructor(readonly prefix: string, readonly style: LayoutStyle, private readonly subnet: number) {
    this.node = `${prefix}-node`;
  }

  /** Gateway of the bridge / ptp layouts: 10.<subnet>.0.1. */
  get gateway4(): string {
    return `10.${this.subnet}.0.1`;
  }

  async create(): Promise<void> {
    await this.netns(this.node);
    await sh('ip', ['netns', 'exec', this.node, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1',
      'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    if (this.style === 'flannel') {
      await ip(this.node, 'link', 'add', 'cni0', 'type', 'bridge');
      await ip(this.node, 'addr', 'add', `${this.gateway4}/24`, 'dev', 'cni0');
      await ip(this.node, 'link', 'set', 'cni0', 'up');
    }
  }

  private async netns(name: string): Promise<void> {
    await sh('ip', ['netns', 'add', name]);
    this.made.add(name);
    await ip(name, 'link', 'set', 'lo', 'up');
  }

  podNetns(name: string): string {
    return `${this.prefix}-${name}`;
  }

  /** A pod laid out the way the style's CNI lays it out. */
  async addPod(spec: PodSpec): Promise<BuiltPod> {
    const ns = this.podNetns(spec.name);
    await this.netns(ns);
    await sh('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    await this.addVeth(spec, ns);
    return { ...spec, netns: ns };
  }

  /** The veth pair of a pod whose netns exists (also to re-create it after deleteVeth). */
  async addVeth(spec: PodSpec, ns = this.podNetns(spec.name)): Promise<void> {
    const n = this.node;
    const routed = this.style === 'calico' || this.style === 'cilium';
    await ip(n, 'link', 'add', spec.ifname, ...(routed ? ['address', HOST_VETH_MAC] : []), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    if (routed) {
      // Calico/Cilium: the pod's /32 (/128) on eth0, its only gateway a link-local address the host
      // side "owns" (pinned by a permanent neighbour: proxy ARP needs an address on the node)
      await ip(ns, 'addr', 'add', `${spec.v4}/32`, 'dev', 'eth0');
      if (spec.v6) await ip(ns, 'addr', 'add', `${spec.v6}/128`, 'dev', 'eth0', 'nodad');
      await ip(ns, 'link', 'set', 'eth0', 'up');
      await ip(ns, 'neigh', 'replace', GW4_LINK_LOCAL, 'lladdr', HOST_VETH_MAC, 'dev', 'eth0', 'nud', 'permanent');
      await ip(ns, 'route', 'replace', 'default', 'via', GW4_LINK_LOCAL, 'dev', 'eth0', 'onlink');
      if (spec.v6) {
        await ip(ns, 'neigh', 'replace', GW6_LINK_LOCAL, 'lladdr', HOST_VETH_MAC, 'dev', 'eth0', 'nud', 'permanent');
        await ip(ns, '-6', 'route', 'replace', 'default', 'via', GW6_LINK_LOCAL, 'dev', 'eth0');
        await ip(n, 'addr', 'add', `${GW6_LINK_LOCAL}/64`, 'dev', spec.ifname, 'nodad');
      }
      await ip(n, 'link', 'set', spec.ifname, 'up');
      const podMac = await macOf(ns, 'eth0');
      await ip(n, 'neigh', 'replace', spec.v4, 'lladdr', podMac, 'dev', spec.ifname, 'nud', 'permanent');
      if (spec.v6) await ip(n, 'neigh', 'replace', spec.v6, 'lladdr', podMac, 'dev', spec.ifname, 'nud', 'permanent');
      if (spec.routes !== false) {
        await ip(n, 'route', 'add', `${spec.v4}/32`, 'dev', spec.ifname, 'scope', 'link');
        if (spec.v6) await ip(n, '-6', 'route', 'add', `${spec.v6}/128`, 'dev', spec.ifname);
      }
    } else if (this.style === 'kindnet') {
      // the ptp plugin: the gateway address on every host-side veth, a host-scoped route per pod
      await ip(n, 'addr', 'add', `${this.gateway4}/32`, 'dev', spec.ifname);
      await ip(n, 'link', 'set', spec.ifname, 'up');
      // in the pod, the /24 goes through the gateway too (ptp replaces the on-link subnet route)
      await ip(ns, 'addr', 'add', `${spec.v4}/24`, 'dev', 'eth0', 'noprefixroute');
      await ip(ns, 'link', 'set', 'eth0', 'up');
      await ip(ns, 'route', 'replace', this.gateway4, 'dev', 'eth0', 'scope', 'link', 'src', spec.v4);
      await ip(ns, 'route', 'replace', `10.${this.subnet}.0.0/24`, 'via', this.gateway4, 'dev', 'eth0', 'src', spec.v4);
      await ip(ns, 'route', 'replace', 'default', 'via', this.gateway4, 'dev', 'eth0');
      if (spec.routes !== false) await ip(n, 'route', 'add', `${spec.v4}/32`, 'dev', spec.ifname, 'scope', 'host');
    } else {
      // flannel / the bridge plugin: the host side is a port of cni0; the pod's /24 is on-link
      await ip(n, 'link', 'set', spec.ifname, 'master', 'cni0');
      await ip(n, 'link', 'set', spec.ifname, 'up');
      await ip(ns, 'addr', 'add', `${spec.v4}/24`, 'dev', 'eth0');
      await ip(ns, 'link', 'set', 'eth0', 'up');
      await ip(ns, 'route', 'replace', 'default', 'via', this.gateway4, 'dev', 'eth0');
    }
  }

  /** Deletes a pod's host-side veth (the peer goes with it), leaving its netns. */
  async deleteVeth(ifname: string): Promise<void> {
    await ip(this.node, 'link', 'del', ifname);
  }

  async deletePod(name: string): Promise<void> {
    const ns = this.podNetns(name);
    await sh('ip', ['netns', 'del', ns]);
    this.made.delete(ns);
  }

  /** A veth of the node with its peer in a fresh netns of ours (a decoy: nobody's pod). */
  async addStrayVeth(ifname: string, peerName: string, peerAddr?: string): Promise<string> {
    const ns = this.podNetns(peerName);
    await this.netns(ns);
    await ip(this.node, 'link', 'add', ifname, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    await ip(this.node, 'link', 'set', ifname, 'up');
    if (peerAddr) {
      await ip(ns, 'addr', 'add', peerAddr, 'dev', 'eth0');
      await ip(ns, 'link', 'set', 'eth0', 'up');
    }
    return ns;
  }

  async ifindex(ifname: string): Promise<number> {
    const [l] = JSON.parse(await ip(this.node, '-j', 'link', 'show', 'dev', ifname)) as Array<{ ifindex: number }>;
    return l!.ifindex;
  }

  /** The qdiscs (kinds) and the number of tc filters on an interface of the node. */
  async tcState(ifname: string): Promise<{ qdiscs: string[]; filters: number }> {
    const q = JSON.parse(await sh('tc', ['-n', this.node, '-j', 'qdisc', 'show', 'dev', ifname]) || '[]') as Array<{ kind: string }>;
    let filters = 0;
    if (q.some((x) => x.kind === 'clsact')) {
      for (const d of ['ingress', 'egress']) {
        const f = JSON.parse(await sh('tc', ['-n', this.node, '-j', 'filter', 'show', 'dev', ifname, d]) || '[]') as Array<{ options?: unknown }>;
        filters += f.filter((x) => x.options !== undefined).length;
      }
    }
    return { qdiscs: q.map((x) => x.kind), filters };
  }

  /** Removes every namespace this layout made (the node last). Safe twice. */
  async destroy(): Promise<void> {
    const pods = [...this.made].filter((n) => n !== this.node);
    for (const ns of pods) await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
    if (this.made.has(this.node)) await sh('ip', ['netns', 'del', this.node]).catch(() => undefined);
    this.made.clear();
  }
}

async function macOf(ns: string, ifname: string): Promise<string> {
  const [l] = JSON.parse(await ip(ns, '-j', 'link', 'show', 'dev', ifname)) as Array<{ address: string }>;
  return l!.address;
}

/** Removes namespaces left by an earlier, killed run of the same test file. */
export async function removeLeftovers(prefix: string): Promise<void> {
  let names: string[] = [];
  try {
    names = fs.readdirSync('/run/netns');
  } catch { /* none */ }
  for (const n of names) if (n.startsWith(`${prefix}-`)) await sh('ip', ['netns', 'del', n]).catch(() => undefined);
}

// ---- traffic --------------------------------------------------------------------------------

const SERVER = `
const net = require('node:net');
const s = net.createServer((c) => { c.end('weir\\n'); });
s.listen(Number(process.argv[1]), '::', () => process.stdout.write('listening\\n'));
`;

const CLIENT = `
const net = require('node:net');
const [host, port, ms] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const c = net.connect({ host, port });
const t = setTimeout(() => { process.stdout.write('timeout'); process.exit(1); }, ms);
let got = '';
c.on('data', (d) => { got += d; });
c.on('end', () => { clearTimeout(t); process.stdout.write(got.trim()); process.exit(got.startsWith('weir') ? 0 : 1); });
c.on('error', (e) => { clearTimeout(t); process.stdout.write(e.code || e.message); process.exit(1); });
`;

/** A TCP server in a netns that answers "weir" (dual-stack). Stop it with stop() (its own pid). */
export async function startServer(ns: string, port: number): Promise<{ stop: () => Promise<void> }> {
  // `ip netns exec` execs node in place, so the child is the server itself
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server in ${ns} did not start: ${err}`)), 10_000);
    child.stdout!.once('data', () => { clearTimeout(t); resolve(); });
    child.once('exit', (code) => { clearTimeout(t); reject(new Error(`server in ${ns} exited (${code}): ${err}`)); });
  });
  return {
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}

/** Connects from a netns to ip:port; true when the server's greeting came back. */
export async function connect(ns: string, host: string, port: number, timeoutMs = 2_000): Promise<boolean> {
  try {
    await execFileP('ip', ['netns', 'exec', ns, process.execPath, '-e', CLIENT, host, String(port), String(timeoutMs)], { timeout: timeoutMs + 10_000 });
    return true;
  } catch {
    return false;
  }
}
