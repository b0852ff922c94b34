// What Grafana and the grafana-clickhouse-datasource plugin do to a panel's SQL before ClickHouse
// sees it, so the tests can run the dashboards' SQL against a real store. Test-only: the agent's
// ClickHouse-compatible endpoint receives SQL already expanded by Grafana.
//
// The order is the plugin's (v4):
// 1. its frontend replaces `$__conditionalAll(condition, $var)` by `1=1` when the variable is
//    "All" (or empty), else by the condition (CHDatasource.applyConditionalAll);
// 2. Grafana's template service interpolates variables (`$var`, `${var}`, `${var:format}`,
//    `[[var]]`, built-ins such as `$__from`), with the plugin's default format for a variable
//    written without one: a multi-value list as `'a','b'`, a single value raw;
// 3. its backend expands the macros (pkg/macros/macros.go): `$__timeFilter(col)`,
//    `$__timeFilter_ms(col)`, `$__fromTime`, `$__toTime`, `$__fromTime_ms`, `$__toTime_ms`,
//    `$__dateFilter(col)`, `$__dateTimeFilter(d, t)` (`$__dt`), `$__timeInterval(col)`,
//    `$__timeInterval_ms(col)`, `$__interval_s`.
// Unlike Grafana, an unknown variable, format or macro throws, naming it: a dashboard that
// references one is broken, and the tests should say so.

/** The selection of a query variable: some of its values, or "All". */
export type Selection = readonly string[] | 'all';

export interface VariableState {
  readonly name: string;
  /** a multi-value variable's value is a list even with one value picked (and formats so) */
  readonly multi: boolean;
  /** the variable's custom "All" value, inserted unformatted; else "All" means every option */
  readonly allValue?: string | null;
  /** the variable's options (what "All" stands for without a custom all value) */
  readonly options: readonly string[];
  readonly current: Selection;
}

export interface ExpandOptions {
  /** the dashboard's time range, UTC milliseconds */
  readonly from: number;
  readonly to: number;
  /** Grafana's interval for the panel (from the range and the panel's width) */
  readonly intervalMs: number;
  readonly variables: readonly VariableState[];
}

export class ExpandError extends Error {
  override readonly name = 'ExpandError';
}

/** SQL as ClickHouse receives it from Grafana through the plugin. */
export function expandQuery(sql: string, opts: ExpandOptions): string {
  return expandMacros(interpolate(applyConditionalAll(sql, opts.variables), opts), opts);
}

// ---- 1. $__conditionalAll --------------------------------------------------------------------

const CONDITIONAL_ALL = '$__conditionalAll(';

export function applyConditionalAll(sql: string, variables: readonly VariableState[]): string {
  // like the plugin: from the last occurrence backwards, so nested uses resolve inside out
  let at = sql.lastIndexOf(CONDITIONAL_ALL);
  while (at !== -1) {
    const args = macroArgs(sql, at + CONDITIONAL_ALL.length - 1);
    if (args === undefined || args.length !== 2) {
      throw new ExpandError(`$__conditionalAll at offset ${at} needs 2 arguments (condition, $variable)`);
    }
    const [condition, varArg] = args as [string, string];
    const m = /^\$\{(\w+)\}$|^\$(\w+)$/.exec(varArg.trim());
    if (!m) throw new ExpandError(`$__conditionalAll(${condition}, ${varArg}): the second argument is not a $variable`);
    const name = (m[1] ?? m[2])!;
    const v = variables.find((x) => x.name === name);
    if (!v) throw new ExpandError(`$__conditionalAll(..., $${name}): unknown template variable "${name}"`);
    const isAll = v.current === 'all' || v.current.length === 0 || (v.current.length === 1 && v.current[0] === '');
    const text = `${CONDITIONAL_ALL}${condition},${varArg})`;
    sql = sql.slice(0, at) + sql.slice(at).replace(text, isAll ? '1=1' : condition);
    at = sql.lastIndexOf(CONDITIONAL_ALL);
  }
  return sql;
}

