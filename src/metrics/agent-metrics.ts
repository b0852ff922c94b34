// The agent's metrics: the catalog's registry, fed three ways.
//  - Flow rows, counted as the pipeline hands them to the writer (observeRows): flows by verdict,
//    direction and namespace, denied/audit flows by policy, denies to the node by port.
//  - The agent's stats() and the datapath's pinned maps, read when Prometheus scrapes (collect
//    callbacks; one read of each source per scrape, shared by every metric that needs it).
//  - Timings observed where the work happens: store inserts (timeStore wraps the store the writer
//    gets), policy compiles (timeCompile).
//  - A node agent's own state (watchNodeAgent, policyApplied, policyApplyFailed): its datastore's
//    health read at scrape time, the objects it refused counted as their batches pass, the outcome
//    of every policy apply. A lab's agent never calls them, so it has none of these series.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Datapath } from '../datapath/datapath.js';
import { MAPS } from '../datapath/datapath.js';
import type { BpfMap } from '../datapath/libbpf.js';
import type { Datastore, DatastoreBatch, DatastoreHealth } from '../datastore/datastore.js';
import type { SlotKind } from '../datapath/abi.js';
import type { EndpointRegistry } from '../flows/registry.js';
import type { FlowStore } from '../store/store.js';
import type { FlowRow, SideIdentity } from '../store/row.js';
import type { AgentStats } from '../agent/agent.js';
import type { FailsafePort } from '../policy/failsafe.js';
import { repoRoot } from '../paths.js';
import { DEFAULT_MAX_LABEL_VALUES, OVERFLOW_LABEL_VALUE, type MetricName } from './catalog.js';
import { buildRegistry, setCounterTotals, type CatalogRegistry, type Collector } from './registry.js';
import {
  APPLY_FAILURE_REASONS, DATASTORE_KINDS, applyFailureReason, DEFAULT_PROTECTED_PORTS, LabelCap, parseLabelCap, parseProtectedPorts, policyLabel, protocolLabel,
  reasonVerdict, rejectedKindLabel, type ApplyFailureReason,
} from './labels.js';

/** The cardinality knobs (docs/metrics.md). */
export interface MetricsOptions {
  /** add a `pod` label (the policed pod, namespace/name) to weir_flows_total and
   * weir_policy_verdicts_total (--metrics-pod-labels); off by default */
  readonly podLabels?: boolean;
  /** distinct values kept per cluster-derived label per metric (--metrics-max-label-values) */
  readonly maxLabelValues?: number;
  /** ports that get their own `port` label on weir_host_denied_total, "tcp:22,udp:68"
   * (--metrics-protected-ports; default DEFAULT_PROTECTED_PORTS) */
  readonly protectedPorts?: string;
}

/** What the metrics read at scrape time. */
export interface MetricsSources {
  readonly stats: () => AgentStats;
  /** reads the ring and would serve (started, not closing, nothing it waits for: AgentParts.notReady) */
  readonly running: () => boolean;
  readonly datapath: Datapath;
  readonly registry: EndpointRegistry;
  readonly startedAt: Date;
}

/** Double-buffered policy maps counted in the slot in force (weir_grules is an array: every
 * index exists, so it has no fill). */
const SLOT_MAPS: readonly SlotKind[] = ['endpoints', 'policy', 'prange', 'ipcache', 'hostif', 'gtier', 'gset', 'gport'];
const SINGLE_MAPS = { ct: MAPS.ct, deny_rl: MAPS.denyRateLimit } as const;
const BPF_MAP_TYPE_HASH = 1;
const BPF_MAP_TYPE_LRU_HASH = 9;

function agentVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Entries in a map: one batch lookup for hashes, a key walk for LPM tries. */
function countEntries(map: BpfMap): number {
  if (map.type === BPF_MAP_TYPE_HASH || map.type === BPF_MAP_TYPE_LRU_HASH) {
    try { return map.lookupBatch().length; } catch { /* older kernels: walk */ }
  }
  let n = 0;
  for (const _ of map.keys()) n++;
  return n;
}

