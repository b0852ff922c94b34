// The read-only check of the ClickHouse-compatible endpoint. ClickHouse itself parses the query:
// `formatQuerySingleLine` (with the query as a bound parameter, so nothing of it runs) turns it into
// one canonical statement or refuses it (multi-statements, syntax errors); `EXPLAIN AST` of that
// canonical text gives the tree checked here. What runs afterwards is exactly the text checked, with
// our SETTINGS and FORMAT appended, so no comment, quoting or second statement can differ between
// the check and the run. Pure functions over the texts ClickHouse returned: tested without a store.
import { CH, ClickHouseHttpError } from './clickhouse-errors.js';

export interface ReadPolicy {
  /** the store's database: unqualified names resolve there */
  readonly database: string;
  /** tables that may be read, unqualified, in the store's database */
  readonly flowTables: ReadonlySet<string>;
  /** `db.table` that may be read (lower case for system tables) */
  readonly qualifiedTables: ReadonlySet<string>;
  /** every table function the engine knows (lower case): none may appear unless allowed */
  readonly tableFunctions: ReadonlySet<string>;
  /** table functions that read nothing outside the query (numbers, zeros...) */
  readonly allowedTableFunctions: ReadonlySet<string>;
}

/** The flow tables (src/store/schema.ts). */
export const FLOW_TABLES = ['flows', 'flows_1m', 'flows_1h'] as const;

/** What Grafana's schema browser and query builder read, and what is harmless to read. */
export const SYSTEM_TABLES = [
  'one', 'numbers', 'zeros', 'databases', 'tables', 'columns', 'functions', 'table_functions',
  'data_type_families', 'formats', 'time_zones', 'table_engines', 'aggregate_function_combinators', 'keywords',
] as const;

export const ALLOWED_TABLE_FUNCTIONS = ['numbers', 'numbers_mt', 'zeros', 'zeros_mt', 'generate_series', 'generateseries', 'values', 'null', 'format'] as const;

/**
 * Functions that reach outside the query whatever their position: `file` reads the host's files
 * (also as a scalar function), models and dictionaries load files or reach other sources. Table
 * functions are refused from the engine's own list besides these.
 */
const DENIED_FUNCTIONS = /^(file|url|remote|remotesecure|s3|s3cluster|hdfs|executable|catboostevaluate|naivebayesclassifier|evalmlmethod|dict[a-z0-9]*|joinget[a-z]*|filesystem[a-z]*|getclienthttpheader|__[a-z0-9_]*)$/;

const IN_FUNCTIONS = new Set(['in', 'notin', 'globalin', 'globalnotin', 'nullin', 'notnullin', 'globalnullin', 'globalnotnullin']);

const deny = (msg: string) => ClickHouseHttpError.of(CH.ACCESS_DENIED, msg);
const readonly = (msg: string) => ClickHouseHttpError.of(CH.READONLY, msg);

/** A canonical statement without its FORMAT clause, and the format it named. */
export function stripFormat(canonical: string): { sql: string; format?: string } {
  const m = / FORMAT ([A-Za-z][A-Za-z0-9_]*)$/.exec(canonical);
  if (!m) return { sql: canonical };
  return { sql: canonical.slice(0, m.index), format: m[1]! };
}

export interface AstNode {
  readonly text: string;
  readonly children: AstNode[];
}

/** `EXPLAIN AST` rows (one node a row, indented one space a level) as a tree. */
export function parseAst(rows: readonly string[]): AstNode[] {
  const roots: AstNode[] = [];
  const stack: { depth: number; node: AstNode }[] = [];
  for (const row of rows) {
    const depth = row.length - row.trimStart().length;
    const node: AstNode = { text: row.trim(), children: [] };
    while (stack.length > 0 && stack[stack.length - 1]!.depth >= depth) stack.pop();
    const parent = stack[stack.length - 1];
    if (parent) {
      if (depth !== parent.depth + 1) throw new Error(`EXPLAIN AST: row ${JSON.stringify(row)} is indented ${depth - parent.depth} levels below its parent`);
      parent.node.children.push(node);
    } else {
      if (depth !== 0) throw new Error(`EXPLAIN AST: row ${JSON.stringify(row)} has no parent`);
      roots.push(node);
    }
    stack.push({ depth, node });
  }
  return roots;
}

const kindOf = (n: AstNode): string => n.text.split(' ')[0]!;

