// HTTP query parameters -> FlowQuery, strictly. The API (`GET /api/v1/flows`, `/summary`,
// `/stream`) and `weir observe` both go through here, so they accept and refuse exactly the same
// things with the same messages. Every value is checked against the syntax of what it names (a
// Kubernetes namespace, label key, IP address...) and becomes a plain string or number in the
// FlowFilter; nothing here is ever SQL: the store binds the values as query parameters.
import net from 'node:net';
import { z } from 'zod';
import {
  DEFAULT_LIMIT, MAX_LIMIT,
  type FlowFilter, type FlowQuery, type LabelMatch, type SideFilter, type Verdict,
} from '../store/filter.js';
import { GROUP_BY_COLUMNS, LABEL_GROUP_PREFIXES, LABEL_KEY_SYNTAX, isLabelKey } from '../store/sql.js';

/** A bad parameter: `parameter` is its name as given in the query string (or the CLI's mapping). */
export class ParamError extends Error {
  constructor(readonly parameter: string, readonly detail: string) {
    // an unknown name is the caller's text: quoted unless plain, so it cannot forge log lines
    super(`${/^[\w.[\]-]{1,64}$/.test(parameter) ? parameter : quote(parameter)}: ${detail}`);
    this.name = 'ParamError';
  }
}

export type ParamInput = URLSearchParams | Iterable<readonly [string, string]>;

export interface ParseOptions {
  /** the clock relative times (`since=15m`) count back from; UTC ms */
  readonly now?: () => number;
}

/** A value in a message: quoted with escapes (so control characters and quotes stay visible) and cut short. */
export function quote(value: string): string {
  const MAX = 80;
  return JSON.stringify(value.length > MAX ? `${value.slice(0, MAX)}...` : value);
}

// ---- value syntax (Kubernetes names, addresses, times) ----

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** the name part of a label key, and a (non-empty) label value */
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

const namespaceSchema = z.string()
  .max(63, 'is longer than 63 characters')
  .regex(DNS_LABEL, 'is not a namespace name (lower-case letters, digits and "-", starting and ending with a letter or digit)');

const podNameSchema = z.string()
  .max(253, 'is longer than 253 characters')
  .regex(DNS_SUBDOMAIN, 'is not a pod name (lower-case letters, digits, "-" and ".")');

/** A Kubernetes label key: `[prefix/]name`, prefix a DNS subdomain (<= 253), name <= 63 (the store's check). */
const labelKeySchema = z.string().refine(isLabelKey, `is not a label key (${LABEL_KEY_SYNTAX})`);

const labelValueSchema = z.string().refine((v) => v === '' || (v.length <= 63 && LABEL_NAME.test(v)),
  'is not a label value (up to 63 letters, digits, "-", "_", ".", starting and ending with a letter or digit)');

const ipSchema = z.string().refine((v) => !v.includes('%') && net.isIP(v) !== 0, 'is not an IPv4 or IPv6 address');

const cidrSchema = z.string().refine((v) => {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(v);
  if (!m || m[1]!.includes('%')) return false;
  const family = net.isIP(m[1]!);
  const bits = Number(m[2]);
  return (family === 4 && bits <= 32) || (family === 6 && bits <= 128);
}, 'is not a CIDR prefix (ADDRESS/LENGTH, e.g. 10.0.0.0/8 or fd00::/64)');

const portSchema = z.string()
  .regex(/^\d{1,5}$/, 'is not a port number (0-65535)')
  .transform(Number)
  .refine((n) => n <= 65535, 'is not a port number (0-65535)');

export const PROTOCOL_NUMBERS: Readonly<Record<string, number>> = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58, sctp: 132 };

const protocolSchema = z.string().transform((v, ctx) => {
  const named = PROTOCOL_NUMBERS[v.toLowerCase()];
  if (named !== undefined) return named;
  if (/^\d{1,3}$/.test(v) && Number(v) <= 255) return Number(v);
  ctx.addIssue({ code: 'custom', message: 'is not a protocol (tcp, udp, sctp, icmp, icmpv6 or a number 0-255)' });
  return z.NEVER;
});

