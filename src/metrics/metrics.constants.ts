/** Metric names. They are a public contract: dashboards and alerts use them (README, Metrics). */
export const METRIC = {
  messagesReceived: 'messages_received_total',
  messagesProcessed: 'messages_processed_total',
  processingDuration: 'message_processing_duration_seconds',
  messagesInFlight: 'messages_in_flight',
  messagesPublished: 'messages_published_total',
  amqpConnected: 'amqp_connected',
  redisConnected: 'redis_connected',
  /** Time from publish to broker confirm (or failure), by exchange and outcome. */
  publishConfirmDuration: 'message_publish_confirm_duration_seconds',
  /** Connections re-established after a loss (not the first connect). */
  amqpReconnects: 'amqp_reconnects_total',
  redisReconnects: 'redis_reconnects_total',
  /** 1 per queue whose consumer is paused, by reason (dependency|kill_switch). */
  consumersPaused: 'consumers_paused',
  /** Trips of a queue's kill switch, by the handler whose failures tripped it. */
  killSwitchTrips: 'kill_switch_trips_total',
} as const;

/** PostgreSQL and outbox metrics (only moving when `DATABASE_URL` is set). */
export const OUTBOX_METRIC = {
  pending: 'outbox_messages_pending',
  published: 'outbox_published_total',
  relayLag: 'outbox_relay_lag_seconds',
  postgresConnected: 'postgres_connected',
} as const;

/** Commit → confirm of an outbox row: milliseconds with LISTEN/NOTIFY, a poll interval without. */
export const RELAY_LAG_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
];

/** Outcomes of `messages_processed_total`; a bounded set so label cardinality stays fixed. */
export const PROCESSING_OUTCOMES = ['ack', 'retry', 'dead_letter', 'duplicate', 'requeue'] as const;
export type ProcessingOutcome = (typeof PROCESSING_OUTCOMES)[number];

export type PublishOutcome = 'confirmed' | 'failed';

/** Buckets from 1 ms to 60 s: handlers range from a Redis call to a slow downstream API. */
export const DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** Lock metrics. */
export const LOCK_METRIC = {
  acquireDuration: 'lock_acquire_duration_seconds',
  contention: 'lock_contention_total',
  extensions: 'lock_extensions_total',
  lost: 'lock_lost_total',
  held: 'locks_held',
} as const;

/** `lock_acquire_duration_seconds{outcome}` */
export type LockAcquireOutcome = 'acquired' | 'timeout';
/** `lock_extensions_total{outcome}`: extended, lost (expired or taken), failed (no answer in time). */
export type LockExtensionOutcome = 'extended' | 'lost' | 'failed';

/** Lock waits range from a free lock (sub-millisecond) to `LOCK_WAIT_MS` (seconds). */
export const LOCK_WAIT_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];
