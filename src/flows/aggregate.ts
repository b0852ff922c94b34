// Aggregation: records in, rows out at the end of each interval (src/store/row.ts; the record is
// documented in docs/flows.md).
//
// - DENY -> one 'denied' row per record (full 5-tuple, original addresses; a record already
//   stands for `count` packets). FLOW_START with verdict AUDIT -> one 'audit' row per record.
//   LOG -> one 'log' row per record. LOST (ring buffer) and every loss of the pipeline -> 'lost'
//   rows. These rows wait for the interval's end in a bounded buffer.
// - Allowed (and audited) flows are tracked per 5-tuple from FLOW_START to FLOW_END. Their
//   counters come from FLOW_END (the flow's totals) and, when the pipeline reads conntrack, from
//   each read (the totals so far): a flow row carries the part of the totals not yet reported, so
//   a long-lived flow's bytes appear interval by interval and the sum over rows is the flow's
//   total. At the interval's end each tracked flow is put into its bucket (source endpoint,
//   destination endpoint, destination port, protocol, verdict, direction, reason, deciding rules;
//   with keepIps also both addresses) - keyed then, not at FLOW_START, so the two FLOW_STARTs of a
//   pod-to-pod flow on one node (egress, then ingress) land in one bucket with both rules.
import { CtFlag, Direction, Reason, Verdict, type CtEntry, type CtKey, type FlowEvent, type WeirRecord } from '../datapath/abi.js';
import type { FlowRow, SideIdentity } from '../store/row.js';
import { NO_IP, directionOf, reasonOf, rowIp, sideOf, verdictOf, type Enricher } from './enrich.js';
import type { EndpointRecord } from './registry.js';

export const DEFAULT_INTERVAL_MS = 15_000;
/** Flows tracked at once (about the conntrack table's size); beyond, new flows are counted lost. */
export const DEFAULT_MAX_FLOWS = 262_144;
/** Denied/audit/log rows buffered within one interval; beyond, counted lost. */
export const DEFAULT_MAX_PENDING_ROWS = 200_000;
/** A tracked flow with no sign of life for this long is forgotten (its FLOW_END was lost, or
 * nobody reads conntrack); above the datapath's longest idle timeout (TCP, 7200 s). */
export const DEFAULT_FLOW_TIMEOUT_MS = 3 * 3600_000;

/** Where events or rows were lost (the `reason` of a 'lost' row). */
export type LossSource =
  /** the ring buffer was full (LOST records) */
  | 'ring_buffer'
  /** the pipeline's input queue was full */
  | 'input_queue'
  /** a record this build cannot decode */
  | 'invalid_record'
  /** the flow table was full: a new flow was not tracked */
  | 'flow_table'
  /** the per-interval buffer of denied/audit/log rows was full */
  | 'row_buffer'
  /** rows refused by the full queue to the sink (unit: rows) */
  | 'sink_queue'
  /** rows the sink failed to take (unit: rows) */
  | 'sink_error';

export interface AggregatorOptions {
  readonly enricher: Enricher;
  /** record ts_ns -> UTC ms */
  readonly toMs: (ns: bigint) => number;
  readonly reporter?: string;
  readonly keepIps?: boolean;
  readonly maxFlows?: number;
  readonly maxPendingRows?: number;
  readonly flowTimeoutMs?: number;
  /** start of the first interval (UTC ms) */
  readonly startMs: number;
}

export interface AggregatorStats {
  flowsTracked: number;
  flowsExpired: number;
  pendingRows: number;
  /** losses not yet emitted as rows, by source */
  lostPending: Partial<Record<LossSource, number>>;
  /** every loss since the start, by source (events; rows for sink_queue and sink_error) */
  lostTotal: Partial<Record<LossSource, number>>;
}

interface FlowState {
  readonly saddr: string;
  readonly daddr: string;
  readonly sport: number;
  readonly dport: number;
  readonly proto: number;
  readonly src: EndpointRecord | undefined;
  readonly dst: EndpointRecord | undefined;
  readonly startMs: number;
  /** bit per hook whose FLOW_START was seen */
  hooks: number;
  /** bit 1 egress, bit 2 ingress: which sides approved (FLOW_START directions, conntrack flags) */
  dirs: number;
  audit: boolean;
  egressRule: number;
  ingressRule: number;
  forwardRule: number;
  /** reasons of the FLOW_STARTs of each direction, and of the records that set each rule */
  egressReason: number;
  ingressReason: number;
  egressRuleReason: number;
  ingressRuleReason: number;
  /** counters already reported (totals) */
  rPf: number; rBf: number; rPr: number; rBr: number;
  /** counters of this interval */
  dPf: number; dBf: number; dPr: number; dBr: number;
  started: number;
  completed: number;
  lastActivityMs: number;
  /** conntrack read generation that last saw it, and how many complete reads in a row missed it */
  seenGen: number;
  missed: number;
  /** the bucket key, computed again only after a field it depends on changed ('' = stale) */
  bucket: string;
}

