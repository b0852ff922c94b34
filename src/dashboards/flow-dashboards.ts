// The two flow dashboards: "Denied flows" and "Traffic overview". Their ClickHouse SQL runs in
// the tests against a real chDB store (test/dashboards/dashboards.test.ts).

import {
  FLOWS_TABLE, LABELS_SQL, LABEL_FILTER, NAMESPACES_SQL, NAMESPACE_FILTER, PROTOCOL_NAME, TIME_BUCKET,
  endpointRaw, endpointRollup, ipText, namespaceOrKind, rollupOrRaw,
} from './flows-sql.js';
import {
  CLICKHOUSE_TYPE, DS_CLICKHOUSE, DS_PROMETHEUS, PROMETHEUS_TYPE, chSql, column, dashboard, datasourceVariable, promQl,
  queryVariable, type Panel,
} from './model.js';

type PanelSpec = Omit<Panel, 'id' | 'gridPos'>;

const FLOW_VARIABLES = [
  datasourceVariable('DS_CLICKHOUSE', 'ClickHouse', CLICKHOUSE_TYPE),
  datasourceVariable('DS_PROMETHEUS', 'Prometheus', PROMETHEUS_TYPE),
  // "All" is `.*` for the Prometheus panels' namespace=~ matchers (any namespace, also ones the
  // store has not seen in the range)
  queryVariable('namespace', 'Namespace', NAMESPACES_SQL, 'Flows with either side in these namespaces', '.*'),
  queryVariable('label', 'Label', LABELS_SQL,
    'Flows with either side carrying one of these key=value labels. Rollups keep no labels, so with a label chosen the panels read the raw rows (kept for fewer days).'),
];

function timeseries(title: string, description: string, sql: string, unit: string, stack = true): PanelSpec {
  return {
    type: 'timeseries', title, description, datasource: DS_CLICKHOUSE,
    targets: [chSql(sql, 'timeseries')],
    fieldConfig: {
      defaults: {
        unit,
        // the plugin turns the long result (time, series, value) into one field per series,
        // labelled series=...; the legend shows that label alone
        displayName: '${__field.labels.series}',
        custom: { drawStyle: 'bars', fillOpacity: 80, stacking: { mode: stack ? 'normal' : 'none', group: 'A' }, lineWidth: 1 },
      },
      overrides: [],
    },
    options: { legend: { displayMode: 'table', placement: 'right', calcs: ['sum'] }, tooltip: { mode: 'multi', sort: 'desc' } },
  };
}

function table(title: string, description: string, sql: string, overrides: unknown[], transformations?: unknown[]): PanelSpec {
  return {
    type: 'table', title, description, datasource: DS_CLICKHOUSE,
    targets: [chSql(sql, 'table')],
    fieldConfig: { defaults: { custom: { filterable: true } }, overrides },
    options: { showHeader: true, cellHeight: 'sm', footer: { show: false } },
    ...(transformations ? { transformations } : {}),
  };
}

function stat(title: string, description: string, sql: string, unit: string): PanelSpec {
  return {
    type: 'stat', title, description, datasource: DS_CLICKHOUSE,
    targets: [chSql(sql, 'table')],
    fieldConfig: { defaults: { unit, color: { mode: 'thresholds' }, thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] } }, overrides: [] },
    options: { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value', graphMode: 'none', textMode: 'value_and_name' },
  };
}

function promRate(title: string, description: string, expr: string, legend: string, unit: string): PanelSpec {
  return {
    type: 'timeseries', title, description, datasource: DS_PROMETHEUS,
    targets: [promQl(expr, legend)],
    fieldConfig: { defaults: { unit, custom: { fillOpacity: 10, stacking: { mode: 'normal', group: 'A' } } }, overrides: [] },
    options: { legend: { displayMode: 'table', placement: 'right', calcs: ['mean', 'max'] }, tooltip: { mode: 'multi', sort: 'desc' } },
  };
}

// ---- Denied flows ----------------------------------------------------------------------------

const deniedTotals = stat(
  'Denied packets and audited flows',
  'Packets dropped by policy, and flows that passed only because their policy is in audit mode, in the time range.',
  `
  SELECT sumIf(n, verdict = 'denied') AS denied_packets, sumIf(n, verdict = 'audit') AS audited_flows
  FROM ${rollupOrRaw({ rollupSelect: 'verdict, count AS n', rawSelect: 'verdict, count AS n', where: "kind IN ('denied', 'audit')" })}`,
  'short',
);

