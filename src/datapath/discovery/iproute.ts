// The node's network as iproute2 prints it in JSON (`ip -j`, `bridge -j`, `tc -j`): links, host
// routes, neighbours, the bridge FDB, the netns ids and a pod netns's addresses. Why iproute2 and
// not netlink: Node has no well-kept netlink library (the npm ones are small and unmaintained),
// `-j` output is iproute2's stable machine interface (Cilium's and Calico's tests read it too), and
// every dump here is one short command per resync, not a per-packet path. Only the fields
// discovery needs are kept, each checked, so a malformed dump fails loudly with the command named.
import { readFileSync } from 'node:fs';
import { run } from '../../lab/exec.js';
import { canonicalIp } from '../abi.js';

/** A network namespace by its name under /run/netns (what `ip -n` takes); undefined = this process's. */
export type NetnsName = string | undefined;

const NETNS_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function checkNetnsName(netns: NetnsName, field = 'netns'): void {
  if (netns !== undefined && !NETNS_NAME.test(netns)) {
    throw new TypeError(`${field}: ${JSON.stringify(netns)} is not a network namespace name (a name under /run/netns)`);
  }
}

/** The path libbpf's tc calls take for a netns name (undefined: the current netns). */
export const netnsPath = (netns: NetnsName): string | undefined => (netns === undefined ? undefined : `/run/netns/${netns}`);

export interface LinkInfo {
  readonly ifindex: number;
  readonly ifname: string;
  /** linkinfo.info_kind: 'veth', 'bridge', 'dummy'...; '' for a device without one (lo, a NIC) */
  readonly kind: string;
  /** the bridge (or bond) this link is enslaved to */
  readonly master?: string;
  readonly address?: string;
  /** a veth's peer: its ifindex (in the peer's netns) and that netns's id as this netns numbers it */
  readonly peerIfindex?: number;
  readonly peerNetnsId?: number;
  readonly up: boolean;
}

export interface HostRoute {
  /** canonical address (IPv4 dotted, IPv6 compressed lower case) */
  readonly ip: string;
  readonly dev: string;
}

export interface Neighbour {
  readonly ip: string;
  readonly dev: string;
  readonly lladdr: string;
  readonly state: readonly string[];
}

export interface FdbEntry {
  readonly mac: string;
  /** the bridge port */
  readonly ifname: string;
  readonly master?: string;
  readonly state: string;
  readonly flags: readonly string[];
}

/** Everything discovery reads, taken at one moment. */
export interface NodeSnapshot {
  readonly links: ReadonlyMap<number, LinkInfo>;
  readonly hostRoutes: readonly HostRoute[];
  readonly neighbours: readonly Neighbour[];
  readonly fdb: readonly FdbEntry[];
  /** nsid (as the node numbers it) -> netns name, for the namespaces named under /run/netns */
  readonly netnsIds: ReadonlyMap<number, string>;
}

function nsArgs(netns: NetnsName): string[] {
  return netns === undefined ? [] : ['-n', netns];
}

