// Page cursors: the position (ts, id) of the last row of a page. Rows are read newest first in
// (ts DESC, id DESC) order, and the next page is the rows strictly before that position, so pages
// neither repeat nor skip rows when new rows arrive meanwhile (they are newer than page one).

import { FilterError } from './sql.js';

export interface Position {
  readonly ts: number;
  /** UInt64 as decimal text (does not fit a JS number) */
  readonly id: string;
}

export function encodeCursor(p: Position): string {
  return Buffer.from(`${p.ts}.${p.id}`).toString('base64url');
}

export function decodeCursor(cursor: string): Position {
  const text = typeof cursor === 'string' ? Buffer.from(cursor, 'base64url').toString() : '';
  const m = /^(\d{1,16})\.(\d{1,20})$/.exec(text);
  if (!m || BigInt(m[2]!) > 0xffff_ffff_ffff_ffffn) {
    throw new FilterError('cursor', `${JSON.stringify(cursor)} is not a cursor this store returned`);
  }
  return { ts: Number(m[1]), id: m[2]! };
}