const deniedOverTime = timeseries(
  'Denied and audited by namespace and policy',
  'Denied packets and audited flows per interval, by verdict, destination namespace and deciding rule ("default deny" when no rule decided).',
  `
  SELECT ${TIME_BUCKET} AS time,
    concat(verdict, ' ', ns, ' ', if(policy = '', '(default deny)', policy)) AS series,
    sum(n) AS value
  FROM ${rollupOrRaw({
    rollupSelect: `verdict, ${namespaceOrKind('dst')} AS ns, policy, count AS n`,
    rawSelect: `verdict, ${namespaceOrKind('dst')} AS ns, policy, count AS n`,
    where: "kind IN ('denied', 'audit')",
  })}
  GROUP BY time, series
  ORDER BY time`,
  'short',
);

const topDeniedSources = table(
  'Top denied sources',
  'Sources with the most denied packets, with their original addresses (before any NAT), from the raw rows.',
  `
  SELECT ${endpointRaw('src')} AS source, ${ipText('src_ip')} AS source_ip,
    sum(count) AS packets, count() AS records,
    uniqExact(dst_namespace, dst_pod, dst_port) AS destinations,
    max(ts) AS last_seen
  FROM ${FLOWS_TABLE}
  WHERE $__timeFilter(ts) AND kind = 'denied'
    AND ${NAMESPACE_FILTER}
    AND ${LABEL_FILTER}
  GROUP BY source, source_ip
  ORDER BY packets DESC, source, source_ip
  LIMIT 20`,
  [
    column('source_ip', { displayName: 'Source IP' }),
    column('packets', { unit: 'short', 'custom.cellOptions': { type: 'gauge', mode: 'basic' } }),
    column('last_seen', { unit: 'dateTimeAsIso' }),
  ],
);

const recentDenied = table(
  'Recent denied flows',
  'The latest denied and audited decisions, one row per record, with the original 5-tuple.',
  `
  SELECT ts AS time, verdict, reason, direction, ${PROTOCOL_NAME} AS protocol,
    ${endpointRaw('src')} AS source, ${ipText('src_ip')} AS source_ip, src_port AS source_port,
    ${endpointRaw('dst')} AS destination, ${ipText('dst_ip')} AS destination_ip, dst_port AS destination_port,
    if(policy = '', '(default deny)', policy) AS rule, count AS packets, reporter AS node
  FROM ${FLOWS_TABLE}
  WHERE $__timeFilter(ts) AND kind IN ('denied', 'audit')
    AND ${NAMESPACE_FILTER}
    AND ${LABEL_FILTER}
  ORDER BY ts DESC, id DESC
  LIMIT 200`,
  [
    column('time', { unit: 'dateTimeAsIso', 'custom.width': 190 }),
    column('source_ip', { displayName: 'Source IP' }),
    column('destination_ip', { displayName: 'Destination IP' }),
  ],
);

const worldToHostOverTime = timeseries(
  'World → host denied over time',
  'Denied packets from outside the cluster to the nodes themselves, by destination port (the namespace variable does not apply).',
  `
  SELECT ${TIME_BUCKET} AS time, concat(protocol_name, '/', toString(dst_port)) AS series, sum(n) AS value
  FROM ${rollupOrRaw({
    rollupSelect: `${PROTOCOL_NAME} AS protocol_name, dst_port, count AS n`,
    rawSelect: `${PROTOCOL_NAME} AS protocol_name, dst_port, count AS n`,
    where: "kind = 'denied' AND src_kind = 'world' AND dst_kind = 'host'",
    // neither side of these has a namespace
    namespaces: false,
  })}
  GROUP BY time, series
  ORDER BY time`,
  'short',
);

const worldToHost = table(
  'World → host attempts',
  'Denied packets from the world to a host endpoint, by original source address, target and port (the namespace variable does not apply).',
  `
  SELECT ${ipText('src_ip')} AS source_ip, if(src_name = '', '(unnamed)', src_name) AS world_name,
    ${endpointRaw('dst')} AS target, ${ipText('dst_ip')} AS target_ip, ${PROTOCOL_NAME} AS protocol, dst_port AS port,
    sum(count) AS packets, min(start) AS first_seen, max(ts) AS last_seen
  FROM ${FLOWS_TABLE}
  WHERE $__timeFilter(ts) AND kind = 'denied' AND src_kind = 'world' AND dst_kind = 'host'
    AND ${LABEL_FILTER}
  GROUP BY source_ip, world_name, target, target_ip, protocol, port
  ORDER BY packets DESC, source_ip
  LIMIT 100`,
  [
    column('source_ip', { displayName: 'Source IP' }),
    column('target_ip', { displayName: 'Target IP' }),
    column('first_seen', { unit: 'dateTimeAsIso' }),
    column('last_seen', { unit: 'dateTimeAsIso' }),
  ],
);

