// The lab's state between CLI invocations: what was applied, where each pod lives and the ids the
// datapath uses. Kept under /run (tmpfs), like the network namespaces it describes: both are gone
// after a reboot, so a stale state file can never outlive its lab.
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { KubeObject } from '../datastore/objects.js';
import type { IdState } from '../policy/ids.js';
import type { FailsafeSettings } from '../policy/failsafe.js';

export const LAB_RUN_DIR = process.env.WEIR_LAB_DIR ?? '/run/weir/lab';
export const LAB_PIN_DIR = '/sys/fs/bpf/weir';
const LAB_NAME = /^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$/;

export interface LabPodState {
  readonly ipv4?: string;
  readonly ipv6?: string;
  readonly netns: string;
  readonly hostIfname: string;
  readonly hostIfindex: number;
  readonly agentPid: number;
  readonly socketPath: string;
  /** ports the pod's servers listen on, "80/TCP" */
  readonly ports: readonly string[];
}

/** A host process of the lab: "host" (in the node netns) or "world" (in the world netns). */
export interface LabHostState {
  readonly netns: string;
  readonly ipv4: string;
  readonly ipv6: string;
  readonly agentPid: number;
  readonly socketPath: string;
  /** ports it serves, "22/TCP" (the Node object's lab.weir.dev/ports) */
  readonly ports: readonly string[];
}

export interface LabState {
  readonly version: 1;
  readonly name: string;
  readonly createdAt: string;
  readonly pinRoot: string;
  readonly nodeNetns: string;
  objects: KubeObject[];
  pods: Record<string, LabPodState>;
  ids: IdState;
  /** the node's own processes (absent in a state written before the lab had an uplink) */
  host?: LabHostState;
  /** the outside client behind the node's uplink */
  world?: LabHostState;
  /** the node's uplink, carrying Weir's host-device programs (its ifindex in the node netns);
   * absent in a state written before host protection */
  uplink?: LabUplinkState;
  /** one automatic HostEndpoint for the node ("*", the Node's labels and addresses) */
  autoHostEndpoints?: boolean;
  /** failsafe ports of the node's host endpoints (absent: the defaults) */
  failsafes?: FailsafeSettings;
}

export interface LabUplinkState {
  readonly ifname: string;
  readonly ifindex: number;
}

export function checkLabName(name: string): void {
  if (!LAB_NAME.test(name)) {
    throw new Error(`lab name "${name}": must be 1-20 characters [a-z0-9-], starting and ending with a letter or digit`);
  }
}

export function labDir(name: string): string {
  return path.join(LAB_RUN_DIR, name);
}

export function labPinRoot(name: string): string {
  return path.join(LAB_PIN_DIR, `lab-${name}`);
}

function stateFile(name: string): string {
  return path.join(labDir(name), 'state.json');
}

export function labExists(name: string): boolean {
  return existsSync(stateFile(name));
}

export function readLabState(name: string): LabState {
  const file = stateFile(name);
  if (!existsSync(file)) throw new Error(`lab "${name}" is not up (start it with: weir lab up -f FILE)`);
  return JSON.parse(readFileSync(file, 'utf8')) as LabState;
}

/** Written atomically (rename), so a crash mid-write never leaves a torn file. */
export function writeLabState(state: LabState): void {
  mkdirSync(labDir(state.name), { recursive: true });
  const file = stateFile(state.name);
  writeFileSync(`${file}.tmp`, JSON.stringify(state, null, 1));
  renameSync(`${file}.tmp`, file);
}

export function removeLabDir(name: string): void {
  rmSync(labDir(name), { recursive: true, force: true });
}
