import { describe, expect, it } from 'vitest';
import { Cluster, Redis } from 'ioredis';
import { ConfigValidationError, loadEnv } from '../../../src/config/env.schema.js';
import { optionsFromEnv, resolveOptions } from '../../../src/message-processor.options.js';

function issuesOf(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigValidationError);
    return (error as ConfigValidationError).issues.map((i) => `${i.variable}=${i.received}`);
  }
  throw new Error('expected a ConfigValidationError');
}

describe('MessageProcessorModule options', () => {
  it('has the defaults of the environment variables, whatever process.env says', () => {
    const saved = process.env.AMQP_PREFETCH;
    process.env.AMQP_PREFETCH = '7';
    try {
      const resolved = resolveOptions({});
      expect(resolved.amqpPrefetch).toBe(50);
      expect(resolved.amqpUrls).toEqual(['amqp://guest:guest@localhost:5672']);
      expect(resolved.databaseUrl).toBeUndefined();
      expect(resolved.lockTtlMs).toBe(30_000);
    } finally {
      if (saved === undefined) delete process.env.AMQP_PREFETCH;
      else process.env.AMQP_PREFETCH = saved;
    }
  });

  it('takes every option', () => {
    const resolved = resolveOptions({
      amqp: { urls: ['amqp://a:5672', 'amqp://b:5672'], prefetch: 10, queueType: 'classic' },
      redis: { url: 'redis://r:6379' },
      lock: {
        ttlMs: 2_000,
        waitMs: 100,
        redlockUrls: ['redis://l1', 'redis://l2', 'redis://l3'],
      },
      processing: {
        retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 20 },
        effectJournal: { maxLen: 5 },
      },
      postgres: { url: 'postgres://p/db', poolMax: 3 },
      logLevel: 'debug',
    });
    expect(resolved).toMatchObject({
      amqpUrls: ['amqp://a:5672', 'amqp://b:5672'],
      amqpPrefetch: 10,
      amqpQueueType: 'classic',
      redisUrl: 'redis://r:6379',
      lockTtlMs: 2_000,
      lockWaitMs: 100,
      redisLockUrls: ['redis://l1', 'redis://l2', 'redis://l3'],
      retryMaxAttempts: 2,
      retryInitialDelayMs: 10,
      retryMaxDelayMs: 20,
      effectJournalMaxLen: 5,
      databaseUrl: 'postgres://p/db',
      databasePoolMax: 3,
      logLevel: 'debug',
    });
  });

  it('names each bad option (not a variable), every one at once, with URLs redacted', () => {
    expect(
      issuesOf(() =>
        resolveOptions({
          amqp: { prefetch: 0, urls: 'http://user:s3cret@host' },
          lock: { redlockUrls: ['redis://a', 'redis://b'] },
          processing: { retry: { initialDelayMs: 500, maxDelayMs: 100 } },
          postgres: { url: '' },
        }),
      ),
    ).toEqual([
      'processing.retry.maxDelayMs="100"',
      'lock.redlockUrls="redis://a,redis://b"',
      'amqp.urls="http://user:***@host/"',
      'amqp.prefetch="0"',
      'postgres.url=""',
    ]);
    expect(() => resolveOptions({ amqp: { prefetch: 0 } })).toThrow(
      /^Invalid MessageProcessorModule options:\n {2}amqp\.prefetch="0": expected an integer from 1 to 65535/,
    );
  });

  it("gives the service's environment back as the same configuration", () => {
    const env = loadEnv({
      AMQP_URL: 'amqp://x:5672',
      AMQP_PREFETCH: '9',
      REDIS_URL: 'redis://y:6379',
      DATABASE_URL: 'postgres://z/db',
      EFFECT_JOURNAL_MAXLEN: '100',
      LOG_LEVEL: 'warn',
      LOG_FORMAT: 'json',
    });
    expect(resolveOptions(optionsFromEnv(env))).toEqual({ ...env, ledgerStore: 'redis' });
  });

  it("labels a client the application gives by its address, a cluster's before it connects", () => {
    const server = new Redis({ host: 'cache', port: 6380, db: 2, lazyConnect: true });
    const cluster = new Cluster([{ host: 'seed', port: 7000 }], { lazyConnect: true });
    try {
      expect(resolveOptions({ redis: { client: server } }).redisUrl).toBe('redis://cache:6380/2');
      expect(resolveOptions({ redis: { client: cluster } }).redisUrl).toBe(
        'redis+cluster://application-client',
      );
    } finally {
      server.disconnect();
      cluster.disconnect();
    }
  });
});
