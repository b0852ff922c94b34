// FlowFilter -> a parameterized WHERE clause. Every value the user gave travels as a ClickHouse
// query parameter ({p0:String}, ...), which the server parses as data and never as SQL; the only
// text put into the SQL comes from this file (column names from fixed lists, operators). Values
// that have a syntax (addresses, prefixes, ports, verdicts, times) are checked here first, so a
// malformed one is a FilterError naming the field (the API's 400) rather than a server error.

import { BlockList, isIP } from 'node:net';
import type { FlowFilter, LabelMatch, SideFilter } from './filter.js';

export class FilterError extends Error {
  override readonly name = 'FilterError';
  /** the filter field, e.g. `src.cidr[1]` */
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

export interface Where {
  /** a boolean SQL expression ('1' when the filter is empty) */
  readonly sql: string;
  readonly params: Record<string, unknown>;
}

/** Collects parameters and hands out their placeholders. */
export class Params {
  readonly values: Record<string, unknown> = {};
  #n = 0;
  constructor(private readonly prefix = 'p') {}
  /** `type` comes from this module's code only, never from input */
  add(type: string, value: unknown): string {
    const name = `${this.prefix}${this.#n++}`;
    this.values[name] = value;
    return `{${name}:${type}}`;
  }
}

type Side = 'src' | 'dst';

const VERDICTS = new Set(['allowed', 'denied', 'audit']);

/** Columns a summary may group by; the only identifiers that come from a caller. */
export const GROUP_BY_COLUMNS: readonly string[] = [
  ...(['src', 'dst'] as const).flatMap((s) =>
    ['kind', 'ip', 'port', 'namespace', 'pod', 'workload_kind', 'workload', 'service_account', 'node', 'host_endpoint', 'name'].map(
      (c) => `${s}_${c}`,
    ),
  ),
  'kind', 'verdict', 'reason', 'direction', 'protocol', 'policy', 'egress_policy', 'ingress_policy', 'forward_policy', 'reporter',
];

/** `src_label:KEY` / `dst_label:KEY`: group by the value of one label of that side. */
export const LABEL_GROUP_PREFIXES = ['src_label:', 'dst_label:'] as const;

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** A Kubernetes label key: `[prefix/]name`, prefix a DNS subdomain (at most 253), name at most 63. */
export function isLabelKey(key: string): boolean {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return false;
  return name.length > 0 && name.length <= 63 && LABEL_NAME.test(name);
}

export const LABEL_KEY_SYNTAX = '[prefix/]name: name up to 63 letters, digits, "-", "_", "."; prefix a DNS subdomain';

/** One group_by entry: a column of the flows table, or one label of one side. */
export type GroupSpec =
  | { readonly name: string; readonly column: string }
  | { readonly name: string; readonly labels: 'src_labels' | 'dst_labels'; readonly key: string };

/**
 * Checks group_by entries and says what each reads. Column names come from the allow-list only;
 * a label key is checked for Kubernetes syntax here (so a bad one is the caller's error, named)
 * and still travels as a query parameter, never as SQL text.
 */
export function parseGroupBy(groupBy: readonly string[]): GroupSpec[] {
  if (!Array.isArray(groupBy) || groupBy.length === 0) throw new FilterError('group_by', 'at least one column is needed');
  const seen = new Set<string>();
  return groupBy.map((g, i) => {
    const field = `group_by[${i}]`;
    if (typeof g !== 'string') throw new FilterError(field, `${JSON.stringify(g)} is not a string`);
    if (seen.has(g)) throw new FilterError(field, `${JSON.stringify(g)} is given twice`);
    seen.add(g);
    const prefix = LABEL_GROUP_PREFIXES.find((p) => g.startsWith(p));
    if (prefix !== undefined) {
      const key = g.slice(prefix.length);
      if (!isLabelKey(key)) throw new FilterError(field, `${JSON.stringify(g)}: label key ${JSON.stringify(key)} is not a label key (${LABEL_KEY_SYNTAX})`);
      return { name: g, labels: prefix === 'src_label:' ? 'src_labels' : 'dst_labels', key };
    }
    if (!GROUP_BY_COLUMNS.includes(g)) {
      throw new FilterError(field, `${JSON.stringify(g)} is not one of ${GROUP_BY_COLUMNS.join(', ')}, src_label:KEY, dst_label:KEY`);
    }
    return { name: g, column: g };
  });
}

export function checkGroupBy(groupBy: readonly string[]): readonly string[] {
  parseGroupBy(groupBy);
  return groupBy;
}

function strings(field: string, values: readonly unknown[]): string[] {
  return values.map((v, i) => {
    if (typeof v !== 'string') throw new FilterError(`${field}[${i}]`, `${JSON.stringify(v)} is not a string`);
    return v;
  });
}

function integers(field: string, values: readonly unknown[], max: number): number[] {
  return values.map((v, i) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
      throw new FilterError(`${field}[${i}]`, `${JSON.stringify(v)} is not a whole number from 0 to ${max}`);
    }
    return v;
  });
}

