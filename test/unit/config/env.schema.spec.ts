import { describe, it, expect } from 'vitest';
import {
  ConfigValidationError,
  ENV_DEFAULTS,
  loadEnv,
  validateEnv,
  type EnvIssue,
} from '../../../src/config/env.schema.js';

/** Runs `fn` with `process.stdout.isTTY` forced, restoring the original descriptor after. */
function withStdoutTty<T>(isTTY: boolean, fn: () => T): T {
  const original = Object.getOwnPropertyDescriptor(process.stdout, 'isTTY');
  Object.defineProperty(process.stdout, 'isTTY', { value: isTTY, configurable: true });
  try {
    return fn();
  } finally {
    if (original) Object.defineProperty(process.stdout, 'isTTY', original);
    else Reflect.deleteProperty(process.stdout, 'isTTY');
  }
}

function issueFor(issues: readonly EnvIssue[], variable: string): EnvIssue {
  const found = issues.filter((i) => i.variable === variable);
  expect(found).toHaveLength(1);
  return found[0];
}

describe('validateEnv', () => {
  it('applies the documented defaults to an empty environment', () => {
    const { env, issues } = withStdoutTty(false, () => validateEnv({}));
    expect(issues).toEqual([]);
    expect(env).toEqual({
      amqpUrls: ['amqp://guest:guest@localhost:5672'],
      amqpPrefetch: 50,
      amqpQueueType: 'quorum',
      amqpHeartbeatSeconds: 10,
      redisUrl: 'redis://localhost:6379',
      redisLockUrls: [],
      httpPort: 3000,
      logLevel: 'info',
      logFormat: 'json',
      lockTtlMs: 30_000,
      lockWaitMs: 5_000,
      idempotencyTtlSeconds: 86_400,
      retryMaxAttempts: 5,
      retryInitialDelayMs: 1_000,
      retryMaxDelayMs: 60_000,
      messageMaxBytes: 1_048_576,
      shutdownTimeoutMs: 25_000,
      publishTimeoutMs: 10_000,
      publishBufferLimit: 1_000,
      effectJournalMaxLen: 0,
      effectJournalTtlSeconds: 86_400,
      databaseUrl: undefined,
      databasePoolMax: 10,
      outboxPollMs: 1_000,
      outboxRetentionSeconds: 86_400,
      ledgerStore: 'redis',
      killSwitchThresholdPercent: 0,
      killSwitchMinAttempts: 20,
      killSwitchWindowMs: 60_000,
      killSwitchRestartMs: 30_000,
      killSwitchTrickle: 5,
    });
    expect(env.amqpUrls).toEqual([ENV_DEFAULTS.AMQP_URL]);
  });

  it('takes a PostgreSQL URL and refuses another scheme, without echoing its password', () => {
    const ok = validateEnv({ DATABASE_URL: 'postgresql://app:pw@db:5432/app?sslmode=require' });
    expect(ok.issues).toEqual([]);
    expect(ok.env.databaseUrl).toBe('postgresql://app:pw@db:5432/app?sslmode=require');
    const bad = validateEnv({ DATABASE_URL: 'mysql://app:hunter2@db/app' });
    expect(bad.issues.map((i) => i.variable)).toEqual(['DATABASE_URL']);
    expect(JSON.stringify(bad.issues)).not.toContain('hunter2');
  });

  it('refuses LEDGER_STORE=postgres without DATABASE_URL', () => {
    const { issues } = validateEnv({ LEDGER_STORE: 'postgres' });
    expect(issues).toEqual([
      {
        variable: 'LEDGER_STORE',
        accepts: 'redis, or postgres with DATABASE_URL set',
        received: '"postgres"',
      },
    ]);
    expect(
      validateEnv({ LEDGER_STORE: 'postgres', DATABASE_URL: 'postgres://h/db' }).issues,
    ).toEqual([]);
  });

  it('has no test-only variable: the oracle is a seam the tests fill, not configuration', () => {
    const { env } = validateEnv({ LEDGER_ORACLE_URL: 'redis://127.0.0.1:7000' });
    expect(Object.keys(env).some((k) => /oracle/i.test(k))).toBe(false);
  });

  it('logs pretty by default in development or on a terminal, JSON otherwise', () => {
    expect(withStdoutTty(false, () => validateEnv({ NODE_ENV: 'development' })).env.logFormat).toBe(
      'pretty',
    );
    expect(withStdoutTty(true, () => validateEnv({})).env.logFormat).toBe('pretty');
    expect(withStdoutTty(false, () => validateEnv({ NODE_ENV: 'production' })).env.logFormat).toBe(
      'json',
    );
    expect(withStdoutTty(true, () => validateEnv({ LOG_FORMAT: 'json' })).env.logFormat).toBe(
      'json',
    );
  });

  it('reads valid values, trimming spaces and ignoring the case of enumerations', () => {
    const { env, issues } = validateEnv({
      AMQP_PREFETCH: ' 10 ',
      AMQP_QUEUE_TYPE: 'Classic',
      LOG_LEVEL: 'DEBUG',
      HTTP_PORT: '8080',
      MESSAGE_MAX_BYTES: '2048',
      REDIS_URL: 'rediss://:pw@cache.internal:6380/2',
      REDIS_LOCK_URLS: 'redis://a:6379, redis://b:6379 ,redis://c:6379',
    });
    expect(issues).toEqual([]);
    expect(env).toMatchObject({
      amqpPrefetch: 10,
      amqpQueueType: 'classic',
      logLevel: 'debug',
      httpPort: 8080,
      messageMaxBytes: 2048,
      redisUrl: 'rediss://:pw@cache.internal:6380/2',
      redisLockUrls: ['redis://a:6379', 'redis://b:6379', 'redis://c:6379'],
    });
  });

  it('keeps a comma-separated AMQP_URL list with amqps and vhost paths verbatim', () => {
    const urls =
      'amqps://app:pw@rabbit-0.mq:5671/ledger%2Fprod, amqp://app:pw@rabbit-1.mq:5672/ledger';
    const { env, issues } = validateEnv({ AMQP_URL: urls });
    expect(issues).toEqual([]);
    expect(env.amqpUrls).toEqual([
      'amqps://app:pw@rabbit-0.mq:5671/ledger%2Fprod',
      'amqp://app:pw@rabbit-1.mq:5672/ledger',
    ]);
  });

  it('treats empty and blank strings as unset', () => {
    const { env, issues } = validateEnv({
      AMQP_URL: '',
      AMQP_PREFETCH: '',
      AMQP_QUEUE_TYPE: '   ',
      REDIS_LOCK_URLS: '',
      HTTP_PORT: '',
      LOG_LEVEL: '',
    });
    expect(issues).toEqual([]);
    expect(env).toMatchObject({
      amqpUrls: [ENV_DEFAULTS.AMQP_URL],
      amqpPrefetch: 50,
      amqpQueueType: 'quorum',
      redisLockUrls: [],
      httpPort: 3000,
      logLevel: 'info',
    });
  });

  describe('with bad values', () => {
    const bad = {
      AMQP_PREFETCH: '0',
      AMQP_QUEUE_TYPE: 'stream',
      LOG_LEVEL: 'loud',
      HTTP_PORT: '70000',
      AMQP_URL: 'http://x',
      REDIS_URL: 'nope',
      REDIS_LOCK_URLS: 'redis://lock-a:6379,redis://lock-b:6379',
      RETRY_INITIAL_DELAY_MS: '5000',
      RETRY_MAX_DELAY_MS: '1000',
      IDEMPOTENCY_TTL_S: 'abc',
      MESSAGE_MAX_BYTES: '1.5',
    };

    it('reports every bad variable at once, each once', () => {
      const { issues } = validateEnv(bad);
      expect(issues.map((i) => i.variable).sort()).toEqual(
        [
          'AMQP_PREFETCH',
          'AMQP_QUEUE_TYPE',
          'AMQP_URL',
          'HTTP_PORT',
          'IDEMPOTENCY_TTL_S',
          'LOG_LEVEL',
          'MESSAGE_MAX_BYTES',
          'REDIS_LOCK_URLS',
          'REDIS_URL',
          'RETRY_MAX_DELAY_MS',
        ].sort(),
      );
    });

    it.each<[string, string, string]>([
      ['AMQP_PREFETCH', 'an integer from 1 to 65535', '"0"'],
      ['AMQP_QUEUE_TYPE', 'one of quorum, classic', '"stream"'],
      ['LOG_LEVEL', 'one of trace, debug, info, warn, error, fatal, silent', '"loud"'],
      ['HTTP_PORT', 'an integer from 0 to 65535', '"70000"'],
      ['AMQP_URL', 'a comma-separated list of amqp:// or amqps:// URLs', '"http://x/"'],
      [
        'REDIS_URL',
        'a comma-separated list of redis:// or rediss:// or redis+sentinel:// or rediss+sentinel:// or redis+cluster:// or rediss+cluster:// URLs',
        '"//***"',
      ],
      [
        'REDIS_LOCK_URLS',
        'unset, or 3 or more comma-separated independent Redis URLs (a Redlock quorum)',
        '"redis://lock-a:6379,redis://lock-b:6379"',
      ],
      ['RETRY_MAX_DELAY_MS', 'a value >= RETRY_INITIAL_DELAY_MS (5000)', '"1000"'],
      ['IDEMPOTENCY_TTL_S', 'an integer from 1 to 31536000', '"abc"'],
      ['MESSAGE_MAX_BYTES', 'an integer from 1 to 134217728', '"1.5"'],
    ])('says what %s accepts and what it received', (variable, accepts, received) => {
      expect(issueFor(validateEnv(bad).issues, variable)).toEqual({ variable, accepts, received });
    });

    it('still returns the defaults for the variables it could not read', () => {
      const { env } = validateEnv(bad);
      expect(env).toMatchObject({
        amqpPrefetch: 50,
        amqpQueueType: 'quorum',
        logLevel: 'info',
        httpPort: 3000,
        redisUrl: 'redis://localhost:6379',
        amqpUrls: [],
      });
    });
  });

  it.each(['-1', '1e3', '0x10', '12abc', '9007199254740993'])(
    'refuses the integer spelling %p',
    (value) => {
      expect(validateEnv({ AMQP_PREFETCH: value }).issues.map((i) => i.variable)).toEqual([
        'AMQP_PREFETCH',
      ]);
    },
  );

  it('accepts the bounds of an integer range', () => {
    expect(validateEnv({ HTTP_PORT: '0' }).env.httpPort).toBe(0);
    expect(validateEnv({ HTTP_PORT: '65535' }).env.httpPort).toBe(65_535);
  });

  it('accepts RETRY_MAX_DELAY_MS equal to RETRY_INITIAL_DELAY_MS', () => {
    expect(
      validateEnv({ RETRY_INITIAL_DELAY_MS: '2000', RETRY_MAX_DELAY_MS: '2000' }).issues,
    ).toEqual([]);
  });

  describe('never shows a password', () => {
    it('of a valid URL listed with an invalid one', () => {
      const { issues } = validateEnv({ AMQP_URL: 'amqp://user:s3cret@host,not-a-url' });
      const issue = issueFor(issues, 'AMQP_URL');
      expect(issue.received).not.toContain('s3cret');
      expect(issue.received).toBe('"amqp://user:***@host,//***"');
    });

    it('of a URL with the wrong scheme', () => {
      const { issues } = validateEnv({ AMQP_URL: 'http://user:s3cret@host' });
      const issue = issueFor(issues, 'AMQP_URL');
      expect(issue.received).not.toContain('s3cret');
      expect(issue.received).toContain('http://user:***@host');
    });

    it('of a Redis token in a short lock URL list', () => {
      const { issues } = validateEnv({
        REDIS_LOCK_URLS: 'redis://t0ken@a:6379,redis://:pw@b:6379',
      });
      const issue = issueFor(issues, 'REDIS_LOCK_URLS');
      expect(issue.received).not.toContain('t0ken');
      expect(issue.received).not.toMatch(/:pw@/);
    });

    // "user:s3cret@host:5672" parses as scheme "user:" with an opaque path: a naive redaction
    // would print it unchanged in the startup error.
    it('of a URL whose scheme was forgotten', () => {
      const { issues } = validateEnv({ AMQP_URL: 'user:s3cret@rabbit:5672' });
      const issue = issueFor(issues, 'AMQP_URL');
      expect(issue.received).not.toContain('s3cret');
    });

    it('in the message of ConfigValidationError', () => {
      let thrown: unknown;
      try {
        loadEnv({ AMQP_URL: 'amqp://user:s3cret@host,bad', REDIS_URL: 'http://user:s3cret@host' });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(ConfigValidationError);
      expect((thrown as Error).message).not.toContain('s3cret');
    });
  });
});

describe('loadEnv', () => {
  it('returns the configuration when every variable is valid', () => {
    expect(loadEnv({ AMQP_PREFETCH: '5', LOG_FORMAT: 'json' })).toMatchObject({
      amqpPrefetch: 5,
      logFormat: 'json',
    });
  });

  it('throws ConfigValidationError naming each bad variable and what it accepts', () => {
    let thrown: unknown;
    try {
      loadEnv({ AMQP_PREFETCH: '0', LOG_LEVEL: 'loud', IDEMPOTENCY_TTL_S: 'abc' });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ConfigValidationError);
    const error = thrown as ConfigValidationError;
    expect(error.name).toBe('ConfigValidationError');
    expect(error.issues.map((i) => i.variable).sort()).toEqual([
      'AMQP_PREFETCH',
      'IDEMPOTENCY_TTL_S',
      'LOG_LEVEL',
    ]);
    expect(error.message).toBe(
      [
        'Invalid configuration:',
        '  AMQP_PREFETCH="0": expected an integer from 1 to 65535',
        '  LOG_LEVEL="loud": expected one of trace, debug, info, warn, error, fatal, silent',
        '  IDEMPOTENCY_TTL_S="abc": expected an integer from 1 to 31536000',
      ].join('\n'),
    );
  });

  it('reads process.env when given no argument', () => {
    const saved = process.env.AMQP_PREFETCH;
    process.env.AMQP_PREFETCH = '0';
    try {
      expect(() => loadEnv()).toThrow(/AMQP_PREFETCH/);
    } finally {
      if (saved === undefined) delete process.env.AMQP_PREFETCH;
      else process.env.AMQP_PREFETCH = saved;
    }
  });
});