/** One read of a source per scrape: prom-client calls every metric's collect() in the same
 * turn of the event loop, so the first read is kept until the next turn. */
class PerScrape<T> {
  private value: { v: T } | undefined;
  constructor(private readonly read: () => T) {}
  get(): T {
    if (!this.value) {
      this.value = { v: this.read() };
      setImmediate(() => { this.value = undefined; });
    }
    return this.value.v;
  }
}

/** Rows of one batch with the same labels (the first row stands for them). */
interface RowGroup {
  readonly row: FlowRow;
  readonly policed: SideIdentity;
  rows: number;
  flows: number;
  packets: number;
  bytes: number;
}

interface DatapathSnapshot {
  readonly reasons: Map<string, { packets: bigint; bytes: bigint }>;
  readonly counters: Map<string, bigint>;
  readonly maps: Map<string, { entries: number; capacity: number }>;
}

export class AgentMetrics {
  readonly metrics: CatalogRegistry;
  readonly podLabels: boolean;
  readonly maxLabelValues: number;
  readonly protectedPorts: readonly FailsafePort[];
  private readonly protectedKeys: ReadonlySet<string>;
  private readonly caps = new Map<string, LabelCap>();
  private readonly stats: PerScrape<AgentStats | undefined>;
  private readonly datapath: PerScrape<DatapathSnapshot | undefined>;
  /** the node agent's datastore health (watchNodeAgent); undefined in a lab's agent */
  private readonly health: PerScrape<DatastoreHealth | undefined>;
  private readHealth?: () => DatastoreHealth;
  /** errors thrown by a compile timeCompile ran, so a failed apply can name its reason */
  private readonly compileErrors = new WeakSet<object>();

  constructor(private readonly sources: MetricsSources, opts: MetricsOptions = {}) {
    this.podLabels = opts.podLabels ?? false;
    this.maxLabelValues = opts.maxLabelValues !== undefined ? parseLabelCap(opts.maxLabelValues) : DEFAULT_MAX_LABEL_VALUES;
    this.protectedPorts = parseProtectedPorts(opts.protectedPorts ?? DEFAULT_PROTECTED_PORTS);
    this.protectedKeys = new Set(this.protectedPorts.map((p) => `${p.protocol.toLowerCase()}:${p.port}`));
    // A closed agent or a lab taken away must not fail the whole scrape: its metrics keep their
    // last values (and weir_agent_ready says 0).
    this.stats = new PerScrape(() => { try { return sources.stats(); } catch { return undefined; } });
    this.datapath = new PerScrape(() => { try { return this.readDatapath(); } catch { return undefined; } });
    this.health = new PerScrape(() => { try { return this.readHealth?.(); } catch { return undefined; } });
    this.metrics = buildRegistry({ podLabels: this.podLabels, collectors: this.collectors() });
    const version = agentVersion();
    this.metrics.gauge('weir_build_info').set({ version, node_version: process.version }, 1);
    this.metrics.gauge('weir_agent_start_time_seconds').set(sources.startedAt.getTime() / 1000);
    // Denies to the node on a protected port exist as series (at 0) from the start, so the first
    // such deny is an increase Prometheus sees, not the birth of a series it cannot rate.
    const host = this.metrics.counter('weir_host_denied_total');
    for (const p of this.protectedPorts) host.inc({ source_kind: 'world', protocol: p.protocol.toLowerCase(), port: String(p.port) }, 0);
    this.metrics.counter('weir_policy_compile_errors_total').inc(0);
  }

  get registry() {
    return this.metrics.registry;
  }