interface Bucket {
  row: {
    -readonly [K in keyof FlowRow]: FlowRow[K];
  };
}

const DIR_EGRESS = 1;
const DIR_INGRESS = 2;

const EMPTY_SIDE: SideIdentity = Object.freeze({
  kind: '', ip: NO_IP, port: 0, namespace: '', pod: '', labels: Object.freeze({}), workloadKind: '', workload: '', serviceAccount: '', node: '', hostEndpoint: '', name: '',
});

const isU16 = (n: number): boolean => (n & 0xffff) === n;
const isU32 = (n: number): boolean => n >>> 0 === n;

/** A flow table key: the addresses (no '|' in them), then the ports and protocol as one UTF-16
 * code unit each (fixed length, so distinct tuples get distinct keys). */
const tupleKey = (saddr: string, daddr: string, sport: number, dport: number, proto: number): string =>
  isU16(sport) && isU16(dport) && isU16(proto)
    ? saddr + '|' + daddr + String.fromCharCode(sport, dport, proto)
    : `!${saddr}|${daddr}|${sport}|${dport}|${proto}`; // (not from a decoded record; '!' starts no address)

const lo16 = (n: number): number => n & 0xffff;
const hi16 = (n: number): number => (n >>> 16) & 0xffff;

/** A flow row's reason: that of the record that set the deciding rule (the destination's ingress
 * rule, else the source's egress rule), else of its FLOW_STARTs; a flow known only from its end or
 * from conntrack was established. */
const flowReason = (s: FlowState): number =>
  (s.ingressRule ? s.ingressRuleReason : s.egressRule ? s.egressRuleReason : 0) || s.ingressReason || s.egressReason || Reason.ALLOW_ESTABLISHED;

const sub = (total: number, reported: number): number => (total > reported ? total - reported : 0);

export class Aggregator {
  private readonly e: Enricher;
  private readonly toMs: (ns: bigint) => number;
  private readonly reporter: string;
  private readonly keepIps: boolean;
  private readonly maxFlows: number;
  private readonly maxPendingRows: number;
  private readonly flowTimeoutMs: number;
  private readonly flows = new Map<string, FlowState>();
  /** flows that ended in this interval, reported at its end */
  private ended: FlowState[] = [];
  private pending: FlowRow[] = [];
  private lost = new Map<LossSource, number>();
  private readonly lostTotal = new Map<LossSource, number>();
  private intervalStartMs: number;
  /** Flow-row sides within one flush, by endpoint record (or world name), then port: without
   * keepIps a side depends on nothing else. Records are immutable, so a cached side stays right;
   * the cache is dropped at the flush's end. Rows of one flush may share a side object. */
  private readonly sideCache = new Map<EndpointRecord | string, Map<number, SideIdentity>>();
  private ctGen = 0;
  private expired = 0;

  constructor(opts: AggregatorOptions) {
    this.e = opts.enricher;
    this.toMs = opts.toMs;
    this.reporter = opts.reporter ?? '';
    this.keepIps = opts.keepIps ?? false;
    this.maxFlows = opts.maxFlows ?? DEFAULT_MAX_FLOWS;
    this.maxPendingRows = opts.maxPendingRows ?? DEFAULT_MAX_PENDING_ROWS;
    this.flowTimeoutMs = opts.flowTimeoutMs ?? DEFAULT_FLOW_TIMEOUT_MS;
    this.intervalStartMs = opts.startMs;
  }

  /** Counts `n` events (or rows) lost at `source`; they become a 'lost' row at the interval's end. */
  addLoss(source: LossSource, n: number): void {
    if (n <= 0) return;
    this.lost.set(source, (this.lost.get(source) ?? 0) + n);
    this.lostTotal.set(source, (this.lostTotal.get(source) ?? 0) + n);
  }