/** An address as the store keeps it: IPv6 text, IPv4 mapped. */
export function normalizeIp(field: string, v: unknown): string {
  // a zone (`fe80::1%eth0`) is valid for Node but not an address the store keeps
  if (typeof v !== 'string' || isIP(v) === 0 || v.includes('%')) {
    throw new FilterError(field, `${JSON.stringify(v)} is not an IPv4 or IPv6 address`);
  }
  return isIP(v) === 4 ? `::ffff:${v}` : v.toLowerCase();
}

/** A prefix in the store's address space: IPv4 prefixes become IPv4-mapped IPv6 ones (+96). */
export function normalizeCidr(field: string, v: unknown): string {
  const bad = (): FilterError => new FilterError(field, `${JSON.stringify(v)} is not a CIDR prefix like 10.0.0.0/8 or fd00::/64`);
  if (typeof v !== 'string') throw bad();
  const m = /^([^/]+)\/(\d{1,3})$/.exec(v);
  if (!m) throw bad();
  const family = isIP(m[1]!);
  const len = Number(m[2]);
  if (family === 0 || m[1]!.includes('%') || len > (family === 4 ? 32 : 128)) throw bad();
  // BlockList validates the prefix the same way the kernel-side code would (throws on nonsense)
  try {
    new BlockList().addSubnet(m[1]!, len, family === 4 ? 'ipv4' : 'ipv6');
  } catch {
    throw bad();
  }
  return family === 4 ? `::ffff:${m[1]}/${96 + len}` : `${m[1]!.toLowerCase()}/${len}`;
}

function labelExpr(side: Side, m: LabelMatch, field: string, p: Params): string {
  if (typeof m !== 'object' || m === null || typeof m.key !== 'string' || m.key === '') {
    throw new FilterError(field, `${JSON.stringify(m)} is not a label match with a non-empty key`);
  }
  const col = `${side}_labels`;
  const key = p.add('String', m.key);
  switch (m.op) {
    case 'exists':
      return `mapContains(${col}, ${key})`;
    case '!exists':
      return `NOT mapContains(${col}, ${key})`;
    case '=':
    case '!=': {
      if (typeof m.value !== 'string') throw new FilterError(field, `value ${JSON.stringify(m.value)} is not a string`);
      const eq = `(mapContains(${col}, ${key}) AND ${col}[${key}] = ${p.add('String', m.value)})`;
      // Kubernetes selector semantics: `key!=value` also matches objects without the key
      return m.op === '=' ? eq : `NOT ${eq}`;
    }
    default:
      throw new FilterError(field, `operator ${JSON.stringify((m as { op: unknown }).op)} is not =, !=, exists or !exists`);
  }
}

function any(exprs: string[]): string {
  return exprs.length === 1 ? exprs[0]! : `(${exprs.join(' OR ')})`;
}

/** The conditions of one side filter applied to one side; all must hold. */
function sideExprs(f: SideFilter, side: Side, field: string, p: Params): string[] {
  const out: string[] = [];
  if (f.namespace?.length) {
    out.push(`${side}_namespace IN ${p.add('Array(String)', strings(`${field}.namespace`, f.namespace))}`);
  }
  if (f.pod?.length) {
    out.push(
      any(
        strings(`${field}.pod`, f.pod).map((v) => {
          const slash = v.indexOf('/');
          if (slash < 0) return `${side}_pod = ${p.add('String', v)}`;
          return `(${side}_namespace = ${p.add('String', v.slice(0, slash))} AND ${side}_pod = ${p.add('String', v.slice(slash + 1))})`;
        }),
      ),
    );
  }
  for (const [i, m] of (f.labels ?? []).entries()) out.push(labelExpr(side, m, `${field}.labels[${i}]`, p));
  const addrs: string[] = [];
  if (f.ip?.length) {
    const ips = f.ip.map((v, i) => normalizeIp(`${field}.ip[${i}]`, v));
    addrs.push(`${side}_ip IN ${p.add('Array(IPv6)', ips)}`);
  }
  for (const [i, v] of (f.cidr ?? []).entries()) {
    addrs.push(`isIPAddressInRange(toString(${side}_ip), ${p.add('String', normalizeCidr(`${field}.cidr[${i}]`, v))})`);
  }
  // an address filter is one field: any listed address or prefix matches
  if (addrs.length) out.push(any(addrs));
  return out;
}

const all = (exprs: string[]): string => (exprs.length === 0 ? '1' : exprs.length === 1 ? exprs[0]! : `(${exprs.join(' AND ')})`);

function time(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new FilterError(field, `${JSON.stringify(v)} is not a time in UTC milliseconds`);
  return v;
}