/**
 * The arguments of `$__conditionalAll(` whose `(` is at `open`, as the plugin's frontend splits
 * them: at commas outside nested parentheses; it knows neither brackets nor string literals, so
 * neither does this (a condition with a comma in a string or directly in `[...]` breaks in Grafana
 * too). Not trimmed; undefined when unbalanced.
 */
function macroArgs(sql: string, open: number): string[] | undefined {
  return callAt(sql, open, false)?.args;
}

/**
 * A call's arguments split at top-level commas. `sqlAware`: brackets nest too and string literals
 * are skipped, as the backend's balanced argument parser does.
 */
function callAt(sql: string, open: number, sqlAware = true): { args: string[]; end: number } | undefined {
  let depth = 0;
  let start = open + 1;
  const args: string[] = [];
  for (let i = open; i < sql.length; i++) {
    const c = sql[i];
    if (sqlAware && c === "'") {
      // skip a string literal (backslash escapes, as ClickHouse's)
      for (i++; i < sql.length && sql[i] !== "'"; i++) if (sql[i] === '\\') i++;
      continue;
    }
    if (c === '(' || (sqlAware && c === '[')) depth++;
    else if (c === ')' || (sqlAware && c === ']')) {
      depth--;
      if (depth === 0) {
        args.push(sql.slice(start, i));
        return { args, end: i + 1 };
      }
    } else if (c === ',' && depth === 1) {
      args.push(sql.slice(start, i));
      start = i + 1;
    }
  }
  return undefined;
}

// ---- 2. Grafana's template variables ----------------------------------------------------------

// `$name`, `${name}`, `${name:format}`, `[[name]]`, `[[name:format]]` (Grafana's variable regex)
const VARIABLE = /\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}/g;

/** Grafana's formats for a value list; each quotes and joins as Grafana's format registry does. */
const FORMATS: Record<string, (values: readonly string[], multi: boolean) => string> = {
  raw: (v) => v.join(','),
  csv: (v) => v.join(','),
  text: (v) => v.join(' + '),
  pipe: (v) => v.join('|'),
  json: (v, multi) => JSON.stringify(multi ? v : v[0]),
  singlequote: (v) => v.map((s) => `'${s.replace(/'/g, "\\'")}'`).join(','),
  doublequote: (v) => v.map((s) => `"${s.replace(/"/g, '\\"')}"`).join(','),
  sqlstring: (v) => v.map((s) => `'${s.replace(/'/g, "''")}'`).join(','),
};

/** The plugin's format for a variable written without one: a list quoted, a single value raw. */
function pluginFormat(values: readonly string[], multi: boolean): string {
  return multi ? `'${values.join("','")}'` : values.join(',');
}

function builtins(opts: ExpandOptions): Record<string, string> {
  const rangeMs = opts.to - opts.from;
  return {
    __from: String(opts.from),
    __to: String(opts.to),
    __interval: intervalText(opts.intervalMs),
    __interval_ms: String(opts.intervalMs),
    __range: intervalText(rangeMs),
    __range_s: String(Math.round(rangeMs / 1000)),
    __range_ms: String(rangeMs),
  };
}

