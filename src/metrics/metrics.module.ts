import { Global, Module } from '@nestjs/common';
import { counterProvider, gaugeProvider, histogramProvider } from './metric-providers.js';
import {
  DURATION_BUCKETS,
  LOCK_METRIC,
  LOCK_WAIT_BUCKETS,
  METRIC,
  OUTBOX_METRIC,
  RELAY_LAG_BUCKETS,
} from './metrics.constants.js';
import { LockMetrics } from './lock.metrics.js';
import { MessageMetrics } from './message.metrics.js';
import { OutboxMetrics } from './outbox.metrics.js';

const labels = ['queue', 'handler', 'outcome'] as const;

/**
 * Every metric of the package is defined here, on the application's registry (option
 * `metrics.registry`) or prom-client's default one, which `@willsoto/nestjs-prometheus` serves:
 * an application's own `/metrics` shows them with its own. The service serves the default
 * registry with `MetricsEndpointModule`. On an OpenMetrics registry the duration histograms
 * carry exemplars: the trace and span ids of a traced message per bucket.
 */
@Global()
@Module({
  providers: [
    counterProvider({
      name: METRIC.messagesReceived,
      help: 'Messages delivered to this instance, per queue.',
      labelNames: ['queue'],
    }),
    counterProvider({
      name: METRIC.messagesProcessed,
      help: 'Messages settled, by queue, handler and outcome (ack|retry|dead_letter|duplicate|requeue).',
      labelNames: labels,
    }),
    histogramProvider({
      name: METRIC.processingDuration,
      help: 'Time from delivery to settlement, by queue, handler and outcome.',
      labelNames: labels,
      buckets: DURATION_BUCKETS,
      exemplars: true,
    }),
    gaugeProvider({
      name: METRIC.messagesInFlight,
      help: 'Messages delivered and not yet settled, per queue.',
      labelNames: ['queue'],
    }),
    counterProvider({
      name: METRIC.messagesPublished,
      help: 'Publishes by exchange and outcome (confirmed|failed).',
      labelNames: ['exchange', 'outcome'],
    }),
    gaugeProvider({
      name: METRIC.amqpConnected,
      help: '1 while the AMQP connection is open, else 0.',
    }),
    gaugeProvider({
      name: METRIC.redisConnected,
      help: '1 while the Redis connection is ready, else 0.',
    }),
    histogramProvider({
      name: METRIC.publishConfirmDuration,
      help: 'Time from publish to broker confirm (or failure), by exchange and outcome.',
      labelNames: ['exchange', 'outcome'],
      buckets: DURATION_BUCKETS,
      exemplars: true,
    }),
    counterProvider({
      name: METRIC.amqpReconnects,
      help: 'AMQP connections re-established after a loss.',
    }),
    counterProvider({
      name: METRIC.redisReconnects,
      help: 'Redis connections re-established after a loss.',
    }),
    gaugeProvider({
      name: METRIC.consumersPaused,
      help: "1 while a queue's consumer is paused, by reason: dependency (Redis, locks or PostgreSQL down) or kill_switch.",
      labelNames: ['queue', 'reason'],
    }),
    counterProvider({
      name: METRIC.killSwitchTrips,
      help: "Trips of a queue's kill switch, by the handler whose failures tripped it.",
      labelNames: ['queue', 'handler'],
    }),
    histogramProvider({
      name: LOCK_METRIC.acquireDuration,
      help: 'Time to take a lock, by outcome (acquired|timeout), waiting included.',
      labelNames: ['outcome'],
      buckets: LOCK_WAIT_BUCKETS,
    }),
    counterProvider({
      name: LOCK_METRIC.contention,
      help: 'Tries that found the lock held by another worker.',
    }),
    counterProvider({
      name: LOCK_METRIC.extensions,
      help: 'Watchdog extensions of held locks, by outcome (extended|lost|failed).',
      labelNames: ['outcome'],
    }),
    counterProvider({
      name: LOCK_METRIC.lost,
      help: 'Locks lost while their holder was still working (expired or taken).',
    }),
    gaugeProvider({
      name: LOCK_METRIC.held,
      help: 'Locks this instance holds now.',
    }),
    gaugeProvider({
      name: OUTBOX_METRIC.pending,
      help: 'Outbox rows committed and not yet confirmed by the broker (all replicas).',
    }),
    counterProvider({
      name: OUTBOX_METRIC.published,
      help: 'Outbox rows this instance relayed, by exchange and outcome (confirmed|failed).',
      labelNames: ['exchange', 'outcome'],
    }),
    histogramProvider({
      name: OUTBOX_METRIC.relayLag,
      help: 'Time from an outbox row written (its transaction committing) to the broker confirm.',
      buckets: RELAY_LAG_BUCKETS,
    }),
    gaugeProvider({
      name: OUTBOX_METRIC.postgresConnected,
      help: '1 while PostgreSQL is reachable and migrated, else 0 (absent without DATABASE_URL).',
    }),
    MessageMetrics,
    LockMetrics,
    OutboxMetrics,
  ],
  exports: [MessageMetrics, LockMetrics, OutboxMetrics],
})
export class MetricsModule {}