  /** The text exposition of every metric and its content type. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() };
  }

  private cap(metric: MetricName, label: string, value: string): string {
    const key = `${metric}\u0000${label}`;
    let c = this.caps.get(key);
    if (!c) this.caps.set(key, c = new LabelCap(this.maxLabelValues));
    return c.value(value);
  }

  /** Counts the rows the pipeline hands to the writer. Rows of a batch are first summed per
   * label set (one string key per row), so a batch costs a few counter updates per distinct
   * label set rather than several per row: the pipeline hands over tens of thousands a second. */
  observeRows(rows: readonly FlowRow[]): void {
    const groups = new Map<string, RowGroup>();
    for (const row of rows) {
      // the endpoint whose policy decided: the receiver for ingress, the sender for egress
      const policed: SideIdentity = row.direction === 'egress' ? row.src : row.dst;
      const key = `${row.kind}\u0000${row.verdict}\u0000${row.direction}\u0000${policed.namespace}\u0000${this.podLabels ? policed.pod : ''}\u0000${row.kind === 'flow' ? '' : row.policy}`;
      let g = groups.get(key);
      if (!g) groups.set(key, g = { row, policed, rows: 0, flows: 0, packets: 0, bytes: 0 });
      g.rows++;
      g.flows += row.kind === 'flow' ? row.connectionsStarted : 1;
      g.packets += row.packetsFwd + row.packetsRev;
      g.bytes += row.bytesFwd + row.bytesRev;
      if (row.kind === 'denied' && row.dst.kind === 'host' && row.direction !== 'egress') {
        const protocol = protocolLabel(row.protocol);
        const port = this.protectedKeys.has(`${protocol}:${row.dst.port}`) ? String(row.dst.port) : OVERFLOW_LABEL_VALUE;
        this.metrics.counter('weir_host_denied_total').inc({ source_kind: row.src.kind || 'unknown', protocol, port });
      }
    }
    const m = this.metrics;
    for (const { row, policed, rows: n, flows, packets, bytes } of groups.values()) {
      m.counter('weir_flow_rows_total').inc({ kind: row.kind }, n);
      if (row.kind !== 'flow' && row.kind !== 'denied' && row.kind !== 'audit') continue;
      const direction = row.direction || 'unknown';
      if (row.kind !== 'audit') {
        const labels = (metric: MetricName) => ({ verdict: row.verdict, direction, namespace: this.cap(metric, 'namespace', policed.namespace) });
        m.counter('weir_flows_total').inc(this.withPod('weir_flows_total', labels('weir_flows_total'), policed), flows);
        m.counter('weir_flow_packets_total').inc(labels('weir_flow_packets_total'), packets);
        m.counter('weir_flow_bytes_total').inc(labels('weir_flow_bytes_total'), bytes);
      }
      if (row.kind === 'flow') continue;
      const v: MetricName = 'weir_policy_verdicts_total';
      m.counter(v).inc(this.withPod(v, { verdict: row.verdict, namespace: this.cap(v, 'namespace', policed.namespace), policy: this.cap(v, 'policy', policyLabel(row.policy)) }, policed), n);
    }
  }

  private withPod(metric: MetricName, labels: Record<string, string>, side: SideIdentity): Record<string, string> {
    if (!this.podLabels) return labels;
    return { ...labels, pod: this.cap(metric, 'pod', side.pod ? `${side.namespace}/${side.pod}` : '') };
  }

