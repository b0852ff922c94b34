// "Agent health": the flow agents' own metrics (src/metrics/catalog.ts) from Prometheus, and the
// loss rows the agents stored (kind 'lost'), from the flow store. The tests check every metric
// named here against the catalog.

import { LOST_ROWS_SQL } from './flows-sql.js';
import {
  CLICKHOUSE_TYPE, DS_CLICKHOUSE, DS_PROMETHEUS, PROMETHEUS_TYPE, chSql, dashboard, datasourceVariable, promQl,
  type Panel, type PrometheusTarget,
} from './model.js';

type PanelSpec = Omit<Panel, 'id' | 'gridPos'>;

/** Prometheus variables: which agents (instance label) to show. */
const INSTANCE_VARIABLE = {
  type: 'query',
  name: 'instance',
  label: 'Agent',
  description: 'Agents (the instance label of their /metrics target)',
  datasource: DS_PROMETHEUS,
  // the classic query text, which every Grafana version reads
  query: 'label_values(weir_agent_ready, instance)',
  definition: 'label_values(weir_agent_ready, instance)',
  multi: true,
  includeAll: true,
  allValue: '.*',
  current: { selected: true, text: ['All'], value: ['$__all'] },
  options: [],
  refresh: 2,
  sort: 1,
  hide: 0,
  regex: '',
  skipUrlSync: false,
};

const SEL = 'instance=~"$instance"';

function promPanel(type: 'timeseries' | 'stat', title: string, description: string, unit: string, targets: PrometheusTarget[], extra: Record<string, unknown> = {}): PanelSpec {
  return {
    type, title, description, datasource: DS_PROMETHEUS, targets,
    fieldConfig: { defaults: { unit, ...extra }, overrides: [] },
    options: type === 'stat'
      ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'background', graphMode: 'area', textMode: 'value_and_name' }
      : { legend: { displayMode: 'table', placement: 'right', calcs: ['max', 'lastNotNull'] }, tooltip: { mode: 'multi', sort: 'desc' } },
  };
}

function refs(...ts: PrometheusTarget[]): PrometheusTarget[] {
  return ts.map((t, i) => ({ ...t, refId: String.fromCharCode(65 + i) }));
}

const RED_WHEN_ZERO = { thresholds: { mode: 'absolute', steps: [{ color: 'red', value: null }, { color: 'green', value: 1 }] }, color: { mode: 'thresholds' } };
const RED_WHEN_ANY = { thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }, { color: 'red', value: 1e-9 }] }, color: { mode: 'thresholds' } };

const ready = promPanel('stat', 'Agents ready', 'Agents reading their ring buffer whose store answered the last insert, of all agents scraped.', 'short', refs(
  promQl(`sum(weir_agent_ready{${SEL}})`, 'ready'),
  promQl(`count(weir_agent_ready{${SEL}})`, 'scraped'),
), RED_WHEN_ZERO);

const storeUp = promPanel('stat', 'Store up', 'Agents whose flow store took the last insert (others spool rows to disk).', 'short', refs(
  promQl(`sum(weir_store_up{${SEL}})`, 'up'),
), RED_WHEN_ZERO);

const lostNow = promPanel('stat', 'Events lost (rate)', 'Events or rows lost anywhere between the datapath and the store, per second, all agents.', 'short', refs(
  promQl(`sum(rate(weir_lost_events_total{${SEL}}[$__rate_interval]))`, 'lost/s'),
), RED_WHEN_ANY);

const backlog = promPanel('stat', 'Store backlog', 'Rows not yet in the store: in the writers\' memory plus spooled and not replayed.', 'short', refs(
  promQl(`sum(weir_store_backlog_rows{${SEL}})`, 'rows'),
));

const loss = promPanel('timeseries', 'Loss by stage', 'Events or rows lost per second, by where (ring_buffer, input_queue, flow_table, sink_queue, sink_error, spool, ...). Loss is data: any of it means flows are missing from the store.', 'short', refs(
  promQl(`sum by (source) (rate(weir_lost_events_total{${SEL}}[$__rate_interval]))`, '{{source}}'),
  promQl(`sum(rate(weir_ringbuf_lost_events_total{${SEL}}[$__rate_interval]))`, 'ring buffer full (datapath)'),
));

