// The prom-client registry, built from the catalog and nothing else: each catalog entry becomes
// one Counter, Gauge or Histogram with the entry's labels (plus its optional labels when their
// knob is on). Metrics read at scrape time get a collect callback from the caller.
// prom-client is CommonJS: its classes come off the default export (Node's named-export
// detection misses some of them).
import client, { type Counter, type Gauge, type Histogram, type Registry } from 'prom-client';
import { METRICS, type MetricName, type MetricSpec } from './catalog.js';

type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>;
/** Reads a metric's current value into it when Prometheus scrapes (prom-client's collect()). */
export type Collector = (metric: AnyMetric) => void | Promise<void>;

export interface BuildOptions {
  /** add the catalog's optional labels (the `pod` label) */
  readonly podLabels?: boolean;
  readonly collectors?: Partial<Record<MetricName, Collector>>;
}

export interface CatalogRegistry {
  readonly registry: Registry;
  counter(name: MetricName): Counter<string>;
  gauge(name: MetricName): Gauge<string>;
  histogram(name: MetricName): Histogram<string>;
  /** the label names a metric was registered with */
  labelNames(name: MetricName): readonly string[];
}

export function buildRegistry(opts: BuildOptions = {}): CatalogRegistry {
  const registry = new client.Registry();
  const made = new Map<string, { metric: AnyMetric; spec: MetricSpec; labels: string[] }>();
  for (const entry of METRICS) {
    const spec: MetricSpec = entry;
    const labelNames = [...spec.labels, ...(opts.podLabels ? spec.optionalLabels ?? [] : [])];
    const collect = opts.collectors?.[entry.name];
    const common = {
      name: spec.name, help: spec.help, labelNames, registers: [registry],
      ...(collect ? { collect(this: AnyMetric) { return collect(this); } } : {}),
    };
    const metric: AnyMetric = spec.type === 'counter' ? new client.Counter(common)
      : spec.type === 'gauge' ? new client.Gauge(common)
        : new client.Histogram({ ...common, buckets: [...(spec.buckets ?? [])] });
    made.set(spec.name, { metric, spec, labels: labelNames });
  }
  const get = <T extends AnyMetric>(name: MetricName, type: MetricSpec['type']): T => {
    const m = made.get(name)!;
    if (m.spec.type !== type) throw new TypeError(`metric ${name} is a ${m.spec.type}, not a ${type}`);
    return m.metric as T;
  };
  return {
    registry,
    counter: (name) => get<Counter<string>>(name, 'counter'),
    gauge: (name) => get<Gauge<string>>(name, 'gauge'),
    histogram: (name) => get<Histogram<string>>(name, 'histogram'),
    labelNames: (name) => made.get(name)!.labels,
  };
}

/**
 * Sets a counter to totals read from elsewhere (the datapath's per-CPU maps, the agent's stats):
 * prom-client counters only go up by inc(), so the series are rebuilt from the totals. A source
 * that was reset (a new datapath) makes the counter go down, which Prometheus reads as a reset.
 */
export function setCounterTotals(counter: Counter<string>, totals: Iterable<readonly [Record<string, string>, number]>): void {
  counter.reset();
  for (const [labels, value] of totals) {
    if (Number.isFinite(value) && value >= 0) counter.inc(labels, value);
  }
}
