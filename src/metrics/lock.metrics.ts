import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import { InjectMetric } from '@willsoto/nestjs-prometheus';
import { Counter, Gauge, Histogram } from 'prom-client';
import { ScrapedHistogram, type ScrapedSeries } from './scraped-histogram.js';
import {
  LOCK_METRIC,
  LOCK_WAIT_BUCKETS,
  type LockAcquireOutcome,
  type LockExtensionOutcome,
} from './metrics.constants.js';

/** The lock metrics. No per-key labels: lock keys are unbounded (one per account). */
@Injectable()
export class LockMetrics implements OnModuleDestroy {
  /** Acquisition times by outcome, counted here and handed to prom-client at each scrape. */
  private readonly acquired: ScrapedSeries;
  private readonly timedOut: ScrapedSeries;
  private readonly durations: ScrapedHistogram<'outcome'>;

  constructor(
    @InjectMetric(LOCK_METRIC.acquireDuration)
    acquireDuration: Histogram<'outcome'>,
    @InjectMetric(LOCK_METRIC.contention) private readonly contention: Counter,
    @InjectMetric(LOCK_METRIC.extensions) private readonly extensions: Counter<'outcome'>,
    @InjectMetric(LOCK_METRIC.lost) private readonly lost: Counter,
    @InjectMetric(LOCK_METRIC.held) private readonly held: Gauge,
  ) {
    const durations = new ScrapedHistogram(acquireDuration, LOCK_WAIT_BUCKETS);
    this.durations = durations;
    this.acquired = durations.series({ outcome: 'acquired' });
    this.timedOut = durations.series({ outcome: 'timeout' });
  }

  /** The histogram may outlive this instance (a registry shared in the process). */
  onModuleDestroy(): void {
    this.durations.detach();
  }

  acquireFinished(outcome: LockAcquireOutcome, seconds: number): void {
    (outcome === 'acquired' ? this.acquired : this.timedOut).observe(seconds);
  }

  /** One try found the lock held (by another process, or by a sibling in this one). */
  contended(): void {
    this.contention.inc();
  }

  extension(outcome: LockExtensionOutcome): void {
    this.extensions.inc({ outcome });
  }

  lockLost(): void {
    this.lost.inc();
  }

  heldChanged(delta: 1 | -1): void {
    this.held.inc(delta);
  }
}