  add(rec: WeirRecord): void {
    switch (rec.type) {
      case 'INVALID':
        this.addLoss('invalid_record', 1);
        return;
      case 'LOST': {
        const ts = this.toMs(rec.tsNs);
        const n = Number(rec.lost);
        this.lostTotal.set('ring_buffer', (this.lostTotal.get('ring_buffer') ?? 0) + n);
        this.pushRow(this.lostRow(ts, ts, 'ring_buffer', n));
        return;
      }
      case 'DENY':
        this.pushRow(this.recordRow(rec, 'denied'));
        return;
      case 'LOG':
        this.pushRow(this.recordRow(rec, 'log'));
        return;
      case 'FLOW_START':
        if (rec.verdict === Verdict.AUDIT) this.pushRow(this.recordRow(rec, 'audit'));
        this.flowStart(rec);
        return;
      case 'FLOW_END':
        this.flowEnd(rec);
        return;
    }
  }

  private pushRow(row: FlowRow): void {
    if (this.pending.length >= this.maxPendingRows) {
      if (row.kind === 'lost') {
        // the loss itself is kept: it joins the interval's lost row of its source
        this.lost.set(row.reason as LossSource, (this.lost.get(row.reason as LossSource) ?? 0) + row.count);
      } else {
        this.addLoss('row_buffer', 1);
      }
      return;
    }
    this.pending.push(row);
  }

  /** A row for one record: full 5-tuple, original addresses, as of the record's time. */
  private recordRow(ev: FlowEvent, kind: 'denied' | 'audit' | 'log'): FlowRow {
    const ts = this.toMs(ev.tsNs);
    const start = kind === 'denied' ? Math.min(ts, this.toMs(ev.startNs)) : ts;
    const count = kind === 'denied' ? ev.count : 1;
    const p = this.e.policies(ev);
    return {
      ts, start, kind,
      verdict: verdictOf(ev.verdict),
      reason: reasonOf(ev.reason),
      direction: directionOf(ev.direction),
      protocol: ev.proto,
      src: this.e.side(ev.saddr, ev.sport, ev.srcIdentity, ts),
      dst: this.e.side(ev.daddr, ev.dport, ev.dstIdentity, ts),
      policy: p.policy, egressPolicy: p.egressPolicy, ingressPolicy: p.ingressPolicy, forwardPolicy: p.forwardPolicy,
      // denied packets are counted (bytes are not known); audit/log rows stand for one flow
      packetsFwd: kind === 'denied' ? count : 0, bytesFwd: 0, packetsRev: 0, bytesRev: 0,
      connectionsStarted: 0, connectionsCompleted: 0, connectionsLive: 0,
      count,
      reporter: this.reporter,
    };
  }

  private lostRow(ts: number, start: number, source: LossSource, count: number): FlowRow {
    return {
      ts, start, kind: 'lost', verdict: '', reason: source, direction: '', protocol: 0, src: EMPTY_SIDE, dst: EMPTY_SIDE,
      policy: '', egressPolicy: '', ingressPolicy: '', forwardPolicy: '',
      packetsFwd: 0, bytesFwd: 0, packetsRev: 0, bytesRev: 0, connectionsStarted: 0, connectionsCompleted: 0, connectionsLive: 0,
      count, reporter: this.reporter,
    };
  }

  private newState(t: { saddr: string; daddr: string; sport: number; dport: number; proto: number }, srcId: number, dstId: number, startMs: number, nowMs: number): FlowState {
    return {
      saddr: t.saddr, daddr: t.daddr, sport: t.sport, dport: t.dport, proto: t.proto,
      src: this.e.endpoint(t.saddr, srcId, startMs),
      dst: this.e.endpoint(t.daddr, dstId, startMs),
      startMs, hooks: 0, dirs: 0, audit: false,
      egressRule: 0, ingressRule: 0, forwardRule: 0, egressReason: 0, ingressReason: 0, egressRuleReason: 0, ingressRuleReason: 0,
      rPf: 0, rBf: 0, rPr: 0, rBr: 0, dPf: 0, dBf: 0, dPr: 0, dBr: 0,
      started: 0, completed: 0, lastActivityMs: nowMs, seenGen: this.ctGen, missed: 0, bucket: '',
    };
  }