const ringbuf = promPanel('timeseries', 'Ring buffer', 'Events the datapath sent and the agents read, per second; deny events folded by the rate limiter (not lost).', 'short', refs(
  promQl(`sum(rate(weir_ringbuf_events_sent_total{${SEL}}[$__rate_interval]))`, 'sent'),
  promQl(`sum(rate(weir_ringbuf_records_read_total{${SEL}}[$__rate_interval]))`, 'read'),
  promQl(`sum(rate(weir_pipeline_records_processed_total{${SEL}}[$__rate_interval]))`, 'processed'),
  promQl(`sum(rate(weir_deny_events_suppressed_total{${SEL}}[$__rate_interval]))`, 'denies folded'),
));

const queues = promPanel('timeseries', 'Pipeline queues', 'Items waiting in each pipeline queue (input: records, sink: rows to the writer, writer: rows in memory), and flows the aggregator tracks, per agent.', 'short', refs(
  promQl(`max by (instance, queue) (weir_pipeline_queue_depth{${SEL}})`, '{{instance}} {{queue}}'),
  promQl(`max by (instance) (weir_flow_table_flows{${SEL}})`, '{{instance}} flow table'),
));

const storeLatency = promPanel('timeseries', 'Store insert latency', 'Insert duration quantiles, all agents, successful inserts and failures apart.', 's', refs(
  promQl(`histogram_quantile(0.5, sum by (le, result) (rate(weir_store_write_duration_seconds_bucket{${SEL}}[$__rate_interval])))`, 'p50 {{result}}'),
  promQl(`histogram_quantile(0.99, sum by (le, result) (rate(weir_store_write_duration_seconds_bucket{${SEL}}[$__rate_interval])))`, 'p99 {{result}}'),
  promQl(`sum by (result) (rate(weir_store_write_duration_seconds_sum{${SEL}}[$__rate_interval])) / sum by (result) (rate(weir_store_write_duration_seconds_count{${SEL}}[$__rate_interval]))`, 'mean {{result}}'),
));

const storeRows = promPanel('timeseries', 'Store rows', 'Rows per second the store acknowledged, spooled to disk, replayed from the spool; insert retries.', 'short', refs(
  promQl(`sum(rate(weir_store_rows_written_total{${SEL}}[$__rate_interval]))`, 'written'),
  promQl(`sum(rate(weir_store_rows_spooled_total{${SEL}}[$__rate_interval]))`, 'spooled'),
  promQl(`sum(rate(weir_store_rows_replayed_total{${SEL}}[$__rate_interval]))`, 'replayed'),
  promQl(`sum(rate(weir_store_insert_retries_total{${SEL}}[$__rate_interval]))`, 'retries'),
));

const spool = promPanel('timeseries', 'Spool', 'Bytes in each agent\'s disk spool.', 'bytes', refs(
  promQl(`max by (instance) (weir_spool_bytes{${SEL}})`, '{{instance}}'),
));

const mapFill = promPanel('timeseries', 'BPF map fill', 'Entries of each BPF map over its capacity, the fullest agent. A full map fails updates: conntrack entries, policy.', 'percentunit', refs(
  promQl(`max by (map) (weir_bpf_map_entries{${SEL}} / on (instance, map) weir_bpf_map_capacity{${SEL}})`, '{{map}}'),
), { max: 1, min: 0 });

const conntrack = promPanel('timeseries', 'Connection tracking', 'Conntrack entries created and expired per second, creations that failed because the table was full, and TCP packets without SYN that found no entry (midstream misses: how LRU evictions of a full table show; judged as new flows).', 'short', refs(
  promQl(`sum(rate(weir_conntrack_entries_created_total{${SEL}}[$__rate_interval]))`, 'created'),
  promQl(`sum(rate(weir_conntrack_entries_expired_total{${SEL}}[$__rate_interval]))`, 'expired'),
  promQl(`sum(rate(weir_conntrack_create_failures_total{${SEL}}[$__rate_interval]))`, 'create failures'),
  promQl(`sum(rate(weir_conntrack_midstream_misses_total{${SEL}}[$__rate_interval]))`, 'midstream misses'),
));