const deniedRate = promRate(
  'Denied and audited flows per second (live)',
  'From the agents\' metrics, so up to the last scrape: denied and audit flows per second by namespace of the policed endpoint and policy ("none": default deny).',
  'sum by (verdict, namespace, policy) (rate(weir_policy_verdicts_total{namespace=~"$namespace"}[$__rate_interval]))',
  '{{verdict}} {{namespace}} {{policy}}',
  'short',
);

const hostDeniedRate = promRate(
  'Denied flows to the nodes per second (live)',
  'From the agents\' metrics: denied flows to a node itself by kind of source and protected port.',
  'sum by (source_kind, protocol, port) (rate(weir_host_denied_total[$__rate_interval]))',
  '{{source_kind}} {{protocol}}/{{port}}',
  'short',
);

export const deniedFlows = dashboard({
  uid: 'weir-denied-flows',
  title: 'Weir / Denied flows',
  description: 'What Weir policy denied or audited: over time, by source, one record at a time, and attempts from the world on the nodes.',
  variables: FLOW_VARIABLES,
  rows: [
    { h: 5, panels: [{ w: 24, panel: deniedTotals }] },
    { h: 9, panels: [{ w: 24, panel: deniedOverTime }] },
    { h: 8, panels: [{ w: 12, panel: deniedRate }, { w: 12, panel: hostDeniedRate }] },
    { h: 10, panels: [{ w: 24, panel: topDeniedSources }] },
    { h: 12, panels: [{ w: 24, panel: recentDenied }] },
    { h: 9, panels: [{ w: 10, panel: worldToHostOverTime }, { w: 14, panel: worldToHost }] },
  ],
});

// ---- Traffic overview ------------------------------------------------------------------------

const packetsByVerdict = timeseries(
  'Packets by verdict',
  'Packets of allowed and audited flows (both directions) and denied packets, per interval.',
  `
  SELECT ${TIME_BUCKET} AS time, verdict AS series, sum(n) AS value
  FROM ${rollupOrRaw({
    rollupSelect: 'verdict, packets_fwd + packets_rev AS n',
    rawSelect: 'verdict, packets_fwd + packets_rev AS n',
    where: "kind IN ('flow', 'denied')",
  })}
  GROUP BY time, series
  ORDER BY time`,
  'short',
);

const bytesByNamespace = timeseries(
  'Bytes by source namespace',
  'Bytes of allowed flows (both directions) per interval, by the namespace that opened them.',
  `
  SELECT ${TIME_BUCKET} AS time, ns AS series, sum(n) AS value
  FROM ${rollupOrRaw({
    rollupSelect: `${namespaceOrKind('src')} AS ns, bytes_fwd + bytes_rev AS n`,
    rawSelect: `${namespaceOrKind('src')} AS ns, bytes_fwd + bytes_rev AS n`,
    where: "kind = 'flow'",
  })}
  GROUP BY time, series
  ORDER BY time`,
  'bytes',
);

const verdicts = {
  type: 'piechart',
  title: 'Verdicts',
  description: 'Connections started (allowed, audit) and denied flow records in the time range, by verdict: what weir_flows_total counts.',
  datasource: DS_CLICKHOUSE,
  targets: [chSql(`
    SELECT verdict, sum(n) AS flows
    FROM ${rollupOrRaw({
      rollupSelect: "verdict, if(kind = 'flow', connections_started, flows) AS n",
      rawSelect: "verdict, if(kind = 'flow', connections_started, 1) AS n",
      where: "kind IN ('flow', 'denied')",
    })}
    GROUP BY verdict
    ORDER BY verdict`, 'table')],
  fieldConfig: { defaults: { unit: 'short' }, overrides: [] },
  options: { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: true }, pieType: 'donut', legend: { displayMode: 'table', placement: 'right', values: ['value', 'percent'] } },
} satisfies PanelSpec;