  private flowStart(ev: FlowEvent): void {
    const key = tupleKey(ev.saddr, ev.daddr, ev.sport, ev.dport, ev.proto);
    const ts = this.toMs(ev.tsNs);
    const hookBit = 1 << ev.hook;
    let s = this.flows.get(key);
    if (s && (s.hooks & hookBit) !== 0) {
      // This hook already started this tuple: the old flow ended (port reuse) without a FLOW_END
      // reaching us. It completed; its last counters are unknown.
      s.completed++;
      this.ended.push(s);
      this.flows.delete(key);
      s = undefined;
    }
    if (!s) {
      if (this.flows.size >= this.maxFlows) {
        this.addLoss('flow_table', 1);
        return;
      }
      s = this.newState(ev, ev.srcIdentity, ev.dstIdentity, ts, ts);
      this.flows.set(key, s);
    }
    // known only from conntrack so far (started before we saw it, or its FLOW_START was queued)
    if (s.hooks === 0) s.started++;
    s.hooks |= hookBit;
    s.lastActivityMs = Math.max(s.lastActivityMs, ts);
    if (ev.verdict === Verdict.AUDIT) s.audit = true;
    if (ev.direction === Direction.EGRESS) {
      s.dirs |= DIR_EGRESS;
      s.egressReason = ev.reason;
    } else {
      s.dirs |= DIR_INGRESS;
      s.ingressReason = ev.reason;
    }
    // (between a pod and its node the pod hook's record carries the host endpoint's rule in the
    // other direction's field, with that rule's reason)
    if (ev.egressRuleId) {
      s.egressRule = ev.egressRuleId;
      s.egressRuleReason = ev.reason;
    }
    if (ev.ingressRuleId) {
      s.ingressRule = ev.ingressRuleId;
      s.ingressRuleReason = ev.reason;
    }
    if (ev.forwardRuleId) s.forwardRule = ev.forwardRuleId;
    s.bucket = '';
  }

  private flowEnd(ev: FlowEvent): void {
    const key = tupleKey(ev.saddr, ev.daddr, ev.sport, ev.dport, ev.proto);
    let s = this.flows.get(key);
    if (s) {
      this.flows.delete(key);
    } else {
      // Started before we saw it (agent start, FLOW_START lost, flow table full): attributed to
      // who held the addresses when the flow was created.
      const start = this.toMs(ev.startNs);
      s = this.newState(ev, ev.srcIdentity, ev.dstIdentity, start, this.toMs(ev.tsNs));
      if (ev.srcEp) s.dirs |= DIR_EGRESS;
      if (ev.dstEp) s.dirs |= DIR_INGRESS;
    }
    // FLOW_END carries conntrack's rules: they win
    if (ev.egressRuleId) s.egressRule = ev.egressRuleId;
    if (ev.ingressRuleId) s.ingressRule = ev.ingressRuleId;
    if (ev.forwardRuleId) s.forwardRule = ev.forwardRuleId;
    s.bucket = '';
    this.account(s, Number(ev.packetsFwd), Number(ev.bytesFwd), Number(ev.packetsRev), Number(ev.bytesRev));
    s.completed++;
    this.ended.push(s);
  }

  /** Totals so far -> this interval's share. */
  private account(s: FlowState, pf: number, bf: number, pr: number, br: number): void {
    s.dPf += sub(pf, s.rPf); s.dBf += sub(bf, s.rBf); s.dPr += sub(pr, s.rPr); s.dBr += sub(br, s.rBr);
    s.rPf = Math.max(s.rPf, pf); s.rBf = Math.max(s.rBf, bf); s.rPr = Math.max(s.rPr, pr); s.rBr = Math.max(s.rBr, br);
  }

  /**
   * A read of the conntrack table, in three calls so a large table can be fed in chunks:
   * beginConntrack(), conntrackEntries() per chunk, endConntrack(complete). Each entry carries
   * the totals so far of a live flow. `complete`: the read saw the whole table, so a tracked flow
   * missing from two complete reads in a row is gone (its entry was evicted, or its FLOW_END was
   * lost) and completes. Two reads, not one: a flow's FLOW_END may still be on its way when its
   * entry has already been deleted.
   */
  beginConntrack(): void {
    this.ctGen++;
  }