const compile = promPanel('timeseries', 'Policy compiles', 'Policy compile duration (p99) and failed compiles per second.', 's', refs(
  promQl(`histogram_quantile(0.99, sum by (le) (rate(weir_policy_compile_duration_seconds_bucket{${SEL}}[$__rate_interval])))`, 'p99'),
  promQl(`sum(rate(weir_policy_compile_errors_total{${SEL}}[$__rate_interval]))`, 'errors/s'),
));

// Node agents only (`weir agent --datastore`): a lab's agent applies no policy and has no datastore.
const applies = promPanel('timeseries', 'Policy applies (node agents)', 'Policy applies per second that succeeded and that failed, by reason (compile, map_capacity, datapath, other); agents whose last apply failed (the policy applied before stays enforced).', 'short', refs(
  promQl(`sum(rate(weir_policy_applies_total{${SEL}}[$__rate_interval]))`, 'applied'),
  promQl(`sum by (reason) (rate(weir_policy_apply_failures_total{${SEL}}[$__rate_interval]))`, 'failed: {{reason}}'),
  promQl(`sum(weir_policy_last_apply_failed{${SEL}})`, 'agents whose last apply failed'),
));

const datastore = promPanel('timeseries', 'Datastore (node agents)', 'Agents whose datastore source has not synced or is disconnected (nothing is applied before sync; a disconnected view is frozen), and objects refused per second by kind (an invalid NetworkPolicy: its Event names the field), relists and reconnects.', 'short', refs(
  promQl(`sum by (source) (1 - weir_datastore_synced{${SEL}})`, 'not synced: {{source}}'),
  promQl(`sum by (source) (1 - weir_datastore_connected{${SEL}})`, 'disconnected: {{source}}'),
  promQl(`sum by (kind) (rate(weir_datastore_objects_rejected_total{${SEL}}[$__rate_interval]))`, 'rejected: {{kind}}'),
  promQl(`sum(rate(weir_datastore_relists_total{${SEL}}[$__rate_interval]))`, 'relists'),
  promQl(`sum(rate(weir_datastore_reconnects_total{${SEL}}[$__rate_interval]))`, 'reconnects'),
));

const lostRows: PanelSpec = {
  type: 'timeseries',
  title: 'Stored loss rows',
  description: 'Events lost as the flow store recorded them (rows of kind lost, by where the loss happened): the store\'s view of the loss above, kept with the flows.',
  datasource: DS_CLICKHOUSE,
  targets: [chSql(LOST_ROWS_SQL, 'timeseries')],
  fieldConfig: { defaults: { unit: 'short', displayName: '${__field.labels.series}', custom: { drawStyle: 'bars', fillOpacity: 80, stacking: { mode: 'normal', group: 'A' } } }, overrides: [] },
  options: { legend: { displayMode: 'table', placement: 'right', calcs: ['sum'] }, tooltip: { mode: 'multi', sort: 'desc' } },
};

export const agentHealth = dashboard({
  uid: 'weir-agent-health',
  title: 'Weir / Agent health',
  description: 'The flow agents: loss at every stage, queues, the store\'s latency and backlog, BPF map fill and conntrack evictions; node agents: policy applies and their datastore.',
  variables: [
    datasourceVariable('DS_PROMETHEUS', 'Prometheus', PROMETHEUS_TYPE),
    datasourceVariable('DS_CLICKHOUSE', 'ClickHouse', CLICKHOUSE_TYPE),
    INSTANCE_VARIABLE,
  ],
  rows: [
    { h: 5, panels: [{ w: 6, panel: ready }, { w: 6, panel: storeUp }, { w: 6, panel: lostNow }, { w: 6, panel: backlog }] },
    { h: 8, panels: [{ w: 12, panel: loss }, { w: 12, panel: lostRows }] },
    { h: 8, panels: [{ w: 12, panel: ringbuf }, { w: 12, panel: queues }] },
    { h: 8, panels: [{ w: 12, panel: storeLatency }, { w: 12, panel: storeRows }] },
    { h: 8, panels: [{ w: 8, panel: mapFill }, { w: 8, panel: conntrack }, { w: 8, panel: spool }] },
    { h: 8, panels: [{ w: 8, panel: compile }, { w: 8, panel: applies }, { w: 8, panel: datastore }] },
  ],
});
