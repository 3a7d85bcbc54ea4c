import { Injectable } from '@nestjs/common';
import { InjectMetric } from '@willsoto/nestjs-prometheus';
import { Counter, Gauge, Histogram } from 'prom-client';
import { METRIC, type ProcessingOutcome, type PublishOutcome } from './metrics.constants';

/**
 * The message and connection metrics, behind methods so callers cannot invent label names.
 * Label values come from bounded sets: queue and handler names are fixed at bootstrap, and the
 * exchange label is only ever an exchange this service declared or was asked to publish to.
 */
/** A queue's per-message counts, kept as plain numbers and handed to prom-client on scrape. */
interface QueueCounts {
  /** Received since the last scrape. */
  received: number;
  /** Received and not settled yet. */
  inFlight: number;
  readonly receivedChild: Counter.Internal;
  readonly inFlightChild: Gauge.Internal<'queue'>;
}

interface SettledCounts {
  /** Settled with this queue, handler and outcome since the last scrape. */
  count: number;
  readonly processedChild: Counter.Internal;
  readonly duration: Histogram.Internal<'queue' | 'handler' | 'outcome'>;
}

@Injectable()
export class MessageMetrics {
  /**
   * Label children per queue and per queue/handler/outcome, resolved once. The counters and the
   * in-flight gauge are plain numbers on the message path, added to prom-client's metrics when
   * they are collected (a scrape): prom-client hashes the labels on every call, three times per
   * message. The duration histogram is observed per message.
   */
  private readonly queues = new Map<string, QueueCounts>();
  private readonly settled = new Map<string, SettledCounts>();

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
  ) {
    // prom-client calls a metric's `collect` before reading it (each scrape)
    const collect = (): void => this.flush();
    for (const metric of [received, processed, inFlight]) {
      (metric as unknown as { collect: () => void }).collect = collect;
    }
  }

  messageReceived(queue: string): void {
    const counts = this.ofQueue(queue);
    counts.received++;
    counts.inFlight++;
  }

  messageSettled(
    queue: string,
    handler: string,
    outcome: ProcessingOutcome,
    seconds: number,
  ): void {
    this.ofQueue(queue).inFlight--;
    // queue and handler names are fixed at bootstrap and outcomes are five: a bounded map
    const key = `${queue}\u0000${handler}\u0000${outcome}`;
    let counts = this.settled.get(key);
    if (!counts) {
      counts = {
        count: 0,
        processedChild: this.processed.labels({ queue, handler, outcome }),
        duration: this.duration.labels({ queue, handler, outcome }),
      };
      this.settled.set(key, counts);
    }
    counts.count++;
    counts.duration.observe(seconds);
  }

  /** Hands the counts gathered since the last scrape to prom-client. */
  private flush(): void {
    for (const counts of this.queues.values()) {
      if (counts.received > 0) counts.receivedChild.inc(counts.received);
      counts.received = 0;
      counts.inFlightChild.set(counts.inFlight);
    }
    for (const counts of this.settled.values()) {
      if (counts.count > 0) counts.processedChild.inc(counts.count);
      counts.count = 0;
    }
  }

  private ofQueue(queue: string): QueueCounts {
    let counts = this.queues.get(queue);
    if (!counts) {
      counts = {
        received: 0,
        inFlight: 0,
        receivedChild: this.received.labels({ queue }),
        inFlightChild: this.inFlight.labels({ queue }),
      };
      // the series exists from the first message on, as with a direct inc
      counts.inFlightChild.set(0);
      this.queues.set(queue, counts);
    }
    return counts;
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
