// The cardinality knobs of /metrics as command-line flags (`weir agent --metrics-...`), parsed and
// checked here so the agent's CLI only adds them (docs/metrics.md, "Cardinality").
import { InvalidArgumentError, Option } from 'commander';
import type { MetricsOptions } from './agent-metrics.js';
import { DEFAULT_MAX_LABEL_VALUES } from './catalog.js';
import { DEFAULT_PROTECTED_PORTS, parseLabelCap, parseProtectedPorts } from './labels.js';

export interface MetricsFlags {
  metricsPodLabels?: boolean;
  metricsMaxLabelValues?: number;
  metricsProtectedPorts?: string;
}

function checked<T>(parse: (v: string) => T): (v: string) => T {
  return (v) => {
    try {
      return parse(v);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

export const metricsFlagOptions: readonly Option[] = [
  new Option('--metrics-pod-labels', 'a `pod` label (namespace/name of the policed pod) on weir_flows_total and weir_policy_verdicts_total (off: one series per namespace)'),
  new Option('--metrics-max-label-values <n>', 'distinct values kept per namespace/policy/pod label of a metric; later ones count as "other"')
    .argParser(checked((v) => parseLabelCap(v))).default(DEFAULT_MAX_LABEL_VALUES),
  new Option('--metrics-protected-ports <list>', 'node ports that get their own label on weir_host_denied_total, e.g. "tcp:22,tcp:6443" (others: "other")')
    .argParser(checked((v) => { parseProtectedPorts(v); return v; })).default(DEFAULT_PROTECTED_PORTS, 'the failsafe ports and tcp:10250'),
];

export function metricsOptionsOf(o: MetricsFlags): MetricsOptions {
  return {
    ...(o.metricsPodLabels ? { podLabels: true } : {}),
    ...(o.metricsMaxLabelValues !== undefined ? { maxLabelValues: o.metricsMaxLabelValues } : {}),
    ...(o.metricsProtectedPorts !== undefined ? { protectedPorts: o.metricsProtectedPorts } : {}),
  };
}