export const VERDICTS: readonly Verdict[] = ['allowed', 'denied', 'audit'];
const verdictSchema = z.enum(VERDICTS as [Verdict, ...Verdict[]], { error: 'is not a verdict (allowed, denied or audit)' });

/** Rule text as the store keeps it: `ns/policy ingress[0]`, `gnp/name egress[1] Deny`. */
const policySchema = z.string()
  .max(256, 'is longer than 256 characters')
  .regex(/^[A-Za-z0-9 ._/:#[\]()-]+$/, 'is not part of a rule name (letters, digits, space and ._/:#[]()-)');

/** Opaque to us (the store makes it); only its alphabet is checked. */
const cursorSchema = z.string()
  .max(1024, 'is longer than 1024 characters')
  .regex(/^[A-Za-z0-9_.:=+/-]+$/, 'is not a cursor from a previous page');

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
/** relative times go back at most this far */
const MAX_RELATIVE_MS = 100 * 365 * 86_400_000;

/** `15m`, `2h`, `7d`, `1h30m`, `500ms` -> milliseconds; undefined if not a duration. */
export function parseDuration(text: string): number | undefined {
  if (!/^(\d{1,9}(ms|s|m|h|d|w))+$/.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(/(\d+)(ms|s|m|h|d|w)/g)) total += Number(m[1]) * DURATION_UNITS_MS[m[2]!]!;
  return total <= MAX_RELATIVE_MS ? total : undefined;
}

// The zone's `+` may arrive as a space: a `+` left unencoded in a query string decodes to one.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+\- ]\d{2}:\d{2})$/;

/** An RFC 3339 timestamp -> UTC ms, with every field range-checked (no Feb 30, no hour 24). */
export function parseRfc3339(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const zone = m[8]!;
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return undefined;
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day < 1 || day > daysInMonth) return undefined;
  let offsetMin = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return undefined;
    offsetMin = (zone[0] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const ms = m[7] ? Math.floor(Number(`0${m[7]}`) * 1000) : 0;
  return Date.UTC(year, month - 1, day, hour, minute, second, ms) - offsetMin * 60_000;
}

/** `since`/`until`: RFC 3339, or a duration before now. */
export function parseTime(text: string, now: number): number | undefined {
  const abs = parseRfc3339(text);
  if (abs !== undefined) return abs;
  const rel = parseDuration(text);
  return rel === undefined ? undefined : now - rel;
}

function check<T>(parameter: string, schema: z.ZodType<T, string>, value: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new ParamError(parameter, `${quote(value)} ${r.error.issues[0]?.message ?? 'is not valid'}`);
}

/** `key=value`, `key!=value`, `key` (exists), `!key` (does not exist). */
export function parseLabelMatch(parameter: string, text: string): LabelMatch {
  const bad = (why: string) => new ParamError(parameter, `${quote(text)} ${why}`);
  const key = (k: string) => {
    const r = labelKeySchema.safeParse(k);
    if (!r.success) throw bad(`is not a label match: key ${quote(k)} ${r.error.issues[0]?.message}`);
    return k;
  };
  const value = (v: string) => {
    const r = labelValueSchema.safeParse(v);
    if (!r.success) throw bad(`is not a label match: value ${quote(v)} ${r.error.issues[0]?.message}`);
    return v;
  };
  if (text.startsWith('!')) {
    if (text.includes('=')) throw bad('is not a label match (key=value, key!=value, key, or !key)');
    return { key: key(text.slice(1)), op: '!exists' };
  }
  const ne = text.indexOf('!=');
  if (ne >= 0) return { key: key(text.slice(0, ne)), op: '!=', value: value(text.slice(ne + 2)) };
  const eq = text.indexOf('=');
  if (eq >= 0) return { key: key(text.slice(0, eq)), op: '=', value: value(text.slice(eq + 1)) };
  return { key: key(text), op: 'exists' };
}

/** `namespace/name` or `name`. */
function parsePod(parameter: string, text: string): string {
  const slash = text.indexOf('/');
  if (slash < 0) return check(parameter, podNameSchema, text);
  const ns = text.slice(0, slash);
  const name = text.slice(slash + 1);
  if (!namespaceSchema.safeParse(ns).success || !podNameSchema.safeParse(name).success) {
    throw new ParamError(parameter, `${quote(text)} is not a pod (NAMESPACE/NAME or NAME, Kubernetes names)`);
  }
  return text;
}

// ---- the parameters ----

const SIDE_FIELDS = ['namespace', 'pod', 'label', 'ip', 'cidr'] as const;
type SideField = typeof SIDE_FIELDS[number];
const SIDES = [['', 'either'], ['src_', 'src'], ['dst_', 'dst']] as const;

/** Every filter parameter, repeatable ones first. */
export const FILTER_PARAMETERS: readonly string[] = [
  ...SIDES.flatMap(([prefix]) => SIDE_FIELDS.map((f) => `${prefix}${f}`)),
  'port', 'protocol', 'verdict', 'policy', 'since', 'until',
];
const SINGLE_VALUED = new Set(['since', 'until', 'limit', 'cursor', 'group_by']);

/** Parameters of each endpoint. */
export const FLOWS_PARAMETERS: readonly string[] = [...FILTER_PARAMETERS, 'limit', 'cursor'];
export const STREAM_PARAMETERS: readonly string[] = [...FILTER_PARAMETERS];
export const SUMMARY_PARAMETERS: readonly string[] = [...FILTER_PARAMETERS, 'group_by', 'limit'];

/** What `group_by` may name: the columns the store's summary groups on (its allow-list), and
 * `src_label:KEY` / `dst_label:KEY` (LABEL_GROUP_PREFIXES) for one label of a side. */
export const GROUP_KEYS: readonly string[] = GROUP_BY_COLUMNS;
export const LABEL_GROUP_KEYS: readonly string[] = LABEL_GROUP_PREFIXES.map((p) => `${p}KEY`);
export type GroupKey = string;
export const DEFAULT_GROUP_BY: readonly GroupKey[] = ['src_namespace', 'src_pod', 'dst_namespace', 'dst_pod', 'dst_port', 'protocol', 'verdict'];
export const DEFAULT_SUMMARY_LIMIT = 20;
export const MAX_SUMMARY_LIMIT = 1000;

/** Name -> values, every name checked against `allowed` and single-valued ones given at most once. */
function collect(input: ParamInput, allowed: readonly string[]): Map<string, string[]> {
  const known = new Set(allowed);
  const out = new Map<string, string[]>();
  for (const [name, value] of input) {
    if (!known.has(name)) throw new ParamError(name, `unknown parameter ${quote(name)} (known: ${allowed.join(', ')})`);
    const list = out.get(name) ?? [];
    if (list.length > 0 && SINGLE_VALUED.has(name)) throw new ParamError(name, 'given more than once');
    if (value === '') throw new ParamError(name, 'empty value');
    list.push(value);
    out.set(name, list);
  }
  return out;
}

function parseSide(values: Map<string, string[]>, prefix: string): SideFilter | undefined {
  const side: { -readonly [K in keyof SideFilter]: SideFilter[K] } = {};
  const get = (f: SideField) => values.get(`${prefix}${f}`);
  const p = (f: SideField) => `${prefix}${f}`;
  const ns = get('namespace');
  if (ns) side.namespace = ns.map((v) => check(p('namespace'), namespaceSchema, v));
  const pod = get('pod');
  if (pod) side.pod = pod.map((v) => parsePod(p('pod'), v));
  const label = get('label');
  if (label) side.labels = label.map((v) => parseLabelMatch(p('label'), v));
  const ip = get('ip');
  if (ip) side.ip = ip.map((v) => check(p('ip'), ipSchema, v));
  const cidr = get('cidr');
  if (cidr) side.cidr = cidr.map((v) => check(p('cidr'), cidrSchema, v));
  return Object.keys(side).length > 0 ? side : undefined;
}

function parseFilter(values: Map<string, string[]>, opts: ParseOptions): FlowFilter {
  const now = (opts.now ?? Date.now)();
  const filter: { -readonly [K in keyof FlowFilter]: FlowFilter[K] } = {};
  for (const [prefix, key] of SIDES) {
    const side = parseSide(values, prefix);
    if (side) filter[key] = side;
  }
  const port = values.get('port');
  if (port) filter.port = port.map((v) => check('port', portSchema, v));
  const protocol = values.get('protocol');
  if (protocol) filter.protocol = protocol.map((v) => check('protocol', protocolSchema, v));
  const verdict = values.get('verdict');
  if (verdict) filter.verdict = verdict.map((v) => check('verdict', verdictSchema, v));
  const policy = values.get('policy');
  if (policy) filter.policy = policy.map((v) => check('policy', policySchema, v));
  for (const name of ['since', 'until'] as const) {
    const text = values.get(name)?.[0];
    if (text === undefined) continue;
    const t = parseTime(text, now);
    if (t === undefined) throw new ParamError(name, `${quote(text)} is not a time (RFC 3339 like 2026-01-02T15:04:05Z, or a duration before now like 15m, 2h, 7d)`);
    filter[name] = t;
  }
  if (filter.since !== undefined && filter.until !== undefined && filter.until <= filter.since) {
    throw new ParamError('until', `${new Date(filter.until).toISOString()} is not after since (${new Date(filter.since).toISOString()})`);
  }
  return filter;
}

function parseLimit(text: string | undefined, fallback: number, max: number): number {
  if (text === undefined) return fallback;
  if (!/^\d{1,9}$/.test(text)) throw new ParamError('limit', `${quote(text)} is not a whole number (1-${max})`);
  const n = Number(text);
  if (n < 1 || n > max) throw new ParamError('limit', `${n} is out of range (1-${max})`);
  return n;
}

/** `GET /api/v1/flows` */
export function parseFlowQuery(input: ParamInput, opts: ParseOptions = {}): FlowQuery {
  const values = collect(input, FLOWS_PARAMETERS);
  const filter = parseFilter(values, opts);
  const limit = parseLimit(values.get('limit')?.[0], DEFAULT_LIMIT, MAX_LIMIT);
  const cursor = values.get('cursor')?.[0];
  return { filter, limit, ...(cursor !== undefined ? { cursor: check('cursor', cursorSchema, cursor) } : {}) };
}

/** `GET /api/v1/flows/stream` */
export function parseStreamFilter(input: ParamInput, opts: ParseOptions = {}): FlowFilter {
  return parseFilter(collect(input, STREAM_PARAMETERS), opts);
}

export interface SummaryQuery {
  readonly filter: FlowFilter;
  readonly groupBy: readonly GroupKey[];
  readonly limit: number;
}

/** One `group_by` entry: a GROUP_KEYS column, or `src_label:KEY` / `dst_label:KEY` with a label key. */
function parseGroupKey(k: string): GroupKey {
  const prefix = LABEL_GROUP_PREFIXES.find((p) => k.startsWith(p));
  if (prefix !== undefined) {
    const key = k.slice(prefix.length);
    if (!isLabelKey(key)) throw new ParamError('group_by', `${quote(k)}: label key ${quote(key)} is not a label key (${LABEL_KEY_SYNTAX})`);
    return k;
  }
  if (!GROUP_KEYS.includes(k)) {
    throw new ParamError('group_by', `${quote(k)} is not a group key (${GROUP_KEYS.join(', ')}, ${LABEL_GROUP_KEYS.join(', ')})`);
  }
  return k;
}

/** `GET /api/v1/flows/summary`: `group_by` is a comma-separated list of group keys. */
export function parseSummaryQuery(input: ParamInput, opts: ParseOptions = {}): SummaryQuery {
  const values = collect(input, SUMMARY_PARAMETERS);
  const filter = parseFilter(values, opts);
  const limit = parseLimit(values.get('limit')?.[0], DEFAULT_SUMMARY_LIMIT, MAX_SUMMARY_LIMIT);
  const text = values.get('group_by')?.[0];
  if (text === undefined) return { filter, groupBy: DEFAULT_GROUP_BY, limit };
  const groupBy: GroupKey[] = [];
  for (const k of text.split(',')) {
    if (groupBy.includes(k)) throw new ParamError('group_by', `${quote(k)} is given twice`);
    groupBy.push(parseGroupKey(k));
  }
  return { filter, groupBy, limit };
}
