// The datapath as the agent and the lab use it: Weir's BPF object loaded once and pinned (maps by
// name under a pin root, programs beside them), attached to pod veths, and its maps programmed
// from the policy compiler's output. Later processes re-open the same pins, so enforcement does
// not depend on any process staying alive.
import { existsSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import {
  BpfMap, BpfObject, BpfProgram, ensureBpffs, tcAttach, tcDetach, type TcTarget,
} from './libbpf.js';
import * as abi from './abi.js';
import { PinUpgrade, upgradeLines, type PreviousProgram, type UpgradeSummary } from './pins.js';
import type { CompiledDatapath } from '../policy/compile.js';
import { bpfObjectPath } from '../paths.js';

/** Names come from the ABI module, which the BTF test keeps true to the object. */
export const PROGRAMS = abi.ProgramName;
export const MAPS = abi.MapName;

type ProgramName = (typeof PROGRAMS)[keyof typeof PROGRAMS];
type MapName = (typeof MAPS)[keyof typeof MAPS];

/** tc filter priority/handle Weir uses on every interface, so detach finds exactly ours. */
export const TC_PRIORITY = 1;
export const TC_HANDLE = 0x5745; // "WE"

/** Where a program is pinned under a pin root. */
export const programPin = (root: string, name: string) => path.join(root, `prog_${name}`);
const mapPin = (root: string, name: string) => path.join(root, name);

type SlotKind = abi.SlotKind;
const SLOT_KINDS: readonly SlotKind[] = ['endpoints', 'policy', 'prange', 'ipcache', 'hostif', 'gtier', 'grules', 'gset', 'gport'];
/** weir_grules is an array: its indexes always exist; an all-zero value (rule id 0) is an unused
 * one, and user space reads only the indexes the slot's weir_gtier lists cover. */
const isArrayKind = (kind: SlotKind): boolean => kind === 'grules';
const GRULE_UNUSED = Buffer.alloc(abi.Layouts.grule.size);

/** The map contents `compiled` stands for, per kind, as hex key -> value. */
export function encodeCompiled(compiled: CompiledDatapath): Record<SlotKind, Map<string, Buffer>> {
  const policy = new Map<string, Buffer>();
  const prange = new Map<string, Buffer>();
  for (const e of compiled.policy.values()) {
    const k = { identity: e.identity, peer: e.peer, direction: e.direction, proto: e.proto, port: e.port, portBits: e.portBits };
    const value = abi.encodePolicyValue({ ruleId: e.ruleId, rank: e.rank });
    if (abi.isRangeKey(k)) prange.set(abi.encodePortRangeKey(k).toString('hex'), value);
    else policy.set(abi.encodePolicyKey(k).toString('hex'), value);
  }
  const endpoints = new Map<string, Buffer>();
  for (const [ip, e] of compiled.endpoints) {
    endpoints.set(abi.ipToKey16(ip).toString('hex'), abi.encodeEndpoint({ id: e.id, identity: e.identity, ifindex: e.ifindex, flags: e.flags, selIdentity: e.selIdentity ?? e.identity }));
  }
  const ipcache = new Map<string, Buffer>();
  for (const c of compiled.cidrClasses.values()) {
    const addr = Buffer.alloc(16);
    for (let i = 0; i < 16; i++) addr[i] = Number((c.network128 >> BigInt(8 * (15 - i))) & 0xffn);
    ipcache.set(abi.encodeIpcacheKey(addr, c.prefixLen128).toString('hex'), abi.encodeIpcacheValue(c.classId));
  }
  const hex = (b: Buffer): string => b.toString('hex');
  const member = abi.encodeSetMember();
  const hostif = new Map([...compiled.hostInterfaces].map(([ifindex, h]) => [hex(abi.encodeIndexKey(ifindex)), abi.encodeHostIface(h)]));
  const gtier = new Map([...compiled.globalTiers.values()].map((t) => [hex(abi.encodeGlobalTierKey(t)), abi.encodeGlobalTierValue(t)]));
  const grules = new Map(compiled.globalRules.map((r, i) => [hex(abi.encodeIndexKey(i)), abi.encodeGlobalRule(r)]));
  const gset = new Map([...compiled.globalSets.values()].map((e) => [hex(abi.encodeGlobalSetKey(e)), member]));
  const gport = new Map([...compiled.globalPorts.values()].map((e) => [hex(abi.encodeGlobalPortKey({ set: e.set, port: e.port, portBits: e.bits })), member]));
  return { endpoints, policy, prange, ipcache, hostif, gtier, grules, gset, gport };
}

/**
 * Brings the inactive slot of the policy state (endpoints, policy keys, CIDR classes, host
 * protection) to exactly `compiled`, then flips the generation (its parity is the slot in force),
 * so no packet ever sees a half-applied policy set. Does nothing when the active slot already holds `compiled`.
 * Datapath.apply and the tests' TestDatapath share it.
 */
export function applyCompiled(
  mapOf: (name: string) => BpfMap, generation: () => number, bump: () => number, compiled: CompiledDatapath,
  cache?: SlotCache, barrier?: () => void,
): ApplyStats {
  const want = encodeCompiled(compiled);
  const gen = generation();
  const active = gen & 1;
  const next = active ^ 1;
  // A policy state larger than a map fails here, before anything is written: the slot in force
  // keeps judging and the error names the map (docs/reliability.md: Resource limits).
  for (const kind of SLOT_KINDS) {
    const name = abi.slotMapName(kind, next);
    const capacity = mapOf(name).maxEntries;
    if (want[kind].size > capacity) throw new MapCapacityError(name, kind, want[kind].size, capacity, gen);
  }
  // What this process last wrote to each slot, valid while the generation is the one it left:
  // saves reading both slots back from the kernel (an LPM trie is walked key by key).
  const cached = cache && cache.generation === gen ? cache.slots : [undefined, undefined];
  const read = (kind: SlotKind, slot: number): Map<string, Buffer> => {
    const known = cached[slot]?.[kind];
    if (known) return known;
    const out = new Map<string, Buffer>();
    const map = mapOf(abi.slotMapName(kind, slot));
    if (isArrayKind(kind)) {
      // Only the indexes the slot's lists cover: the datapath reads no other, and walking the
      // whole array (65536 entries) would cost more than the rest of an apply.
      let used = 0;
      for (const v of read('gtier', slot).values()) {
        const t = abi.decodeGlobalTierValue(v);
        used = Math.max(used, t.first + t.count);
      }
      for (let i = 0; i < used; i++) {
        const k = abi.encodeIndexKey(i);
        const v = map.lookup(k);
        if (v && !v.equals(GRULE_UNUSED)) out.set(k.toString('hex'), v);
      }
    } else {
      for (const [k, v] of map.entries()) out.set(k.toString('hex'), v);
    }
    return out;
  };
  const same = (a: Map<string, Buffer>, b: Map<string, Buffer>): boolean =>
    a.size === b.size && [...a].every(([k, v]) => b.get(k)?.equals(v));
  const activeState = Object.fromEntries(SLOT_KINDS.map((kind) => [kind, read(kind, active)])) as Record<SlotKind, Map<string, Buffer>>;
  if (SLOT_KINDS.every((kind) => same(want[kind], activeState[kind]))) {
    if (cache) {
      cache.generation = gen;
      cache.slots[active] = activeState;
    }
    return { endpointsWritten: 0, endpointsDeleted: 0, policyWritten: 0, policyDeleted: 0 };
  }
  // Packets that read an earlier generation may still be judging from the slot about to be
  // rewritten: wait until every program running now has returned (an RCU grace period).
  barrier?.();
  const written = { endpoints: 0, policy: 0 };
  const deleted = { endpoints: 0, policy: 0 };
  // what the inactive slot holds, read before any write (its rules are found through its lists)
  const nextState = Object.fromEntries(SLOT_KINDS.map((kind) => [kind, read(kind, next)])) as Record<SlotKind, Map<string, Buffer>>;
  for (const kind of SLOT_KINDS) {
    const map = mapOf(abi.slotMapName(kind, next));
    const have = nextState[kind];
    const counted = kind === 'endpoints' ? 'endpoints' : 'policy';
    try {
      for (const k of have.keys()) {
        if (want[kind].has(k)) continue;
        // an array's index cannot go: it is zeroed (the datapath never reads past a list's count)
        if (isArrayKind(kind)) map.update(Buffer.from(k, 'hex'), GRULE_UNUSED);
        else if (!map.delete(Buffer.from(k, 'hex'))) continue;
        deleted[counted]++;
      }
      for (const [k, v] of want[kind]) {
        if (have.get(k)?.equals(v)) continue;
        map.update(Buffer.from(k, 'hex'), v);
        written[counted]++;
      }
    } catch (err) {
      // The inactive slot is now half written: forget what this process thought it held, so
      // the next apply reads it back from the kernel instead of leaving stray keys in it. The
      // generation is not bumped: packets are still judged from the slot in force.
      if (cache) cache.slots[next] = undefined;
      const code = (err as { code?: string }).code;
      throw new Error(
        `applying the policy state failed writing ${abi.slotMapName(kind, next)} (${kind}: ${want[kind].size} entries wanted, ` +
          `capacity ${map.maxEntries})${code ? ` with ${code}` : ''}: ${(err as Error).message}; nothing was applied, ` +
          `the policy state of generation ${gen} stays in force`,
        { cause: err },
      );
    }
  }
  const flipped = bump(); // the flip: from here on every packet is judged from the new slot
  if (cache) {
    cache.generation = flipped;
    cache.slots[active] = activeState;
    cache.slots[next] = want;
  }
  return { endpointsWritten: written.endpoints, endpointsDeleted: deleted.endpoints, policyWritten: written.policy, policyDeleted: deleted.policy };
}

/** A policy state that does not fit a map of the datapath: nothing was written, the policy in
 * force is unchanged. Raise the map's max_entries (Datapath.install's maxEntries) or shrink the
 * policy set. */
export class MapCapacityError extends Error {
  constructor(
    readonly map: string,
    readonly kind: SlotKind,
    readonly needed: number,
    readonly capacity: number,
    readonly generation: number,
  ) {
    super(`policy state does not fit: ${map} (${kind}) needs ${needed} entries, it holds at most ${capacity}; ` +
      `nothing was applied, the policy state of generation ${generation} stays in force`);
    this.name = 'MapCapacityError';
  }
}

/** The grace-period barrier behind Datapath.waitForPrograms(), for anything holding the maps. */
export function waitForPrograms(mapOf: (name: string) => BpfMap): void {
  const fd = Buffer.alloc(4);
  fd.writeUInt32LE(mapOf(MAPS.config).fd);
  mapOf(MAPS.sync).update(abi.encodeIndexKey(0), fd);
}

/** What a process last wrote to each slot (hex key -> value per kind), and the generation it left. */
export interface SlotCache {
  generation: number;
  slots: [Record<SlotKind, Map<string, Buffer>> | undefined, Record<SlotKind, Map<string, Buffer>> | undefined];
}

export interface ApplyStats {
  readonly endpointsWritten: number;
  readonly endpointsDeleted: number;
  /** every other kind of policy state: policy keys, CIDR classes, host protection */
  readonly policyWritten: number;
  readonly policyDeleted: number;
}

export class Datapath {
  private closed = false;
  /** slot contents this process wrote; used only while the generation is the one it left */
  private readonly slotCache: SlotCache = { generation: -1, slots: [undefined, undefined] };

  private constructor(
    readonly pinRoot: string,
    private readonly programs: ReadonlyMap<string, BpfProgram>,
    private readonly maps: ReadonlyMap<string, BpfMap>,
    private readonly object?: BpfObject,
    /** older pins an earlier agent left (install only; src/datapath/pins.ts) */
    private readonly upgrade?: PinUpgrade,
  ) {}

  /** Loads bpf/build/weir.o, pins its maps and programs under pinRoot. Maps already pinned there
   * (same name and layout) are reused, so re-installing keeps conntrack and policy. */
  static async install(pinRoot: string, opts: { maxEntries?: Record<string, number> } = {}): Promise<Datapath> {
    ensureBpffs(pinRoot);
    // before the load: which pins an earlier agent left (reused, older layouts, unknown)
    const upgrade = PinUpgrade.scan(pinRoot);
    const obj = BpfObject.open(bpfObjectPath('weir'), { pinRoot, ...(opts.maxEntries ? { maxEntries: opts.maxEntries } : {}) });
    try {
      await obj.load();
    } catch (err) {
      obj.close();
      throw err;
    }
    const programs = new Map<string, BpfProgram>();
    const maps = new Map<string, BpfMap>();
    for (const name of Object.values(PROGRAMS)) {
      const prog = obj.program(name);
      const pin = programPin(pinRoot, name);
      if (existsSync(pin)) rmSync(pin);
      prog.pin(pin);
      programs.set(name, prog);
    }
    for (const name of Object.values(MAPS)) maps.set(name, obj.map(name));
    try {
      // conntrack of a convertible older layout, copied before any new program runs
      upgrade.migrate((name) => obj.map(name));
    } catch (err) {
      obj.close();
      throw err;
    }
    return new Datapath(pinRoot, programs, maps, obj, upgrade);
  }

  /** What install() found under the pin root and did or will do with it; undefined for open(). */
  upgradeSummary(): UpgradeSummary | undefined {
    return this.upgrade?.summary();
  }

  /** Programs the previous agent had pinned here (install only): the reconciler replaces them
   * where they sit at Weir's tc priority/handle instead of refusing them as someone else's. */
  previousPrograms(): readonly PreviousProgram[] {
    return this.upgrade?.previousPrograms ?? [];
  }

  /** Call once the new programs are attached and the first policy is applied: migrates the
   * conntrack entries the old programs made meanwhile, drains the old event ring (counted) and
   * removes the older pins. Until then the old programs keep enforcing with the old maps.
   * Idempotent; undefined for open(). `log` gets one line per older or unknown pin, once. */
  finishUpgrade(log?: (line: string) => void): UpgradeSummary | undefined {
    this.check();
    if (!this.upgrade) return undefined;
    const first = !this.upgrade.summary().finished;
    const s = this.upgrade.finish((name) => this.map(name as MapName));
    if (first && log) for (const line of upgradeLines(s)) log(`pins: ${line}`);
    return s;
  }

  static isInstalled(pinRoot: string): boolean {
    return existsSync(programPin(pinRoot, PROGRAMS.fromPod)) && existsSync(mapPin(pinRoot, MAPS.endpoints));
  }

  /** Re-opens an installed datapath from its pins. */
  static open(pinRoot: string): Datapath {
    if (!Datapath.isInstalled(pinRoot)) throw new Error(`no Weir datapath is pinned under ${pinRoot}`);
    const programs = new Map<string, BpfProgram>();
    const maps = new Map<string, BpfMap>();
    for (const name of Object.values(PROGRAMS)) programs.set(name, BpfProgram.fromPin(programPin(pinRoot, name)));
    for (const name of Object.values(MAPS)) maps.set(name, BpfMap.fromPin(mapPin(pinRoot, name)));
    return new Datapath(pinRoot, programs, maps);
  }

  /** Removes every pin under pinRoot and the directory. Programs still attached keep running
   * until their interfaces (or qdiscs) go; safe when nothing is there. */
  static uninstall(pinRoot: string): void {
    if (!existsSync(pinRoot)) return;
    for (const f of readdirSync(pinRoot)) rmSync(path.join(pinRoot, f), { force: true });
    rmdirSync(pinRoot);
    const parent = path.dirname(pinRoot);
    try { if (readdirSync(parent).length === 0) rmdirSync(parent); } catch { /* shared parent in use */ }
  }

  program(name: ProgramName): BpfProgram {
    this.check();
    return this.programs.get(name)!;
  }

  map(name: MapName): BpfMap {
    this.check();
    return this.maps.get(name)!;
  }

  /** Pod veth (node side): tc ingress carries what the pod sends (its egress), tc egress what it
   * receives (its ingress). */
  attachPod(target: TcTarget): void {
    tcAttach({ ...target, direction: 'ingress', program: this.program(PROGRAMS.fromPod), priority: TC_PRIORITY, handle: TC_HANDLE });
    tcAttach({ ...target, direction: 'egress', program: this.program(PROGRAMS.toPod), priority: TC_PRIORITY, handle: TC_HANDLE });
  }

  detachPod(target: TcTarget): void {
    tcDetach({ ...target, direction: 'ingress', priority: TC_PRIORITY, handle: TC_HANDLE });
    tcDetach({ ...target, direction: 'egress', priority: TC_PRIORITY, handle: TC_HANDLE });
  }

  attachHostDevice(target: TcTarget): void {
    tcAttach({ ...target, direction: 'ingress', program: this.program(PROGRAMS.fromHostDev), priority: TC_PRIORITY, handle: TC_HANDLE });
    tcAttach({ ...target, direction: 'egress', program: this.program(PROGRAMS.toHostDev), priority: TC_PRIORITY, handle: TC_HANDLE });
  }

  /**
   * Programs the policy state to exactly `compiled`, atomically: the endpoints, policy keys, CIDR
   * classes and host-protection maps live in two slots and the programs judge each packet from
   * the slot of the generation they read (its parity). After a grace-period barrier (no program still uses the
   * inactive slot), the inactive slot is brought to `compiled` completely, then one write of the
   * generation flips every map at once; that bump also invalidates every deny verdict cached
   * under the old generation (docs/datapath.md: atomic updates). Nothing is written when the
   * active slot already holds `compiled`.
   */
  apply(compiled: CompiledDatapath): ApplyStats {
    return applyCompiled((name) => this.map(name as MapName), () => this.generation(), () => this.bumpGeneration(), compiled, this.slotCache, () => this.waitForPrograms());
  }

  /** Returns once every Weir program that was running when it was called has returned: updating
   * a map-in-map element makes the kernel wait for an RCU grace period (weir_sync_v1). */
  waitForPrograms(): void {
    waitForPrograms((name) => this.map(name as MapName));
  }

  /** The map of one kind of policy state in one slot. */
  slotMap(kind: SlotKind, slot: number): BpfMap {
    return this.map(abi.slotMapName(kind, slot) as MapName);
  }

  /** The policy generation the datapath judges under. */
  generation(): number {
    const raw = this.map(MAPS.config).lookup(abi.encodeIndexKey(0));
    return raw ? abi.decodeConfig(raw).generation : 0;
  }

  /** Read-modify-write of weir_config_v1[0].generation: the generation lives in the map, so a
   * restarted agent (or another process on the same pins) continues from it. */
  bumpGeneration(): number {
    const next = abi.nextGeneration(this.generation());
    this.map(MAPS.config).update(abi.encodeIndexKey(0), abi.encodeConfig({ generation: next }));
    return next;
  }

  /** Runs the conntrack collector once: expired flows get their FLOW_END record and go.
   * Returns how many entries it removed. */
  collectConntrack(): number {
    return this.program(PROGRAMS.ctGc).testRun({ data: Buffer.alloc(64) }).retval;
  }

  /** Per-reason packet/byte counters, summed over CPUs. */
  reasonStats(): Map<string, { packets: bigint; bytes: bigint }> {
    const out = new Map<string, { packets: bigint; bytes: bigint }>();
    const map = this.map(MAPS.stats);
    for (const [reason, name] of Object.entries(abi.REASON_NAMES)) {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(Number(reason));
      const raw = map.lookup(key);
      if (!raw) continue;
      out.set(name, abi.sumPerCpuStats(raw));
    }
    return out;
  }

  /** Counters that are not per packet (events sent/lost, conntrack), summed over CPUs. */
  counters(): Map<string, bigint> {
    const out = new Map<string, bigint>();
    const map = this.map(MAPS.counters);
    for (const [idx, name] of Object.entries(abi.COUNTER_NAMES)) {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(Number(idx));
      const raw = map.lookup(key);
      if (raw) out.set(name, abi.sumPerCpuU64(raw));
    }
    return out;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.object) {
      this.object.close(); // owns its programs and maps
      return;
    }
    for (const p of this.programs.values()) p.close();
    for (const m of this.maps.values()) m.close();
  }

  private check(): void {
    if (this.closed) throw new Error('datapath is closed');
  }
}
