// Weir's alert rules (alerts/weir.rules.yaml) as data: load and check their shape, list the
// metric names each PromQL expression selects (so a test can hold them against the catalog), and
// derive a copy with another `for:` and threshold (the lab's end-to-end test and anyone trying
// the rules on a quiet cluster: docs/alerts.md, "Trying the rules").
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { repoRoot } from '../paths.js';
import { specOfSeries } from './catalog.js';
import { PromQlError, metricNames } from './promql.js';

export const RULES_FILE = path.join(repoRoot, 'alerts', 'weir.rules.yaml');

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: string } & Record<string, string>;
  annotations: { summary: string; description: string; runbook_url: string } & Record<string, string>;
}

export interface RulesFile {
  groups: { name: string; rules: AlertRule[] }[];
}

export class RulesError extends Error {
  override readonly name = 'RulesError';
}

const SEVERITIES = new Set(['critical', 'warning', 'info']);
const REQUIRED_ANNOTATIONS = ['summary', 'description', 'runbook_url'] as const;

/** Parses and checks a rule file's text; errors name the field, e.g. `groups[0].rules[2].expr`. */
export function parseRules(text: string, source = 'rules'): RulesFile {
  const doc = parse(text) as unknown;
  const fail = (where: string, what: string): never => { throw new RulesError(`${source}: ${where}: ${what}`); };
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(doc) || !Array.isArray(doc.groups)) return fail('groups', 'must be a list of rule groups');
  (doc.groups as unknown[]).forEach((g, gi) => {
    const gw = `groups[${gi}]`;
    if (!isObj(g) || typeof g.name !== 'string') return fail(`${gw}.name`, 'must be a string');
    if (!Array.isArray(g.rules)) return fail(`${gw}.rules`, 'must be a list');
    (g.rules as unknown[]).forEach((r, ri) => {
      const w = `${gw}.rules[${ri}]`;
      if (!isObj(r)) return fail(w, 'must be a mapping');
      if (typeof r.alert !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(r.alert)) return fail(`${w}.alert`, `${JSON.stringify(r.alert)} is not an alert name`);
      if (typeof r.expr !== 'string' || r.expr.trim() === '') return fail(`${w}.expr`, 'must be a PromQL expression');
      if (r.for !== undefined && (typeof r.for !== 'string' || !/^(\d+(ms|s|m|h|d|w|y))+$/.test(r.for))) return fail(`${w}.for`, `${JSON.stringify(r.for)} is not a duration`);
      const labels = r.labels;
      if (!isObj(labels) || typeof labels.severity !== 'string' || !SEVERITIES.has(labels.severity)) return fail(`${w}.labels.severity`, `must be one of ${[...SEVERITIES].join(', ')}`);
      const ann = r.annotations;
      for (const a of REQUIRED_ANNOTATIONS) {
        if (!isObj(ann) || typeof ann[a] !== 'string' || ann[a].trim() === '') fail(`${w}.annotations.${a}`, 'is required');
      }
      return undefined;
    });
    return undefined;
  });
  return doc as unknown as RulesFile;
}

export function loadRules(file = RULES_FILE): RulesFile {
  return parseRules(readFileSync(file, 'utf8'), file);
}

export function alertRules(rules: RulesFile): AlertRule[] {
  return rules.groups.flatMap((g) => g.rules);
}

// ---- PromQL: the metric names an expression selects --------------------------------------------

/** The series Prometheus makes itself: rules may name them, the agent does not export them. */
export const PROMETHEUS_SERIES = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped', 'scrape_samples_post_metric_relabeling', 'scrape_series_added', 'ALERTS', 'ALERTS_FOR_STATE']);

/** The metric names a PromQL expression selects (promql.ts); a malformed expression is a
 * RulesError. */
export function promqlMetricNames(expr: string): string[] {
  try {
    return metricNames(expr);
  } catch (err) {
    if (err instanceof PromQlError) throw new RulesError(err.message);
    throw err;
  }
}

/** Names in the expression that neither the agent exports (the catalog) nor Prometheus makes. */
export function unknownMetrics(expr: string): string[] {
  return promqlMetricNames(expr).filter((name) => !specOfSeries(name) && !PROMETHEUS_SERIES.has(name));
}

// ---- a copy with other thresholds -----------------------------------------------------------------

export interface AlertOverride {
  /** the rule's `for:` */
  readonly for?: string;
  /** replaces the number after the expression's last `>` (each alert's threshold, docs/alerts.md) */
  readonly threshold?: number;
}

/** A copy of the rules with some alerts' `for:` and threshold replaced (a test knob: a lab's
 * traffic is too small for the production thresholds). */
export function overrideAlerts(rules: RulesFile, overrides: Readonly<Record<string, AlertOverride>>): RulesFile {
  const copy = structuredClone(rules);
  const seen = new Set<string>();
  for (const rule of alertRules(copy)) {
    const o = overrides[rule.alert];
    if (!o) continue;
    seen.add(rule.alert);
    if (o.for !== undefined) rule.for = o.for;
    if (o.threshold !== undefined) {
      const re = />\s*(-?[0-9.]+(?:e[+-]?\d+)?)(?![\s\S]*>)/i;
      if (!re.test(rule.expr)) throw new RulesError(`${rule.alert}.expr: no "> <number>" threshold to override in ${JSON.stringify(rule.expr)}`);
      rule.expr = rule.expr.replace(re, `> ${o.threshold}`);
    }
  }
  const missing = Object.keys(overrides).filter((a) => !seen.has(a));
  if (missing.length) throw new RulesError(`no alert named ${missing.map((a) => JSON.stringify(a)).join(', ')} in the rules`);
  return copy;
}

export function rulesToYaml(rules: RulesFile): string {
  return stringify(rules, { lineWidth: 0 });
}
