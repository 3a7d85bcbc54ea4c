import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import { InjectMetric } from '@willsoto/nestjs-prometheus';
import { Counter, Gauge, Histogram } from 'prom-client';
import { onCollect } from './collect-hooks.js';
import type { TraceIds } from '../tracing/message-tracing.js';
import { ScrapedHistogram, type ScrapedSeries } from './scraped-histogram.js';
import {
  DURATION_BUCKETS,
  METRIC,
  type ProcessingOutcome,
  type PublishOutcome,
} from './metrics.constants.js';

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
  /** What the gauge was given for this instance at the last scrape (it adds the change). */
  inFlightReported: number;
  readonly receivedChild: Counter.Internal;
  readonly inFlightChild: Gauge.Internal<'queue'>;
}

/** One queue/handler/outcome series: settled since the last scrape, and their durations. */
interface SettledCounts {
  count: number;
  readonly counterChild: Counter.Internal;
  readonly duration: ScrapedSeries;
}

type SettledByOutcome = Partial<Record<ProcessingOutcome, SettledCounts>>;

/** One exchange/outcome series of publishes: counted since the last scrape, and their durations. */
type PublishedCounts = SettledCounts;
type PublishedByOutcome = Partial<Record<PublishOutcome, PublishedCounts>>;

@Injectable()
export class MessageMetrics implements OnModuleDestroy {
  /**
   * Label children per queue and per queue/handler/outcome, resolved once. The counters and the
   * in-flight gauge are plain numbers on the message path, added to prom-client's metrics when
   * they are collected (a scrape): prom-client hashes and validates the labels on every call,
   * four times per message. The durations likewise ({@link ScrapedHistogram}).
   */
  private readonly queues = new Map<string, QueueCounts>();
  /** By queue, then handler, then outcome (the names are the handlers' own strings). */
  private readonly settled = new Map<string, Map<string, SettledByOutcome>>();
  /** The same series, as a list for the scrape. */
  private readonly settledSeries: SettledCounts[] = [];
  private readonly durations: ScrapedHistogram<'queue' | 'handler' | 'outcome'>;
  /** By exchange, then outcome; the same series as a list (publishes counted as settlements). */
  private readonly publishes = new Map<string, PublishedByOutcome>();
  private readonly publishedSeries: PublishedCounts[] = [];
  private readonly confirmDurations: ScrapedHistogram<'exchange' | 'outcome'>;
  private readonly detach: (() => void)[];

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
    @InjectMetric(METRIC.consumersPaused)
    private readonly consumersPaused: Gauge<'queue' | 'reason'>,
    @InjectMetric(METRIC.killSwitchTrips)
    private readonly killSwitchTrips: Counter<'queue' | 'handler'>,
  ) {
    // flushed when prom-client collects them (each scrape), with the flushes of another
    // instance sharing the registry's metrics (a second application in the process)
    const collect = (): void => this.flush();
    this.durations = new ScrapedHistogram(duration, DURATION_BUCKETS);
    this.confirmDurations = new ScrapedHistogram(confirmDuration, DURATION_BUCKETS);
    this.detach = [
      ...[received, processed, inFlight, published].map((metric) => onCollect(metric, collect)),
      this.durations.detach,
      this.confirmDurations.detach,
    ];
  }

  /** Hands over what is counted and stops: the metrics may outlive this instance. */
  onModuleDestroy(): void {
    this.flush();
    for (const detach of this.detach) detach();
  }

  messageReceived(queue: string): void {
    const counts = this.ofQueue(queue);
    counts.received++;
    counts.inFlight++;
  }

  /** A message settled `seconds` after delivery; `trace`, its sampled span, is kept as an exemplar. */
  messageSettled(
    queue: string,
    handler: string,
    outcome: ProcessingOutcome,
    seconds: number,
    trace?: TraceIds,
  ): void {
    this.ofQueue(queue).inFlight--;
    // queue and handler names are fixed at bootstrap and outcomes are five: bounded maps
    let byHandler = this.settled.get(queue);
    if (!byHandler) this.settled.set(queue, (byHandler = new Map<string, SettledByOutcome>()));
    let byOutcome = byHandler.get(handler);
    if (!byOutcome) byHandler.set(handler, (byOutcome = {}));
    const counts = (byOutcome[outcome] ??= this.series(queue, handler, outcome));
    counts.count++;
    counts.duration.observe(seconds, trace);
  }

  private series(queue: string, handler: string, outcome: ProcessingOutcome): SettledCounts {
    const labels = { queue, handler, outcome };
    const series: SettledCounts = {
      count: 0,
      counterChild: this.processed.labels(labels),
      duration: this.durations.series(labels),
    };
    this.settledSeries.push(series);
    return series;
  }

  /** Hands the counts gathered since the last scrape to prom-client. */
  private flush(): void {
    for (const counts of this.queues.values()) {
      if (counts.received > 0) counts.receivedChild.inc(counts.received);
      counts.received = 0;
      // by difference: other instances of the process report into the same gauge
      if (counts.inFlight !== counts.inFlightReported) {
        counts.inFlightChild.inc(counts.inFlight - counts.inFlightReported);
        counts.inFlightReported = counts.inFlight;
      }
    }
    for (const counts of [...this.settledSeries, ...this.publishedSeries]) {
      if (counts.count > 0) counts.counterChild.inc(counts.count);
      counts.count = 0;
    }
  }

  private ofQueue(queue: string): QueueCounts {
    let counts = this.queues.get(queue);
    if (!counts) {
      counts = {
        received: 0,
        inFlight: 0,
        inFlightReported: 0,
        receivedChild: this.received.labels({ queue }),
        inFlightChild: this.inFlight.labels({ queue }),
      };
      // the series exists from the first message on, as with a direct inc
      counts.inFlightChild.set(0);
      this.queues.set(queue, counts);
    }
    return counts;
  }

  /**
   * A publish settled: confirmed by the broker, or failed, `seconds` after it was sent; `trace`,
   * its sampled PRODUCER span, is kept as an exemplar. Exchanges are the declared ones or those
   * the application publishes to: a bounded set.
   */
  messagePublished(
    exchange: string,
    outcome: PublishOutcome,
    seconds: number,
    trace?: TraceIds,
  ): void {
    let byOutcome = this.publishes.get(exchange);
    if (!byOutcome) this.publishes.set(exchange, (byOutcome = {}));
    let counts = byOutcome[outcome];
    if (!counts) {
      const labels = { exchange, outcome };
      counts = byOutcome[outcome] = {
        count: 0,
        counterChild: this.published.labels(labels),
        duration: this.confirmDurations.series(labels),
      };
      this.publishedSeries.push(counts);
    }
    counts.count++;
    counts.duration.observe(seconds, trace);
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

  /** A queue's consumer paused for `reason`, or resumed (undefined). */
  consumerPaused(queue: string, reason: 'dependency' | 'kill_switch' | undefined): void {
    for (const r of ['dependency', 'kill_switch'] as const) {
      this.consumersPaused.set({ queue, reason: r }, r === reason ? 1 : 0);
    }
  }

  killSwitchTripped(queue: string, handler: string): void {
    this.killSwitchTrips.inc({ queue, handler });
  }
}
