import type { KillSwitchOptions } from './messaging/kill-switch.js';
import { isClusterClient, type RedisClient } from './redis/redis.connection.js';
import type { Registry, RegistryContentType } from 'prom-client';
import {
  type AppEnv,
  ConfigValidationError,
  type EnvIssue,
  type LogLevel,
  type QueueType,
  validateEnv,
} from './config/env.schema.js';

/**
 * What an application gives `MessageProcessorModule.forRoot()`. Every field is optional and has
 * the default of the service's environment variable of the same meaning (README,
 * "Configuration"); the variable is named next to each field.
 */
export interface MessageProcessorOptions {
  readonly amqp?: {
    /** Broker URLs, tried in order (`AMQP_URL`). Default `amqp://guest:guest@localhost:5672`. */
    readonly urls?: string | readonly string[];
    /** Unacknowledged deliveries per consumer (`AMQP_PREFETCH`, 50). */
    readonly prefetch?: number;
    /** Type of the queues the module declares (`AMQP_QUEUE_TYPE`, `quorum`). */
    readonly queueType?: QueueType;
    /** AMQP heartbeat in seconds, 0 = off (`AMQP_HEARTBEAT_S`, 10). */
    readonly heartbeatSeconds?: number;
    /** How long a publish waits for its confirm (`PUBLISH_TIMEOUT_MS`, 10 000). */
    readonly publishTimeoutMs?: number;
    /** Publishes buffered while the broker is away (`PUBLISH_BUFFER_LIMIT`, 1 000). */
    readonly publishBufferLimit?: number;
  };
  readonly redis?: {
    /** Markers, `redis-commit` effects and (without `lock.redlockUrls`) locks (`REDIS_URL`). */
    readonly url?: string;
    /**
     * An ioredis client the application already has, instead of `url`: used as it is and not
     * closed by the module. Create it with {@link messageProcessorRedisOptions} to keep the
     * module's behaviour when Redis is down (commands fail at once and the message waits in the
     * queue, instead of queueing in memory). A `Cluster` client works as a `redis+cluster://`
     * URL does.
     */
    readonly client?: RedisClient;
  };
  readonly lock?: {
    /** Lease of a lock; the watchdog extends it while its handler runs (`LOCK_TTL_MS`, 30 000). */
    readonly ttlMs?: number;
    /** How long a delivery waits for a held key before it is handed back (`LOCK_WAIT_MS`, 5 000). */
    readonly waitMs?: number;
    /** Three or more independent Redis servers: locks on a Redlock quorum (`REDIS_LOCK_URLS`). */
    readonly redlockUrls?: readonly string[];
  };
  readonly processing?: {
    /** Larger messages are dead-lettered unread (`MESSAGE_MAX_BYTES`, 1 MiB). */
    readonly messageMaxBytes?: number;
    /** How long a processed marker is kept (`IDEMPOTENCY_TTL_S`, 86 400). */
    readonly idempotencyTtlSeconds?: number;
    /** Retry defaults of every handler (`RETRY_MAX_ATTEMPTS` 5, `RETRY_INITIAL_DELAY_MS` 1 000, `RETRY_MAX_DELAY_MS` 60 000). */
    readonly retry?: {
      readonly maxAttempts?: number;
      readonly initialDelayMs?: number;
      readonly maxDelayMs?: number;
    };
    /** Budget of the drain at shutdown (`SHUTDOWN_TIMEOUT_MS`, 25 000). */
    readonly shutdownTimeoutMs?: number;
    /**
     * The effect journal of `redis-commit` handlers: entries kept per key, 0 = off
     * (`EFFECT_JOURNAL_MAXLEN`, 0), and how long a key's journal outlives its last entry
     * (`EFFECT_JOURNAL_TTL_S`, 86 400).
     */
    readonly effectJournal?: { readonly maxLen?: number; readonly ttlSeconds?: number };
    /** The kill switch's defaults for every handler (`KILL_SWITCH_*`; README, "Kill switch"). */
    readonly killSwitch?: KillSwitchOptions;
  };
  /** PostgreSQL for `postgres-transaction` / `postgres-commit` handlers and the outbox; omit for none. */
  readonly postgres?: {
    /** `postgres://` or `postgresql://` (`DATABASE_URL`). */
    readonly url: string;
    /** Connections of the pool (`DATABASE_POOL_MAX`, 10). */
    readonly poolMax?: number;
    /** The relay's fallback poll (`OUTBOX_POLL_MS`, 1 000). */
    readonly outboxPollMs?: number;
    /** How long sent outbox rows are kept (`OUTBOX_RETENTION_S`, 86 400). */
    readonly outboxRetentionSeconds?: number;
  };
  readonly metrics?: {
    /**
     * The prom-client registry of the application; default prom-client's default registry (what
     * `@willsoto/nestjs-prometheus` serves). The module adds no route: the application serves it.
     * On an OpenMetrics registry (`setContentType(Registry.OPENMETRICS_CONTENT_TYPE)`) the duration
     * histograms carry exemplars: the trace and span ids of a sampled message per bucket.
     */
    readonly registry?: Registry<RegistryContentType>;
  };
  /**
   * Level of the module's own lines when the application has no nestjs-pino (they go to its Nest
   * logger); with nestjs-pino, its level applies. Default `info`.
   */
  readonly logLevel?: LogLevel;
}

