import { Injectable } from '@nestjs/common';
import { InjectMetric } from '@willsoto/nestjs-prometheus';
import { Counter, Gauge, Histogram } from 'prom-client';
import { OUTBOX_METRIC, type PublishOutcome } from './metrics.constants.js';

/** The outbox relay's and the PostgreSQL connection's metrics. */
@Injectable()
export class OutboxMetrics {
  constructor(
    @InjectMetric(OUTBOX_METRIC.pending) private readonly pending: Gauge,
    @InjectMetric(OUTBOX_METRIC.published)
    private readonly published: Counter<'exchange' | 'outcome'>,
    @InjectMetric(OUTBOX_METRIC.relayLag) private readonly lag: Histogram,
    @InjectMetric(OUTBOX_METRIC.postgresConnected) private readonly connected: Gauge,
  ) {}

  setPending(rows: number): void {
    this.pending.set(rows);
  }

  relayed(exchange: string, outcome: PublishOutcome, lagSeconds?: number): void {
    this.published.inc({ exchange, outcome });
    if (lagSeconds !== undefined) this.lag.observe(lagSeconds);
  }

  setPostgresConnected(up: boolean): void {
    this.connected.set(up ? 1 : 0);
  }
}
