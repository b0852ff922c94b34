// The catalog of every metric the flow agent exports on GET /metrics: name, type, help and label
// names. The registry (registry.ts) is built from it, so a metric cannot be exported without an
// entry here; test/metrics/catalog.test.ts checks a live agent's scrape against it both ways, and
// test/metrics/rules.test.ts checks that every alert expression names only metrics listed here.
// Dashboards and alert rules should be written against this file (docs/metrics.md renders it in
// words).
//
// Naming: weir_<subsystem>_<name>_<unit>, counters end in _total, gauges name what they hold.
// Label cardinality is bounded: no pod names or addresses by default (the `pod` label exists only
// with --metrics-pod-labels), and every label whose values come from the cluster (namespace,
// policy, pod) keeps at most --metrics-max-label-values distinct values per metric; later ones
// are counted under OVERFLOW_LABEL_VALUE.

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** Where a metric's value comes from. */
export type MetricSource =
  /** counted from the flow rows the pipeline hands to the writer, as they pass */
  | 'rows'
  /** read from the agent's stats() at scrape time */
  | 'agent'
  /** read from the datapath's pinned BPF maps at scrape time */
  | 'datapath'
  /** observed where the work happens (store inserts, policy compiles) */
  | 'observed'
  /** a node agent (`weir agent --datastore`): its datastore's health at scrape time, its policy
   * applies and the objects its datastore refused as they happen; a lab's agent has no series */
  | 'node'
  | 'process';

export interface MetricSpec {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  /** labels every series has */
  readonly labels: readonly string[];
  /** labels present only when a knob turns them on (MetricsOptions.podLabels) */
  readonly optionalLabels?: readonly string[];
  /** histogram bucket upper bounds (seconds) */
  readonly buckets?: readonly number[];
  readonly source: MetricSource;
}

/** The label value that stands for every value past the per-metric cap. */
export const OVERFLOW_LABEL_VALUE = 'other';
/** The `policy` label of a denied/audit flow no rule decided (default deny of an isolated pod). */
export const NO_POLICY_LABEL_VALUE = 'none';
/** Default cap on distinct values of one cluster-derived label (namespace, policy, pod) per metric. */
export const DEFAULT_MAX_LABEL_VALUES = 100;

