// SQL fragments of the flow dashboards, over the store's schema (src/store/schema.ts, docs/flows.md),
// written for the grafana-clickhouse-datasource plugin: Grafana variables (`${namespace:singlequote}`)
// and the plugin's macros (`$__timeFilter(ts)`, `$__conditionalAll(cond, $var)`, `$__interval_s`)
// are expanded before the SQL reaches ClickHouse (or the agent's ClickHouse-compatible endpoint).
//
// Rollups or raw rows: the minute rollup (flows_1m) is far cheaper than the raw table, but keeps
// no labels. So a time series or summary reads the rollup while the `label` variable is "All" and
// the raw rows when a label is picked: `$__conditionalAll(0, $label)` is `1=1` for "All" and `0`
// otherwise, so exactly one branch of a UNION ALL reads anything (ClickHouse skips a branch whose
// WHERE is constant false without reading a part).

import { FLOWS_TABLE, MINUTE_TABLE } from '../store/schema.js';

export { FLOWS_TABLE, MINUTE_TABLE };

/** Either side in one of the chosen namespaces; `1=1` when "All". */
export const NAMESPACE_FILTER =
  '$__conditionalAll((src_namespace IN (${namespace:singlequote}) OR dst_namespace IN (${namespace:singlequote})), $namespace)';

/** A side's labels as `key=value` strings. */
export function labelPairs(side: 'src' | 'dst'): string {
  return `arrayMap((k, v) -> concat(k, '=', v), mapKeys(${side}_labels), mapValues(${side}_labels))`;
}

/** Either side carries one of the chosen `key=value` labels; `1=1` when "All". Raw rows only. */
export const LABEL_FILTER =
  `$__conditionalAll((hasAny(${labelPairs('src')}, [\${label:singlequote}]) OR hasAny(${labelPairs('dst')}, [\${label:singlequote}])), $label)`;

/** true exactly when no label is chosen: the rollup branch */
export const NO_LABEL = '$__conditionalAll(0, $label)';
/** true exactly when a label is chosen: the raw branch */
export const SOME_LABEL = `NOT (${NO_LABEL})`;

/** Time buckets: Grafana's interval, but never finer than the minute rollup. */
export const TIME_BUCKET = 'toStartOfInterval(t, INTERVAL greatest($__interval_s, 60) SECOND)';

/**
 * An address as text: IPv4-mapped addresses (the store keeps IPv4 as ::ffff:a.b.c.d) as plain
 * IPv4, IPv6 as is.
 */
export function ipText(col: string): string {
  return `replaceRegexpOne(toString(${col}), '^::ffff:([0-9.]+)$', '\\\\1')`;
}

/** A protocol number in words. */
export const PROTOCOL_NAME = "transform(protocol, [1, 6, 17, 58, 132], ['ICMP', 'TCP', 'UDP', 'ICMPv6', 'SCTP'], toString(protocol))";

/**
 * A side in words, from the raw table: `namespace/pod` for pods, `host <endpoint>` for hosts,
 * `world <CIDR name>` for the world.
 */
export function endpointRaw(side: 'src' | 'dst'): string {
  return (
    `multiIf(${side}_kind = 'pod', concat(${side}_namespace, '/', ${side}_pod), ` +
    `${side}_kind = 'host', if(${side}_host_endpoint = '', 'host', concat('host ', ${side}_host_endpoint)), ` +
    `${side}_name = '', ${side}_kind, concat(${side}_kind, ' ', ${side}_name))`
  );
}

/** The same from a rollup, which keeps pods but not host endpoints or world names. */
export function endpointRollup(side: 'src' | 'dst'): string {
  return `if(${side}_kind = 'pod', concat(${side}_namespace, '/', ${side}_pod), ${side}_kind)`;
}

/** A namespace, or `(host)` / `(world)` for sides without one. */
export function namespaceOrKind(side: 'src' | 'dst'): string {
  return `if(${side}_namespace != '', ${side}_namespace, concat('(', ${side}_kind, ')'))`;
}

export interface Branches {
  /** the column list of both branches, `t` (the time, DateTime) first when `time` */
  readonly rollupSelect: string;
  readonly rawSelect: string;
  /** conditions both branches share (besides time, namespace and label) */
  readonly where: string;
  /** false: the namespace variable does not apply (rows with no namespace either side) */
  readonly namespaces?: boolean;
}

/**
 * The rows of both sources, one of which reads anything: the minute rollup when no label is
 * chosen, the raw rows filtered by the label otherwise. Time is `t` (DateTime, UTC) in both.
 */
export function rollupOrRaw(b: Branches): string {
  const ns = b.namespaces === false ? '' : `\n      AND ${NAMESPACE_FILTER}`;
  return `(
    SELECT toDateTime(ts, 'UTC') AS t, ${b.rollupSelect}
    FROM ${MINUTE_TABLE}
    WHERE $__timeFilter(ts) AND ${b.where}${ns}
      AND ${NO_LABEL}
    UNION ALL
    SELECT toDateTime(ts, 'UTC') AS t, ${b.rawSelect}
    FROM ${FLOWS_TABLE}
    WHERE $__timeFilter(ts) AND ${b.where}${ns}
      AND ${SOME_LABEL}
      AND ${LABEL_FILTER}
  )`;
}

/** The namespace variable's values: every namespace either side of a flow in the time range. */
export const NAMESPACES_SQL = `
  SELECT DISTINCT arrayJoin([src_namespace, dst_namespace]) AS namespace
  FROM flows_1h
  WHERE ts >= toStartOfHour($__fromTime) AND ts <= $__toTime AND namespace != ''
  ORDER BY namespace`;

/** The label variable's values: `key=value` of either side, in the chosen namespaces. */
export const LABELS_SQL = `
  SELECT DISTINCT arrayJoin(arrayConcat(${labelPairs('src')}, ${labelPairs('dst')})) AS label
  FROM ${FLOWS_TABLE}
  WHERE $__timeFilter(ts) AND ${NAMESPACE_FILTER}
  ORDER BY label
  LIMIT 1000`;

/** Loss rows (kind lost) by node and where the loss happened; few rows, so the raw table. */
export const LOST_ROWS_SQL = `
  SELECT $__timeInterval(ts) AS time, concat(reporter, ' ', reason) AS series, sum(count) AS value
  FROM ${FLOWS_TABLE}
  WHERE $__timeFilter(ts) AND kind = 'lost'
  GROUP BY time, series
  ORDER BY time`;
