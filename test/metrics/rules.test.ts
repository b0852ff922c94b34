// The alert rules (alerts/weir.rules.yaml): their shape, every metric their PromQL names is one
// the agent exports (the catalog), each has a runbook section in docs/alerts.md, and Prometheus's
// own promtool accepts them (`check rules`) and runs their unit tests (`test rules`,
// test/metrics/weir.rules.test.yaml), which must hold a firing and a quiet case for every alert.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { repoRoot } from '../../src/paths.js';
import { RULES_FILE, alertRules, loadRules, overrideAlerts, parseRules, promqlMetricNames, rulesToYaml, unknownMetrics, RulesError } from '../../src/metrics/rules.js';

const RULE_TESTS = path.join(repoRoot, 'test', 'metrics', 'weir.rules.test.yaml');
const ALERTS_DOC = path.join(repoRoot, 'docs', 'alerts.md');
const METRICS_DOC = path.join(repoRoot, 'docs', 'metrics.md');

function promtool(args: string[]): { status: number | null; output: string } {
  const r = spawnSync('promtool', args, { encoding: 'utf8', cwd: repoRoot });
  assert.ok(!r.error, `promtool (Debian package prometheus, scripts/setup.sh installs it): ${r.error?.message}`);
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

test('PromQL: the metric names an expression selects', () => {
  assert.deepEqual(promqlMetricNames('sum by (namespace) (increase(weir_policy_verdicts_total{verdict="denied", namespace!=""}[5m])) > 100'), ['weir_policy_verdicts_total']);
  assert.deepEqual(promqlMetricNames('(max by (job, instance) (up == 0) and on (job, instance) max_over_time(weir_build_info[1h]))'), ['up', 'weir_build_info']);
  assert.deepEqual(promqlMetricNames('histogram_quantile(0.99, sum without (result) (rate(weir_store_write_duration_seconds_bucket[5m])))'), ['weir_store_write_duration_seconds_bucket']);
  assert.deepEqual(promqlMetricNames('weir_bpf_map_entries / ignoring (x) group_left weir_bpf_map_capacity offset 5m > 0.9'), ['weir_bpf_map_entries', 'weir_bpf_map_capacity']);
  assert.deepEqual(promqlMetricNames('{__name__="weir_spool_bytes", job="a"} > 1e6 or vector(0)'), ['weir_spool_bytes']);
  assert.deepEqual(promqlMetricNames('sum(rate(a_total{x="b{c}[1m]"}[1m:10s])) BY (x) + count without(y) (b)'), ['a_total', 'b']);
  assert.throws(() => promqlMetricNames('a{x="b}'), /unterminated string/);
});

test('a rule naming a metric the agent does not export is named', () => {
  assert.deepEqual(unknownMetrics('rate(weir_flows_total[5m]) > 0 or rate(weir_flows_denied_total[5m]) > 0'), ['weir_flows_denied_total']);
  assert.deepEqual(unknownMetrics('histogram_quantile(0.9, rate(weir_store_write_duration_seconds_bucket[5m]))'), []);
  assert.deepEqual(unknownMetrics('weir_store_write_duration_bucket > 0'), ['weir_store_write_duration_bucket']);
});

test('alerts/weir.rules.yaml: shape, metrics in the catalog, runbooks', () => {
  const rules = loadRules();
  const alerts = alertRules(rules);
  assert.deepEqual(alerts.map((a) => a.alert).sort(), [
    'WeirAgentNotReady', 'WeirAuditWouldDeny', 'WeirConntrackEvictions', 'WeirConntrackNearlyFull', 'WeirDatastoreDisconnected', 'WeirDatastoreNotSynced',
    'WeirDeniedFlowsHigh', 'WeirEventsLost', 'WeirHostProtectedPortDenied', 'WeirPolicyApplyFailing', 'WeirPolicyObjectsRejected', 'WeirStoreBacklog', 'WeirStoreDown',
  ]);
  const doc = readFileSync(ALERTS_DOC, 'utf8');
  for (const a of alerts) {
    assert.ok(promqlMetricNames(a.expr).length > 0, `${a.alert}: its expression selects a metric`);
    assert.deepEqual(unknownMetrics(a.expr), [], `${a.alert}.expr names metrics not in src/metrics/catalog.ts`);
    assert.ok(a.for !== undefined, `${a.alert}: for:`);
    const anchor = a.alert.toLowerCase();
    assert.ok(a.annotations.runbook_url.endsWith(`docs/alerts.md#${anchor}`), `${a.alert}: runbook_url points at docs/alerts.md#${anchor}`);
    assert.match(doc, new RegExp(`^## ${a.alert}$`, 'm'), `docs/alerts.md has a "## ${a.alert}" section`);
  }
});

test('bad rule files are refused, naming the field', () => {
  const good = readFileSync(RULES_FILE, 'utf8');
  assert.throws(() => parseRules(good.replace('severity: critical', 'severity: page'), 'r.yaml'), /r\.yaml: groups\[0\]\.rules\[1\]\.labels\.severity: must be one of critical, warning, info/);
  assert.throws(() => parseRules(good.replace(/\n\s+runbook_url: '[^']*weirstoredown'/, ''), 'r.yaml'), /groups\[0\]\.rules\[5\]\.annotations\.runbook_url: is required/);
  assert.throws(() => parseRules(good.replace('for: 10m', 'for: ten minutes'), 'r.yaml'), /rules\[4\]\.for: "ten minutes" is not a duration/);
  assert.throws(() => parseRules('groups: 3'), /groups: must be a list/);
});

test('the test knob: a copy with another for: and threshold', () => {
  const rules = loadRules();
  const copy = overrideAlerts(rules, { WeirDeniedFlowsHigh: { for: '0s', threshold: 2 } });
  const rule = alertRules(copy).find((a) => a.alert === 'WeirDeniedFlowsHigh')!;
  assert.equal(rule.for, '0s');
  assert.match(rule.expr, /\) > 2$/);
  assert.match(alertRules(rules).find((a) => a.alert === 'WeirDeniedFlowsHigh')!.expr, /> 100$/, 'the original is untouched');
  assert.deepEqual(parseRules(rulesToYaml(copy)), copy, 'the copy round-trips as a rule file');
  assert.throws(() => overrideAlerts(rules, { WeirNope: { for: '1s' } }), (e: Error) => e instanceof RulesError && /no alert named "WeirNope"/.test(e.message));
});

test('promtool check rules accepts the rule file, and refuses a broken one', () => {
  const ok = promtool(['check', 'rules', RULES_FILE]);
  assert.equal(ok.status, 0, ok.output);
  assert.match(ok.output, /SUCCESS: 13 rules found/);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'weir-rules-'));
  try {
    const broken = path.join(dir, 'broken.yaml');
    writeFileSync(broken, readFileSync(RULES_FILE, 'utf8').replace('increase(weir_policy_verdicts_total{verdict="denied", namespace!=""}[5m])', 'increase(weir_policy_verdicts_total{verdict="denied", namespace!=""}[5m]'));
    const bad = promtool(['check', 'rules', broken]);
    assert.notEqual(bad.status, 0, 'promtool refuses an unbalanced expression');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('promtool test rules: every alert fires in some case and stays quiet in another', () => {
  const tests = parse(readFileSync(RULE_TESTS, 'utf8')) as { tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[] };
  const firing = new Set<string>();
  const quiet = new Set<string>();
  for (const t of tests.tests) {
    for (const a of t.alert_rule_test ?? []) (a.exp_alerts?.length ? firing : quiet).add(a.alertname);
  }
  for (const a of alertRules(loadRules())) {
    assert.ok(firing.has(a.alert), `${path.basename(RULE_TESTS)} has a case where ${a.alert} fires`);
    assert.ok(quiet.has(a.alert), `${path.basename(RULE_TESTS)} has a case where ${a.alert} does not fire`);
  }
  const r = promtool(['test', 'rules', RULE_TESTS]);
  assert.equal(r.status, 0, r.output);
  assert.match(r.output, /SUCCESS/);
});

test('the PromQL in docs/metrics.md and docs/alerts.md names only exported metrics', () => {
  let checked = 0;
  for (const file of [METRICS_DOC, ALERTS_DOC]) {
    const text = readFileSync(file, 'utf8');
    for (const block of text.matchAll(/```promql\n([\s\S]*?)```/g)) {
      for (const line of block[1]!.split('\n')) {
        if (line.trim() === '' || line.trim().startsWith('#')) continue;
        assert.deepEqual(unknownMetrics(line), [], `${path.basename(file)}: ${line}`);
        checked++;
      }
    }
    // inline `histogram_quantile(...)` and friends in the runbooks
    for (const m of text.matchAll(/`([a-z_]+\([^`]*\))`/g)) {
      assert.deepEqual(unknownMetrics(m[1]!), [], `${path.basename(file)}: ${m[1]}`);
      checked++;
    }
  }
  assert.ok(checked >= 6, `checked ${checked} expressions`);
});
