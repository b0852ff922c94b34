// Checks of one dashboard target, shared by the dashboard tests: a ClickHouse target's SQL,
// expanded as Grafana and the plugin would, run against a store; a Prometheus target's metric
// names looked up in the catalog. Errors name the dashboard, the panel and what is wrong.

import type { FlowStore } from '../../src/store/store.js';
import { specOfSeries, type MetricSpec } from '../../src/metrics/catalog.js';
import { expandQuery, type ExpandOptions, type VariableState } from './macros.js';
import { scan } from '../../src/metrics/promql.js';

/** Labels every scraped series has besides its own: Prometheus adds the target's. */
const TARGET_LABELS = ['instance', 'job'];

function labelsOf(series: string, spec: MetricSpec): string[] {
  return [...spec.labels, ...(spec.optionalLabels ?? []), ...TARGET_LABELS, ...(series.endsWith('_bucket') ? ['le'] : [])];
}

export interface DashboardFile {
  readonly file: string;
  readonly json: any;
}

export interface PanelTarget {
  readonly file: string;
  readonly uid: string;
  readonly panel: any;
  readonly target: any;
  /** `uid / panel title / refId`, as the expectations and messages name a target */
  readonly key: string;
}

export function targetsOf(d: DashboardFile): PanelTarget[] {
  const out: PanelTarget[] = [];
  for (const panel of d.json.panels ?? []) {
    for (const target of panel.targets ?? []) {
      out.push({ file: d.file, uid: d.json.uid, panel, target, key: `${d.json.uid} / ${panel.title} / ${target.refId}` });
    }
  }
  return out;
}

export interface QueryResult {
  readonly columns: readonly { readonly name: string; readonly type: string }[];
  readonly rows: readonly Record<string, unknown>[];
}

export class DashboardCheckError extends Error {
  override readonly name = 'DashboardCheckError';
}

/** Runs SQL on the store, returning column names and types and the rows (JSON format). */
export async function runSql(store: FlowStore, sql: string): Promise<QueryResult> {
  const rs = await store.client.query({ query: sql, format: 'JSON' });
  const body = await rs.json<Record<string, unknown>>();
  return { columns: body.meta ?? [], rows: body.data };
}

/**
 * Expands a ClickHouse target and runs it, checking that the result has exactly the expected
 * columns, in order. Throws naming the target: ClickHouse's own message for an unknown column or
 * function, or the columns that differ.
 */
export async function checkClickHouseTarget(
  store: FlowStore, t: PanelTarget, opts: ExpandOptions, expected: readonly string[],
): Promise<QueryResult> {
  let sql: string;
  try {
    sql = expandQuery(t.target.rawSql, opts);
  } catch (err) {
    throw new DashboardCheckError(`${t.file}: panel "${t.panel.title}" (${t.target.refId}): ${(err as Error).message}`);
  }
  let result: QueryResult;
  try {
    result = await runSql(store, sql);
  } catch (err) {
    throw new DashboardCheckError(
      `${t.file}: panel "${t.panel.title}" (${t.target.refId}) does not run: ${firstLine((err as Error).message)}\n--- expanded SQL:\n${sql}`,
    );
  }
  const names = result.columns.map((c) => c.name);
  if (names.join(',') !== expected.join(',')) {
    const missing = expected.filter((c) => !names.includes(c));
    const extra = names.filter((c) => !expected.includes(c));
    throw new DashboardCheckError(
      `${t.file}: panel "${t.panel.title}" (${t.target.refId}) returns columns [${names.join(', ')}], expected [${expected.join(', ')}]` +
        (missing.length ? `; missing: ${missing.join(', ')}` : '') + (extra.length ? `; unexpected: ${extra.join(', ')}` : ''),
    );
  }
  return result;
}

/** ClickHouse repeats the whole query after its message; the first sentence names the problem. */
function firstLine(message: string): string {
  return message
    .split('\n')[0]!
    .replace(/ in scope [\s\S]*?(?=\. Maybe you meant|$)/, '')
    .replace(/: While processing.*$/, '')
    .slice(0, 600);
}

/**
 * Throws naming the panel and every metric a Prometheus target reads that the agent does not
 * export, every label a selector matches on that its metric lacks, and every label grouped by or
 * shown in the legend that none of the expression's metrics has. Returns the metric names.
 */
export function checkPrometheusTarget(t: PanelTarget): string[] {
  const where = `${t.file}: panel "${t.panel.title}" (${t.target.refId})`;
  const { selectors, grouping } = scan(t.target.expr);
  if (selectors.length === 0) throw new DashboardCheckError(`${where}: no metric name found in ${JSON.stringify(t.target.expr)}`);
  const names = [...new Set(selectors.map((s) => s.name))];
  const missing = names.filter((n) => specOfSeries(n) === undefined);
  if (missing.length > 0) {
    throw new DashboardCheckError(`${where} reads ${missing.map((m) => `"${m}"`).join(', ')}, not in src/metrics/catalog.ts`);
  }
  const known = new Set<string>();
  for (const s of selectors) {
    const own = labelsOf(s.name, specOfSeries(s.name)!);
    own.forEach((l) => known.add(l));
    const bad = s.labels.filter((l) => !own.includes(l));
    if (bad.length > 0) throw new DashboardCheckError(`${where}: ${s.name} has no label ${bad.map((l) => `"${l}"`).join(', ')} (it has ${own.join(', ')})`);
  }
  const legend = [...String(t.target.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!);
  const unknown = [...grouping, ...legend].filter((l) => !known.has(l));
  if (unknown.length > 0) {
    throw new DashboardCheckError(`${where}: groups or labels by ${[...new Set(unknown)].map((l) => `"${l}"`).join(', ')}, a label none of ${names.join(', ')} has`);
  }
  return names;
}

/** The dashboard's query variables as the expander takes them, with a selection each. */
export function variableStates(d: DashboardFile, options: Record<string, readonly string[]>, current: Record<string, readonly string[] | 'all'>): VariableState[] {
  return (d.json.templating?.list ?? [])
    .filter((v: any) => v.type === 'query' || v.type === 'custom' || v.type === 'textbox')
    .map((v: any) => ({
      name: v.name,
      multi: Boolean(v.multi),
      allValue: v.allValue ?? null,
      options: options[v.name] ?? [],
      current: current[v.name] ?? 'all',
    }));
}
