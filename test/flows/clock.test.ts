import test from 'node:test';
import assert from 'node:assert/strict';
import { RecordClock } from '../../src/flows/clock.js';
import { fakeClocks } from './records.js';

test('monotonic record times become UTC ms by the offset measured at start', () => {
  const c = fakeClocks(5_000_000_000n, Date.UTC(2026, 0, 1, 0, 0, 10));
  const clock = new RecordClock(c);
  assert.equal(new Date(clock.toMs(5_000_000_000n)).toISOString(), '2026-01-01T00:00:10.000Z');
  assert.equal(new Date(clock.toMs(3_000_000_000n)).toISOString(), '2026-01-01T00:00:08.000Z', 'a record made 2 s before');
  assert.equal(new Date(clock.toMs(3_000_400_000n)).toISOString(), '2026-01-01T00:00:08.000Z', 'rounded to ms');
  assert.equal(clock.offset, Date.UTC(2026, 0, 1, 0, 0, 10) - 5_000);
});

test('the offset is measured again after the resync period, following a stepped wall clock', () => {
  const c = fakeClocks(1_000_000_000n, 1_700_000_000_000);
  const clock = new RecordClock(c, 60_000);
  c.advance(10_000);
  c.stepWall(-2_000); // NTP steps the wall clock back 2 s
  assert.equal(clock.resyncIfDue(), false, 'not due yet');
  assert.equal(clock.toMs(11_000_000_000n), 1_700_000_010_000, 'the old offset until re-measured');
  c.advance(50_000);
  assert.equal(clock.resyncIfDue(), true);
  assert.equal(clock.toMs(11_000_000_000n), 1_700_000_008_000);
});

test('the system clocks agree with Date.now()', () => {
  const clock = new RecordClock();
  const ms = clock.toMs(process.hrtime.bigint());
  assert.ok(Math.abs(ms - Date.now()) < 50, `${ms} vs ${Date.now()}`);
});
