// Where a lab's agent can be found: /run/weir/lab/<lab>/agent.json, next to the lab's state, written
// once the agent's API listens and removed when it stops. `weir observe --lab NAME` reads it to
// find the API; a second `weir agent` for the same lab reads it to refuse to start (a ring buffer
// has one consumer: two readers would each see part of the records).
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { labDir } from '../lab/state.js';
import { processAlive } from '../process.js';

export interface AgentInfo {
  readonly version: 1;
  readonly lab: string;
  readonly pid: number;
  /** the API's base URL, e.g. http://127.0.0.1:41234 */
  readonly url: string;
  /** whether the API wants a bearer token (the token itself is never written here) */
  readonly tokenRequired: boolean;
  /** where the rows go: the embedded store's data directory, or the server URL */
  readonly store: string;
  readonly startedAt: string;
}

export function agentInfoFile(lab: string): string {
  return path.join(labDir(lab), 'agent.json');
}

/** The running agent of `lab` once its API listens, or undefined (none, one still starting, or a
 * file left by one that died). */
export function readAgentInfo(lab: string): AgentInfo | undefined {
  const info = liveClaim(lab);
  return info && info.url ? info : undefined;
}

/** The file of a live agent, started or starting (its url '' until the API listens). */
function liveClaim(lab: string): AgentInfo | undefined {
  const file = agentInfoFile(lab);
  if (!existsSync(file)) return undefined;
  let info: AgentInfo;
  try {
    info = JSON.parse(readFileSync(file, 'utf8')) as AgentInfo;
  } catch {
    return undefined;
  }
  return info.version === 1 && typeof info.pid === 'number' && processAlive(info.pid) ? info : undefined;
}

/** Written atomically, like the lab's state. */
export function writeAgentInfo(info: AgentInfo): void {
  const file = agentInfoFile(info.lab);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, `${JSON.stringify(info, null, 1)}\n`);
  renameSync(`${file}.tmp`, file);
}

/** Claims the lab for this process before its agent starts: refuses (throws) while another live
 * agent holds it, replaces a file left by a dead one. The claim is exclusive (O_EXCL), so of two
 * agents starting at once one fails. `info` is written again once the API listens. */
export function claimAgentInfo(info: AgentInfo): void {
  const file = agentInfoFile(info.lab);
  const other = liveClaim(info.lab);
  if (other && other.pid !== process.pid) {
    throw new Error(`lab "${info.lab}" has an agent already (pid ${other.pid}${other.url ? `, ${other.url}` : ''}): a ring buffer has one reader`);
  }
  if (!other) rmSync(file, { force: true }); // a dead agent's
  mkdirSync(path.dirname(file), { recursive: true });
  try {
    writeFileSync(file, `${JSON.stringify(info, null, 1)}\n`, { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const winner = liveClaim(info.lab);
    if (winner?.pid === process.pid) return;
    throw new Error(`lab "${info.lab}" has an agent already${winner ? ` (pid ${winner.pid})` : ''}: a ring buffer has one reader`);
  }
}

/** Removes the file if it is this process's (a newer agent's file stays). */
export function removeAgentInfo(lab: string, pid = process.pid): void {
  const file = agentInfoFile(lab);
  try {
    const info = JSON.parse(readFileSync(file, 'utf8')) as AgentInfo;
    if (info.pid !== pid) return;
  } catch { /* unreadable or gone: remove what is there */ }
  rmSync(file, { force: true });
}