  conntrackEntries(entries: Iterable<readonly [CtKey, CtEntry]>, nowMs: number): void {
    const gen = this.ctGen;
    for (const [k, e] of entries) {
      const key = tupleKey(k.saddr, k.daddr, k.sport, k.dport, k.proto);
      let s = this.flows.get(key);
      if (!s) {
        if (e.flags & CtFlag.ENDED) continue; // its FLOW_END went by (or will)
        if (this.flows.size >= this.maxFlows) {
          this.addLoss('flow_table', 1);
          continue;
        }
        s = this.newState(k, e.srcIdentity, e.dstIdentity, this.toMs(e.createdNs), nowMs);
        this.flows.set(key, s);
        if (e.egressRuleId) s.egressRule = e.egressRuleId;
        if (e.ingressRuleId) s.ingressRule = e.ingressRuleId;
        if (e.forwardRuleId) s.forwardRule = e.forwardRuleId;
      }
      const dirs = s.dirs | (e.flags & CtFlag.NEED_EGRESS ? DIR_EGRESS : 0) | (e.flags & CtFlag.NEED_INGRESS ? DIR_INGRESS : 0);
      const audit = s.audit || (e.flags & CtFlag.AUDITED) !== 0;
      if (dirs !== s.dirs || audit !== s.audit) {
        s.dirs = dirs;
        s.audit = audit;
        s.bucket = '';
      }
      this.account(s, Number(e.packetsFwd), Number(e.bytesFwd), Number(e.packetsRev), Number(e.bytesRev));
      s.seenGen = gen;
      s.missed = 0;
      s.lastActivityMs = Math.max(s.lastActivityMs, this.toMs(e.lastSeenNs));
    }
  }

  endConntrack(complete: boolean): void {
    if (!complete) return;
    const gen = this.ctGen;
    for (const [key, s] of this.flows) {
      if (s.seenGen === gen) continue;
      if (++s.missed >= 2) {
        s.completed++;
        this.ended.push(s);
        this.flows.delete(key);
      }
    }
  }

  /** One whole read at once (see beginConntrack). */
  conntrack(entries: Iterable<readonly [CtKey, CtEntry]>, complete: boolean, nowMs: number): void {
    this.beginConntrack();
    this.conntrackEntries(entries, nowMs);
    this.endConntrack(complete);
  }

  /** Ends the interval at `endMs`: every row of it, the aggregator ready for the next. */
  flush(endMs: number): FlowRow[] {
    const steps = this.flushSteps(endMs, Infinity);
    for (;;) {
      const r = steps.next();
      if (r.done) return r.value;
    }
  }

  /**
   * flush() in steps: yields after every `chunk` flows so a caller can give the event loop a turn
   * (tracked flows may be hundreds of thousands). Nothing else may touch the aggregator until the
   * generator is done.
   */
  *flushSteps(endMs: number, chunk: number): Generator<void, FlowRow[]> {
    const startMs = this.intervalStartMs;
    const out = this.pending;
    this.pending = [];
    const buckets = new Map<string, Bucket>();
    let n = 0;
    for (const s of this.ended) {
      this.contribute(buckets, s, false, startMs, endMs);
      if (++n % chunk === 0) yield;
    }
    this.ended = [];
    for (const [key, s] of this.flows) {
      if (s.lastActivityMs < endMs - this.flowTimeoutMs) {
        this.flows.delete(key);
        this.expired++;
      } else {
        this.contribute(buckets, s, true, startMs, endMs);
      }
      if (++n % chunk === 0) yield;
    }
    for (const b of buckets.values()) out.push(b.row);
    this.sideCache.clear();
    for (const [source, k] of this.lost) out.push(this.lostRow(endMs, startMs, source, k));
    this.lost.clear();
    this.intervalStartMs = endMs;
    return out;
  }

  /** world name -> small id, for bucket keys */
  private readonly worldIds = new Map<string, number>();

  /** A side in a bucket key without keepIps: 4 code units (record serial, or world name id). */
  private sideCode(rec: EndpointRecord | undefined, ip: string): string {
    if (rec) {
      const n = rec.serial;
      return String.fromCharCode(0, n & 0xffff, Math.floor(n / 0x10000) & 0xffff, Math.floor(n / 0x100000000) & 0xffff);
    }
    const name = this.e.registry.worldName(ip);
    let id = this.worldIds.get(name);
    if (id === undefined) {
      id = this.worldIds.size;
      this.worldIds.set(name, id);
    }
    return String.fromCharCode(1, lo16(id), hi16(id), 0);
  }

