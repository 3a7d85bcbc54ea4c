import { Module } from '@nestjs/common';
import { PrometheusModule } from '@willsoto/nestjs-prometheus';
import { collectDefaultMetrics, register, Registry, type RegistryContentType } from 'prom-client';

// prom-client keeps one global registry per process; registering the default collectors twice
// (several apps in one test process) throws, so register them once.
if (register.getSingleMetric('process_cpu_user_seconds_total') === undefined) {
  collectDefaultMetrics();
}

/**
 * The service's `GET /metrics`: prom-client's default registry (the package's metrics and the
 * process's). An application that serves its own `/metrics` does not import this.
 */
@Module({
  imports: [PrometheusModule.register({ path: '/metrics', defaultMetrics: { enabled: false } })],
})
export class MetricsEndpointModule {}

/**
 * Serves `GET /metrics` in the OpenMetrics text format, the one with exemplars: the duration
 * histograms then carry, per bucket, the trace and span ids of a sampled message (the service
 * calls it when tracing is on, before the app creates its metrics). Prometheus reads either
 * format by the response's content type; its exemplar storage is a feature flag.
 */
export function serveOpenMetrics(): void {
  // prom-client types the default registry as a Prometheus-format one; it can be either
  (register as Registry<RegistryContentType>).setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
}
