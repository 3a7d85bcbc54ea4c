import { Injectable } from '@nestjs/common';
import { InjectMetric } from '@willsoto/nestjs-prometheus';
import { Counter, Gauge, Histogram } from 'prom-client';
import {
  LOCK_METRIC,
  type LockAcquireOutcome,
  type LockExtensionOutcome,
} from './metrics.constants';

/** The lock metrics (DESIGN §7). No per-key labels: lock keys are unbounded (one per account). */
@Injectable()
export class LockMetrics {
  constructor(
    @InjectMetric(LOCK_METRIC.acquireDuration)
    private readonly acquireDuration: Histogram<'outcome'>,
    @InjectMetric(LOCK_METRIC.contention) private readonly contention: Counter,
    @InjectMetric(LOCK_METRIC.extensions) private readonly extensions: Counter<'outcome'>,
    @InjectMetric(LOCK_METRIC.lost) private readonly lost: Counter,
    @InjectMetric(LOCK_METRIC.held) private readonly held: Gauge,
  ) {}

  acquireFinished(outcome: LockAcquireOutcome, seconds: number): void {
    this.acquireDuration.observe({ outcome }, seconds);
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
