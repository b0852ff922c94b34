// The expansion of Grafana variables and the ClickHouse plugin's macros (macros.ts), against the
// outputs the plugin's own code produces for the same input.

import test from 'node:test';
import assert from 'node:assert/strict';
import { ExpandError, applyConditionalAll, expandMacros, expandQuery, interpolate, type ExpandOptions, type VariableState } from './macros.js';

const FROM = Date.UTC(2026, 10, 26, 8, 0, 0, 250);
const TO = Date.UTC(2026, 10, 26, 10, 0, 0, 0);

function opts(variables: VariableState[] = [], intervalMs = 30_000): ExpandOptions {
  return { from: FROM, to: TO, intervalMs, variables };
}

const ns = (current: VariableState['current'], allValue: string | null = null): VariableState =>
  ({ name: 'namespace', multi: true, allValue, options: ['api', 'web'], current });

test('time macros expand as the plugin backend does', () => {
  const o = opts();
  const s = Math.floor(FROM / 1000);
  const e = TO / 1000;
  assert.equal(expandMacros('WHERE $__timeFilter(ts)', o), `WHERE ts >= toDateTime(${s}) AND ts <= toDateTime(${e})`);
  assert.equal(expandMacros('$__timeFilter_ms( ts )', o), `ts >= fromUnixTimestamp64Milli(${FROM}) AND ts <= fromUnixTimestamp64Milli(${TO})`);
  assert.equal(expandMacros('$__fromTime, $__toTime, $__fromTime_ms, $__toTime_ms', o),
    `toDateTime(${s}), toDateTime(${e}), fromUnixTimestamp64Milli(${FROM}), fromUnixTimestamp64Milli(${TO})`);
  assert.equal(expandMacros('$__dateFilter(d)', o), "d >= toDate('2026-11-26') AND d <= toDate('2026-11-26')");
  assert.equal(expandMacros('$__dt(d, t)', o),
    `(d >= toDate('2026-11-26') AND d <= toDate('2026-11-26')) AND (t >= toDateTime(${s}) AND t <= toDateTime(${e}))`);
  assert.equal(expandMacros('$__timeInterval(ts)', o), 'toStartOfInterval(toDateTime(ts), INTERVAL 30 second)');
  assert.equal(expandMacros('$__timeInterval_ms(ts)', o), 'toStartOfInterval(toDateTime64(ts, 3), INTERVAL 30000 millisecond)');
  assert.equal(expandMacros('greatest($__interval_s, 60)', opts([], 500)), 'greatest(1, 60)', 'at least one second');
  // arguments keep their nested parentheses and commas
  assert.equal(expandMacros('$__timeFilter(toDateTime(ts, \'UTC\'))', o), `toDateTime(ts, 'UTC') >= toDateTime(${s}) AND toDateTime(ts, 'UTC') <= toDateTime(${e})`);
});

test('a wrong macro says which and why', () => {
  assert.throws(() => expandMacros('$__timeFilter()', opts()), /\$__timeFilter: expected 1 argument, received 0/);
  assert.throws(() => expandMacros('$__timeFilter(a, b)', opts()), /\$__timeFilter: expected 1 argument, received 2/);
  assert.throws(() => expandMacros('$__timeGroup(ts, 1m)', opts()), /\$__timeGroup: unknown macro/);
  assert.throws(() => expandMacros('$__timeFilter(ts', opts()), /\$__timeFilter: unbalanced parentheses/);
});

test('$__conditionalAll is 1=1 for "All" and the condition otherwise', () => {
  const sql = 'WHERE $__conditionalAll(ns IN (${namespace:singlequote}), $namespace) AND x';
  assert.equal(applyConditionalAll(sql, [ns('all')]), 'WHERE 1=1 AND x');
  assert.equal(applyConditionalAll(sql, [ns([])]), 'WHERE 1=1 AND x', 'nothing picked counts as All');
  assert.equal(applyConditionalAll(sql, [ns(['api'])]), 'WHERE ns IN (${namespace:singlequote}) AND x');
  // several, and nested commas in the condition
  const two = '$__conditionalAll(hasAny(arr, [1, 2]), ${namespace}) OR $__conditionalAll(0, $namespace)';
  assert.equal(applyConditionalAll(two, [ns(['web'])]), 'hasAny(arr, [1, 2]) OR 0');
  assert.throws(() => applyConditionalAll('$__conditionalAll(x, $nope)', [ns('all')]), /unknown template variable "nope"/);
  assert.throws(() => applyConditionalAll('$__conditionalAll(x)', [ns('all')]), /needs 2 arguments/);
  // as in the plugin, a comma in a string literal splits the arguments: such a dashboard is broken
  assert.throws(() => applyConditionalAll("$__conditionalAll(x = ',', $namespace)", [ns('all')]), /needs 2 arguments/);
});

test('variables interpolate with Grafana\'s formats, the plugin\'s default and custom All values', () => {
  const label: VariableState = { name: 'label', multi: true, allValue: null, options: ["a'b=1", 'c=2'], current: ["a'b=1"] };
  const single: VariableState = { name: 'db', multi: false, allValue: null, options: [], current: ['flows'] };
  const o = opts([ns(['api', 'web']), label, single]);
  assert.equal(interpolate('${namespace:singlequote}', o), "'api','web'");
  assert.equal(interpolate('${namespace:doublequote}|${namespace:csv}|${namespace:pipe}|[[namespace]]', o), '"api","web"|api,web|api|web|\'api\',\'web\'');
  assert.equal(interpolate('${label:singlequote} ${label:sqlstring}', o), "'a\\'b=1' 'a''b=1'");
  assert.equal(interpolate('$namespace $db ${db}', o), "'api','web' flows flows", 'lists quoted, a single value raw');
  // "All": every option, or the custom all value unformatted
  assert.equal(interpolate('${namespace:singlequote}', opts([ns('all')])), "'api','web'");
  assert.equal(interpolate('${namespace:singlequote}', opts([ns('all', '.*')])), '.*');
  // built-ins; $__macros are left to the backend
  assert.equal(interpolate('$__from $__to $__interval $__interval_ms $__range_s $__timeFilter(ts) $__interval_s', o),
    `${FROM} ${TO} 30s 30000 7200 $__timeFilter(ts) $__interval_s`);
  assert.throws(() => interpolate('$nope', o), /\$nope: unknown template variable "nope"/);
  assert.throws(() => interpolate('${namespace:yaml}', o), /unknown variable format "yaml"/);
  // a regex end anchor in a string literal is no variable
  assert.equal(interpolate("replaceRegexpOne(x, '^a$', '')", o), "replaceRegexpOne(x, '^a$', '')");
});

test('a whole query: conditionalAll first, then variables, then macros', () => {
  const sql = "SELECT 1 FROM t WHERE $__timeFilter(ts) AND $__conditionalAll(ns IN (${namespace:singlequote}), $namespace)";
  assert.equal(expandQuery(sql, opts([ns(['api'])])), `SELECT 1 FROM t WHERE ts >= toDateTime(${Math.floor(FROM / 1000)}) AND ts <= toDateTime(${TO / 1000}) AND ns IN ('api')`);
  // with "All" and a custom all value, the value never reaches the SQL
  assert.ok(expandQuery(sql, opts([ns('all', '.*')])).endsWith('AND 1=1'));
  assert.ok(new ExpandError('x') instanceof Error);
});
