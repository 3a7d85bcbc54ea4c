import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import { type HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { monitorEventLoopDelay, type ELDHistogram } from 'node:perf_hooks';

/**
 * Event-loop delay since the previous liveness probe, for the liveness body. It never reports
 * down: a loop that is stuck cannot answer the probe at all, and that timeout is what makes
 * Kubernetes restart the pod. A loop that answers is alive, whatever Redis or the broker do.
 */
@Injectable()
export class EventLoopHealthIndicator implements OnModuleDestroy {
  private readonly delay: ELDHistogram = monitorEventLoopDelay({ resolution: 20 });

  constructor(private readonly health: HealthIndicatorService) {
    this.delay.enable();
  }

  check(key = 'eventLoop'): HealthIndicatorResult {
    const toMs = (ns: number): number => Math.round(ns / 1e5) / 10;
    const result = this.health.check(key).up({
      delayP99Ms: toMs(this.delay.percentile(99)),
      delayMaxMs: toMs(this.delay.max),
    });
    this.delay.reset();
    return result;
  }

  onModuleDestroy(): void {
    this.delay.disable();
  }
}