  private sideKey(rec: EndpointRecord | undefined, ip: string): string {
    const base = rec ? '#' + rec.serial : 'w:' + this.e.registry.worldName(ip);
    return this.keepIps ? base + '@' + ip : base;
  }

  private bucketKey(s: FlowState): string {
    const reason = flowReason(s);
    if (!this.keepIps && isU16(s.dport) && (s.proto & 0xff) === s.proto && isU16(reason)
      && isU32(s.egressRule) && isU32(s.ingressRule) && isU32(s.forwardRule) && (s.dirs & 3) === s.dirs) {
      // fixed-length code units: distinct buckets get distinct keys
      return this.sideCode(s.src, s.saddr) + this.sideCode(s.dst, s.daddr) + String.fromCharCode(
        s.dport, s.proto | (s.audit ? 0x100 : 0) | (s.dirs << 9), reason,
        lo16(s.egressRule), hi16(s.egressRule), lo16(s.ingressRule), hi16(s.ingressRule), lo16(s.forwardRule), hi16(s.forwardRule));
    }
    return this.sideKey(s.src, s.saddr) + '>' + this.sideKey(s.dst, s.daddr) + '|' + s.dport + '|' + s.proto + '|' + (s.audit ? 1 : 0)
      + '|' + s.dirs + '|' + reason + '|' + s.egressRule + '|' + s.ingressRule + '|' + s.forwardRule;
  }

  /** A flow row's side (see sideCache). */
  private flowSide(rec: EndpointRecord | undefined, ip: string, port: number): SideIdentity {
    if (this.keepIps) return sideOf(rec, rowIp(ip), port, rec ? '' : this.e.registry.worldName(ip));
    const world = rec ? '' : this.e.registry.worldName(ip);
    const ck = rec ?? world;
    let byPort = this.sideCache.get(ck);
    if (byPort === undefined) {
      byPort = new Map();
      this.sideCache.set(ck, byPort);
    }
    let side = byPort.get(port);
    if (side === undefined) {
      side = sideOf(rec, NO_IP, port, world);
      byPort.set(port, side);
    }
    return side;
  }

  private contribute(buckets: Map<string, Bucket>, s: FlowState, live: boolean, startMs: number, endMs: number): void {
    if (s.bucket === '') s.bucket = this.bucketKey(s);
    const key = s.bucket;
    let b = buckets.get(key);
    if (!b) {
      const verdict = s.audit ? 'audit' : 'allowed';
      const direction = s.dirs === (DIR_EGRESS | DIR_INGRESS) ? 'both' : s.dirs === DIR_EGRESS ? 'egress' : s.dirs === DIR_INGRESS ? 'ingress' : 'both';
      // the deciding rule: the destination's ingress rule when there is one, else the source's
      // egress rule, else the forwarding host endpoint's
      const reason = flowReason(s);
      const name = this.e.ruleName;
      b = {
        row: {
          ts: endMs, start: endMs, kind: 'flow', verdict, reason: reasonOf(reason), direction, protocol: s.proto,
          src: this.flowSide(s.src, s.saddr, 0),
          dst: this.flowSide(s.dst, s.daddr, s.dport),
          policy: name(s.ingressRule || s.egressRule || s.forwardRule),
          egressPolicy: name(s.egressRule), ingressPolicy: name(s.ingressRule), forwardPolicy: name(s.forwardRule),
          packetsFwd: 0, bytesFwd: 0, packetsRev: 0, bytesRev: 0,
          connectionsStarted: 0, connectionsCompleted: 0, connectionsLive: 0, count: 0, reporter: this.reporter,
        },
      };
      buckets.set(key, b);
    }
    const r = b.row;
    r.start = Math.min(r.start, Math.max(s.startMs, startMs));
    r.packetsFwd += s.dPf; r.bytesFwd += s.dBf; r.packetsRev += s.dPr; r.bytesRev += s.dBr;
    r.connectionsStarted += s.started;
    r.connectionsCompleted += s.completed;
    if (live) r.connectionsLive++;
    r.count++;
    s.dPf = 0; s.dBf = 0; s.dPr = 0; s.dBr = 0; s.started = 0; s.completed = 0;
  }

  stats(): AggregatorStats {
    return { flowsTracked: this.flows.size, flowsExpired: this.expired, pendingRows: this.pending.length, lostPending: Object.fromEntries(this.lost), lostTotal: Object.fromEntries(this.lostTotal) };
  }
}