/** Grafana's interval text: the largest whole unit, e.g. 30s, 1m, 2h, 1d. */
function intervalText(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

export function interpolate(sql: string, opts: ExpandOptions): string {
  const builtin = builtins(opts);
  return sql.replace(VARIABLE, (whole, bare?: string, bracket?: string, bracketFmt?: string, braced?: string, bracedFmt?: string) => {
    const name = (bare ?? bracket ?? braced)!;
    const format = bracketFmt ?? bracedFmt;
    if (name in builtin) return builtin[name]!;
    const v = opts.variables.find((x) => x.name === name);
    if (!v) {
      // `$__macro` is the backend's (step 3); any other name is a variable the dashboard lacks
      if (bare !== undefined && name.startsWith('__')) return whole;
      throw new ExpandError(`${whole}: unknown template variable "${name}"`);
    }
    if (format !== undefined && !(format in FORMATS)) throw new ExpandError(`${whole}: unknown variable format "${format}"`);
    let values: readonly string[];
    if (v.current === 'all') {
      // Grafana inserts a custom all value as it is, unformatted
      if (v.allValue) return v.allValue;
      values = v.options;
    } else {
      values = v.current;
    }
    const multi = v.multi || v.current === 'all';
    return format !== undefined ? FORMATS[format]!(values, multi) : pluginFormat(values, multi);
  });
}

// ---- 3. The backend's macros ------------------------------------------------------------------

function dateTime(ms: number): string {
  return `toDateTime(${Math.floor(ms / 1000)})`;
}

function dateTime64(ms: number): string {
  return `fromUnixTimestamp64Milli(${Math.floor(ms)})`;
}

function date(ms: number): string {
  return `toDate('${new Date(ms).toISOString().slice(0, 10)}')`;
}

type Macro = (args: readonly string[], o: ExpandOptions) => string;

function arity(name: string, n: number, f: (args: readonly string[], o: ExpandOptions) => string): Macro {
  return (args, o) => {
    if (args.length !== n) throw new ExpandError(`$__${name}: expected ${n} argument${n === 1 ? '' : 's'}, received ${args.length}`);
    return f(args, o);
  };
}

const MACROS: Record<string, Macro> = {
  fromTime: (_, o) => dateTime(o.from),
  toTime: (_, o) => dateTime(o.to),
  fromTime_ms: (_, o) => dateTime64(o.from),
  toTime_ms: (_, o) => dateTime64(o.to),
  timeFilter: arity('timeFilter', 1, ([c], o) => `${c} >= ${dateTime(o.from)} AND ${c} <= ${dateTime(o.to)}`),
  timeFilter_ms: arity('timeFilter_ms', 1, ([c], o) => `${c} >= ${dateTime64(o.from)} AND ${c} <= ${dateTime64(o.to)}`),
  dateFilter: arity('dateFilter', 1, ([c], o) => `${c} >= ${date(o.from)} AND ${c} <= ${date(o.to)}`),
  dateTimeFilter: arity('dateTimeFilter', 2, ([d, t], o) =>
    `(${d} >= ${date(o.from)} AND ${d} <= ${date(o.to)}) AND (${t} >= ${dateTime(o.from)} AND ${t} <= ${dateTime(o.to)})`),
  timeInterval: arity('timeInterval', 1, ([c], o) =>
    `toStartOfInterval(toDateTime(${c}), INTERVAL ${Math.max(Math.floor(o.intervalMs / 1000), 1)} second)`),
  timeInterval_ms: arity('timeInterval_ms', 1, ([c], o) =>
    `toStartOfInterval(toDateTime64(${c}, 3), INTERVAL ${Math.max(Math.floor(o.intervalMs), 1)} millisecond)`),
  interval_s: (_, o) => String(Math.max(Math.floor(o.intervalMs / 1000), 1)),
};
MACROS.dt = MACROS.dateTimeFilter!;

export function expandMacros(sql: string, opts: ExpandOptions): string {
  let out = '';
  let i = 0;
  const re = /\$__(\w+)/g;
  for (let m = re.exec(sql); m !== null; m = re.exec(sql)) {
    const name = m[1]!;
    const macro = MACROS[name];
    if (!macro) throw new ExpandError(`$__${name}: unknown macro (the ClickHouse plugin has ${Object.keys(MACROS).map((k) => `$__${k}`).join(', ')})`);
    let end = re.lastIndex;
    let args: string[] = [];
    if (sql[end] === '(') {
      const call = callAt(sql, end);
      if (!call) throw new ExpandError(`$__${name}: unbalanced parentheses`);
      args = call.args.map((a) => a.trim());
      // `$__fromTime()` has no arguments, not one empty one
      if (args.length === 1 && args[0] === '') args = [];
      end = call.end;
    }
    out += sql.slice(i, m.index) + macro(args, opts);
    i = end;
    re.lastIndex = end;
  }
  return out + sql.slice(i);
}
