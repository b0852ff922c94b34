// Pin roots of tests under /sys/fs/bpf: `<base>-<pid>-<n>`, one per use. A test file's finally
// removes its own; a file the runner killed on timeout runs no finally, so each new one first
// removes the roots of the same base whose process is gone.
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { processAlive } from '../../src/process.js';

const BPFFS = '/sys/fs/bpf';
let seq = 0;

/** Removes `<base>-<pid>[-<n>]` roots of processes that no longer run. */
export function removeStalePinRoots(base: string): void {
  let names: string[];
  try {
    names = readdirSync(BPFFS);
  } catch {
    return; // no bpffs: the test will say so when it needs one
  }
  const pattern = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-(\\d+)(?:-\\d+)?$`);
  for (const name of names) {
    const m = pattern.exec(name);
    if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) rmSync(path.join(BPFFS, name), { recursive: true, force: true });
  }
}

/** A pin root of this process not used before, after removing dead processes' roots of `base`. */
export function testPinRoot(base: string): string {
  removeStalePinRoots(base);
  return path.join(BPFFS, `${base}-${process.pid}-${++seq}`);
}
