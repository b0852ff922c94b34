// Change notifications from `ip monitor`: each line it prints (a link, route or neighbour came,
// went or changed) is only a hint that the node changed; the reconciler re-reads the node rather
// than trusting the event's content, so a missed or garbled event costs nothing but latency and
// the periodic resync covers what the monitor misses. (iproute2 6.1 prints monitor events as text
// even with -j, another reason not to parse them.)
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { NetnsName } from './iproute.js';

export type MonitorObject = 'link' | 'route' | 'neigh';

/** How long to wait before restarting a monitor that exited on its own. */
export const MONITOR_RESTART_DELAY_MS = 1_000;

export interface LinkMonitorOptions {
  readonly netns: NetnsName;
  readonly objects: readonly MonitorObject[];
  /** called for every event line */
  readonly onEvent: (line: string) => void;
  /** called when the monitor process exits unexpectedly (it is restarted) */
  readonly onExit?: (why: string) => void;
}

export class LinkMonitor {
  private child: ChildProcess | undefined;
  private stopped = true;
  private restartTimer: NodeJS.Timeout | undefined;
  private _restarts = 0;

  constructor(private readonly opts: LinkMonitorOptions) {}

  get restarts(): number {
    return this._restarts;
  }

  /** Starts `ip [-n NETNS] monitor OBJECTS...`; resolves once it runs (events before that are lost,
   * so callers resync after start). */
  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    await this.spawn();
  }

  private spawn(): Promise<void> {
    const args = [...(this.opts.netns === undefined ? [] : ['-n', this.opts.netns]), 'monitor', ...this.opts.objects];
    const child = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-500); });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!this.stopped && line.trim() !== '') this.opts.onEvent(line);
    });
    let gone = false;
    const onGone = (why: string): void => {
      if (gone) return;
      gone = true;
      if (this.child === child) this.child = undefined;
      if (this.stopped) return;
      this._restarts++;
      this.opts.onExit?.(`ip ${args.join(' ')} ${why}: ${stderr.trim() || 'no stderr'}`);
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (!this.stopped) void this.spawn();
      }, MONITOR_RESTART_DELAY_MS);
      this.restartTimer.unref();
    };
    child.on('exit', (code, signal) => onGone(`exited (${signal ?? `code ${code}`})`));
    child.on('error', (err) => onGone(`failed: ${err.message}`));
    return new Promise((resolve) => {
      child.once('spawn', () => resolve());
      child.once('error', () => resolve()); // reported through 'exit'
    });
  }

  /** Stops the monitor process (ours, by its pid) and any pending restart. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    this.child = undefined;
    if (!child || child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }
}
