import { afterEach, describe, expect, it } from 'vitest';
import { Global, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { PrometheusModule } from '@willsoto/nestjs-prometheus';
import { register, Registry } from 'prom-client';
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
});
