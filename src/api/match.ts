// The FlowFilter as an in-memory predicate over FlowRows: what the stream endpoint applies to rows
// the agent publishes live, and what the store's SQL applies to stored rows. The two must agree;
// test/api/match.test.ts runs the same cases through both.
//
// Semantics (Hubble's, as src/store/filter.ts states them):
// - a side filter (`src`, `dst`) must hold as a whole on that side;
// - the sideless filter (`either`) must hold as a whole on the source or as a whole on the
//   destination (Hubble's `--namespace a --label app=x` is "a pod of a labelled app=x", on
//   either end), never half on each;
// - within a field the values are alternatives, the fields (and all label matches) must all hold;
// - addresses compare as IPv6 with IPv4 mapped (`10.0.0.1` == `::ffff:10.0.0.1`), an IPv4 CIDR
//   covers the mapped addresses; `ip` and `cidr` of one side are one address field: any listed
//   address or prefix matches (src/store/sql.ts does the same);
// - `key!=value` holds when the label is absent (Kubernetes selector semantics);
// - `port` matches either side's port (Hubble's `--port`); `policy` is a substring of any of the
//   row's rule texts (deciding, egress, ingress, forward);
// - `since` inclusive, `until` exclusive on `ts`.
import net from 'node:net';
import type { FlowRow, SideIdentity } from '../store/row.js';
import type { FlowFilter, LabelMatch, SideFilter } from '../store/filter.js';

/** 16 bytes, IPv4 as IPv4-mapped; undefined if not an address. */
export function ipBytes(text: string): Uint8Array | undefined {
  const family = net.isIP(text);
  if (family === 4) {
    const b = new Uint8Array(16);
    b[10] = 0xff; b[11] = 0xff;
    text.split('.').forEach((o, i) => { b[12 + i] = Number(o); });
    return b;
  }
  if (family !== 6 || text.includes('%')) return undefined;
  let head = text;
  let tailV4: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tailV4 = text.slice(lastColon + 1).split('.').map(Number);
    head = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [left, right] = head.includes('::') ? head.split('::') as [string, string] : [head, undefined];
  const groups = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const l = groups(left);
  const r = right === undefined ? [] : groups(right);
  const words = right === undefined ? l : [...l, ...new Array<number>(8 - l.length - r.length).fill(0), ...r];
  const b = new Uint8Array(16);
  words.forEach((w, i) => { b[2 * i] = w >> 8; b[2 * i + 1] = w & 0xff; });
  if (tailV4.length === 4) tailV4.forEach((o, i) => { b[12 + i] = o; });
  return b;
}

function sameIp(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** `10.0.0.0/8` or `fd00::/64` -> the mapped prefix (IPv4 prefixes get 96 more bits). */
export function parsePrefix(cidr: string): { bytes: Uint8Array; bits: number } | undefined {
  const slash = cidr.indexOf('/');
  if (slash < 0) return undefined;
  const addr = cidr.slice(0, slash);
  const bytes = ipBytes(addr);
  const len = Number(cidr.slice(slash + 1));
  if (!bytes || !Number.isInteger(len)) return undefined;
  const v4 = net.isIP(addr) === 4;
  if (len < 0 || len > (v4 ? 32 : 128)) return undefined;
  return { bytes, bits: v4 ? len + 96 : len };
}

export function inPrefix(ip: Uint8Array, prefix: { bytes: Uint8Array; bits: number }): boolean {
  let bits = prefix.bits;
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((ip[i]! & mask) !== (prefix.bytes[i]! & mask)) return false;
  }
  return true;
}

export function labelHolds(labels: Readonly<Record<string, string>>, m: LabelMatch): boolean {
  const has = Object.prototype.hasOwnProperty.call(labels, m.key);
  switch (m.op) {
    case 'exists': return has;
    case '!exists': return !has;
    case '=': return has && labels[m.key] === m.value;
    case '!=': return !has || labels[m.key] !== m.value;
  }
}

function podMatches(side: SideIdentity, pod: string): boolean {
  const slash = pod.indexOf('/');
  if (slash < 0) return side.pod === pod;
  return side.namespace === pod.slice(0, slash) && side.pod === pod.slice(slash + 1);
}

/** Whether one side of a row satisfies a side filter. */
export function sideMatches(side: SideIdentity, f: SideFilter): boolean {
  if (f.namespace?.length && !f.namespace.includes(side.namespace)) return false;
  if (f.pod?.length && !f.pod.some((p) => podMatches(side, p))) return false;
  if (f.labels && !f.labels.every((m) => labelHolds(side.labels, m))) return false;
  if (f.ip?.length || f.cidr?.length) {
    const ip = ipBytes(side.ip);
    if (!ip) return false;
    const byIp = (f.ip ?? []).some((want) => { const w = ipBytes(want); return !!w && sameIp(ip, w); });
    if (!byIp && !(f.cidr ?? []).some((c) => { const p = parsePrefix(c); return !!p && inPrefix(ip, p); })) return false;
  }
  return true;
}

const RULE_TEXTS = ['policy', 'egressPolicy', 'ingressPolicy', 'forwardPolicy'] as const;

/** Whether a row passes a filter. */
export function rowMatches(row: FlowRow, f: FlowFilter): boolean {
  if (f.since !== undefined && row.ts < f.since) return false;
  if (f.until !== undefined && row.ts >= f.until) return false;
  if (f.verdict?.length && !f.verdict.includes(row.verdict as never)) return false;
  if (f.protocol?.length && !f.protocol.includes(row.protocol)) return false;
  if (f.port?.length && !f.port.includes(row.src.port) && !f.port.includes(row.dst.port)) return false;
  if (f.policy?.length && !f.policy.some((p) => RULE_TEXTS.some((t) => row[t].includes(p)))) return false;
  if (f.src && !sideMatches(row.src, f.src)) return false;
  if (f.dst && !sideMatches(row.dst, f.dst)) return false;
  if (f.either && !sideMatches(row.src, f.either) && !sideMatches(row.dst, f.either)) return false;
  return true;
}

/** rowMatches with the filter bound, for Array.filter. */
export function matcher(f: FlowFilter): (row: FlowRow) => boolean {
  return (row) => rowMatches(row, f);
}
