import { afterEach, describe, expect, it } from 'vitest';
import { Global, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { PrometheusModule } from '@willsoto/nestjs-prometheus';
import { type OpenMetricsContentType, register, Registry } from 'prom-client';
import { METRIC } from '../../../src/metrics/metrics.constants.js';
import { METRICS_REGISTRY } from '../../../src/metrics/metric-providers.js';
import { MessageMetrics } from '../../../src/metrics/message.metrics.js';
import { MetricsModule } from '../../../src/metrics/metrics.module.js';

describe('the metrics in an application', () => {
  afterEach(() => register.clear());

  it("keep their names under the application's customMetricPrefix, on the default registry", async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        PrometheusModule.register({
          customMetricPrefix: 'app',
          defaultMetrics: { enabled: false },
        }),
        MetricsModule,
      ],
    }).compile();
    moduleRef.get(MessageMetrics).messageReceived('q');
    expect(register.getSingleMetric(METRIC.messagesReceived)).toBeDefined();
    expect(register.getSingleMetric(`app_${METRIC.messagesReceived}`)).toBeUndefined();
    await moduleRef.close();
  });

  it("go on the application's registry when it gives one, registered once for two modules", async () => {
    const registry = new Registry();
    /** What MessageProcessorModule does with its `metrics.registry` option. */
    @Global()
    @Module({
      providers: [{ provide: METRICS_REGISTRY, useValue: registry }],
      exports: [METRICS_REGISTRY],
    })
    class RegistryModule {}
    const build = () =>
      Test.createTestingModule({ imports: [RegistryModule, MetricsModule] }).compile();
    const first = await build();
    const second = await build();
    first.get(MessageMetrics).messageReceived('q');
    second.get(MessageMetrics).messageReceived('q');
    const metric = registry.getSingleMetric(METRIC.messagesReceived);
    expect((await metric?.get())?.values).toEqual([
      expect.objectContaining({ labels: { queue: 'q' }, value: 2 }),
    ]);
    expect(register.getSingleMetric(METRIC.messagesReceived)).toBeUndefined();
    await Promise.all([first.close(), second.close()]);
  });

  it('keep exemplars on the duration histograms when the registry is an OpenMetrics one', async () => {
    const registry = new Registry<OpenMetricsContentType>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    @Global()
    @Module({
      providers: [{ provide: METRICS_REGISTRY, useValue: registry }],
      exports: [METRICS_REGISTRY],
    })
    class RegistryModule {}
    const app = await Test.createTestingModule({
      imports: [RegistryModule, MetricsModule],
    }).compile();
    const trace = { trace_id: 'c'.repeat(32), span_id: 'd'.repeat(16) };
    app.get(MessageMetrics).messageSettled('q', 'H.m', 'ack', 0.03, trace);
    app.get(MessageMetrics).messagePublished('x', 'confirmed', 0.003, trace);
    const text = await registry.metrics();
    const exemplar = `# {trace_id="${trace.trace_id}",span_id="${trace.span_id}"}`;
    expect(text).toContain(
      `${METRIC.processingDuration}_bucket{le="0.05",queue="q",handler="H.m",outcome="ack"} 1 ${exemplar} 0.03 `,
    );
    expect(text).toContain(
      `${METRIC.publishConfirmDuration}_bucket{le="0.005",exchange="x",outcome="confirmed"} 1 ${exemplar} 0.003 `,
    );
    await app.close();
  });
});