/**
 * `redis://host:port/db` of a client, `redis+cluster://host:port,…` of a cluster's masters (no
 * password: for logs and health bodies).
 */
export function describeClient(client: RedisClient): string {
  if (isClusterClient(client)) {
    // the masters it knows; none before its first connection: a label, for logs
    const nodes = client.nodes('master').map((n) => `${n.options.host}:${n.options.port}`);
    return `redis+cluster://${nodes.length > 0 ? nodes.join(',') : 'application-client'}`;
  }
  const { host, port, db } = client.options;
  return `redis://${host ?? 'localhost'}:${port ?? 6379}/${db ?? 0}`;
}

/** Each option's environment variable: validation runs once, with the service's rules. */
const OPTION_OF_VARIABLE: Readonly<Record<string, string>> = {
  AMQP_URL: 'amqp.urls',
  AMQP_PREFETCH: 'amqp.prefetch',
  AMQP_QUEUE_TYPE: 'amqp.queueType',
  AMQP_HEARTBEAT_S: 'amqp.heartbeatSeconds',
  PUBLISH_TIMEOUT_MS: 'amqp.publishTimeoutMs',
  PUBLISH_BUFFER_LIMIT: 'amqp.publishBufferLimit',
  REDIS_URL: 'redis.url',
  LOCK_TTL_MS: 'lock.ttlMs',
  LOCK_WAIT_MS: 'lock.waitMs',
  REDIS_LOCK_URLS: 'lock.redlockUrls',
  MESSAGE_MAX_BYTES: 'processing.messageMaxBytes',
  IDEMPOTENCY_TTL_S: 'processing.idempotencyTtlSeconds',
  RETRY_MAX_ATTEMPTS: 'processing.retry.maxAttempts',
  RETRY_INITIAL_DELAY_MS: 'processing.retry.initialDelayMs',
  RETRY_MAX_DELAY_MS: 'processing.retry.maxDelayMs',
  SHUTDOWN_TIMEOUT_MS: 'processing.shutdownTimeoutMs',
  EFFECT_JOURNAL_MAXLEN: 'processing.effectJournal.maxLen',
  EFFECT_JOURNAL_TTL_S: 'processing.effectJournal.ttlSeconds',
  KILL_SWITCH_THRESHOLD: 'processing.killSwitch.thresholdPercent',
  KILL_SWITCH_MIN_ATTEMPTS: 'processing.killSwitch.minAttempts',
  KILL_SWITCH_WINDOW_MS: 'processing.killSwitch.windowMs',
  KILL_SWITCH_RESTART_MS: 'processing.killSwitch.restartMs',
  KILL_SWITCH_TRICKLE: 'processing.killSwitch.trickle',
  DATABASE_URL: 'postgres.url',
  DATABASE_POOL_MAX: 'postgres.poolMax',
  OUTBOX_POLL_MS: 'postgres.outboxPollMs',
  OUTBOX_RETENTION_S: 'postgres.outboxRetentionSeconds',
  LOG_LEVEL: 'logLevel',
};

function text(value: string | number | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string' || typeof value === 'number') return String(value);
  return value.join(',');
}

/**
 * Validates `options` with the rules of the service's environment and returns the configuration,
 * or throws {@link ConfigValidationError} naming each bad option (`amqp.prefetch=0: expected an
 * integer from 1 to 65535`). Environment variables are not read.
 */
