// What the API and `weir observe` need of a flow store. The ClickHouse store (src/store/store.ts,
// `openStore()`) satisfies it; so can anything else that answers these questions (the API's tests
// check the real store through it).
import type { FlowRow } from '../store/row.js';
import type { FlowFilter, FlowQuery } from '../store/filter.js';
import type { GroupKey } from './params.js';
import type { Summary } from '../store/store.js';

export interface FlowPage {
  /** newest first */
  readonly rows: readonly FlowRow[];
  /** pass as `cursor` for the next (older) page; absent on the last page */
  readonly nextCursor?: string;
}

export interface FlowSource {
  queryFlows(q: FlowQuery): Promise<FlowPage>;
  /** grouped counts, largest (by bytes) first: the top talkers */
  summary(filter: FlowFilter, groupBy: readonly GroupKey[], limit: number): Promise<Summary>;
  /** resolves when the store answers, rejects (or resolves false) when it does not */
  ping(): Promise<unknown>;
}
