// A node for the node agent's tests: a network namespace with a CNI-style layout (pods are
// namespaces, discovery-layouts.ts), a manifest directory, and the real `weir agent --datastore`
// process running inside the node netns (`ip netns exec`), as a DaemonSet pod with hostNetwork
// runs in the node's. Its API listens on 127.0.0.1 inside that netns, so it is asked from there.
// The agent is started with `nsenter --net`, not `ip netns exec`: the latter also makes a mount
// namespace with a fresh /sys, hiding the machine's bpffs at /sys/fs/bpf (the agent would pin into
// a private bpffs that vanishes with it), while a DaemonSet pod has the node's bpffs (hostPath).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { NodeLayout, removeLeftovers, sh, type LayoutStyle } from '../datapath/discovery-layouts.js';
import { testPinRoot } from '../helpers/pins.js';

const execFileP = promisify(execFile);
export const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
export const API_PORT = 9479;

export const yamlOf = (objects: readonly object[]): string => objects.map((o) => JSON.stringify(o)).join('\n---\n') + '\n';

export const namespace = (name: string): object => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'kubernetes.io/metadata.name': name } } });
export const nodeObject = (name: string): object => ({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name } } });
export const pod = (ns: string, name: string, app: string, ip: string, node: string): object => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns, labels: { app } },
  spec: { nodeName: node, containers: [{ name: 'c', image: 'x', ports: [{ containerPort: 8080 }] }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
});
/** Ingress to app=<to> on 8080 only from pods whose app label is one of `from`. */
export const allowFrom = (ns: string, name: string, to: string, from: readonly string[]): object => ({
  apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: ns },
  spec: {
    podSelector: { matchLabels: { app: to } }, policyTypes: ['Ingress'],
    ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: [...from] }] } }], ports: [{ protocol: 'TCP', port: 8080 }] }],
  },
});

export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 20_000, everyMs = 250): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** how long an agent may take to answer /healthz after it was started */
const AGENT_START_MS = 120_000;

const FETCH = `
fetch(process.argv[1]).then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })),
  (e) => process.stdout.write(JSON.stringify({ status: 0, body: String(e.cause?.code ?? e.message) })));
`;

/** GET from inside a netns. */
export async function nsGet(netns: string, url: string): Promise<{ status: number; body: string }> {
  const { stdout } = await execFileP('ip', ['netns', 'exec', netns, process.execPath, '-e', FETCH, url], { timeout: 20_000 });
  return JSON.parse(stdout) as { status: number; body: string };
}

export interface AgentProcess {
  readonly child: ChildProcess;
  log(): string;
  /** SIGTERM and wait; the exit code */
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

export class NodeRig {
  readonly layout: NodeLayout;
  readonly dir: string;
  readonly manifests: string;
  readonly dataDir: string;
  readonly pinRoot: string;
  private agents: AgentProcess[] = [];

  constructor(readonly prefix: string, style: LayoutStyle, subnet: number) {
    this.layout = new NodeLayout(prefix, style, subnet);
    this.dir = mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
    this.manifests = path.join(this.dir, 'manifests');
    this.dataDir = path.join(this.dir, 'data');
    this.pinRoot = testPinRoot(`weir-test-${prefix}`);
  }

  get node(): string {
    return this.layout.node;
  }

  async create(): Promise<void> {
    await removeLeftovers(this.prefix);
    await sh('mkdir', ['-p', this.manifests]);
    await this.layout.create();
  }

  write(file: string, objects: readonly object[]): void {
    writeFileSync(path.join(this.manifests, file), yamlOf(objects));
  }

  writeRaw(file: string, text: string): void {
    writeFileSync(path.join(this.manifests, file), text);
  }

  remove(file: string): void {
    rmSync(path.join(this.manifests, file), { force: true });
  }

  /** Starts `weir agent --datastore ...` in the node netns; resolves once its API answers. */
  async startAgent(args: readonly string[], opts: { withoutBpftool?: boolean } = {}): Promise<AgentProcess> {
    const argv = [`--net=/run/netns/${this.node}`, '--', process.execPath, MAIN, 'agent',
      '--node', this.node, '--data-dir', this.dataDir, '--listen', `127.0.0.1:${API_PORT}`, '--interval', '1s',
      '--pin-root', this.pinRoot, ...args];
    // withoutBpftool: as in the agent's container image, which has iproute2 and no bpftool
    let env = process.env;
    if (opts.withoutBpftool) {
      const bin = path.join(this.dir, 'bin-without-bpftool');
      mkdirSync(bin, { recursive: true });
      for (const tool of ['ip', 'tc', 'bridge']) if (!existsSync(path.join(bin, tool))) symlinkSync(`/usr/sbin/${tool}`, path.join(bin, tool));
      env = { ...process.env, PATH: `${bin}:/usr/bin` };
    }
    const child = spawn('nsenter', argv, { stdio: ['ignore', 'ignore', 'pipe'], env }); // nsenter execs node in place
    let out = '';
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const proc: AgentProcess = {
      child,
      log: () => out,
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        return exited;
      },
      kill: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await exited;
      },
    };
    this.agents.push(proc);
    // the first start on a fresh machine maps chDB's large library from a cold page cache, next to
    // other test files: give it time, and say what the agent printed if it never answers
    await eventually('the agent\'s API answers', async () => {
      if (child.exitCode !== null) throw new Error(`the agent exited (${child.exitCode}): ${out}`);
      return (await this.get('/healthz')).status === 200;
    }, AGENT_START_MS).catch((err: Error) => {
      throw new Error(`${err.message}; the agent's stderr so far:\n${out || '(nothing)'}`);
    });
    return proc;
  }

  get(pathAndQuery: string): Promise<{ status: number; body: string }> {
    return nsGet(this.node, `http://127.0.0.1:${API_PORT}${pathAndQuery}`);
  }

  async ready(): Promise<boolean> {
    return (await this.get('/readyz')).status === 200;
  }

  /** `weir node uninstall` in the node netns. */
  async uninstall(): Promise<string> {
    const { stdout } = await execFileP('nsenter', [`--net=/run/netns/${this.node}`, '--', process.execPath, MAIN, 'node', 'uninstall', '--pin-root', this.pinRoot], { timeout: 60_000 });
    return stdout;
  }

  /** Kills every agent left, removes Weir from the node, the namespaces, the pins and the files. */
  async destroy(): Promise<void> {
    for (const a of this.agents) await a.kill().catch(() => undefined);
    if (existsSync(this.pinRoot)) await this.uninstall().catch(() => undefined);
    await this.layout.destroy();
    rmSync(this.pinRoot, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