/** `TableIdentifier db.t (alias x) (children 1)` -> `db.t`; names outside [A-Za-z0-9_.] are refused. */
function tableName(n: AstNode): string {
  const m = /^(?:Table)?Identifier ([A-Za-z0-9_.]+)(?: \(alias [A-Za-z0-9_]+\))?(?: \(children \d+\))?$/.exec(n.text);
  if (!m) throw deny(`reading ${JSON.stringify(n.text.replace(/^(Table)?Identifier /, ''))} is not allowed here (only plain table names)`);
  return m[1]!;
}

function functionName(n: AstNode): string {
  return n.text.split(' ')[1] ?? '';
}

/** Names the query gives its common table expressions (`WITH name AS (SELECT ...)`). */
export function cteNames(canonical: string): Set<string> {
  const names = new Set<string>();
  for (const m of canonical.matchAll(/(?:\bWITH|,) +(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*) +AS +\(/g)) names.add(m[1]!.replace(/`/g, ''));
  return names;
}

/** A table reference must be a flow table, an allow-listed `db.table`, or one of the query's CTEs. */
function checkTable(name: string, policy: ReadPolicy, ctes: ReadonlySet<string>): void {
  const dot = name.indexOf('.');
  if (dot < 0) {
    if (policy.flowTables.has(name) || ctes.has(name)) return;
    throw deny(`reading table ${policy.database}.${name} is not allowed here (allowed: ${[...policy.flowTables].join(', ')}, ${[...policy.qualifiedTables].join(', ')})`);
  }
  const db = name.slice(0, dot);
  const table = name.slice(dot + 1);
  if (db === policy.database && policy.flowTables.has(table)) return;
  // exact: database and table names are case-sensitive in ClickHouse
  if (policy.qualifiedTables.has(name)) return;
  throw deny(`reading table ${name} is not allowed here (allowed: ${[...policy.flowTables].join(', ')}, ${[...policy.qualifiedTables].join(', ')})`);
}

function walk(n: AstNode, policy: ReadPolicy, ctes: ReadonlySet<string>): void {
  const kind = kindOf(n);
  if (kind === 'Set') throw readonly('a SETTINGS clause is not allowed here (pass allowed settings as URL parameters)');
  if (kind === 'TableIdentifier') checkTable(tableName(n), policy, ctes);
  if (kind === 'Function') {
    const name = functionName(n).toLowerCase();
    if (DENIED_FUNCTIONS.test(name)) throw deny(`function ${functionName(n)} is not allowed here`);
    if (policy.tableFunctions.has(name) && !policy.allowedTableFunctions.has(name)) throw deny(`table function ${functionName(n)} is not allowed here (allowed: ${[...policy.allowedTableFunctions].join(', ')})`);
    // `x IN table`: the right side names a table to read
    if (IN_FUNCTIONS.has(name)) {
      const rhs = n.children[0]?.children[1];
      if (rhs && (kindOf(rhs) === 'Identifier' || kindOf(rhs) === 'TableIdentifier')) checkTable(tableName(rhs), policy, ctes);
    }
  }
  for (const c of n.children) walk(c, policy, ctes);
}

export type StatementKind = 'select' | 'describe' | 'exists' | 'show';

/**
 * Accepts one SELECT (WITH, UNION, INTERSECT...), DESCRIBE, EXISTS, SHOW TABLES or SHOW DATABASES
 * reading only what the policy allows; throws READONLY or ACCESS_DENIED naming what it refused.
 * `sql` is the canonical statement without FORMAT (what will run), `ast` its EXPLAIN AST rows.
 */
export function checkReadOnly(sql: string, ast: readonly string[], policy: ReadPolicy): StatementKind {
  const roots = parseAst(ast);
  if (roots.length !== 1) throw ClickHouseHttpError.of(CH.SYNTAX_ERROR, 'exactly one statement is allowed');
  const root = roots[0]!;
  const ctes = cteNames(sql);
  const kind = kindOf(root);
  // the query's own SETTINGS, wherever the formatter put them (before or after FORMAT)
  if (root.children.some((c) => kindOf(c) === 'Set')) throw readonly('a SETTINGS clause is not allowed here (pass allowed settings as URL parameters)');
  switch (kind) {
    case 'SelectWithUnionQuery':
    case 'SelectIntersectExceptQuery': {
      // a top-level Literal is INTO OUTFILE (which writes a file even with readonly = 1), an
      // Identifier a FORMAT we did not strip, a Set the query's SETTINGS
      for (const c of root.children) {
        if (kindOf(c) === 'Literal') throw readonly('INTO OUTFILE is not allowed here');
        if (kindOf(c) !== 'ExpressionList' && kindOf(c) !== 'Set') throw readonly(`unexpected clause (${c.text}) in the query`);
      }
      walk(root, policy, ctes);
      return 'select';
    }
    case 'DescribeQuery':
      for (const c of root.children) if (kindOf(c) !== 'TableExpression' && kindOf(c) !== 'Set') throw readonly(`unexpected clause (${c.text}) in DESCRIBE`);
      walk(root, policy, ctes);
      return 'describe';
    case 'ExistsTableQuery':
    case 'ExistsDatabaseQuery':
    case 'ExistsDictionaryQuery':
    case 'ExistsViewQuery':
      // tells whether a name exists, nothing more
      for (const c of root.children) if (kindOf(c) !== 'Identifier') throw readonly(`unexpected clause (${c.text}) in EXISTS`);
      return 'exists';
    case 'ShowTables':
      // SHOW SETTINGS, SHOW CLUSTERS, SHOW MERGES... parse to the same node; only these two pass
      if (!/^SHOW (TABLES|DATABASES)\b/.test(sql)) throw readonly(`only SHOW TABLES and SHOW DATABASES are allowed here, not ${JSON.stringify(sql.split(' ').slice(0, 2).join(' '))}`);
      for (const c of root.children) if (kindOf(c) !== 'Identifier' && kindOf(c) !== 'Literal') throw readonly(`unexpected clause (${c.text}) in SHOW`);
      return 'show';
    default:
      throw readonly(`only SELECT, DESCRIBE, EXISTS, SHOW TABLES and SHOW DATABASES are allowed here, not ${statementWord(sql)}`);
  }
}

function statementWord(sql: string): string {
  return JSON.stringify(sql.split(/\s+/).slice(0, 2).join(' ').slice(0, 40));
}

// ---- query parameters ---------------------------------------------------------------------------

/** `{name:Type}` placeholders of a canonical statement: name -> type. */
export function placeholderTypes(sql: string): Map<string, string> {
  const types = new Map<string, string>();
  // types nest parentheses (Array(Tuple(String, UInt8))) but never braces
  for (const m of sql.matchAll(/\{([A-Za-z_][A-Za-z0-9_]*) *: *([^{}]+)\}/g)) types.set(m[1]!, m[2]!.trim());
  return types;
}

const SIMPLE_ESCAPES: Record<string, string> = { b: '\b', f: '\f', r: '\r', n: '\n', t: '\t', '0': '\0', "'": "'", '"': '"', '\\': '\\', a: '\x07', v: '\v', e: '\x1b' };

/** ClickHouse's Escaped text (how HTTP carries `param_x` values) to the value it stands for. */
export function unescapeTsv(s: string): string {
  if (!s.includes('\\')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\' || i + 1 >= s.length) { out += c; continue; }
    const n = s[++i]!;
    if (n === 'x' && /^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) {
      out += String.fromCharCode(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out += SIMPLE_ESCAPES[n] ?? n;
    }
  }
  return out;
}

const COMPOSITE = /^(Nullable\(|LowCardinality\()*(Array|Tuple|Map|Nested|Variant|JSON|Object)\b/;

/**
 * An HTTP `param_<name>` value as chDB's binder wants it. chDB takes a JS string and TSV-escapes
 * it before the engine parses it as the placeholder's type, while HTTP sends text already escaped:
 * a scalar's text is unescaped here (chDB escapes it again). A composite (Array, Tuple, Map) is
 * parsed by the engine as a literal with quoted strings inside, so its text must reach the engine
 * as sent: backslashes inside it are translated to what survives chDB's escaping (`\'` -> `''`,
 * `\\` -> `\`, `\n` -> a newline...). `\N` alone is NULL.
 */
export function paramValue(name: string, raw: string, type: string | undefined): string | null {
  if (raw === '\\N') return null;
  if (type === undefined || !COMPOSITE.test(type)) return unescapeTsv(raw);
  if (!raw.includes('\\')) return raw;
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== '\\') { out += c; continue; }
    const n = raw[++i];
    if (n === "'") out += "''";
    else if (n === '\\') out += '\\';
    else if (n !== undefined && 'bfrnt0'.includes(n)) out += SIMPLE_ESCAPES[n];
    else throw ClickHouseHttpError.of(CH.BAD_QUERY_PARAMETER, `param_${name}: the escape \\${n ?? ''} is not supported in a ${type} parameter here (use '' for a quote)`);
  }
  return out;
}
