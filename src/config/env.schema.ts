import { checkHaUrl, redisUrlKind, splitRedisUrls } from './redis-url.js';
import { redactUrl } from './secret-redaction.js';
import { KILL_SWITCH_SAMPLE } from '../messaging/kill-switch.js';

/** Log levels accepted by `LOG_LEVEL`, most verbose first. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const QUEUE_TYPES = ['quorum', 'classic'] as const;
export type QueueType = (typeof QUEUE_TYPES)[number];

export const LOG_FORMATS = ['json', 'pretty'] as const;

export const LEDGER_STORES = ['redis', 'postgres'] as const;
export type LedgerStore = (typeof LEDGER_STORES)[number];
export type LogFormat = (typeof LOG_FORMATS)[number];

/** The validated configuration of the whole service, one field per environment variable. */
export interface AppEnv {
  readonly amqpUrls: readonly string[];
  readonly amqpPrefetch: number;
  readonly amqpQueueType: QueueType;
  readonly amqpHeartbeatSeconds: number;
  readonly redisUrl: string;
  readonly redisLockUrls: readonly string[];
  readonly httpPort: number;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  readonly lockTtlMs: number;
  readonly lockWaitMs: number;
  readonly idempotencyTtlSeconds: number;
  readonly retryMaxAttempts: number;
  readonly retryInitialDelayMs: number;
  readonly retryMaxDelayMs: number;
  readonly messageMaxBytes: number;
  readonly shutdownTimeoutMs: number;
  readonly publishTimeoutMs: number;
  readonly publishBufferLimit: number;
  /** Entries kept per key in the effect journal; 0: no journal. */
  readonly effectJournalMaxLen: number;
  /** How long a key's journal outlives its last entry. */
  readonly effectJournalTtlSeconds: number;
  /** PostgreSQL for `postgres-transaction` effects and the outbox; undefined: none. */
  readonly databaseUrl: string | undefined;
  readonly databasePoolMax: number;
  /** How often the outbox relay looks for unsent rows besides being woken by commits. */
  readonly outboxPollMs: number;
  /** How long sent outbox rows are kept. */
  readonly outboxRetentionSeconds: number;
  /** Where the ledger example keeps its balances. */
  readonly ledgerStore: LedgerStore;
  /** Failed share (percent) of a handler's attempts that trips its queue's kill switch; 0: off. */
  readonly killSwitchThresholdPercent: number;
  readonly killSwitchMinAttempts: number;
  readonly killSwitchWindowMs: number;
  readonly killSwitchRestartMs: number;
  readonly killSwitchTrickle: number;
}

/** One variable that failed validation: its name, what it accepts, and the value (redacted if a URL). */
export interface EnvIssue {
  readonly variable: string;
  readonly accepts: string;
  readonly received: string;
}

/** Thrown when the environment is invalid; the message names every bad variable. */
export class ConfigValidationError extends Error {
  override readonly name = 'ConfigValidationError';
  constructor(
    readonly issues: readonly EnvIssue[],
    title = 'Invalid configuration',
  ) {
    super(
      `${title}:\n${issues
        .map((i) => `  ${i.variable}=${i.received}: expected ${i.accepts}`)
        .join('\n')}`,
    );
  }
}

type Env = Readonly<Record<string, string | undefined>>;

class EnvReader {
  readonly issues: EnvIssue[] = [];

  constructor(private readonly env: Env) {}

  private raw(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  }

  private fail(variable: string, accepts: string, received: string): void {
    this.issues.push({ variable, accepts, received: JSON.stringify(received) });
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const parsed = /^-?\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
      this.fail(name, `an integer from ${min} to ${max}`, value);
      return fallback;
    }
    return parsed;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const lowered = value.toLowerCase();
    const match = allowed.find((a) => a === lowered);
    if (match === undefined) {
      this.fail(name, `one of ${allowed.join(', ')}`, value);
      return fallback;
    }
    return match;
  }

  urls(name: string, fallback: string | undefined, schemes: readonly string[]): string[] {
    const value = this.raw(name) ?? fallback;
    if (value === undefined) return [];
    // a Redis list: a comma starts a new URL only before a scheme (a sentinel or cluster URL
    // lists hosts)
    const redisList = schemes.some((s) => HA_SCHEMES.has(s));
    const list = redisList
      ? splitRedisUrls(value)
      : value
          .split(',')
          .map((u) => u.trim())
          .filter((u) => u.length > 0);
    const accepts = `a comma-separated list of ${schemes.map((s) => `${s}//`).join(' or ')} URLs`;
    if (list.length === 0) {
      this.fail(name, accepts, value);
      return [];
    }
    for (const url of list) {
      const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0].toLowerCase() ?? '';
      if (redisUrlKind(url) !== 'server' && schemes.includes(scheme)) {
        try {
          checkHaUrl(url);
          continue;
        } catch (error) {
          this.fail(name, `${accepts}; ${(error as Error).message}`, list.map(redactUrl).join(','));
          return [];
        }
      }
      let protocol: string | undefined;
      try {
        const parsed = new URL(url);
        protocol = parsed.hostname ? parsed.protocol : undefined;
      } catch {
        protocol = undefined;
      }
      if (protocol === undefined || !schemes.includes(protocol)) {
        this.fail(name, accepts, list.map(redactUrl).join(','));
        return [];
      }
    }
    return list;
  }

  check(condition: boolean, variable: string, accepts: string, received: string): void {
    if (!condition) this.fail(variable, accepts, received);
  }
}

