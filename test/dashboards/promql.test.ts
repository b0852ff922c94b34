// The metric names the PromQL scanner (promql.ts) finds, and what it skips.

import test from 'node:test';
import assert from 'node:assert/strict';
import { PromQlError, metricNames, scan } from '../../src/metrics/promql.js';

test('finds the selectors, skipping functions, keywords, label lists, matchers, durations and variables', () => {
  assert.deepEqual(metricNames('up'), ['up']);
  assert.deepEqual(metricNames('sum by (source) (rate(weir_lost_events_total{instance=~"$instance"}[$__rate_interval]))'), ['weir_lost_events_total']);
  assert.deepEqual(metricNames('sum(rate(a_total[5m])) by (le) / ignoring (x) group_left(y) sum without (z) (b)'), ['a_total', 'b']);
  assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (le, result) (rate(w_seconds_bucket{a="b,c (d)"}[1h30m])))'), ['w_seconds_bucket']);
  assert.deepEqual(metricNames('max by (map) (e{x="1"} / on (instance, map) c)'), ['e', 'c']);
  assert.deepEqual(metricNames('x offset 5m > bool 1e3 and y unless z or w'), ['x', 'y', 'z', 'w']);
  assert.deepEqual(metricNames('{__name__="weir_spool_bytes", instance="a"}'), ['weir_spool_bytes']);
  assert.deepEqual(metricNames('rate(a[5m:1m]) # comment with words'), ['a']);
  assert.deepEqual(metricNames('label_replace(m, "dst", "$1", "src", "(.*)")'), ['m']);
  assert.deepEqual(metricNames('vector(1) + 0x1f + Inf'), []);
});

test('selectors carry the labels they match on; grouping labels are collected', () => {
  assert.deepEqual(
    scan('sum by (a, b) (rate(m{x="1", y=~"$v"}[5m])) / on (instance) group_left (c) n + {__name__="n2", z!="q"}'),
    { selectors: [{ name: 'm', labels: ['x', 'y'] }, { name: 'n', labels: [] }, { name: 'n2', labels: ['z'] }], grouping: ['a', 'b', 'instance', 'c'] },
  );
});

test('unbalanced input says where', () => {
  assert.throws(() => metricNames('sum(rate(x[5m])'), PromQlError);
  assert.throws(() => metricNames('x{a="b}'), /unterminated string/);
});
