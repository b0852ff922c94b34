// The compiler's id allocator, kept in <data-dir>/ids.json: identities, endpoint and rule ids are
// never reused while it is kept, so a restarted agent gives every pod and rule the ids it had
// (flow records made before the restart still name the right rule), and re-applying the same
// view writes nothing new to the maps. Identities and endpoint ids unused for a grace period are
// forgotten (src/node/compile.ts releaseIds); the file keeps when each began to be unused, so a
// restart neither forgets early nor holds them forever.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { IdAllocator, type IdState } from '../policy/ids.js';

export const IDS_FILE = 'ids.json';

/** The allocator saved in dataDir, or a fresh one (none yet). A damaged file is refused with its
 * path: starting afresh would silently rename every rule of the flows already stored. */
export function loadIds(dataDir: string): IdAllocator {
  const file = path.join(dataDir, IDS_FILE);
  if (!existsSync(file)) return new IdAllocator();
  let state: IdState;
  try {
    state = JSON.parse(readFileSync(file, 'utf8')) as IdState;
  } catch (err) {
    throw new Error(`${file}: not the agent's id state (${(err as Error).message}); remove it to start afresh`);
  }
  const ok = state && typeof state === 'object' && ['identities', 'endpoints', 'rules', 'ruleInfo', 'next'].every((k) => typeof (state as unknown as Record<string, unknown>)[k] === 'object');
  if (!ok) throw new Error(`${file}: not the agent's id state (missing identities/endpoints/rules/ruleInfo/next); remove it to start afresh`);
  // written by agents that release unused ids (ID_GRACE_MS); older files have none
  const u = (state as { unused?: unknown }).unused;
  if (u !== undefined && (typeof u !== 'object' || u === null || !['identities', 'endpoints'].every((k) => typeof (u as Record<string, unknown>)[k] === 'object'))) {
    throw new Error(`${file}: unused: not the agent's id state (want identities and endpoints); remove it to start afresh`);
  }
  return new IdAllocator(state);
}

/** Writes the allocator's state (atomically: a crash mid-write leaves the previous file). */
export function saveIds(dataDir: string, ids: IdAllocator): void {
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, IDS_FILE);
  writeFileSync(`${file}.tmp`, JSON.stringify(ids.toJSON()));
  renameSync(`${file}.tmp`, file);
}
