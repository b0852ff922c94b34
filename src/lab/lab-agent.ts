// The lab's flow agent as a background process. `weir lab up` starts `weir agent --lab NAME` (a
// process of its own, so it outlives the command, detached from the terminal's Ctrl-C), with its
// stdout and stderr in <labDir>/agent.log and its pid in <labDir>/agent.pid, and returns once the
// agent is ready: its agent.json names its API and /readyz answers (the store is open). `weir lab
// down` stops it before it removes the lab: SIGTERM (the agent flushes its rows to the store),
// then SIGKILL if it is still there after AGENT_STOP_TIMEOUT_MS. Every agent also stops by itself
// within a second when its lab disappears (LAB_WATCH_MS in src/agent/agent.ts), which is how one
// started by hand (`weir agent --lab`) ends; stopping the lab's own here first means its last
// rows are stored and the process is gone before `down` returns.
//
// The library's Lab.up() starts no agent: programs and tests that read the ring themselves
// (FlowObserver, an in-process Agent) keep it to themselves. A ring buffer has one reader.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentInfoFile, readAgentInfo, type AgentInfo } from '../agent/discovery.js';
import { checkLabName, labDir } from './state.js';
import { processAlive } from '../process.js';

/** The lab's agent aggregates allowed flows over this interval (shorter than the agent's own
 * default: a lab is watched by a person, `weir lab observe` shows rows as intervals end). */
export const LAB_AGENT_INTERVAL_MS = 5_000;
/** Opening (and migrating) the embedded store takes a few seconds; this is plenty. */
export const AGENT_READY_TIMEOUT_MS = 60_000;
/** How long the agent gets to flush its rows after SIGTERM before SIGKILL. */
export const AGENT_STOP_TIMEOUT_MS = 15_000;
/** One /readyz or /api/v1/stats request. */
const AGENT_REQUEST_TIMEOUT_MS = 3_000;
const POLL_MS = 100;

/** The `weir` command this module belongs to (dist/src/cli/main.js). */
const WEIR_CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export function labAgentLog(lab: string): string {
  return path.join(labDir(lab), 'agent.log');
}

function labAgentPidFile(lab: string): string {
  return path.join(labDir(lab), 'agent.pid');
}

export interface LabAgentOptions {
  /** the embedded store's directory (default: the agent's, /var/lib/weir/flows/<lab>) */
  readonly dataDir?: string;
  readonly intervalMs?: number;
  readonly readyTimeoutMs?: number;
}

/** The agent did not become ready; `reason` is what it said (or why we gave up). */
export class LabAgentError extends Error {
  constructor(readonly lab: string, readonly reason: string, readonly log: string) {
    super(reason);
    this.name = 'LabAgentError';
  }
}

/** Whether `pid` is a `weir agent` process (guards against a pid the system gave to another
 * process since the file was written). */
function isAgentProcess(pid: number): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.includes('agent');
  } catch {
    return false;
  }
}

/** What the agent said last: its last `weir:`/`weir agent:` line (the reason it stopped). */
function lastWords(log: string): string | undefined {
  let text: string;
  try { text = readFileSync(log, 'utf8'); } catch { return undefined; }
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const said = lines.filter((l) => /^weir( agent)?: /.test(l));
  const last = said.at(-1) ?? lines.at(-1);
  return last?.replace(/^weir( agent)?: /, '');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function ready(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(AGENT_REQUEST_TIMEOUT_MS) });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

/** Starts the lab's agent and resolves once it is ready (agent.json names its API and /readyz
 * answers), or rejects with LabAgentError carrying the agent's own reason (its process is
 * gone then). The lab must be up. */
export async function startLabAgent(lab: string, opts: LabAgentOptions = {}): Promise<AgentInfo & { log: string }> {
  checkLabName(lab);
  const log = labAgentLog(lab);
  const args = [WEIR_CLI, 'agent', '--lab', lab, '--listen', '127.0.0.1:0', '--interval', `${opts.intervalMs ?? LAB_AGENT_INTERVAL_MS}ms`,
    ...(opts.dataDir !== undefined ? ['--data-dir', opts.dataDir] : [])];
  const fd = openSync(log, 'a');
  let exited: string | undefined;
  let pid: number;
  try {
    const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd] });
    child.on('exit', (code, signal) => { exited = signal ? `killed by ${signal}` : `exit code ${code}`; });
    child.on('error', (err) => { exited = err.message; });
    if (child.pid === undefined) {
      await sleep(0); // the 'error' event says why
      throw new LabAgentError(lab, `could not start \`weir agent\`: ${exited ?? 'no process'}`, log);
    }
    pid = child.pid;
    child.unref();
  } finally {
    closeSync(fd);
  }
  writeFileSync(labAgentPidFile(lab), `${pid}\n`);
  const deadline = Date.now() + (opts.readyTimeoutMs ?? AGENT_READY_TIMEOUT_MS);
  for (;;) {
    if (exited !== undefined || !processAlive(pid)) {
      rmSync(labAgentPidFile(lab), { force: true });
      throw new LabAgentError(lab, lastWords(log) ?? `the agent stopped (${exited ?? 'gone'})`, log);
    }
    const info = readAgentInfo(lab);
    if (info?.pid === pid && await ready(info.url)) return { ...info, log };
    if (Date.now() > deadline) {
      await stopLabAgent(lab);
      throw new LabAgentError(lab, `the agent was not ready within ${Math.round((opts.readyTimeoutMs ?? AGENT_READY_TIMEOUT_MS) / 1000)} s (stopped it)`, log);
    }
    await sleep(POLL_MS);
  }
}

