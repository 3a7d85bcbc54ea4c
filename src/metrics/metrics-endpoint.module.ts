import { Module } from '@nestjs/common';
import { PrometheusModule } from '@willsoto/nestjs-prometheus';
import { collectDefaultMetrics, register } from 'prom-client';

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
