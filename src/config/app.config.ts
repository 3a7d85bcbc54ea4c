import type { KillSwitchPolicy } from '../messaging/kill-switch.js';
import type { ValueProvider } from '@nestjs/common';
import type { RedisClient } from '../redis/redis.connection.js';
import { registerAs } from '@nestjs/config';
import {
  type AppEnv,
  type LedgerStore,
  type LogFormat,
  type LogLevel,
  loadEnv,
  type QueueType,
} from './env.schema.js';

export interface AmqpSettings {
  readonly urls: readonly string[];
  readonly prefetch: number;
  readonly queueType: QueueType;
  readonly heartbeatSeconds: number;
  readonly publishTimeoutMs: number;
  readonly publishBufferLimit: number;
}

export interface ProcessingSettings {
  readonly messageMaxBytes: number;
  readonly idempotencyTtlSeconds: number;
  readonly retry: {
    readonly maxAttempts: number;
    readonly initialDelayMs: number;
    readonly maxDelayMs: number;
  };
  readonly shutdownTimeoutMs: number;
  readonly effectJournal: { readonly maxLen: number; readonly ttlSeconds: number };
  /** The kill switch's defaults for every handler (`KILL_SWITCH_*`). */
  readonly killSwitch: KillSwitchPolicy;
}

export interface RedisSettings {
  /** The server (without a password when it describes a client the application gave). */
  readonly url: string;
  /** A client the application already has, used instead of one made from `url` (and not closed). */
  readonly client?: RedisClient;
}

export interface LockSettings {
  readonly ttlMs: number;
  readonly waitMs: number;
  readonly redlockUrls: readonly string[];
}

export interface PostgresSettings {
  readonly url: string | undefined;
  readonly poolMax: number;
  readonly outboxPollMs: number;
  readonly outboxRetentionSeconds: number;
  readonly inboxRetentionSeconds: number;
}

export interface ServerSettings {
  readonly httpPort: number;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  /** Where the example ledger keeps its balances. */
  readonly ledgerStore: LedgerStore;
}

/**
 * The configuration's sections, each built from a validated {@link AppEnv} (the service reads it
 * from the environment, an application importing the module builds it from its options). The
 * `registerAs` objects below give each section its injection token (`amqpConfig.KEY`) and type
 * (`ConfigType<typeof amqpConfig>`).
 */

/** AMQP connection and topology settings (`AMQP_*`, `MESSAGE_MAX_BYTES`, publisher limits). */
export function amqpSection(env: AppEnv): AmqpSettings {
  return {
    urls: env.amqpUrls,
    prefetch: env.amqpPrefetch,
    queueType: env.amqpQueueType,
    heartbeatSeconds: env.amqpHeartbeatSeconds,
    publishTimeoutMs: env.publishTimeoutMs,
    publishBufferLimit: env.publishBufferLimit,
  };
}

/**
 * How each message is processed: size limit, deduplication window, retries, shutdown budget, the
 * effect journal.
 */
export function processingSection(env: AppEnv): ProcessingSettings {
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
    killSwitch: {
      threshold: env.killSwitchThresholdPercent / 100,
      minAttempts: env.killSwitchMinAttempts,
      windowMs: env.killSwitchWindowMs,
      restartMs: env.killSwitchRestartMs,
      trickle: env.killSwitchTrickle,
    },
  };
}

/** Redis used for processed markers and effects (`REDIS_URL`). */
export function redisSection(env: AppEnv): RedisSettings {
  return { url: env.redisUrl };
}

/** Locks (`LOCK_TTL_MS`, `LOCK_WAIT_MS`; Redlock servers from `REDIS_LOCK_URLS`). */
export function lockSection(env: AppEnv): LockSettings {
  return { ttlMs: env.lockTtlMs, waitMs: env.lockWaitMs, redlockUrls: env.redisLockUrls };
}

/**
 * PostgreSQL (`DATABASE_URL`, unset = none), its pool, the outbox relay's polling and retention.
 */
export function postgresSection(env: AppEnv): PostgresSettings {
  return {
    url: env.databaseUrl,
    poolMax: env.databasePoolMax,
    outboxPollMs: env.outboxPollMs,
    outboxRetentionSeconds: env.outboxRetentionSeconds,
    inboxRetentionSeconds: env.idempotencyTtlSeconds,
  };
}

/** The runnable service's own settings: HTTP port, logging, the example ledger's store. */
export function serverSection(env: AppEnv): ServerSettings {
  return {
    httpPort: env.httpPort,
    logLevel: env.logLevel,
    logFormat: env.logFormat,
    ledgerStore: env.ledgerStore,
  };
}

export const amqpConfig = registerAs('amqp', () => amqpSection(loadEnv()));
export const processingConfig = registerAs('processing', () => processingSection(loadEnv()));
export const redisConfig = registerAs('redis', () => redisSection(loadEnv()));
export const lockConfig = registerAs('lock', () => lockSection(loadEnv()));
export const postgresConfig = registerAs('postgres', () => postgresSection(loadEnv()));
export const serverConfig = registerAs('server', () => serverSection(loadEnv()));

/** A provider of each section's token for a validated configuration. */
export function configProviders(env: AppEnv): ValueProvider[] {
  return [
    { provide: amqpConfig.KEY, useValue: amqpSection(env) },
    { provide: processingConfig.KEY, useValue: processingSection(env) },
    { provide: redisConfig.KEY, useValue: redisSection(env) },
    { provide: lockConfig.KEY, useValue: lockSection(env) },
    { provide: postgresConfig.KEY, useValue: postgresSection(env) },
    { provide: serverConfig.KEY, useValue: serverSection(env) },
  ];
}