function pidIn(file: string, read: (text: string) => number | undefined): number | undefined {
  try {
    const pid = read(readFileSync(file, 'utf8'));
    return pid !== undefined && Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (processAlive(pid)) {
    if (Date.now() > end) return false;
    await sleep(POLL_MS);
  }
  return true;
}

/** Stops the agent `weir lab up` started (SIGTERM; SIGKILL after `timeoutMs`) and removes its
 * files. Safe when there is none, when the lab is half gone, and twice. An agent started by hand
 * (`weir agent --lab`) or run in-process (the demo's, a test's) is its owner's: it stops by
 * itself within a second of its lab going away. Resolves with the pids stopped. */
export async function stopLabAgent(lab: string, timeoutMs = AGENT_STOP_TIMEOUT_MS): Promise<number[]> {
  checkLabName(lab);
  const stopped: number[] = [];
  const started = pidIn(labAgentPidFile(lab), (t) => Number(t.trim()));
  for (const pid of started !== undefined ? [started] : []) {
    if (pid === process.pid || !processAlive(pid) || !isAgentProcess(pid)) continue;
    try { process.kill(pid, 'SIGTERM'); } catch { continue; /* gone meanwhile */ }
    if (!await waitGone(pid, timeoutMs)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
      await waitGone(pid, 5_000);
    }
    stopped.push(pid);
  }
  rmSync(labAgentPidFile(lab), { force: true });
  // The agent removes its agent.json as it stops; a killed one cannot.
  const left = pidIn(agentInfoFile(lab), (t) => (JSON.parse(t) as { pid?: number }).pid);
  if (existsSync(agentInfoFile(lab)) && (left === undefined || !processAlive(left))) rmSync(agentInfoFile(lab), { force: true });
  return stopped;
}

/** What `weir lab status` says about the agent. */
export interface LabAgentStatus {
  readonly running: boolean;
  readonly pid?: number;
  readonly url?: string;
  readonly store?: string;
  readonly rowsWritten?: number;
  readonly lost?: { readonly total: number; readonly ring: number; readonly invalid: number; readonly pipeline: number; readonly spool: number };
  /** why the counters are missing (the API did not answer, wants a token) */
  readonly statsError?: string;
  readonly log: string;
}

/** The lab's agent and its counters (GET /api/v1/stats; the token from WEIR_API_TOKEN when the
 * agent wants one). */
export async function labAgentStatus(lab: string, token = process.env.WEIR_API_TOKEN): Promise<LabAgentStatus> {
  const log = labAgentLog(lab);
  const info = readAgentInfo(lab);
  if (!info) return { running: false, log };
  const base = { running: true, pid: info.pid, url: info.url, store: info.store, log };
  if (info.tokenRequired && !token) return { ...base, statsError: 'the agent wants a token: set WEIR_API_TOKEN' };
  try {
    const res = await fetch(`${info.url}/api/v1/stats`, {
      headers: token ? { Authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(AGENT_REQUEST_TIMEOUT_MS),
    });
    if (!res.ok) return { ...base, statsError: `${res.status} ${res.statusText}` };
    const s = await res.json() as { rowsWritten: number; lost: NonNullable<LabAgentStatus['lost']> };
    return { ...base, rowsWritten: s.rowsWritten, lost: { total: s.lost.total, ring: s.lost.ring, invalid: s.lost.invalid, pipeline: s.lost.pipeline, spool: s.lost.spool } };
  } catch (err) {
    return { ...base, statsError: (err as Error).message };
  }
}

export function formatLabAgentStatus(lab: string, s: LabAgentStatus): string {
  const lines = ['FLOW AGENT'];
  if (!s.running) {
    lines.push(`  not running (the lab was made with --no-agent, or the agent stopped: see ${s.log}); start one with \`weir agent --lab ${lab}\``);
    return lines.join('\n');
  }
  lines.push(`  running: pid ${s.pid}, API ${s.url}, store ${s.store}`);
  if (s.lost) {
    const l = s.lost;
    lines.push(`  rows written ${s.rowsWritten}, events lost ${l.total} (ring buffer ${l.ring}, undecodable ${l.invalid}, pipeline ${l.pipeline}, spool ${l.spool})`);
  } else {
    lines.push(`  counters unavailable: ${s.statsError}`);
  }
  lines.push(`  log ${s.log}`);
  return lines.join('\n');
}