export function resolveOptions(options: MessageProcessorOptions): AppEnv {
  const { amqp, redis, lock, processing, postgres } = options;
  const variables: Record<string, string | undefined> = {
    AMQP_URL: text(amqp?.urls),
    AMQP_PREFETCH: text(amqp?.prefetch),
    AMQP_QUEUE_TYPE: text(amqp?.queueType),
    AMQP_HEARTBEAT_S: text(amqp?.heartbeatSeconds),
    PUBLISH_TIMEOUT_MS: text(amqp?.publishTimeoutMs),
    PUBLISH_BUFFER_LIMIT: text(amqp?.publishBufferLimit),
    REDIS_URL: redis?.client ? describeClient(redis.client) : text(redis?.url),
    LOCK_TTL_MS: text(lock?.ttlMs),
    LOCK_WAIT_MS: text(lock?.waitMs),
    REDIS_LOCK_URLS: text(lock?.redlockUrls),
    MESSAGE_MAX_BYTES: text(processing?.messageMaxBytes),
    IDEMPOTENCY_TTL_S: text(processing?.idempotencyTtlSeconds),
    RETRY_MAX_ATTEMPTS: text(processing?.retry?.maxAttempts),
    RETRY_INITIAL_DELAY_MS: text(processing?.retry?.initialDelayMs),
    RETRY_MAX_DELAY_MS: text(processing?.retry?.maxDelayMs),
    SHUTDOWN_TIMEOUT_MS: text(processing?.shutdownTimeoutMs),
    EFFECT_JOURNAL_MAXLEN: text(processing?.effectJournal?.maxLen),
    EFFECT_JOURNAL_TTL_S: text(processing?.effectJournal?.ttlSeconds),
    KILL_SWITCH_THRESHOLD: text(processing?.killSwitch?.thresholdPercent),
    KILL_SWITCH_MIN_ATTEMPTS: text(processing?.killSwitch?.minAttempts),
    KILL_SWITCH_WINDOW_MS: text(processing?.killSwitch?.windowMs),
    KILL_SWITCH_RESTART_MS: text(processing?.killSwitch?.restartMs),
    KILL_SWITCH_TRICKLE: text(processing?.killSwitch?.trickle),
    DATABASE_URL: text(postgres?.url),
    DATABASE_POOL_MAX: text(postgres?.poolMax),
    OUTBOX_POLL_MS: text(postgres?.outboxPollMs),
    OUTBOX_RETENTION_S: text(postgres?.outboxRetentionSeconds),
    LOG_LEVEL: text(options.logLevel),
    LOG_FORMAT: 'json',
  };
  const { env, issues } = validateEnv(variables);
  const named: EnvIssue[] = issues.map((issue) => ({
    ...issue,
    variable: OPTION_OF_VARIABLE[issue.variable] ?? issue.variable,
  }));
  if (postgres !== undefined && !postgres.url) {
    named.push({
      variable: 'postgres.url',
      accepts: 'a postgres:// or postgresql:// URL (omit `postgres` for none)',
      received: JSON.stringify(postgres.url ?? ''),
    });
  }
  if (named.length > 0)
    throw new ConfigValidationError(named, 'Invalid MessageProcessorModule options');
  return env;
}

/** The options equivalent to a validated environment: what the service gives the module. */
export function optionsFromEnv(env: AppEnv): MessageProcessorOptions {
  return {
    amqp: {
      urls: env.amqpUrls,
      prefetch: env.amqpPrefetch,
      queueType: env.amqpQueueType,
      heartbeatSeconds: env.amqpHeartbeatSeconds,
      publishTimeoutMs: env.publishTimeoutMs,
      publishBufferLimit: env.publishBufferLimit,
    },
    redis: { url: env.redisUrl },
    lock: { ttlMs: env.lockTtlMs, waitMs: env.lockWaitMs, redlockUrls: env.redisLockUrls },
    processing: {
      messageMaxBytes: env.messageMaxBytes,
      idempotencyTtlSeconds: env.idempotencyTtlSeconds,
      retry: {
        maxAttempts: env.retryMaxAttempts,
        initialDelayMs: env.retryInitialDelayMs,
        maxDelayMs: env.retryMaxDelayMs,
      },
      shutdownTimeoutMs: env.shutdownTimeoutMs,
      effectJournal: { maxLen: env.effectJournalMaxLen, ttlSeconds: env.effectJournalTtlSeconds },
      killSwitch: {
        thresholdPercent: env.killSwitchThresholdPercent,
        minAttempts: env.killSwitchMinAttempts,
        windowMs: env.killSwitchWindowMs,
        restartMs: env.killSwitchRestartMs,
        trickle: env.killSwitchTrickle,
      },
    },
    ...(env.databaseUrl === undefined
      ? {}
      : {
          postgres: {
            url: env.databaseUrl,
            poolMax: env.databasePoolMax,
            outboxPollMs: env.outboxPollMs,
            outboxRetentionSeconds: env.outboxRetentionSeconds,
          },
        }),
    logLevel: env.logLevel,
  };
}