/** per side field, the column suffixes sideExprs reads (a `namespace/name` pod reads both) */
const SIDE_FIELD_COLUMNS: Readonly<Record<keyof SideFilter, (f: SideFilter) => readonly string[]>> = {
  namespace: () => ['namespace'],
  pod: (f) => (f.pod?.some((v) => typeof v === 'string' && v.includes('/')) ? ['pod', 'namespace'] : ['pod']),
  labels: () => ['labels'],
  ip: () => ['ip'],
  cidr: () => ['ip'],
};

/**
 * The columns buildWhere reads for each field the filter uses, as [field, columns]: what a table
 * must have to answer the filter (the summary reads a rollup only when it has them all). Kept
 * beside buildWhere; test/store/summary.test.ts checks the two agree.
 */
export function filterColumns(filter: FlowFilter): Array<[string, string[]]> {
  const out: Array<[string, string[]]> = [];
  const sides: Array<[string, SideFilter | undefined, Side[]]> = [
    ['either', filter.either, ['src', 'dst']], ['src', filter.src, ['src']], ['dst', filter.dst, ['dst']],
  ];
  for (const [name, f, on] of sides) {
    if (!f) continue;
    for (const [k, cols] of Object.entries(SIDE_FIELD_COLUMNS) as Array<[keyof SideFilter, (f: SideFilter) => readonly string[]]>) {
      if (f[k]?.length) out.push([`${name}.${k}`, on.flatMap((s) => cols(f).map((c) => `${s}_${c}`))]);
    }
  }
  if (filter.port?.length) out.push(['port', ['src_port', 'dst_port']]);
  if (filter.protocol?.length) out.push(['protocol', ['protocol']]);
  if (filter.verdict?.length) out.push(['verdict', ['verdict']]);
  if (filter.policy?.length) out.push(['policy', ['policy', 'egress_policy', 'ingress_policy', 'forward_policy']]);
  if (filter.since !== undefined) out.push(['since', ['ts']]);
  if (filter.until !== undefined) out.push(['until', ['ts']]);
  return out;
}

/**
 * The WHERE expression of a filter. Semantics (filter.ts): values of one field are alternatives,
 * fields must all hold; `src`/`dst` apply to that side; `either` holds when all its conditions
 * hold on the source side or all hold on the destination side (as Hubble's `--namespace X
 * --label Y` means "X and Y on the same side", not X on one side and Y on the other). `port`
 * matches either side's port, as Hubble's `--port` does; `policy` is a substring of any of the
 * row's rule texts (deciding, egress, ingress, forward).
 */
export function buildWhere(filter: FlowFilter, p: Params = new Params()): Where {
  const out: string[] = [];
  if (filter.either) {
    const src = sideExprs(filter.either, 'src', 'either', p);
    const dst = sideExprs(filter.either, 'dst', 'either', p);
    if (src.length) out.push(`(${all(src)} OR ${all(dst)})`);
  }
  if (filter.src) out.push(...sideExprs(filter.src, 'src', 'src', p));
  if (filter.dst) out.push(...sideExprs(filter.dst, 'dst', 'dst', p));
  if (filter.port?.length) {
    const ports = p.add('Array(UInt16)', integers('port', filter.port, 65535));
    out.push(`(src_port IN ${ports} OR dst_port IN ${ports})`);
  }
  if (filter.protocol?.length) {
    out.push(`protocol IN ${p.add('Array(UInt8)', integers('protocol', filter.protocol, 255))}`);
  }
  if (filter.verdict?.length) {
    for (const [i, v] of filter.verdict.entries()) {
      if (!VERDICTS.has(v)) throw new FilterError(`verdict[${i}]`, `${JSON.stringify(v)} is not allowed, denied or audit`);
    }
    out.push(`verdict IN ${p.add('Array(String)', [...filter.verdict])}`);
  }
  if (filter.policy?.length) {
    const needles = strings('policy', filter.policy);
    for (const [i, n] of needles.entries()) if (n === '') throw new FilterError(`policy[${i}]`, 'is empty');
    const ph = p.add('Array(String)', needles);
    out.push(any(['policy', 'egress_policy', 'ingress_policy', 'forward_policy'].map((c) => `multiSearchAny(${c}, ${ph})`)));
  }
  if (filter.since !== undefined) {
    out.push(`ts >= fromUnixTimestamp64Milli(${p.add('Int64', time('since', filter.since))}, 'UTC')`);
  }
  if (filter.until !== undefined) {
    out.push(`ts < fromUnixTimestamp64Milli(${p.add('Int64', time('until', filter.until))}, 'UTC')`);
  }
  return { sql: out.length ? out.join('\n  AND ') : '1', params: p.values };
}

/**
 * The SETTINGS clause every read of the store ends with: the engine stops a query itself after
 * QUERY_TIMEOUT_S (an HTTP deadline alone would leave embedded chDB running it). In the statement,
 * not in clickhouse_settings, which chDB's connection turns into SETs that stay on its session.
 */
export const QUERY_TIMEOUT_S = 30;
export const READ_SETTINGS = `SETTINGS max_execution_time = ${QUERY_TIMEOUT_S}, timeout_overflow_mode = 'throw'`;
