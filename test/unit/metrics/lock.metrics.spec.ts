import { describe, it, expect } from 'vitest';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { LockMetrics } from '../../../src/metrics/lock.metrics.js';
import { LOCK_METRIC, LOCK_WAIT_BUCKETS } from '../../../src/metrics/metrics.constants.js';

/** The value of one series in the registry's exposition, as a scrape sees it. */
async function scraped(registry: Registry, series: string): Promise<number | undefined> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('LockMetrics', () => {
  it('shows acquisition times by outcome on every scrape', async () => {
    const registry = new Registry();
    const registers = [registry];
    const metrics = new LockMetrics(
      new Histogram({
        name: LOCK_METRIC.acquireDuration,
        help: 'h',
        labelNames: ['outcome'],
        buckets: LOCK_WAIT_BUCKETS,
        registers,
      }),
      new Counter({ name: LOCK_METRIC.contention, help: 'h', registers }),
      new Counter({ name: LOCK_METRIC.extensions, help: 'h', labelNames: ['outcome'], registers }),
      new Counter({ name: LOCK_METRIC.lost, help: 'h', registers }),
      new Gauge({ name: LOCK_METRIC.held, help: 'h', registers }),
    );
    const name = LOCK_METRIC.acquireDuration;
    metrics.acquireFinished('acquired', 0);
    metrics.acquireFinished('acquired', 0);
    metrics.acquireFinished('timeout', LOCK_WAIT_BUCKETS[LOCK_WAIT_BUCKETS.length - 1] + 1);

    expect(await scraped(registry, `${name}_count{outcome="acquired"}`)).toBe(2);
    expect(
      await scraped(registry, `${name}_bucket{le="${LOCK_WAIT_BUCKETS[0]}",outcome="acquired"}`),
    ).toBe(2);
    expect(await scraped(registry, `${name}_bucket{le="+Inf",outcome="timeout"}`)).toBe(1);
    expect(
      await scraped(
        registry,
        `${name}_bucket{le="${LOCK_WAIT_BUCKETS[LOCK_WAIT_BUCKETS.length - 1]}",outcome="timeout"}`,
      ),
    ).toBe(0);

    // a scrape without news changes nothing; later observations add up
    expect(await scraped(registry, `${name}_count{outcome="acquired"}`)).toBe(2);
    metrics.acquireFinished('acquired', 0);
    expect(await scraped(registry, `${name}_count{outcome="acquired"}`)).toBe(3);
  });
});
