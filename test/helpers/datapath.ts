// Drives bpf/build/weir.o through BPF_PROG_TEST_RUN: each TestDatapath is its own loaded object
// with its own maps (pinned by name under a unique pin root, removed on close), so test files can
// run concurrently. Map seeding reads like policy: dp.pod('10.0.0.1', { identity: WEB, isolate:
// 'ingress' }); dp.allowIngress(WEB, CLIENT, tcp(80), 7).
import { rmSync, readdirSync, readFileSync, rmdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { BpfObject, BpfMap, RingBufferReader, ensureBpffs, numPossibleCpus } from '../../src/datapath/libbpf.js';
import * as abi from '../../src/datapath/abi.js';
import { bpfObjectPath } from '../../src/paths.js';
import { applyCompiled, type ApplyStats, type SlotCache } from '../../src/datapath/datapath.js';
import type { CompiledDatapath } from '../../src/policy/compile.js';
import { testPinRoot } from './pins.js';

export interface PortRule {
  proto: number;
  port: number;
}
/** A rule port: tcp(80); tcp() is every TCP port. */
export const tcp = (port = 0): PortRule => ({ proto: abi.Proto.TCP, port });
export const udp = (port = 0): PortRule => ({ proto: abi.Proto.UDP, port });
export const sctp = (port = 0): PortRule => ({ proto: abi.Proto.SCTP, port });
/** A rule without ports: every protocol, every port. */
export const anyPort: PortRule = { proto: abi.Proto.ANY, port: 0 };

export type ProgramKey = keyof typeof abi.ProgramName;

export interface PodSpec {
  id: number;
  identity: number;
  /** host-side veth; 0 (default) = no interface check. BPF_PROG_TEST_RUN runs on lo (ifindex 1). */
  ifindex?: number;
  isolate?: 'ingress' | 'egress' | 'both';
  audit?: boolean;
  /** a local pod (default) or a remote endpoint */
  local?: boolean;
}


const SLOT_KINDS: readonly abi.SlotKind[] = ['endpoints', 'policy', 'prange', 'ipcache', 'hostif', 'gtier', 'grules', 'gset', 'gport'];
const SLOT_MAP_NAMES = new Set(SLOT_KINDS.flatMap((k) => Array.from({ length: abi.SLOTS }, (_, slot) => abi.slotMapName(k, slot))));

/** Throws (never skips) when the process cannot use BPF, with the reason in the message. */
export function requireBpf(): void {
  if (typeof process.geteuid === 'function' && process.geteuid() !== 0) {
    throw new Error(
      'datapath tests load BPF programs and need root (CAP_BPF, CAP_NET_ADMIN): run `sudo npm test`. ' +
        'They fail rather than skip so that a green run always means the datapath was exercised.',
    );
  }
}

export class TestDatapath {
  readonly records: abi.WeirRecord[] = [];
  private reader: RingBufferReader | undefined;
  private closed = false;
  /** Rule-summary flags (EndpointFlag.*_RULES_*) per identity, as src/policy/compile.ts derives
   * them from the policy keys, and the endpoints seeded so far, so seeding a rule after its pods
   * updates their flags like a recompile would. */
  private readonly ruleFlags = new Map<number, number>();
  private readonly endpoints = new Map<string, abi.Endpoint>();
  /** What apply() last wrote to each slot (applyCompiled's cache, as Datapath keeps one): without
   * it every apply reads both slots back, weir_grules (an array of 65536 rules) included. Any
   * write that does not go through apply() drops it (see invalidate()). */
  private readonly slotCache: SlotCache = { generation: -1, slots: [undefined, undefined] };

  private constructor(
    readonly obj: BpfObject,
    readonly pinRoot: string,
  ) {}

  static async load(opts: { maxEntries?: Record<string, number> } = {}): Promise<TestDatapath> {
    requireBpf();
    const objPath = bpfObjectPath('weir');
    if (!existsSync(objPath)) throw new Error(`${objPath} is missing: build it first (bash scripts/build.sh)`);
    const pinRoot = testPinRoot('weir-test-dp');
    ensureBpffs(pinRoot);
    let obj: BpfObject | undefined;
    try {
      obj = BpfObject.open(objPath, {
        pinRoot,
        ...(opts.maxEntries ? { maxEntries: opts.maxEntries } : {}),
      });
      await obj.load();
      const dp = new TestDatapath(obj, pinRoot);
      dp.reader = new RingBufferReader(obj.map(abi.MapName.events), (batch) => {
        for (const rec of batch) dp.records.push(abi.decodeRecord(rec));
      });
      // tests drain explicitly; the reader must not keep the test process alive
      dp.reader.unref();
      return dp;
    } catch (err) {
      obj?.close();
      removePinRoot(pinRoot);
      const log = (err as { log?: string }).log;
      throw new Error(
        `loading ${objPath} for a datapath test failed (these tests need root, BPF and bpffs): ${(err as Error).message}` +
          (log ? `\n--- libbpf/verifier log (tail) ---\n${log.trimEnd().split('\n').slice(-30).join('\n')}` : ''),
        { cause: err },
      );
    }
  }

  /** A map of the object. A slot map may be written behind apply()'s back, so then apply()
   * forgets what it knows of the slots and reads them again next time. */
  map(name: string): BpfMap {
    if (SLOT_MAP_NAMES.has(name)) this.invalidate();
    return this.obj.map(name);
  }

  /** Drops apply()'s knowledge of the slots' contents. */
  private invalidate(): void {
    this.slotCache.generation = -1;
    this.slotCache.slots = [undefined, undefined];
  }

  /** Runs a program on one packet; returns the tc action (0 OK, 2 SHOT) or the GC's count.
   * opts.ifindex: the interface the packet runs on (skb->ifindex; default lo, 1), which must
   * exist in this network namespace (see otherIfindexes()). */
  run(prog: ProgramKey, data: Buffer, opts: { ifindex?: number } = {}): number {
    const ctx = opts.ifindex ? skbCtx(opts.ifindex) : undefined;
    return this.obj.program(abi.ProgramName[prog]).testRun({ data, dataOutSize: 0, ...(ctx ? { ctx, ctxOutSize: CTX_OUT_SIZE } : {}) }).retval;
  }

  /** Average ns per run over `repeat` runs of one packet. */
  bench(prog: ProgramKey, data: Buffer, repeat: number): number {
    return this.obj.program(abi.ProgramName[prog]).testRun({ data, repeat, dataOutSize: 0 }).durationNs;
  }

  /** Runs the conntrack collector; returns the number of entries it removed. */
  gc(): number {
    return this.run('ctGc', Buffer.alloc(64));
  }

  // ---- seeding ----------------------------------------------------------------------------------

  /** Writes an endpoint as given (flags verbatim: no rule-summary flags are added), then bumps
   * the policy generation, as Datapath.apply does after its map writes. */
  endpoint(ip: string, ep: abi.Endpoint): void {
    for (let slot = 0; slot < abi.SLOTS; slot++) this.slotMap('endpoints', slot).update(abi.encodeIpKey(ip), abi.encodeEndpoint(ep));
    this.bumpGeneration();
  }

  /** One slot's map of the policy state (weir_abi.h: WEIR_SLOTS). */
  slotMap(kind: abi.SlotKind, slot: number): BpfMap {
    return this.map(abi.slotMapName(kind, slot));
  }

  /** Writes a policy key into both slots (no generation bump: callers decide). */
  policyUpdate(key: abi.PolicyKey, value: abi.PolicyValue): void {
    for (let slot = 0; slot < abi.SLOTS; slot++) this.slotMap('policy', slot).update(abi.encodePolicyKey(key), abi.encodePolicyValue(value));
  }

  policyDelete(key: abi.PolicyKey): void {
    for (let slot = 0; slot < abi.SLOTS; slot++) this.slotMap('policy', slot).delete(abi.encodePolicyKey(key));
  }

  /** Programs the whole policy state from the compiler's output, as the agent does
   * (src/datapath/datapath.ts applyCompiled: the inactive slot, then the generation flip). */
  apply(compiled: CompiledDatapath): ApplyStats {
    return applyCompiled((name) => this.obj.map(name), () => this.generation(), () => this.bumpGeneration(), compiled, this.slotCache);
  }

  generation(): number {
    const raw = this.obj.map(abi.MapName.config).lookup(abi.encodeIndexKey(0));
    return raw ? abi.decodeConfig(raw).generation : 0;
  }

  /** weir_config_v1[0].generation + 1: invalidates every cached deny verdict. */
  bumpGeneration(): number {
    const next = abi.nextGeneration(this.generation());
    this.obj.map(abi.MapName.config).update(abi.encodeIndexKey(0), abi.encodeConfig({ generation: next }));
    return next;
  }

  private static readonly RULE_FLAGS =
    abi.EndpointFlag.PEER_RULES_INGRESS | abi.EndpointFlag.ANY_RULES_INGRESS |
    abi.EndpointFlag.PEER_RULES_EGRESS | abi.EndpointFlag.ANY_RULES_EGRESS;

  private writePod(ip: string, ep: abi.Endpoint): void {
    const flags = (ep.flags & ~TestDatapath.RULE_FLAGS) | (this.ruleFlags.get(ep.identity) ?? 0);
    const withRules = { ...ep, flags };
    this.endpoints.set(ip, withRules);
    this.endpoint(ip, withRules);
  }

  /** A pod on this node (flags from the spec). */
  pod(ip: string, spec: PodSpec): void {
    let flags = spec.local === false ? 0 : abi.EndpointFlag.LOCAL;
    if (spec.isolate === 'ingress' || spec.isolate === 'both') flags |= abi.EndpointFlag.ISOLATED_INGRESS;
    if (spec.isolate === 'egress' || spec.isolate === 'both') flags |= abi.EndpointFlag.ISOLATED_EGRESS;
    if (spec.audit) flags |= abi.EndpointFlag.AUDIT_INGRESS | abi.EndpointFlag.AUDIT_EGRESS;
    this.writePod(ip, { id: spec.id, identity: spec.identity, ifindex: spec.ifindex ?? 0, flags });
  }

  /** Writes the keys, then (as the compiler's contract says) marks the subject identity's
   * endpoints with the rule-summary flag of this direction and peer kind. */
  private allow(direction: number, subject: number, peer: number, ports: PortRule | PortRule[], ruleId: number): void {
    for (const p of Array.isArray(ports) ? ports : [ports]) {
      // the rule id doubles as its rank: among several hits the lowest id is named
      this.policyUpdate(
        { identity: subject, peer, port: p.port, portBits: p.proto && p.port ? 16 : 0, proto: p.proto, direction },
        { ruleId, rank: ruleId },
      );
    }
    const flag = direction === abi.Direction.INGRESS
      ? (peer === abi.Identity.ANY ? abi.EndpointFlag.ANY_RULES_INGRESS : abi.EndpointFlag.PEER_RULES_INGRESS)
      : (peer === abi.Identity.ANY ? abi.EndpointFlag.ANY_RULES_EGRESS : abi.EndpointFlag.PEER_RULES_EGRESS);
    const had = this.ruleFlags.get(subject) ?? 0;
    if (had & flag) {
      this.bumpGeneration(); // the endpoints are unchanged, the keys are not
      return;
    }
    this.ruleFlags.set(subject, had | flag);
    for (const [ip, ep] of this.endpoints) if (ep.identity === subject) this.writePod(ip, ep);
    this.bumpGeneration();
  }

  /** Lets `peer` (an identity, or Identity.ANY) reach `subject` on `ports`, as rule `ruleId`. */
  allowIngress(subject: number, peer: number, ports: PortRule | PortRule[], ruleId: number): void {
    this.allow(abi.Direction.INGRESS, subject, peer, ports, ruleId);
  }

  /** Lets `subject` reach `peer` on `ports`, as rule `ruleId`. */
  allowEgress(subject: number, peer: number, ports: PortRule | PortRule[], ruleId: number): void {
    this.allow(abi.Direction.EGRESS, subject, peer, ports, ruleId);
  }

  // ---- reading ----------------------------------------------------------------------------------

  ct(key: abi.CtKey): abi.CtEntry | undefined {
    const v = this.map(abi.MapName.ct).lookup(abi.encodeCtKey(key));
    return v && abi.decodeCtEntry(v);
  }

  setCt(key: abi.CtKey, entry: abi.CtEntry): void {
    this.map(abi.MapName.ct).update(abi.encodeCtKey(key), abi.encodeCtEntry(entry));
  }

  ctCount(): number {
    return [...this.map(abi.MapName.ct).keys()].length;
  }

  stat(reason: abi.ReasonName): abi.Stat {
    const v = this.map(abi.MapName.stats).lookup(abi.encodeIndexKey(abi.Reason[reason]));
    return v ? abi.decodePerCpuStat(v) : { packets: 0n, bytes: 0n };
  }

  /** Packets counted under every reason. */
  allStats(): Record<string, bigint> {
    const out: Record<string, bigint> = {};
    for (const name of Object.keys(abi.Reason) as abi.ReasonName[]) {
      const s = this.stat(name);
      if (s.packets) out[name] = s.packets;
    }
    return out;
  }

  counter(name: abi.CounterName): bigint {
    const v = this.map(abi.MapName.counters).lookup(abi.encodeIndexKey(abi.Counter[name]));
    return v ? abi.decodePerCpuCounter(v) : 0n;
  }

  /** Per-CPU pending lost counts (not yet reported in a LOST record). */
  lostPending(): bigint[] {
    const v = this.map(abi.MapName.lostPending).lookup(abi.encodeIndexKey(0));
    return v ? abi.decodePerCpuU64(v) : new Array<bigint>(numPossibleCpus()).fill(0n);
  }

  /** Consumes the ring buffer; returns (and forgets) every record received so far. */
  drain(): abi.WeirRecord[] {
    this.reader!.consume();
    return this.records.splice(0);
  }

  /** Flow records of the given type among `recs`. */
  static flows(recs: abi.WeirRecord[], type?: abi.FlowEvent['type']): abi.FlowEvent[] {
    return recs.filter((r): r is abi.FlowEvent => r.type !== 'LOST' && r.type !== 'INVALID' && (!type || r.type === type));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reader?.close();
    this.obj.close();
    removePinRoot(this.pinRoot);
  }
}

/** The kernel writes the whole struct __sk_buff back (192 bytes on 6.x): room for it to grow. */
const CTX_OUT_SIZE = 512;

/** A struct __sk_buff for BPF_PROG_TEST_RUN with only ifindex set (offset 40; the kernel accepts
 * a context shorter than the struct and requires the fields it does not take to be zero). */
function skbCtx(ifindex: number): Buffer {
  const b = Buffer.alloc(48);
  b.writeUInt32LE(ifindex, 40);
  return b;
}

/**
 * Up to `n` ifindexes of interfaces other than lo in this network namespace, lowest first: a test
 * run can only pretend to arrive on an interface that exists. Throws when there is none, since a
 * test that needs "another veth" cannot run without one.
 */
export function otherIfindexes(n: number): number[] {
  const found = readdirSync('/sys/class/net')
    .map((dev) => Number(readFileSync(path.join('/sys/class/net', dev, 'ifindex'), 'utf8')))
    .filter((i) => i > 1)
    .sort((a, b) => a - b);
  if (found.length === 0) throw new Error('this test needs a network interface besides lo to run packets on');
  return found.slice(0, n);
}

function removePinRoot(dir: string): void {
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) rmSync(path.join(dir, f), { force: true });
  rmdirSync(dir);
}

/** Loads a datapath, runs fn, always closes it (and removes its pins). */
export async function withDatapath<T>(
  fn: (dp: TestDatapath) => T | Promise<T>,
  opts: { maxEntries?: Record<string, number> } = {},
): Promise<T> {
  const dp = await TestDatapath.load(opts);
  try {
    return await fn(dp);
  } finally {
    dp.close();
  }
}
