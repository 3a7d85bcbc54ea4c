import { Injectable } from '@nestjs/common';
import { InjectMetric } from '@willsoto/nestjs-prometheus';
import { Counter, Gauge, Histogram } from 'prom-client';
import { METRIC, type ProcessingOutcome, type PublishOutcome } from './metrics.constants';

/**
 * The message and connection metrics, behind methods so callers cannot invent label names.
 * Label values come from bounded sets: queue and handler names are fixed at bootstrap, and the
 * exchange label is only ever an exchange this service declared or was asked to publish to.
 */
@Injectable()
export class MessageMetrics {
  /**
   * Label children per queue (received, in flight) and per queue/handler/outcome, built and
   * validated once instead of on every message (prom-client still hashes the labels per call).
   */
  private readonly queueChildren = new Map<
    string,
    { received: Counter.Internal; inFlight: Gauge.Internal<'queue'> }
  >();
  private readonly settledChildren = new Map<
    string,
    { processed: Counter.Internal; duration: Histogram.Internal<'queue' | 'handler' | 'outcome'> }
  >();

  constructor(
    @InjectMetric(METRIC.messagesReceived) private readonly received: Counter<'queue'>,
    @InjectMetric(METRIC.messagesProcessed)
    private readonly processed: Counter<'queue' | 'handler' | 'outcome'>,
    @InjectMetric(METRIC.processingDuration)
    private readonly duration: Histogram<'queue' | 'handler' | 'outcome'>,
    @InjectMetric(METRIC.messagesInFlight) private readonly inFlight: Gauge<'queue'>,
    @InjectMetric(METRIC.messagesPublished)
    private readonly published: Counter<'exchange' | 'outcome'>,
    @InjectMetric(METRIC.amqpConnected) private readonly amqpConnected: Gauge,
    @InjectMetric(METRIC.redisConnected) private readonly redisConnected: Gauge,
    @InjectMetric(METRIC.publishConfirmDuration)
    private readonly confirmDuration: Histogram<'exchange' | 'outcome'>,
    @InjectMetric(METRIC.amqpReconnects) private readonly amqpReconnects: Counter,
    @InjectMetric(METRIC.redisReconnects) private readonly redisReconnects: Counter,
  ) {}

  messageReceived(queue: string): void {
    const children = this.ofQueue(queue);
    children.received.inc();
    children.inFlight.inc();
  }

  messageSettled(
    queue: string,
    handler: string,
    outcome: ProcessingOutcome,
    seconds: number,
  ): void {
    this.ofQueue(queue).inFlight.dec();
    // queue and handler names are fixed at bootstrap and outcomes are five: a bounded map
    const key = `${queue}\u0000${handler}\u0000${outcome}`;
    let children = this.settledChildren.get(key);
    if (!children) {
      children = {
        processed: this.processed.labels({ queue, handler, outcome }),
        duration: this.duration.labels({ queue, handler, outcome }),
      };
      this.settledChildren.set(key, children);
    }
    children.processed.inc();
    children.duration.observe(seconds);
  }

  private ofQueue(queue: string): {
    received: Counter.Internal;
    inFlight: Gauge.Internal<'queue'>;
  } {
    let children = this.queueChildren.get(queue);
    if (!children) {
      children = {
        received: this.received.labels({ queue }),
        inFlight: this.inFlight.labels({ queue }),
      };
      this.queueChildren.set(queue, children);
    }
    return children;
  }

  /** A publish settled: confirmed by the broker, or failed, `seconds` after it was sent. */
  messagePublished(exchange: string, outcome: PublishOutcome, seconds: number): void {
    this.published.inc({ exchange, outcome });
    this.confirmDuration.observe({ exchange, outcome }, seconds);
  }

  amqpReconnected(): void {
    this.amqpReconnects.inc();
  }

  redisReconnected(): void {
    this.redisReconnects.inc();
  }

  setAmqpConnected(up: boolean): void {
    this.amqpConnected.set(up ? 1 : 0);
  }

  setRedisConnected(up: boolean): void {
    this.redisConnected.set(up ? 1 : 0);
  }
}