/** A Redis server, a primary its sentinels name, or a cluster by its seeds (config/redis-url.ts). */
const REDIS_SCHEMES = [
  'redis:',
  'rediss:',
  'redis+sentinel:',
  'rediss+sentinel:',
  'redis+cluster:',
  'rediss+cluster:',
] as const;

/** The schemes whose URLs list hosts, parsed by config/redis-url.ts rather than `URL`. */
const HA_SCHEMES: ReadonlySet<string> = new Set(REDIS_SCHEMES.slice(2));

/** The defaults of every variable (the README's configuration table), named in one place. */
export const ENV_DEFAULTS = {
  AMQP_URL: 'amqp://guest:guest@localhost:5672',
  AMQP_PREFETCH: 50,
  AMQP_QUEUE_TYPE: 'quorum',
  AMQP_HEARTBEAT_S: 10,
  REDIS_URL: 'redis://localhost:6379',
  HTTP_PORT: 3000,
  LOG_LEVEL: 'info',
  LOCK_TTL_MS: 30_000,
  LOCK_WAIT_MS: 5_000,
  IDEMPOTENCY_TTL_S: 86_400,
  RETRY_MAX_ATTEMPTS: 5,
  RETRY_INITIAL_DELAY_MS: 1_000,
  RETRY_MAX_DELAY_MS: 60_000,
  MESSAGE_MAX_BYTES: 1_048_576,
  SHUTDOWN_TIMEOUT_MS: 25_000,
  PUBLISH_TIMEOUT_MS: 10_000,
  PUBLISH_BUFFER_LIMIT: 1_000,
  EFFECT_JOURNAL_MAXLEN: 0,
  EFFECT_JOURNAL_TTL_S: 86_400,
  DATABASE_POOL_MAX: 10,
  OUTBOX_POLL_MS: 1_000,
  OUTBOX_RETENTION_S: 86_400,
  LEDGER_STORE: 'redis',
  KILL_SWITCH_THRESHOLD: 0,
  KILL_SWITCH_MIN_ATTEMPTS: 20,
  KILL_SWITCH_WINDOW_MS: 60_000,
  KILL_SWITCH_RESTART_MS: 30_000,
  KILL_SWITCH_TRICKLE: 5,
} as const;

/**
 * Validates the environment. Returns every problem at once rather than stopping at the first,
 * so an operator fixes a deployment in one round.
 */
