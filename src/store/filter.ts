// A query over stored flows, as the API (`GET /api/v1/flows`), `weir observe` and the store's
// SQL builder share it. Hubble's filter model: a filter without a side matches either side;
// `src`/`dst` filters match that side only. Within one field the values are alternatives (OR);
// different fields must all match (AND), except that `ip` and `cidr` of one side are alternatives
// of each other (an address filter); label matches all must hold.

export type LabelMatch =
  | { readonly key: string; readonly op: '=' | '!='; readonly value: string }
  | { readonly key: string; readonly op: 'exists' | '!exists' };

export interface SideFilter {
  readonly namespace?: readonly string[];
  /** "namespace/name", or "name" (any namespace) */
  readonly pod?: readonly string[];
  readonly labels?: readonly LabelMatch[];
  /** exact addresses (or, with `cidr`, one of those prefixes) */
  readonly ip?: readonly string[];
  /** prefixes, e.g. 10.0.0.0/8 */
  readonly cidr?: readonly string[];
}

export type Verdict = 'allowed' | 'denied' | 'audit';

export interface FlowFilter {
  readonly either?: SideFilter;
  readonly src?: SideFilter;
  readonly dst?: SideFilter;
  /** the port of either side, as Hubble's --port */
  readonly port?: readonly number[];
  /** IP protocol numbers */
  readonly protocol?: readonly number[];
  readonly verdict?: readonly Verdict[];
  /** substring of any rule text of the row (deciding, egress, ingress, forward), e.g.
   * "x/allow-a" or "gnp/deny-ssh" */
  readonly policy?: readonly string[];
  /** UTC ms, inclusive */
  readonly since?: number;
  /** UTC ms, exclusive */
  readonly until?: number;
}

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 10_000;

export interface FlowQuery {
  readonly filter: FlowFilter;
  /** 1..MAX_LIMIT */
  readonly limit: number;
  /** opaque, from the previous page's nextCursor: rows strictly older than it (newest first) */
  readonly cursor?: string;
}
