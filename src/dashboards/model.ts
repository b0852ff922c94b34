// The parts of Grafana's dashboard JSON model our dashboards use, and builders for them. The
// dashboards are written in TypeScript (dashboards.ts) so their SQL can be template literals
// sharing fragments, and generated into dashboards/*.json (generate.ts), which is what users
// import and what the tests check.

/** Grafana's dashboard schema version these files are written against (Grafana 10.4 / 11). */
export const SCHEMA_VERSION = 39;

export const CLICKHOUSE_TYPE = 'grafana-clickhouse-datasource';
export const PROMETHEUS_TYPE = 'prometheus';

/** Datasource template variables: users pick their ClickHouse (or the agent's endpoint) and Prometheus. */
export const DS_CLICKHOUSE = { type: CLICKHOUSE_TYPE, uid: '${DS_CLICKHOUSE}' } as const;
export const DS_PROMETHEUS = { type: PROMETHEUS_TYPE, uid: '${DS_PROMETHEUS}' } as const;

export type Datasource = typeof DS_CLICKHOUSE | typeof DS_PROMETHEUS;

/** A query of the ClickHouse plugin (v4) in its SQL editor. `format`: 0 time series, 1 table. */
export interface ClickHouseTarget {
  readonly refId: string;
  readonly datasource: typeof DS_CLICKHOUSE;
  readonly editorType: 'sql';
  readonly queryType: 'timeseries' | 'table';
  readonly format: 0 | 1;
  readonly rawSql: string;
}

export interface PrometheusTarget {
  readonly refId: string;
  readonly datasource: typeof DS_PROMETHEUS;
  readonly expr: string;
  readonly legendFormat: string;
  readonly range: true;
  readonly instant: false;
  /** open in the code editor, as written */
  readonly editorMode: 'code';
}

export type Target = ClickHouseTarget | PrometheusTarget;

export interface GridPos {
  readonly h: number;
  readonly w: number;
  readonly x: number;
  readonly y: number;
}

export interface Panel {
  id: number;
  readonly type: string;
  readonly title: string;
  readonly description: string;
  gridPos: GridPos;
  readonly datasource: Datasource;
  readonly targets: readonly Target[];
  readonly fieldConfig: { defaults: Record<string, unknown>; overrides: unknown[] };
  readonly options: Record<string, unknown>;
  readonly transformations?: readonly unknown[];
}

export function chSql(rawSql: string, format: 'timeseries' | 'table', refId = 'A'): ClickHouseTarget {
  return {
    refId,
    datasource: DS_CLICKHOUSE,
    editorType: 'sql',
    queryType: format,
    format: format === 'timeseries' ? 0 : 1,
    rawSql: dedent(rawSql),
  };
}

export function promQl(expr: string, legendFormat: string, refId = 'A'): PrometheusTarget {
  return { refId, datasource: DS_PROMETHEUS, editorMode: 'code', expr: dedent(expr), legendFormat, range: true, instant: false };
}

/** Removes the common indentation of a template literal, so the SQL reads well in Grafana's editor. */
export function dedent(s: string): string {
  const lines = s.replace(/^\n/, '').replace(/\s+$/, '').split('\n');
  const indent = Math.min(...lines.filter((l) => l.trim() !== '').map((l) => /^ */.exec(l)![0].length));
  return lines.map((l) => l.slice(indent)).join('\n');
}

/** A byName override: display name, unit, width... of one result column. */
export function column(name: string, properties: Record<string, unknown>): unknown {
  return {
    matcher: { id: 'byName', options: name },
    properties: Object.entries(properties).map(([id, value]) => ({ id, value })),
  };
}

export function datasourceVariable(name: string, label: string, pluginType: string): unknown {
  return { type: 'datasource', name, label, query: pluginType, current: {}, hide: 0, refresh: 1, regex: '', options: [] };
}

/** A multi-value query variable over the ClickHouse datasource, "All" selected by default. */
export function queryVariable(name: string, label: string, sql: string, description: string, allValue?: string): unknown {
  const rawSql = dedent(sql);
  return {
    type: 'query',
    name,
    label,
    description,
    datasource: DS_CLICKHOUSE,
    query: { refId: name, queryType: 'sql', rawSql },
    definition: rawSql,
    multi: true,
    includeAll: true,
    // a custom "All" value is inserted as it is, unquoted: only for variables a Prometheus regex
    // matcher uses (ClickHouse SQL must wrap such a variable in $__conditionalAll)
    ...(allValue !== undefined ? { allValue } : {}),
    current: { selected: true, text: ['All'], value: ['$__all'] },
    options: [],
    // on time range change: the values present in the range
    refresh: 2,
    sort: 1,
    hide: 0,
    regex: '',
    skipUrlSync: false,
  };
}

export interface DashboardSpec {
  readonly uid: string;
  readonly title: string;
  readonly description: string;
  readonly variables: readonly unknown[];
  /** rows of panels; each row's panels share its height and are laid out left to right */
  readonly rows: ReadonlyArray<{ readonly h: number; readonly panels: ReadonlyArray<{ readonly w: number; readonly panel: Omit<Panel, 'id' | 'gridPos'> }> }>;
}

/** Every weir dashboard links to the others by their shared tag. */
export const TAG = 'weir';

export function dashboard(spec: DashboardSpec): Record<string, unknown> {
  const panels: Panel[] = [];
  let y = 0;
  for (const row of spec.rows) {
    let x = 0;
    for (const { w, panel } of row.panels) {
      if (x + w > 24) throw new Error(`${spec.uid}: row at y=${y} is wider than 24 columns at "${panel.title}"`);
      panels.push({ ...panel, id: panels.length + 1, gridPos: { h: row.h, w, x, y } });
      x += w;
    }
    y += row.h;
  }
  const types = new Set(panels.map((p) => p.datasource.type));
  return {
    // what Grafana's import page lists as needed (informational: the data source variables bind)
    __requires: [
      { type: 'grafana', id: 'grafana', name: 'Grafana', version: '10.4.0' },
      ...(types.has(CLICKHOUSE_TYPE) ? [{ type: 'datasource', id: CLICKHOUSE_TYPE, name: 'ClickHouse', version: '4.0.0' }] : []),
      ...(types.has(PROMETHEUS_TYPE) ? [{ type: 'datasource', id: PROMETHEUS_TYPE, name: 'Prometheus', version: '1.0.0' }] : []),
    ],
    uid: spec.uid,
    title: spec.title,
    description: spec.description,
    tags: [TAG],
    editable: true,
    graphTooltip: 1,
    schemaVersion: SCHEMA_VERSION,
    version: 1,
    timezone: 'browser',
    time: { from: 'now-6h', to: 'now' },
    refresh: '1m',
    fiscalYearStartMonth: 0,
    liveNow: false,
    annotations: { list: [] },
    links: [{ type: 'dashboards', tags: [TAG], asDropdown: true, title: 'Weir', includeVars: true, keepTime: true }],
    templating: { list: spec.variables },
    panels,
  };
}