async function json(file: string, args: readonly string[], netns: NetnsName): Promise<unknown[]> {
  const argv = [...nsArgs(netns), '-j', ...args];
  const { stdout } = await run(file, argv);
  const text = stdout.trim();
  if (text === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${file} ${argv.join(' ')}: output is not JSON: ${text.slice(0, 200)}`);
  }
  if (!Array.isArray(parsed)) throw new Error(`${file} ${argv.join(' ')}: expected a JSON array, got ${typeof parsed}`);
  return parsed;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (o: Obj, k: string): string | undefined => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
const num = (o: Obj, k: string): number | undefined => (Number.isInteger(o[k]) ? (o[k] as number) : undefined);
const strs = (o: Obj, k: string): string[] => (Array.isArray(o[k]) ? (o[k] as unknown[]).filter((x): x is string => typeof x === 'string') : []);

export function parseLinks(rows: readonly unknown[]): Map<number, LinkInfo> {
  const out = new Map<number, LinkInfo>();
  for (const r of rows) {
    if (!isObj(r)) continue;
    const ifindex = num(r, 'ifindex');
    const ifname = str(r, 'ifname');
    if (ifindex === undefined || ifname === undefined) throw new Error(`ip link: an entry without ifindex/ifname: ${JSON.stringify(r).slice(0, 200)}`);
    const info = isObj(r.linkinfo) ? r.linkinfo : {};
    const kind = str(info, 'info_kind') ?? '';
    const link: { -readonly [K in keyof LinkInfo]: LinkInfo[K] } = { ifindex, ifname, kind, up: strs(r, 'flags').includes('UP') };
    const master = str(r, 'master');
    if (master !== undefined) link.master = master;
    const address = str(r, 'address');
    if (address !== undefined) link.address = address.toLowerCase();
    // A veth whose peer is in another netns shows the peer as link_index + link_netnsid; one whose
    // peer is in this netns shows it as "link" (a name) instead, so it has no peer netns.
    const peerNetnsId = num(r, 'link_netnsid');
    const peerIfindex = num(r, 'link_index');
    if (kind === 'veth' && peerNetnsId !== undefined && peerIfindex !== undefined) {
      link.peerNetnsId = peerNetnsId;
      link.peerIfindex = peerIfindex;
    }
    out.set(ifindex, link);
  }
  return out;
}

/** Host routes only: a /32 or /128, unicast, straight onto a device (no gateway). */
export function parseHostRoutes(rows: readonly unknown[], family: 4 | 6): HostRoute[] {
  const out: HostRoute[] = [];
  for (const r of rows) {
    if (!isObj(r)) continue;
    const dst = str(r, 'dst');
    const dev = str(r, 'dev');
    if (!dst || !dev || r.gateway !== undefined || r.via !== undefined) continue;
    const type = str(r, 'type');
    if (type !== undefined && type !== 'unicast') continue;
    const [addr, len] = dst.split('/');
    const full = family === 4 ? '32' : '128';
    if (len !== undefined && len !== full) continue;
    // `ip route` prints a host route without its length; anything else is a prefix ("default" too)
    if (len === undefined && addr === 'default') continue;
    let ip: string;
    try {
      ip = canonicalIp(addr!);
    } catch {
      continue;
    }
    out.push({ ip, dev });
  }
  return out;
}

export function parseNeighbours(rows: readonly unknown[]): Neighbour[] {
  const out: Neighbour[] = [];
  for (const r of rows) {
    if (!isObj(r)) continue;
    const dst = str(r, 'dst');
    const dev = str(r, 'dev');
    const lladdr = str(r, 'lladdr');
    const state = strs(r, 'state');
    // no lladdr: INCOMPLETE/FAILED, it says nothing about where the address lives
    if (!dst || !dev || !lladdr || state.includes('FAILED') || state.includes('INCOMPLETE')) continue;
    let ip: string;
    try {
      ip = canonicalIp(dst);
    } catch {
      continue;
    }
    out.push({ ip, dev, lladdr: lladdr.toLowerCase(), state });
  }
  return out;
}

export function parseFdb(rows: readonly unknown[]): FdbEntry[] {
  const out: FdbEntry[] = [];
  for (const r of rows) {
    if (!isObj(r)) continue;
    const mac = str(r, 'mac');
    const ifname = str(r, 'ifname');
    if (!mac || !ifname) continue;
    const e: { -readonly [K in keyof FdbEntry]: FdbEntry[K] } = { mac: mac.toLowerCase(), ifname, state: str(r, 'state') ?? '', flags: strs(r, 'flags') };
    const master = str(r, 'master');
    if (master !== undefined) e.master = master;
    out.push(e);
  }
  return out;
}

export function parseNetnsIds(rows: readonly unknown[]): Map<number, string> {
  const out = new Map<number, string>();
  for (const r of rows) {
    if (!isObj(r)) continue;
    const nsid = num(r, 'nsid');
    const name = str(r, 'name');
    if (nsid !== undefined && name) out.set(nsid, name);
  }
  return out;
}

/** Reads the node's links, host routes (main table), neighbours, the FDB of `bridges` (all of
 * them for undefined; none for an empty list) and netns ids. */
export async function readSnapshot(netns: NetnsName, opts: { bridges?: readonly string[] | undefined; neighbours: boolean }): Promise<NodeSnapshot> {
  const [links, r4, r6, neigh, ids] = await Promise.all([
    json('ip', ['-d', 'link', 'show'], netns),
    json('ip', ['-4', 'route', 'show', 'table', 'main'], netns),
    json('ip', ['-6', 'route', 'show', 'table', 'main'], netns),
    opts.neighbours ? json('ip', ['neigh', 'show'], netns) : Promise.resolve([]),
    json('ip', ['netns', 'list-id'], netns),
  ]);
  const linkMap = parseLinks(links);
  const bridgeNames = opts.bridges ?? [...linkMap.values()].filter((l) => l.kind === 'bridge').map((l) => l.ifname);
  const present = new Set([...linkMap.values()].map((l) => l.ifname));
  const fdbRows = await Promise.all(bridgeNames.filter((b) => present.has(b)).map((b) => json('bridge', ['fdb', 'show', 'br', b], netns)));
  return {
    links: linkMap,
    hostRoutes: [...parseHostRoutes(r4, 4), ...parseHostRoutes(r6, 6)],
    neighbours: parseNeighbours(neigh),
    fdb: fdbRows.flatMap(parseFdb),
    netnsIds: parseNetnsIds(ids),
  };
}

/** The addresses (canonical) of each interface of a netns, by ifindex. */
export async function readAddresses(netns: string): Promise<Map<number, string[]>> {
  const rows = await json('ip', ['addr', 'show'], netns);
  const out = new Map<number, string[]>();
  for (const r of rows) {
    if (!isObj(r)) continue;
    const ifindex = num(r, 'ifindex');
    if (ifindex === undefined || !Array.isArray(r.addr_info)) continue;
    const addrs: string[] = [];
    for (const a of r.addr_info) {
      if (!isObj(a)) continue;
      const local = str(a, 'local');
      if (!local) continue;
      try {
        addrs.push(canonicalIp(local));
      } catch { /* not an IP (cannot happen for inet/inet6) */ }
    }
    out.set(ifindex, addrs);
  }
  return out;
}

export interface TcFilter {
  readonly direction: 'ingress' | 'egress';
  readonly pref: number;
  readonly handle: number;
  /** the BPF program of a bpf filter: its id, name and tag (a hash of its instructions, the same
   * for the same code whichever process loaded it) */
  readonly prog?: { readonly id: number; readonly name: string; readonly tag: string };
}

/** Whether a clsact qdisc sits on `ifname`, and the filters on its two hooks. */
export async function readTcHook(netns: NetnsName, ifname: string): Promise<{ clsact: boolean; filters: TcFilter[] }> {
  const qdiscs = await json('tc', ['qdisc', 'show', 'dev', ifname], netns);
  const clsact = qdiscs.some((q) => isObj(q) && q.kind === 'clsact');
  if (!clsact) return { clsact, filters: [] };
  const filters: TcFilter[] = [];
  for (const direction of ['ingress', 'egress'] as const) {
    for (const f of await json('tc', ['filter', 'show', 'dev', ifname, direction], netns)) {
      // tc lists each filter twice: a chain/priority line without options, then the filter itself
      if (!isObj(f) || !isObj(f.options)) continue;
      const pref = num(f, 'pref') ?? 0;
      const handle = Number.parseInt(str(f.options, 'handle') ?? '0', 16);
      const prog = isObj(f.options.prog) ? f.options.prog : undefined;
      const id = prog ? num(prog, 'id') : undefined;
      filters.push({
        direction, pref, handle,
        ...(prog && id !== undefined ? { prog: { id, name: str(prog, 'name') ?? '', tag: str(prog, 'tag') ?? '' } } : {}),
      });
    }
  }
  return { clsact, filters };
}

/** The kernel keeps BPF_OBJ_NAME_LEN (16) bytes of a program's name, NUL included: tc shows that
 * much ("weir_from_host_dev" -> "weir_from_host_"), bpftool the full name from BTF. */
const KERNEL_PROG_NAME_MAX = 15;

/** A program's name (as the kernel and tc show it) and tag, for recognising Weir's code loaded by
 * another process: by id through bpftool, else, given the program's fd in this process, from
 * /proc/self/fdinfo (no bpftool needed: the agent's image has none). */
export async function readProgTag(id: number, own?: { fd: number; name: string }): Promise<{ name: string; tag: string } | undefined> {
  try {
    const { stdout } = await run('bpftool', ['-j', 'prog', 'show', 'id', String(id)]);
    const p = JSON.parse(stdout) as unknown;
    if (!isObj(p)) return undefined;
    const name = str(p, 'name');
    const tag = str(p, 'tag');
    if (name && tag) return { name: name.slice(0, KERNEL_PROG_NAME_MAX), tag };
  } catch { /* no bpftool */ }
  if (!own) return undefined; // programs are recognised by id only
  try {
    const tag = /^prog_tag:\s*([0-9a-f]{16})$/m.exec(readFileSync(`/proc/self/fdinfo/${own.fd}`, 'utf8'))?.[1];
    return tag ? { name: own.name.slice(0, KERNEL_PROG_NAME_MAX), tag } : undefined;
  } catch {
    return undefined;
  }
}

/** The node's links alone (for bookkeeping outside a discovery pass). */
export async function readLinks(netns: NetnsName): Promise<Map<number, LinkInfo>> {
  return parseLinks(await json('ip', ['-d', 'link', 'show'], netns));
}
