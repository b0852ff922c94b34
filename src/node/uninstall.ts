// `weir node uninstall`: removes Weir from a node for good: Weir's tc filters from every interface
// of the node's network namespace (pod veths and host devices; only filters whose program is
// Weir's, see tc-cleanup.ts), then the pins (programs and maps: policy, conntrack). Stopping the
// agent never does this: a stopped or restarting agent leaves enforcement in place.
import { existsSync } from 'node:fs';
import { Datapath } from '../datapath/datapath.js';
import { readLinks } from '../datapath/discovery/iproute.js';
import { requirePrivileges } from '../datapath/privileges.js';
import { detachWeirFilters, weirPrograms } from './tc-cleanup.js';

export interface UninstallResult {
  /** interfaces Weir's filters were removed from */
  readonly detached: readonly string[];
  readonly pinsRemoved: boolean;
}

export async function uninstallNode(pinRoot: string, log: (line: string) => void = () => undefined): Promise<UninstallResult> {
  requirePrivileges('weir node uninstall');
  if (!pinRoot.startsWith('/sys/fs/bpf/')) throw new Error(`--pin-root: ${JSON.stringify(pinRoot)} is not under /sys/fs/bpf/`);
  const detached: string[] = [];
  if (Datapath.isInstalled(pinRoot)) {
    const dp = Datapath.open(pinRoot);
    try {
      const progs = await weirPrograms(dp);
      for (const link of (await readLinks(undefined)).values()) {
        try {
          if (await detachWeirFilters(link.ifname, progs, ['pod', 'host']) > 0) detached.push(link.ifname);
        } catch (err) {
          log(`${link.ifname}: ${(err as Error).message}`); // gone meanwhile, or not ours to touch
        }
      }
    } finally {
      dp.close();
    }
  } else if (existsSync(pinRoot)) {
    log(`no complete Weir datapath is pinned under ${pinRoot}: removing what is there, detaching nothing`);
  }
  const had = existsSync(pinRoot);
  Datapath.uninstall(pinRoot);
  return { detached, pinsRemoved: had };
}
