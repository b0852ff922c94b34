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

const programPin = (root: string, name: string) => path.join(root, `prog_${name}`);
const mapPin = (root: string, name: string) => path.join(root, name);

export interface ApplyStats {
  readonly endpointsWritten: number;
  readonly endpointsDeleted: number;
  readonly policyWritten: number;
  readonly policyDeleted: number;
}

export class Datapath {
  private closed = false;

  private constructor(
    readonly pinRoot: string,
    private readonly programs: ReadonlyMap<string, BpfProgram>,
    private readonly maps: ReadonlyMap<string, BpfMap>,
    private readonly object?: BpfObject,
  ) {}

  /** Loads bpf/build/weir.o, pins its maps and programs under pinRoot. Maps already pinned there
   * (same name and layout) are reused, so re-installing keeps conntrack and policy. */
  static async install(pinRoot: string, opts: { maxEntries?: Record<string, number> } = {}): Promise<Datapath> {
    ensureBpffs(pinRoot);
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
    return new Datapath(pinRoot, programs, maps, obj);
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
   * Programs the endpoint and policy maps to exactly `compiled`. Order matters for packets in
   * flight: new and changed policy entries first (an endpoint never points at rules that are not
   * there yet), then endpoints, then stale endpoints, then stale policy entries. When anything
   * changed, the policy generation is bumped last, which invalidates every deny verdict the
   * datapath cached under the old maps (docs/datapath.md: the deny cache).
   */
  apply(compiled: CompiledDatapath): ApplyStats {
    const epMap = this.map(MAPS.endpoints);
    const polMap = this.map(MAPS.policy);

    const wantPolicy = new Map<string, Buffer>();
    for (const e of compiled.policy.values()) {
      const key = abi.encodePolicyKey({ identity: e.identity, peerIdentity: e.peerIdentity, port: e.port, proto: e.proto, direction: e.direction });
      wantPolicy.set(key.toString('hex'), abi.encodePolicyValue({ ruleId: e.ruleId, flags: 0 }));
    }
    const wantEndpoints = new Map<string, Buffer>();
    for (const [ip, e] of compiled.endpoints) {
      wantEndpoints.set(abi.ipToKey16(ip).toString('hex'), abi.encodeEndpoint({ id: e.id, identity: e.identity, ifindex: e.ifindex, flags: e.flags }));
    }

    const havePolicy = new Map<string, Buffer>();
    for (const [k, v] of polMap.entries()) havePolicy.set(k.toString('hex'), v);
    const haveEndpoints = new Map<string, Buffer>();
    for (const [k, v] of epMap.entries()) haveEndpoints.set(k.toString('hex'), v);

    const write = (map: BpfMap, want: Map<string, Buffer>, have: Map<string, Buffer>): number => {
      let n = 0;
      for (const [k, v] of want) {
        if (have.get(k)?.equals(v)) continue;
        map.update(Buffer.from(k, 'hex'), v);
        n++;
      }
      return n;
    };
    const prune = (map: BpfMap, want: Map<string, Buffer>, have: Map<string, Buffer>): number => {
      let n = 0;
      for (const k of have.keys()) if (!want.has(k) && map.delete(Buffer.from(k, 'hex'))) n++;
      return n;
    };
    const policyWritten = write(polMap, wantPolicy, havePolicy);
    const endpointsWritten = write(epMap, wantEndpoints, haveEndpoints);
    const endpointsDeleted = prune(epMap, wantEndpoints, haveEndpoints);
    const policyDeleted = prune(polMap, wantPolicy, havePolicy);
    if (policyWritten + endpointsWritten + endpointsDeleted + policyDeleted > 0) this.bumpGeneration();
    return { endpointsWritten, endpointsDeleted, policyWritten, policyDeleted };
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