export function validateEnv(env: Env): { env: AppEnv; issues: readonly EnvIssue[] } {
  const r = new EnvReader(env);
  const d = ENV_DEFAULTS;
  const retryInitialDelayMs = r.int(
    'RETRY_INITIAL_DELAY_MS',
    d.RETRY_INITIAL_DELAY_MS,
    1,
    86_400_000,
  );
  const retryMaxDelayMs = r.int('RETRY_MAX_DELAY_MS', d.RETRY_MAX_DELAY_MS, 1, 86_400_000);
  r.check(
    retryMaxDelayMs >= retryInitialDelayMs,
    'RETRY_MAX_DELAY_MS',
    `a value >= RETRY_INITIAL_DELAY_MS (${retryInitialDelayMs})`,
    String(retryMaxDelayMs),
  );
  const redisLockUrls = r.urls('REDIS_LOCK_URLS', undefined, REDIS_SCHEMES);
  r.check(
    redisLockUrls.length === 0 || redisLockUrls.length >= 3,
    'REDIS_LOCK_URLS',
    'unset, or 3 or more comma-separated independent Redis URLs (a Redlock quorum)',
    redisLockUrls.map(redactUrl).join(','),
  );
  const lockTtlMs = r.int('LOCK_TTL_MS', d.LOCK_TTL_MS, 100, 3_600_000);
  const databaseUrl = r.urls('DATABASE_URL', undefined, ['postgres:', 'postgresql:'])[0];
  const ledgerStore = r.oneOf('LEDGER_STORE', LEDGER_STORES, d.LEDGER_STORE);
  r.check(
    ledgerStore !== 'postgres' || databaseUrl !== undefined,
    'LEDGER_STORE',
    'redis, or postgres with DATABASE_URL set',
    ledgerStore,
  );
  const logFormatDefault: LogFormat =
    env.NODE_ENV === 'development' || process.stdout.isTTY ? 'pretty' : 'json';
  const result: AppEnv = {
    amqpUrls: r.urls('AMQP_URL', d.AMQP_URL, ['amqp:', 'amqps:']),
    amqpPrefetch: r.int('AMQP_PREFETCH', d.AMQP_PREFETCH, 1, 65_535),
    amqpQueueType: r.oneOf('AMQP_QUEUE_TYPE', QUEUE_TYPES, d.AMQP_QUEUE_TYPE),
    amqpHeartbeatSeconds: r.int('AMQP_HEARTBEAT_S', d.AMQP_HEARTBEAT_S, 0, 600),
    redisUrl: r.urls('REDIS_URL', d.REDIS_URL, REDIS_SCHEMES)[0] ?? d.REDIS_URL,
    redisLockUrls,
    httpPort: r.int('HTTP_PORT', d.HTTP_PORT, 0, 65_535),
    logLevel: r.oneOf('LOG_LEVEL', LOG_LEVELS, d.LOG_LEVEL),
    logFormat: r.oneOf('LOG_FORMAT', LOG_FORMATS, logFormatDefault),
    lockTtlMs,
    lockWaitMs: r.int('LOCK_WAIT_MS', d.LOCK_WAIT_MS, 0, 3_600_000),
    idempotencyTtlSeconds: r.int('IDEMPOTENCY_TTL_S', d.IDEMPOTENCY_TTL_S, 1, 31_536_000),
    retryMaxAttempts: r.int('RETRY_MAX_ATTEMPTS', d.RETRY_MAX_ATTEMPTS, 1, 1_000),
    retryInitialDelayMs,
    retryMaxDelayMs,
    messageMaxBytes: r.int('MESSAGE_MAX_BYTES', d.MESSAGE_MAX_BYTES, 1, 134_217_728),
    shutdownTimeoutMs: r.int('SHUTDOWN_TIMEOUT_MS', d.SHUTDOWN_TIMEOUT_MS, 0, 3_600_000),
    publishTimeoutMs: r.int('PUBLISH_TIMEOUT_MS', d.PUBLISH_TIMEOUT_MS, 100, 600_000),
    publishBufferLimit: r.int('PUBLISH_BUFFER_LIMIT', d.PUBLISH_BUFFER_LIMIT, 0, 1_000_000),
    effectJournalMaxLen: r.int('EFFECT_JOURNAL_MAXLEN', d.EFFECT_JOURNAL_MAXLEN, 0, 10_000_000),
    effectJournalTtlSeconds: r.int('EFFECT_JOURNAL_TTL_S', d.EFFECT_JOURNAL_TTL_S, 1, 31_536_000),
    databaseUrl,
    databasePoolMax: r.int('DATABASE_POOL_MAX', d.DATABASE_POOL_MAX, 1, 1_000),
    outboxPollMs: r.int('OUTBOX_POLL_MS', d.OUTBOX_POLL_MS, 10, 3_600_000),
    outboxRetentionSeconds: r.int('OUTBOX_RETENTION_S', d.OUTBOX_RETENTION_S, 1, 31_536_000),
    ledgerStore,
    killSwitchThresholdPercent: r.int('KILL_SWITCH_THRESHOLD', d.KILL_SWITCH_THRESHOLD, 0, 100),
    killSwitchMinAttempts: r.int(
      'KILL_SWITCH_MIN_ATTEMPTS',
      d.KILL_SWITCH_MIN_ATTEMPTS,
      1,
      KILL_SWITCH_SAMPLE,
    ),
    killSwitchWindowMs: r.int('KILL_SWITCH_WINDOW_MS', d.KILL_SWITCH_WINDOW_MS, 100, 86_400_000),
    killSwitchRestartMs: r.int('KILL_SWITCH_RESTART_MS', d.KILL_SWITCH_RESTART_MS, 10, 86_400_000),
    killSwitchTrickle: r.int('KILL_SWITCH_TRICKLE', d.KILL_SWITCH_TRICKLE, 1, 10_000),
  };
  return { env: result, issues: r.issues };
}

/** Validates and returns the configuration, or throws {@link ConfigValidationError}. */
export function loadEnv(env: Env = process.env): AppEnv {
  const { env: parsed, issues } = validateEnv(env);
  if (issues.length > 0) throw new ConfigValidationError(issues);
  return parsed;
}
