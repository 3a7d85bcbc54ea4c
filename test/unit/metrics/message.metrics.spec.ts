import { describe, it, expect } from 'vitest';
import {
  Counter,
  Gauge,
  Histogram,
  type OpenMetricsContentType,
  Registry,
  type RegistryContentType,
} from 'prom-client';
import { MessageMetrics } from '../../../src/metrics/message.metrics.js';
import { DURATION_BUCKETS, METRIC } from '../../../src/metrics/metrics.constants.js';

/**
 * The service's message metrics on a registry of the test's own; the duration histograms keep
 * exemplars on an OpenMetrics registry, as the module creates them.
 */
function metricsOn(registry: Registry<RegistryContentType>): MessageMetrics {
  const registers = [registry];
  const enableExemplars = registry.contentType === Registry.OPENMETRICS_CONTENT_TYPE;
  const labels = (...names: string[]) => ({ labelNames: names, registers });
  return new MessageMetrics(
    new Counter({ name: METRIC.messagesReceived, help: 'h', ...labels('queue') }),
    new Counter({
      name: METRIC.messagesProcessed,
      help: 'h',
      ...labels('queue', 'handler', 'outcome'),
    }),
    new Histogram({
      name: METRIC.processingDuration,
      help: 'h',
      buckets: DURATION_BUCKETS,
      enableExemplars,
      ...labels('queue', 'handler', 'outcome'),
    }),
    new Gauge({ name: METRIC.messagesInFlight, help: 'h', ...labels('queue') }),
    new Counter({ name: METRIC.messagesPublished, help: 'h', ...labels('exchange', 'outcome') }),
    new Gauge({ name: METRIC.amqpConnected, help: 'h', registers }),
    new Gauge({ name: METRIC.redisConnected, help: 'h', registers }),
    new Histogram({
      name: METRIC.publishConfirmDuration,
      help: 'h',
      buckets: DURATION_BUCKETS,
      enableExemplars,
      ...labels('exchange', 'outcome'),
    }),
    new Counter({ name: METRIC.amqpReconnects, help: 'h', registers }),
    new Counter({ name: METRIC.redisReconnects, help: 'h', registers }),
    new Gauge({ name: METRIC.consumersPaused, help: 'h', ...labels('queue', 'reason') }),
    new Counter({ name: METRIC.killSwitchTrips, help: 'h', ...labels('queue', 'handler') }),
  );
}

