import { registerAs } from '@nestjs/config';
import { loadEnv } from './env.schema.js';

/** AMQP connection and topology settings (`AMQP_*`, `MESSAGE_MAX_BYTES`, publisher limits). */
export const amqpConfig = registerAs('amqp', () => {
  const env = loadEnv();
  return {
    urls: env.amqpUrls,
    prefetch: env.amqpPrefetch,
    queueType: env.amqpQueueType,
    heartbeatSeconds: env.amqpHeartbeatSeconds,
    publishTimeoutMs: env.publishTimeoutMs,
    publishBufferLimit: env.publishBufferLimit,
  };
});

/**
 * How each message is processed: size limit, deduplication window, retries, shutdown budget, the
 * effect journal.
 */
export const processingConfig = registerAs('processing', () => {
  const env = loadEnv();
  return {
    messageMaxBytes: env.messageMaxBytes,
    idempotencyTtlSeconds: env.idempotencyTtlSeconds,
    retry: {
      maxAttempts: env.retryMaxAttempts,
      initialDelayMs: env.retryInitialDelayMs,
      maxDelayMs: env.retryMaxDelayMs,
    },
    shutdownTimeoutMs: env.shutdownTimeoutMs,
    effectJournal: {
      maxLen: env.effectJournalMaxLen,
      ttlSeconds: env.effectJournalTtlSeconds,
    },
  };
});

/** Redis used for processed markers and effects (`REDIS_URL`), and for locks (`REDIS_LOCK_URLS`). */
export const redisConfig = registerAs('redis', () => {
  const env = loadEnv();
  return { url: env.redisUrl };
});

/** Locks (`LOCK_TTL_MS`, `LOCK_WAIT_MS`; Redlock servers from `REDIS_LOCK_URLS`). */
export const lockConfig = registerAs('lock', () => {
  const env = loadEnv();
  return { ttlMs: env.lockTtlMs, waitMs: env.lockWaitMs, redlockUrls: env.redisLockUrls };
});

/**
 * PostgreSQL (`DATABASE_URL`, unset = none), its pool, the outbox relay's polling and retention,
 * and the ledger's store.
 */
export const postgresConfig = registerAs('postgres', () => {
  const env = loadEnv();
  return {
    url: env.databaseUrl,
    poolMax: env.databasePoolMax,
    outboxPollMs: env.outboxPollMs,
    outboxRetentionSeconds: env.outboxRetentionSeconds,
    inboxRetentionSeconds: env.idempotencyTtlSeconds,
    ledgerStore: env.ledgerStore,
  };
});

/** HTTP port and logging. */
export const serverConfig = registerAs('server', () => {
  const env = loadEnv();
  return { httpPort: env.httpPort, logLevel: env.logLevel, logFormat: env.logFormat };
});

export const ALL_CONFIG = [
  amqpConfig,
  processingConfig,
  redisConfig,
  lockConfig,
  postgresConfig,
  serverConfig,
];
