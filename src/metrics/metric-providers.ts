import type { FactoryProvider } from '@nestjs/common';
import { getToken } from '@willsoto/nestjs-prometheus';
import {
  Counter,
  type CounterConfiguration,
  Gauge,
  type GaugeConfiguration,
  Histogram,
  type HistogramConfiguration,
  type Metric,
  register as defaultRegistry,
  Registry,
  type RegistryContentType,
} from 'prom-client';

/**
 * The registry the package's metrics are registered on: the application's
 * (`MessageProcessorModule` option `metrics.registry`), else prom-client's default registry.
 */
export const METRICS_REGISTRY = Symbol('message-processor:metrics-registry');

type Config<C> = Omit<C, 'registers'> & { readonly name: string };

/**
 * A provider of one metric under `@InjectMetric(name)`'s token, on {@link METRICS_REGISTRY}; a
 * metric of that name already there (a second application in the process) is reused, so each is
 * registered once. Unlike `@willsoto/nestjs-prometheus`'s `make*Provider`, the name is never
 * prefixed by the application's `customMetricPrefix`: dashboards and alerts rely on it.
 */
/** A registry of either format (the default one may be switched to OpenMetrics). */
type AnyRegistry = Registry<RegistryContentType>;

function metricProvider(name: string, make: (registry: AnyRegistry) => Metric): FactoryProvider {
  return {
    provide: getToken(name),
    inject: [{ token: METRICS_REGISTRY, optional: true }],
    useFactory: (registry?: AnyRegistry): Metric => {
      const target: AnyRegistry = registry ?? defaultRegistry;
      return target.getSingleMetric(name) ?? make(target);
    },
  };
}

export function counterProvider(config: Config<CounterConfiguration<string>>): FactoryProvider {
  return metricProvider(config.name, (r) => new Counter({ ...config, registers: [r] }));
}

export function gaugeProvider(config: Config<GaugeConfiguration<string>>): FactoryProvider {
  return metricProvider(config.name, (r) => new Gauge({ ...config, registers: [r] }));
}

/**
 * A histogram; with `exemplars`, it keeps an exemplar per bucket (a trace's ids) when its
 * registry is an OpenMetrics one: prom-client refuses exemplars on a Prometheus-format registry,
 * whose text format has no place for them.
 */
export function histogramProvider(
  config: Config<Omit<HistogramConfiguration<string>, 'enableExemplars'>> & {
    readonly exemplars?: boolean;
  },
): FactoryProvider {
  const { exemplars = false, ...rest } = config;
  return metricProvider(
    config.name,
    (r) =>
      new Histogram({
        ...rest,
        registers: [r],
        enableExemplars: exemplars && r.contentType === Registry.OPENMETRICS_CONTENT_TYPE,
      }),
  );
}