  /** The store, with every insert timed into weir_store_write_duration_seconds. */
  timeStore(store: FlowStore): FlowStore {
    const h = this.metrics.histogram('weir_store_write_duration_seconds');
    const insert = async (rows: readonly FlowRow[], token: string): Promise<void> => {
      const end = h.startTimer();
      try {
        await store.insert(rows, token);
        end({ result: 'ok' });
      } catch (err) {
        end({ result: 'error' });
        throw err;
      }
    };
    // Everything else is the store's own (bound: stores keep private state).
    return new Proxy(store, {
      get(target, prop) {
        if (prop === 'insert') return insert;
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }

  /** Runs one policy compile, timing it (and counting it as an error if it throws). */
  timeCompile<T>(compile: () => T): T {
    const end = this.metrics.histogram('weir_policy_compile_duration_seconds').startTimer();
    try {
      return compile();
    } catch (err) {
      this.metrics.counter('weir_policy_compile_errors_total').inc();
      if (typeof err === 'object' && err !== null) this.compileErrors.add(err);
      throw err;
    } finally {
      end();
    }
  }

  /** A node agent's hook: its datastore's health is read at every scrape, and the objects it
   * refuses are counted by kind as their batches pass. Call before the datastore starts (the
   * first batch holds the objects refused at sync). Returns the unsubscribe. */
  watchNodeAgent(datastore: Pick<Datastore, 'health' | 'on' | 'off'>): () => void {
    this.readHealth = () => datastore.health();
    // Every kind and every failure reason exists at 0 from the start, so the first rejection or
    // failure is an increase Prometheus sees, not the birth of a series it cannot rate.
    const rejected = this.metrics.counter('weir_datastore_objects_rejected_total');
    for (const kind of [...DATASTORE_KINDS, OVERFLOW_LABEL_VALUE]) rejected.inc({ kind }, 0);
    const failures = this.metrics.counter('weir_policy_apply_failures_total');
    for (const reason of APPLY_FAILURE_REASONS) failures.inc({ reason }, 0);
    const onChange = (batch: DatastoreBatch) => {
      for (const r of batch.rejected) rejected.inc({ kind: rejectedKindLabel(r.kind) });
    };
    datastore.on('change', onChange);
    return () => datastore.off('change', onChange);
  }

  /** A node agent applied policy (compiled and written to the maps). */
  policyApplied(now: Date = new Date()): void {
    this.metrics.counter('weir_policy_applies_total').inc();
    this.metrics.gauge('weir_policy_last_apply_failed').set(0);
    this.metrics.gauge('weir_policy_last_apply_success_timestamp_seconds').set(now.getTime() / 1000);
  }

  /** A node agent's policy apply failed (the last applied policy stays in force). */
  policyApplyFailed(err: unknown): ApplyFailureReason {
    const reason = applyFailureReason(err, (e) => this.compileErrors.has(e));
    this.metrics.counter('weir_policy_apply_failures_total').inc({ reason });
    this.metrics.gauge('weir_policy_last_apply_failed').set(1);
    return reason;
  }

  private readDatapath(): DatapathSnapshot {
    const dp = this.sources.datapath;
    const slot = dp.generation() & 1;
    const maps = new Map<string, { entries: number; capacity: number }>();
    for (const kind of SLOT_MAPS) {
      const map = dp.slotMap(kind, slot);
      maps.set(kind, { entries: countEntries(map), capacity: map.maxEntries });
    }
    for (const [label, name] of Object.entries(SINGLE_MAPS)) {
      const map = dp.map(name);
      maps.set(label, { entries: countEntries(map), capacity: map.maxEntries });
    }
    return { reasons: dp.reasonStats(), counters: dp.counters(), maps };
  }

  private collectors(): Partial<Record<MetricName, Collector>> {
    const stats = () => this.stats.get();
    const dp = () => this.datapath.get();
    const sources = (read: (s: DatastoreHealth['sources'][string]) => number) => () => {
      const h = this.health.get();
      return h && Object.entries(h.sources).map(([source, s]) => [{ source }, read(s)] as const);
    };
    const counter = (read: () => Iterable<readonly [Record<string, string>, number]> | undefined): Collector => (metric) => {
      const totals = read();
      if (totals) setCounterTotals(metric as Parameters<typeof setCounterTotals>[0], totals);
    };
    const gauge = (read: () => Iterable<readonly [Record<string, string>, number]> | undefined): Collector => (metric) => {
      const values = read();
      if (!values) return;
      const g = metric as import('prom-client').Gauge<string>;
      g.reset();
      for (const [labels, v] of values) g.set(labels, v);
    };
    const one = (v: number | undefined) => (v === undefined ? undefined : [[{}, v] as const]);
    const kernel = (name: string) => () => {
      const v = dp()?.counters.get(name);
      return v === undefined ? undefined : one(Number(v));
    };
    return {
      weir_agent_ready: gauge(() => one(this.sources.running() && stats()?.writer.storeUp !== false ? 1 : 0)),
      weir_datapath_packets_total: counter(() => {
        const r = dp()?.reasons;
        return r && [...r].map(([reason, v]) => [{ reason, verdict: reasonVerdict(reason) }, Number(v.packets)] as const);
      }),
      weir_datapath_bytes_total: counter(() => {
        const r = dp()?.reasons;
        return r && [...r].map(([reason, v]) => [{ reason, verdict: reasonVerdict(reason) }, Number(v.bytes)] as const);
      }),
      weir_ringbuf_events_sent_total: counter(kernel('EVENTS_SENT')),
      weir_ringbuf_lost_events_total: counter(kernel('EVENTS_LOST')),
      weir_deny_events_suppressed_total: counter(kernel('DENY_SUPPRESSED')),
      weir_conntrack_entries_created_total: counter(kernel('CT_CREATED')),
      weir_conntrack_entries_expired_total: counter(kernel('CT_EXPIRED')),
      weir_conntrack_create_failures_total: counter(kernel('CT_CREATE_FAILED')),
      weir_conntrack_midstream_misses_total: counter(kernel('CT_MISS_MIDSTREAM')),
      weir_bpf_map_entries: gauge(() => { const m = dp()?.maps; return m && [...m].map(([map, v]) => [{ map }, v.entries] as const); }),
      weir_bpf_map_capacity: gauge(() => { const m = dp()?.maps; return m && [...m].map(([map, v]) => [{ map }, v.capacity] as const); }),
      weir_endpoints: gauge(() => {
        const hostif = dp()?.maps.get('hostif')?.entries;
        return [[{ kind: 'pod' }, this.sources.registry.stats().pods] as const, ...(hostif !== undefined ? [[{ kind: 'host_interface' }, hostif] as const] : [])];
      }),
      weir_ringbuf_records_read_total: counter(() => one(stats()?.source.records)),
      weir_pipeline_records_processed_total: counter(() => one(stats()?.pipeline.processed)),
      weir_lost_events_total: counter(() => {
        const s = stats();
        if (!s) return undefined;
        const bySource = Object.entries(s.lost.bySource).map(([source, n]) => [{ source }, n ?? 0] as const);
        return [...bySource, [{ source: 'spool' }, s.writer.dropped] as const];
      }),
      weir_pipeline_queue_depth: gauge(() => {
        const s = stats();
        return s && [[{ queue: 'input' }, s.pipeline.inputQueue], [{ queue: 'sink' }, s.pipeline.sinkQueue], [{ queue: 'writer' }, s.writer.buffered]] as const;
      }),
      weir_flow_table_flows: gauge(() => one(stats()?.pipeline.flowsTracked)),
      weir_store_up: gauge(() => { const s = stats(); return s && one(s.writer.storeUp ? 1 : 0); }),
      weir_store_rows_written_total: counter(() => one(stats()?.writer.written)),
      weir_store_rows_spooled_total: counter(() => one(stats()?.writer.spooled)),
      weir_store_rows_replayed_total: counter(() => one(stats()?.writer.replayed)),
      weir_store_insert_retries_total: counter(() => one(stats()?.writer.retried)),
      weir_store_backlog_rows: gauge(() => {
        const w = stats()?.writer;
        return w && one(w.buffered + Math.max(0, w.spooled - w.replayed));
      }),
      weir_spool_bytes: gauge(() => one(stats()?.writer.spoolBytes)),
      weir_spool_files: gauge(() => one(stats()?.writer.spoolFiles)),
      weir_registry_updates_total: counter(() => one(stats()?.registryUpdates)),
      weir_datastore_synced: gauge(sources((s) => (s.synced ? 1 : 0))),
      weir_datastore_connected: gauge(sources((s) => (s.connected ? 1 : 0))),
      weir_datastore_relists_total: counter(sources((s) => s.relists)),
      weir_datastore_reconnects_total: counter(sources((s) => s.reconnects)),
    };
  }
}