/** The value of one series in the registry's exposition, as a scrape sees it. */
async function scraped(
  registry: Registry<RegistryContentType>,
  series: string,
): Promise<number | undefined> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('MessageMetrics', () => {
  it('shows on every scrape the messages received, in flight and settled since the start', async () => {
    const registry = new Registry();
    const metrics = metricsOn(registry);
    const q = '{queue="ledger.transactions"}';
    const ack = '{queue="ledger.transactions",handler="LedgerHandler.apply",outcome="ack"}';
    for (let i = 0; i < 3; i++) metrics.messageReceived('ledger.transactions');
    metrics.messageSettled('ledger.transactions', 'LedgerHandler.apply', 'ack', 0.002);
    metrics.messageSettled('ledger.transactions', 'LedgerHandler.apply', 'ack', 0.004);

    expect(await scraped(registry, `messages_received_total${q}`)).toBe(3);
    expect(await scraped(registry, `messages_in_flight${q}`)).toBe(1);
    expect(await scraped(registry, `messages_processed_total${ack}`)).toBe(2);
    expect(await scraped(registry, `message_processing_duration_seconds_count${ack}`)).toBe(2);

    // counts keep adding up across scrapes; a scrape without news changes nothing
    expect(await scraped(registry, `messages_received_total${q}`)).toBe(3);
    metrics.messageReceived('ledger.transactions');
    metrics.messageSettled('ledger.transactions', 'LedgerHandler.apply', 'retry', 0.01);
    metrics.messageSettled('ledger.transactions', 'LedgerHandler.apply', 'ack', 0.001);
    expect(await scraped(registry, `messages_received_total${q}`)).toBe(4);
    expect(await scraped(registry, `messages_in_flight${q}`)).toBe(0);
    expect(await scraped(registry, `messages_processed_total${ack}`)).toBe(3);
    expect(
      await scraped(
        registry,
        'messages_processed_total{queue="ledger.transactions",handler="LedgerHandler.apply",outcome="retry"}',
      ),
    ).toBe(1);
  });

  it('reads the same through a single metric as through the whole registry', async () => {
    const registry = new Registry();
    const metrics = metricsOn(registry);
    metrics.messageReceived('audit');
    const received = await registry.getSingleMetric(METRIC.messagesReceived)?.get();
    expect(received?.values).toEqual([{ value: 1, labels: { queue: 'audit' } }]);
  });

  it('exposes the duration histogram as prom-client would: cumulative buckets, sum and count', async () => {
    const registry = new Registry();
    const metrics = metricsOn(registry);
    const series = 'queue="q",handler="H.m",outcome="ack"';
    // 0.001 falls in le=0.001 (bounds are inclusive), 0.003 in le=0.005, 100 beyond the last
    for (const seconds of [0.001, 0.003, 0.003, 100])
      metrics.messageSettled('q', 'H.m', 'ack', seconds);
    const bucket = (le: string) =>
      scraped(registry, `message_processing_duration_seconds_bucket{le="${le}",${series}}`);
    expect(await bucket('0.001')).toBe(1);
    expect(await bucket('0.0025')).toBe(1);
    expect(await bucket('0.005')).toBe(3);
    expect(await bucket('60')).toBe(3);
    expect(await bucket('+Inf')).toBe(4);
    expect(await scraped(registry, `message_processing_duration_seconds_sum{${series}}`)).toBe(
      100.007,
    );

    // after a reset of the registry the series starts again from what came since
    registry.resetMetrics();
    metrics.messageSettled('q', 'H.m', 'ack', 0.02);
    expect(await bucket('0.025')).toBe(1);
    expect(await bucket('+Inf')).toBe(1);
    expect(await scraped(registry, `message_processing_duration_seconds_count{${series}}`)).toBe(1);
  });

  it('counts publishes and their confirm times by exchange and outcome', async () => {
    const registry = new Registry();
    const metrics = metricsOn(registry);
    metrics.messagePublished('ledger', 'confirmed', 0.002);
    metrics.messagePublished('ledger', 'confirmed', 0.004);
    metrics.messagePublished('ledger', 'failed', 5);
    const confirmed = '{exchange="ledger",outcome="confirmed"}';
    expect(await scraped(registry, `messages_published_total${confirmed}`)).toBe(2);
    expect(
      await scraped(registry, 'messages_published_total{exchange="ledger",outcome="failed"}'),
    ).toBe(1);
    expect(
      await scraped(registry, `message_publish_confirm_duration_seconds_count${confirmed}`),
    ).toBe(2);
    metrics.messagePublished('ledger', 'confirmed', 0.001);
    expect(await scraped(registry, `messages_published_total${confirmed}`)).toBe(3);
  });

  it('on an OpenMetrics registry, shows per bucket the last sampled trace that fell in it', async () => {
    // prom-client's types take no content type in the constructor
    const registry = new Registry<OpenMetricsContentType>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const metrics = metricsOn(registry);
    const trace = (n: number) => ({ trace_id: `${n}`.repeat(32), span_id: `${n}`.repeat(16) });
    const before = Date.now() / 1000;
    metrics.messageSettled('q', 'H.m', 'ack', 0.002, trace(1));
    metrics.messageSettled('q', 'H.m', 'ack', 0.0021, trace(2)); // same bucket: the later wins
    metrics.messageSettled('q', 'H.m', 'ack', 0.004); // not sampled: counted, no exemplar
    metrics.messageSettled('q', 'H.m', 'retry', 100, trace(3)); // beyond the last bound
    metrics.messagePublished('ledger', 'confirmed', 0.0009, trace(4));
    let text = await registry.metrics();
    const line = (prefix: string) => text.split('\n').find((l) => l.startsWith(prefix));
    const exemplar = (prefix: string) => {
      const match = / # \{trace_id="(\w+)",span_id="(\w+)"\} ([\d.e-]+) ([\d.]+)$/.exec(
        line(prefix) ?? '',
      );
      return match
        ? { trace: match[1], span: match[2], value: Number(match[3]), at: Number(match[4]) }
        : undefined;
    };
    const ack = 'queue="q",handler="H.m",outcome="ack"';
    const le25 = exemplar(`message_processing_duration_seconds_bucket{le="0.0025",${ack}} 2 `);
    expect(le25).toMatchObject({ trace: '2'.repeat(32), span: '2'.repeat(16), value: 0.0021 });
    expect(le25?.at).toBeGreaterThanOrEqual(Math.floor(before));
    expect(line(`message_processing_duration_seconds_bucket{le="0.005",${ack}} 3`)).toBe(
      `message_processing_duration_seconds_bucket{le="0.005",${ack}} 3`,
    );
    expect(
      exemplar(
        'message_processing_duration_seconds_bucket{le="+Inf",queue="q",handler="H.m",outcome="retry"} 1 ',
      ),
    ).toMatchObject({ trace: '3'.repeat(32), value: 100 });
    expect(
      exemplar(
        'message_publish_confirm_duration_seconds_bucket{le="0.001",exchange="ledger",outcome="confirmed"} 1 ',
      ),
    ).toMatchObject({ trace: '4'.repeat(32), span: '4'.repeat(16), value: 0.0009 });
    // counters in OpenMetrics keep their names; the document ends as the format requires
    expect(line(`messages_processed_total{${ack}} 3`)).toBeDefined();
    expect(text.endsWith('# EOF\n')).toBe(true);

    // a scrape without new traced observations keeps showing the last exemplar
    metrics.messageSettled('q', 'H.m', 'ack', 0.002);
    text = await registry.metrics();
    expect(
      exemplar(`message_processing_duration_seconds_bucket{le="0.0025",${ack}} 3 `),
    ).toMatchObject({ trace: '2'.repeat(32) });
  });

  it('takes trace ids on a Prometheus registry without printing them (its format has no exemplars)', async () => {
    const registry = new Registry();
    const metrics = metricsOn(registry);
    metrics.messageSettled('q', 'H.m', 'ack', 0.002, {
      trace_id: 'a'.repeat(32),
      span_id: 'b'.repeat(16),
    });
    const text = await registry.metrics();
    expect(
      await scraped(
        registry,
        'message_processing_duration_seconds_bucket{le="0.0025",queue="q",handler="H.m",outcome="ack"}',
      ),
    ).toBe(1);
    expect(text).not.toContain('a'.repeat(32));
  });
});
