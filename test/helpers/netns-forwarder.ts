// Reaching a TCP server of the test process (root netns, 127.0.0.1) from inside a network
// namespace without touching the machine's interfaces: a unix socket is not bound to a netns, so
//   (netns) 127.0.0.1:PORT --forwarder process--> unix socket --relay in the test process--> 127.0.0.1:TARGET
// The forwarder is a tiny node process started with `ip netns exec`; both ends are plain pipes.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { rmSync } from 'node:fs';

export interface Stoppable { stop(): Promise<void> }

/** In the test process: connections to `socketPath` are relayed to host:port. */
export async function startUnixRelay(socketPath: string, host: string, port: number): Promise<Stoppable> {
  rmSync(socketPath, { force: true });
  const conns = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const up = net.connect({ host, port });
    conns.add(c).add(up);
    c.pipe(up).pipe(c);
    const end = (): void => { c.destroy(); up.destroy(); conns.delete(c); conns.delete(up); };
    c.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(socketPath, () => resolve()); });
  return {
    stop: () => new Promise<void>((resolve) => {
      for (const c of conns) c.destroy();
      server.close(() => { rmSync(socketPath, { force: true }); resolve(); });
    }),
  };
}

const FORWARDER = `
const net = require('node:net');
const [port, socketPath] = [Number(process.argv[1]), process.argv[2]];
net.createServer((c) => {
  const up = net.connect(socketPath);
  c.pipe(up).pipe(c);
  const end = () => { c.destroy(); up.destroy(); };
  c.on('error', end).on('close', end);
  up.on('error', end).on('close', end);
}).listen(port, '127.0.0.1', () => process.stdout.write('listening\\n'));
`;

/** In `netns`: 127.0.0.1:listenPort relays to the unix socket. Stop it with stop() (its own pid). */
export async function startNetnsForwarder(netns: string, listenPort: number, socketPath: string): Promise<Stoppable> {
  // `ip netns exec` execs node in place: the child is the forwarder itself
  const child: ChildProcess = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', FORWARDER, String(listenPort), socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`forwarder in ${netns} did not start: ${err}`)), 10_000);
    child.stdout!.once('data', () => { clearTimeout(t); resolve(); });
    child.once('exit', (code) => { clearTimeout(t); reject(new Error(`forwarder in ${netns} exited (${code}): ${err}`)); });
  });
  return {
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}
