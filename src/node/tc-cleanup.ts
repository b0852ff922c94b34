// Removing Weir's tc filters from an interface: only filters at Weir's priority/handle whose
// program is Weir's (the pinned program's id, or the same name and tag: Weir's code loaded by an
// earlier agent process, which is what stays attached across restarts), as the reconciler decides
// ownership. Someone else's filter is never touched.
import { TC_HANDLE, TC_PRIORITY, PROGRAMS, type Datapath } from '../datapath/datapath.js';
import { tcDestroyHook, tcDetach } from '../datapath/libbpf.js';
import { readProgTag, readTcHook, type TcFilter } from '../datapath/discovery/iproute.js';

export type ProgKind = 'pod' | 'host';
type Mine = { id: number; name?: string; tag?: string };

/** Weir's programs of a datapath, by kind and hook direction, with their names and tags. */
export async function weirPrograms(dp: Datapath): Promise<Record<ProgKind, Record<'ingress' | 'egress', Mine>>> {
  const one = async (name: Parameters<Datapath['program']>[0]): Promise<Mine> => {
    const prog = dp.program(name);
    return { id: prog.id, ...(await readProgTag(prog.id, { fd: prog.fd, name: prog.name })) };
  };
  return {
    pod: { ingress: await one(PROGRAMS.fromPod), egress: await one(PROGRAMS.toPod) },
    host: { ingress: await one(PROGRAMS.fromHostDev), egress: await one(PROGRAMS.toHostDev) },
  };
}

const isMine = (f: TcFilter, m: Mine): boolean =>
  f.prog !== undefined && (f.prog.id === m.id || (m.tag !== undefined && f.prog.tag === m.tag && f.prog.name === m.name));

/** Detaches Weir's filters of `kinds` from `ifname` (in the current netns); removes the clsact
 * qdisc when nothing is left on it. Returns how many filters it removed. */
export async function detachWeirFilters(ifname: string, progs: Awaited<ReturnType<typeof weirPrograms>>, kinds: readonly ProgKind[]): Promise<number> {
  const hook = await readTcHook(undefined, ifname);
  let removed = 0;
  for (const direction of ['ingress', 'egress'] as const) {
    const at = hook.filters.filter((f) => f.direction === direction && f.pref === TC_PRIORITY && f.handle === TC_HANDLE);
    if (at.length === 0 || !at.every((f) => kinds.some((k) => isMine(f, progs[k][direction])))) continue;
    tcDetach({ ifname, direction, priority: TC_PRIORITY, handle: TC_HANDLE });
    removed++;
  }
  if (removed > 0) {
    const after = await readTcHook(undefined, ifname);
    if (after.clsact && after.filters.length === 0) tcDestroyHook({ ifname });
  }
  return removed;
}