const topTalkers = table(
  'Top talkers',
  'Source and destination pairs with the most bytes of allowed flows.',
  `
  SELECT source, destination, sum(bytes) AS bytes, sum(packets) AS packets, sum(connections) AS connections
  FROM ${rollupOrRaw({
    rollupSelect: `${endpointRollup('src')} AS source, ${endpointRollup('dst')} AS destination, bytes_fwd + bytes_rev AS bytes, packets_fwd + packets_rev AS packets, count AS connections`,
    rawSelect: `${endpointRaw('src')} AS source, ${endpointRaw('dst')} AS destination, bytes_fwd + bytes_rev AS bytes, packets_fwd + packets_rev AS packets, count AS connections`,
    where: "kind = 'flow'",
  })}
  GROUP BY source, destination
  ORDER BY bytes DESC, source, destination
  LIMIT 20`,
  [
    column('bytes', { unit: 'bytes', 'custom.cellOptions': { type: 'gauge', mode: 'basic' } }),
    column('packets', { unit: 'short' }),
  ],
);

const namespaceMatrix = table(
  'Namespace to namespace (bytes)',
  'Bytes of allowed flows from each source namespace (rows) to each destination namespace (columns); hosts and the world as (host) and (world).',
  `
  SELECT source_namespace, destination_namespace, sum(n) AS bytes
  FROM ${rollupOrRaw({
    rollupSelect: `${namespaceOrKind('src')} AS source_namespace, ${namespaceOrKind('dst')} AS destination_namespace, bytes_fwd + bytes_rev AS n`,
    rawSelect: `${namespaceOrKind('src')} AS source_namespace, ${namespaceOrKind('dst')} AS destination_namespace, bytes_fwd + bytes_rev AS n`,
    where: "kind = 'flow'",
  })}
  GROUP BY source_namespace, destination_namespace
  ORDER BY source_namespace, destination_namespace`,
  [],
  [{ id: 'groupingToMatrix', options: { rowField: 'source_namespace', columnField: 'destination_namespace', valueField: 'bytes', emptyValue: 'zero' } }],
);

const deniedMatrix = table(
  'Namespace to namespace (denied packets)',
  'Denied packets from each source namespace (rows) to each destination namespace (columns).',
  `
  SELECT source_namespace, destination_namespace, sum(n) AS packets
  FROM ${rollupOrRaw({
    rollupSelect: `${namespaceOrKind('src')} AS source_namespace, ${namespaceOrKind('dst')} AS destination_namespace, count AS n`,
    rawSelect: `${namespaceOrKind('src')} AS source_namespace, ${namespaceOrKind('dst')} AS destination_namespace, count AS n`,
    where: "kind = 'denied'",
  })}
  GROUP BY source_namespace, destination_namespace
  ORDER BY source_namespace, destination_namespace`,
  [],
  [{ id: 'groupingToMatrix', options: { rowField: 'source_namespace', columnField: 'destination_namespace', valueField: 'packets', emptyValue: 'zero' } }],
);

const bytesRate = promRate(
  'Throughput by verdict (live)',
  'From the agents\' metrics: bytes per second of allowed and audit flows by verdict, and packets per second the datapath judged by verdict.',
  'sum by (verdict) (rate(weir_flow_bytes_total{namespace=~"$namespace"}[$__rate_interval]))',
  '{{verdict}}',
  'Bps',
);

const datapathRate: PanelSpec = {
  ...promRate('Datapath verdicts per second (live)', 'Packets per second the datapath judged on all nodes, by verdict and reason.',
    'sum by (verdict, reason) (rate(weir_datapath_packets_total[$__rate_interval]))', '{{verdict}} {{reason}}', 'pps'),
};

export const trafficOverview = dashboard({
  uid: 'weir-traffic-overview',
  title: 'Weir / Traffic overview',
  description: 'Who talks to whom: verdicts, top talkers and the namespace-to-namespace matrix, from the flow store.',
  variables: FLOW_VARIABLES,
  rows: [
    { h: 9, panels: [{ w: 16, panel: packetsByVerdict }, { w: 8, panel: verdicts }] },
    { h: 9, panels: [{ w: 24, panel: bytesByNamespace }] },
    { h: 8, panels: [{ w: 12, panel: bytesRate }, { w: 12, panel: datapathRate }] },
    { h: 10, panels: [{ w: 24, panel: topTalkers }] },
    { h: 9, panels: [{ w: 12, panel: namespaceMatrix }, { w: 12, panel: deniedMatrix }] },
  ],
});