const WRITE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const COMPILE_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export const METRICS = [
  // ---- the agent itself -----------------------------------------------------------------------
  { name: 'weir_build_info', type: 'gauge', source: 'process', labels: ['version', 'node_version'],
    help: 'Always 1; the labels name the agent\'s version and the Node.js runtime.' },
  { name: 'weir_agent_ready', type: 'gauge', source: 'agent', labels: [],
    help: '1 while the agent reads the ring buffer, waits for nothing (a node agent: datastore synced, policy applied) and its flow store answered the last insert; 0 otherwise.' },
  { name: 'weir_agent_start_time_seconds', type: 'gauge', source: 'agent', labels: [],
    help: 'When the agent started, in seconds since the Unix epoch.' },

  // ---- flows, counted from the rows the pipeline produces --------------------------------------
  { name: 'weir_flows_total', type: 'counter', source: 'rows', labels: ['verdict', 'direction', 'namespace'], optionalLabels: ['pod'],
    help: 'Flows by verdict, direction and the namespace of the policed endpoint: connections started (allowed, audit: allowed only by audit mode) and denied flow records (denied).' },
  { name: 'weir_flow_packets_total', type: 'counter', source: 'rows', labels: ['verdict', 'direction', 'namespace'],
    help: 'Packets of the flows counted by weir_flows_total (both directions of allowed and audit flows; the denied packets of denied flows).' },
  { name: 'weir_flow_bytes_total', type: 'counter', source: 'rows', labels: ['verdict', 'direction', 'namespace'],
    help: 'Bytes of the allowed and audit flows counted by weir_flows_total, both directions (denied bytes: weir_datapath_bytes_total).' },
  { name: 'weir_policy_verdicts_total', type: 'counter', source: 'rows', labels: ['verdict', 'namespace', 'policy'], optionalLabels: ['pod'],
    help: 'Denied and audit (would-deny) flows by the namespace of the policed endpoint and the deciding policy ("none": no rule matched, default deny).' },
  { name: 'weir_host_denied_total', type: 'counter', source: 'rows', labels: ['source_kind', 'protocol', 'port'],
    help: 'Denied flows to the node itself by the kind of source (world, pod, host) and destination port; the port is one of the protected ports (--metrics-protected-ports) or "other".' },
  { name: 'weir_flow_rows_total', type: 'counter', source: 'rows', labels: ['kind'],
    help: 'Rows the pipeline handed to the store writer, by kind (flow, denied, audit, log, lost).' },

  // ---- the datapath's own counters, read from its per-CPU maps at scrape time ------------------
  { name: 'weir_datapath_packets_total', type: 'counter', source: 'datapath', labels: ['reason', 'verdict'],
    help: 'Packets the datapath judged, by reason (enum weir_reason, e.g. DENY_POLICY) and the verdict the reason implies (allow, deny, drop, pass, audit, unknown).' },
  { name: 'weir_datapath_bytes_total', type: 'counter', source: 'datapath', labels: ['reason', 'verdict'],
    help: 'Bytes of the packets counted by weir_datapath_packets_total.' },
  { name: 'weir_ringbuf_events_sent_total', type: 'counter', source: 'datapath', labels: [],
    help: 'Events the datapath put in the ring buffer.' },
  { name: 'weir_ringbuf_lost_events_total', type: 'counter', source: 'datapath', labels: [],
    help: 'Events the datapath could not put in the ring buffer because it was full.' },
  { name: 'weir_deny_events_suppressed_total', type: 'counter', source: 'datapath', labels: [],
    help: 'Deny events the datapath\'s per-flow rate limiter folded into a later event (not lost: counted in its packets).' },
  { name: 'weir_conntrack_entries_created_total', type: 'counter', source: 'datapath', labels: [],
    help: 'Connection tracking entries the datapath created.' },
  { name: 'weir_conntrack_entries_expired_total', type: 'counter', source: 'datapath', labels: [],
    help: 'Connection tracking entries the collector removed.' },
  { name: 'weir_conntrack_create_failures_total', type: 'counter', source: 'datapath', labels: [],
    help: 'Connection tracking entries the datapath could not create (table full).' },
  { name: 'weir_conntrack_midstream_misses_total', type: 'counter', source: 'datapath', labels: [],
    help: 'TCP packets without SYN that found no connection tracking entry (judged by policy as new flows): how LRU evictions of a full table show; also idle connections the collector expired.' },
  { name: 'weir_bpf_map_entries', type: 'gauge', source: 'datapath', labels: ['map'],
    help: 'Entries in a BPF map (for double-buffered policy maps: the slot in force). Fill ratio: weir_bpf_map_entries / weir_bpf_map_capacity.' },
  { name: 'weir_bpf_map_capacity', type: 'gauge', source: 'datapath', labels: ['map'],
    help: 'The most entries a BPF map can hold (its max_entries).' },
  { name: 'weir_endpoints', type: 'gauge', source: 'datapath', labels: ['kind'],
    help: 'Endpoints the agent knows, by kind: pod (pods in the agent\'s endpoint registry), host_interface (host interfaces the datapath protects).' },

  // ---- the agent's pipeline ---------------------------------------------------------------------
  { name: 'weir_ringbuf_records_read_total', type: 'counter', source: 'agent', labels: [],
    help: 'Records the agent read from the ring buffer.' },
  { name: 'weir_pipeline_records_processed_total', type: 'counter', source: 'agent', labels: [],
    help: 'Records the pipeline decoded and aggregated.' },
  { name: 'weir_lost_events_total', type: 'counter', source: 'agent', labels: ['source'],
    help: 'Events or rows lost before the store, by where: ring_buffer, invalid_record, input_queue, flow_table, row_buffer (events); sink_queue, sink_error, spool (rows).' },
  { name: 'weir_pipeline_queue_depth', type: 'gauge', source: 'agent', labels: ['queue'],
    help: 'Items waiting in a pipeline queue: input (records), sink (rows to the writer), writer (rows in the writer\'s memory).' },
  { name: 'weir_flow_table_flows', type: 'gauge', source: 'agent', labels: [],
    help: 'Flows the aggregator tracks now.' },

  // ---- the store ----------------------------------------------------------------------------------
  { name: 'weir_store_up', type: 'gauge', source: 'agent', labels: [],
    help: '1 if the flow store answered the last insert, 0 if it failed (rows go to the spool).' },
  { name: 'weir_store_write_duration_seconds', type: 'histogram', source: 'observed', labels: ['result'], buckets: WRITE_BUCKETS,
    help: 'Duration of one insert into the flow store, by result (ok, error).' },
  { name: 'weir_store_rows_written_total', type: 'counter', source: 'agent', labels: [],
    help: 'Rows the flow store acknowledged (rows replayed from the spool included).' },
  { name: 'weir_store_rows_spooled_total', type: 'counter', source: 'agent', labels: [],
    help: 'Rows written to the disk spool because the store could not take them.' },
  { name: 'weir_store_rows_replayed_total', type: 'counter', source: 'agent', labels: [],
    help: 'Rows replayed from the spool into the store.' },
  { name: 'weir_store_insert_retries_total', type: 'counter', source: 'agent', labels: [],
    help: 'Insert attempts that repeated a failed one (retries and replay probes).' },
  { name: 'weir_store_backlog_rows', type: 'gauge', source: 'agent', labels: [],
    help: 'Rows not yet in the store: in the writer\'s memory plus spooled and not replayed.' },
  { name: 'weir_spool_bytes', type: 'gauge', source: 'agent', labels: [],
    help: 'Bytes in the writer\'s disk spool.' },
  { name: 'weir_spool_files', type: 'gauge', source: 'agent', labels: [],
    help: 'Files in the writer\'s disk spool.' },

  // ---- policy -------------------------------------------------------------------------------------
  { name: 'weir_policy_compile_duration_seconds', type: 'histogram', source: 'observed', labels: [], buckets: COMPILE_BUCKETS,
    help: 'Duration of one policy compile in this process (failed compiles included).' },
  { name: 'weir_policy_compile_errors_total', type: 'counter', source: 'observed', labels: [],
    help: 'Policy compiles in this process that failed.' },
  { name: 'weir_policy_applies_total', type: 'counter', source: 'node', labels: [],
    help: 'Policy applies (compile and write to the datapath\'s maps) that succeeded in this node agent.' },
  { name: 'weir_policy_apply_failures_total', type: 'counter', source: 'node', labels: ['reason'],
    help: 'Policy applies that failed, leaving the last applied policy in force, by reason: compile (the compiler refused the view), map_capacity (a policy map is too small), datapath (a BPF map update failed), other.' },
  { name: 'weir_policy_last_apply_failed', type: 'gauge', source: 'node', labels: [],
    help: '1 if the node agent\'s last policy apply failed (the policy applied before it stays in force), 0 if it succeeded.' },
  { name: 'weir_policy_last_apply_success_timestamp_seconds', type: 'gauge', source: 'node', labels: [],
    help: 'When the node agent last applied policy successfully, in seconds since the Unix epoch (0: not yet).' },
  { name: 'weir_registry_updates_total', type: 'counter', source: 'agent', labels: [],
    help: 'Changes to the endpoint registry the agent applied (pods, namespaces, host endpoints).' },

  // ---- the node agent's datastore (Kubernetes API resources, or "files") --------------------------
  { name: 'weir_datastore_synced', type: 'gauge', source: 'node', labels: ['source'],
    help: '1 once the datastore source was listed (or scanned) in full at least once, 0 before: nothing is applied until every source synced.' },
  { name: 'weir_datastore_connected', type: 'gauge', source: 'node', labels: ['source'],
    help: '1 while the datastore source is connected (a watch is open, the directory is readable), 0 while it retries.' },
  { name: 'weir_datastore_relists_total', type: 'counter', source: 'node', labels: ['source'],
    help: 'Full re-reads of a datastore source after its first (watch expiry, 410 Gone, rescans that found changes).' },
  { name: 'weir_datastore_reconnects_total', type: 'counter', source: 'node', labels: ['source'],
    help: 'Connections to a datastore source after its first (dropped watches, API server restarts).' },
  { name: 'weir_datastore_objects_rejected_total', type: 'counter', source: 'node', labels: ['kind'],
    help: 'Objects the datastore refused (malformed, unknown version, invalid: a NetworkPolicy that fails validation), by kind ("File": a manifest file the files datastore refused whole); the last valid version of each stays in force.' },
] as const satisfies readonly MetricSpec[];

export type MetricName = (typeof METRICS)[number]['name'];

const BY_NAME: ReadonlyMap<string, MetricSpec> = new Map(METRICS.map((m) => [m.name, m as MetricSpec]));

export function metricSpec(name: MetricName): MetricSpec {
  return BY_NAME.get(name)!;
}

/** Series names a metric's exposition holds: histograms add _bucket, _sum, _count. */
export function seriesNames(spec: MetricSpec): string[] {
  return spec.type === 'histogram' ? [`${spec.name}_bucket`, `${spec.name}_sum`, `${spec.name}_count`] : [spec.name];
}

/** The catalog entry a series name belongs to (a histogram's _bucket/_sum/_count included). */
export function specOfSeries(series: string): MetricSpec | undefined {
  const direct = BY_NAME.get(series);
  if (direct) return direct;
  const m = /^(.*)_(bucket|sum|count)$/.exec(series);
  const base = m ? BY_NAME.get(m[1]!) : undefined;
  return base?.type === 'histogram' ? base : undefined;
}
