import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import {
  LockLostError,
  LockService,
  LockTimeoutError,
  LockUnavailableError,
} from '../../src/lock/index.js';
import { RedlockBackend, SingleLockBackend } from '../../src/lock/lock.backend.js';
import { LockServer } from '../../src/lock/lock.server.js';
import type { MessageLease } from '../../src/lock/message-lease.js';
import type { LockDefaults } from '../../src/lock/lock.service.js';
import type { LockMetrics } from '../../src/metrics/lock.metrics.js';
import { redisClientOptions } from '../../src/redis/redis.connection.js';
import type { INestApplication } from '@nestjs/common';
import {
  deleteKeys,
  http,
  metricValue,
  readiness,
  startApp,
  TestBroker,
  waitUntilReady,
} from './support/test-app.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { TestRedisServer } from './support/redis.server.js';
import { waitFor } from './support/wait-for.js';

const SHARED_REDIS = 'redis://127.0.0.1:6379';

/** LockMetrics that counts what the service reports. */
class CountingLockMetrics {
  readonly acquired: number[] = [];
  timeouts = 0;
  contention = 0;
  readonly extensions = { extended: 0, lost: 0, failed: 0 };
  lost = 0;
  held = 0;

  acquireFinished(outcome: 'acquired' | 'timeout', seconds: number): void {
    if (outcome === 'acquired') this.acquired.push(seconds);
    else this.timeouts++;
  }

  contended(): void {
    this.contention++;
  }

  extension(outcome: 'extended' | 'lost' | 'failed'): void {
    this.extensions[outcome]++;
  }

  lockLost(): void {
    this.lost++;
  }

  heldChanged(delta: 1 | -1): void {
    this.held += delta;
  }
}

/** A client as the service configures one (no offline queue), resolved once ready. */
async function connect(url: string): Promise<Redis> {
  // a stopped server leaves a connect attempt whose socket ioredis only destroys after this
  const client = new Redis(url, { ...redisClientOptions('lock-e2e'), disconnectTimeout: 50 });
  client.on('error', () => undefined);
  if (client.status !== 'ready') await once(client, 'ready');
  return client;
}

function serviceOn(
  backend: SingleLockBackend | RedlockBackend,
  defaults: Partial<LockDefaults> = {},
): { locks: LockService; metrics: CountingLockMetrics } {
  const metrics = new CountingLockMetrics();
  const locks = new LockService({
    backend,
    defaults: { ttlMs: 2_000, waitMs: 10_000, commandTimeoutMs: 1_000, ...defaults },
    metrics: metrics as unknown as LockMetrics,
    close: () => Promise.resolve(),
  });
  return { locks, metrics };
}

function single(client: Redis, defaults: Partial<LockDefaults> = {}) {
  return serviceOn(new SingleLockBackend(new LockServer(client, 'test'), 1_000), defaults);
}

/** Resolves when the signal aborts, with the time it took from `since`. */
function abortedAfter(signal: AbortSignal, since: number): Promise<number> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(performance.now() - since);
    else signal.addEventListener('abort', () => resolve(performance.now() - since), { once: true });
  });
}

const tick = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('LockService on one Redis (real Redis)', () => {
  const run = randomBytes(4).toString('hex');
  const key = (name: string): string => `e2e-${run}-${name}`;
  const clients: Redis[] = [];
  let redis: Redis;

  beforeAll(async () => {
    redis = await connect(SHARED_REDIS);
    clients.push(redis);
  });

  afterAll(async () => {
    await deleteKeys(redis, [`mp:lock:e2e-${run}-*`, `mp:fence:e2e-${run}-*`]);
    await deleteKeys(redis, [`ledger:*:e2e-${run}-*`, `mp:processed:e2e-${run}-*`]);
    clients.forEach((c) => c.disconnect());
  });

  it('serves 20 concurrent acquirers in 4 processes-worth of clients one at a time, in fencing order', async () => {
    const services = await Promise.all(
      [1, 2, 3, 4].map(async () => {
        const client = await connect(SHARED_REDIS);
        clients.push(client);
        return single(client);
      }),
    );
    const intervals: { start: number; end: number; fencingToken: number }[] = [];
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        services[i % 4].locks.withLock(key('mutex'), async (lock) => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          const start = performance.now();
          await tick(10);
          intervals.push({ start, end: performance.now(), fencingToken: lock.fencingToken });
          inside--;
        }),
      ),
    );
    expect(intervals).toHaveLength(20);
    expect(maxInside).toBe(1);
    intervals.sort((a, b) => a.start - b.start);
    for (let i = 1; i < intervals.length; i++) {
      expect(intervals[i].start).toBeGreaterThanOrEqual(intervals[i - 1].end);
      expect(intervals[i].fencingToken).toBeGreaterThan(intervals[i - 1].fencingToken);
    }
    const contention = services.reduce((sum, s) => sum + s.metrics.contention, 0);
    expect(contention).toBeGreaterThan(0);
    expect(services.every((s) => s.metrics.held === 0)).toBe(true);
    expect(await redis.exists(`mp:lock:${key('mutex')}`)).toBe(0);
  });

  it('answers every operation of one batched call: tokens above the server clock, increasing per key', async () => {
    const server = new LockServer(redis, 'batch');
    const [seconds, micros] = await redis.time();
    const clockUs = Number(seconds) * 1_000_000 + Number(micros);
    const marker = `mp:processed:${key('batch-marker')}`;
    await redis.set(marker, '1', 'PX', 60_000);
    await redis.set(`mp:lock:${key('batch-held')}`, 'another', 'PX', 60_000);
    // asked in one turn: one lock-ops call, run in this order
    const [a, b, released, again, held, processed] = await Promise.all([
      server.acquire(key('batch-a'), 't1', 5_000, 1_000),
      server.acquire(key('batch-b'), 't2', 5_000, 1_000),
      server.release(key('batch-a'), 't1', 1_000),
      server.acquire(key('batch-a'), 't3', 5_000, 1_000),
      server.acquire(key('batch-held'), 't4', 5_000, 1_000),
      server.acquire(key('batch-marker'), 't5', 5_000, 1_000, marker),
    ]);
    const fence = (reply: typeof a): number =>
      reply.status === 'acquired' ? reply.fencingToken : Number.NaN;
    expect([a.status, b.status, released, again.status]).toEqual([
      'acquired',
      'acquired',
      'ok',
      'acquired',
    ]);
    expect(fence(a)).toBeGreaterThanOrEqual(clockUs);
    expect(fence(b)).toBeGreaterThanOrEqual(clockUs);
    // the clock is read once per call: the second holder of a key in it still gets a higher token
    expect(fence(again)).toBe(fence(a) + 1);
    expect(held.status === 'held' && held.pttlMs > 50_000 && held.pttlMs <= 60_000).toBe(true);
    expect(processed).toEqual({ status: 'processed' });
    expect(await redis.get(`mp:fence:${key('batch-a')}`)).toBe(String(fence(again)));
    await Promise.all([
      server.release(key('batch-a'), 't3', 1_000),
      server.release(key('batch-b'), 't2', 1_000),
    ]);
    await redis.del(marker, `mp:lock:${key('batch-held')}`);
  });

  it('keeps a 300 ms lease alive through a 1 s critical section with the watchdog', async () => {
    const { locks, metrics } = single(redis, { ttlMs: 300 });
    const rival = single(redis, { ttlMs: 300 });
    let rivalRefusals = 0;
    await locks.withLock(key('watchdog'), async (lock) => {
      const until = performance.now() + 1_000;
      while (performance.now() < until) {
        // another worker keeps trying: it must never get in while we work
        await expect(rival.locks.acquire(key('watchdog'), { waitMs: 0 })).rejects.toBeInstanceOf(
          LockTimeoutError,
        );
        rivalRefusals++;
        await tick(100);
      }
      expect(lock.signal.aborted).toBe(false);
    });
    expect(rivalRefusals).toBeGreaterThanOrEqual(8);
    expect(metrics.extensions.extended).toBeGreaterThanOrEqual(3);
    expect(metrics.lost).toBe(0);
    expect(await redis.exists(`mp:lock:${key('watchdog')}`)).toBe(0);
  });

  it.each([
    ['deleted', 'expired', (k: string) => redis.del(k)],
    ['overwritten', 'taken', (k: string) => redis.set(k, 'someone-else', 'PX', 5_000)],
  ] as const)(
    'aborts the signal within one watchdog interval when the lock key is %s',
    async (_label, reason, tamper) => {
      const ttlMs = 600;
      const { locks, metrics } = single(redis, { ttlMs });
      const name = key(`tamper-${reason}`);
      const outcome = locks.withLock(name, async (lock) => {
        const since = performance.now();
        await tamper(`mp:lock:${name}`);
        const tookMs = await abortedAfter(lock.signal, since);
        expect(tookMs).toBeLessThanOrEqual(ttlMs / 3 + 100);
        expect(lock.signal.reason).toEqual(new LockLostError(name, reason));
      });
      await expect(outcome).rejects.toBeInstanceOf(LockLostError);
      expect(metrics.lost).toBe(1);
      expect(metrics.extensions.lost).toBe(1);
      await redis.del(`mp:lock:${name}`);
    },
  );

  it('reports a release after expiry as expired and after a takeover as taken, without throwing', async () => {
    const { locks } = single(redis, { ttlMs: 100 });
    const first = await locks.acquire(key('expiry'));
    await waitFor(
      'the lease to end',
      async () => (await redis.exists(`mp:lock:${key('expiry')}`)) === 0,
    );
    await expect(first.release()).resolves.toBe('expired');

    const second = await locks.acquire(key('takeover'));
    await redis.set(`mp:lock:${key('takeover')}`, 'another-token', 'PX', 5_000);
    await expect(second.release()).resolves.toBe('taken');
    expect(await redis.get(`mp:lock:${key('takeover')}`)).toBe('another-token');
    await redis.del(`mp:lock:${key('takeover')}`);
  });

  it('gives up after waitMs with LockTimeoutError when the lock stays held', async () => {
    const holder = single(redis);
    const waiter = single(redis);
    const held = await holder.locks.acquire(key('busy'));
    const started = performance.now();
    await expect(waiter.locks.acquire(key('busy'), { waitMs: 300 })).rejects.toBeInstanceOf(
      LockTimeoutError,
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(waiter.metrics.timeouts).toBe(1);
    // full-jitter backoff: a handful of tries in 300 ms, not a hot loop
    expect(waiter.metrics.contention).toBeGreaterThan(1);
    expect(waiter.metrics.contention).toBeLessThan(60);
    await expect(held.release()).resolves.toBe('released');
  });

  it('checks the processed marker and takes the lock in one call', async () => {
    const { locks } = single(redis);
    const marker = `mp:processed:e2e-${run}-queue:m-1`;
    const lock = await locks.holdForMessage(key('marker'), marker);
    expect(lock).not.toBe('processed');
    await (lock as MessageLease).release();
    expect(locks.heldCount()).toBe(0);
    await redis.set(marker, '1', 'EX', 60);
    await expect(locks.holdForMessage(key('marker'), marker)).resolves.toBe('processed');
    expect(await redis.exists(`mp:lock:${key('marker')}`)).toBe(0);
  });

  it('releases every lock still held on shutdown', async () => {
    const { locks, metrics } = single(redis);
    await Promise.all(['a', 'b', 'c'].map((n) => locks.acquire(key(`shutdown-${n}`))));
    expect(metrics.held).toBe(3);
    await locks.onApplicationShutdown();
    expect(metrics.held).toBe(0);
    const left = await redis.exists(
      ...['a', 'b', 'c'].map((n) => `mp:lock:${key(`shutdown-${n}`)}`),
    );
    expect(left).toBe(0);
    await expect(locks.acquire(key('shutdown-a'))).rejects.toBeInstanceOf(LockUnavailableError);
  });
});

describe('LockService when Redis stalls (CLIENT PAUSE on a Redis of the test)', () => {
  let server: TestRedisServer;
  let client: Redis;
  let admin: Redis;

  beforeAll(async () => {
    server = await TestRedisServer.start();
    client = await connect(server.url);
    admin = new Redis(server.url);
  });

  afterAll(async () => {
    client?.disconnect();
    admin?.disconnect();
    await server?.stop();
  });

  it('times out the calls, aborts the signal by the end of the lease and hangs nowhere', async () => {
    const ttlMs = 600;
    const { locks, metrics } = single(client, { ttlMs, waitMs: 200 });
    const lock = await locks.acquire('stall', { ttlMs });
    (lock as unknown as { watch(): void }).watch();
    const paused = performance.now();
    await admin.call('CLIENT', 'PAUSE', '2500');
    const tookMs = await abortedAfter(lock.signal, paused);
    expect(tookMs).toBeLessThanOrEqual(ttlMs);
    expect(lock.signal.reason).toEqual(new LockLostError('stall', 'expired'));
    await waitFor('the stalled extension to fail', () => metrics.extensions.failed >= 1);

    const acquiring = performance.now();
    await expect(locks.acquire('stall-2')).rejects.toBeInstanceOf(LockUnavailableError);
    expect(performance.now() - acquiring).toBeLessThan(ttlMs + 100);
    await expect(lock.release()).resolves.toBe('unreachable');
    expect(locks.heldCount()).toBe(0);
  });
});

describe('LockService in Redlock mode (3 Redis servers of the test)', () => {
  const servers: TestRedisServer[] = [];
  const clients: Redis[] = [];
  let home: Redis;
  let locks: LockService;
  let metrics: CountingLockMetrics;

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) servers.push(await TestRedisServer.start());
    for (const s of servers) clients.push(await connect(s.url));
    // their home: the shared Redis, as the service's own
    home = await connect(SHARED_REDIS);
    const backend = new RedlockBackend(
      clients.map((c, i) => new LockServer(c, `redlock-${i + 1}`)),
      500,
      new LockServer(home, 'home'),
    );
    ({ locks, metrics } = serviceOn(backend, { ttlMs: 1_000, waitMs: 300 }));
  });

  afterAll(async () => {
    clients.forEach((c) => c.disconnect());
    home.disconnect();
    await Promise.all(servers.map((s) => s.stop()));
  });

  it('locks on a quorum, excludes a second holder and hands out increasing fencing tokens', async () => {
    const first = await locks.acquire('rl');
    const holders = await Promise.all(clients.map((c) => c.get('mp:lock:rl')));
    expect(holders).toEqual([first.token, first.token, first.token]);
    expect(await home.get('mp:lock:rl')).toBe(first.token);
    await expect(locks.acquire('rl', { waitMs: 0 })).rejects.toBeInstanceOf(LockTimeoutError);
    await expect(first.release()).resolves.toBe('released');
    const second = await locks.acquire('rl');
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
    await second.release();
  });

  it('leaves every granter fenced at the token: the one proposed to all, or a fence ahead raised on the others', async () => {
    const fences = (key: string): Promise<(string | null)[]> =>
      Promise.all(clients.map((c) => c.get(`mp:fence:${key}`)));
    // the usual case: each server minted the token proposed to all
    const first = await locks.acquire('rl-fence');
    expect(await fences('rl-fence')).toEqual(Array(3).fill(String(first.fencingToken)));
    await first.release();
    // one server's fence far ahead (another holder's quorum, a clock ahead): its token wins
    // and is raised on the two others before the lock counts
    const ahead = first.fencingToken + 1_000_000_000;
    await clients[1].set('mp:fence:rl-fence', String(ahead), 'PX', 60_000);
    const second = await locks.acquire('rl-fence');
    expect(second.fencingToken).toBe(ahead + 1);
    expect(await fences('rl-fence')).toEqual(Array(3).fill(String(ahead + 1)));
    await second.release();
    const third = await locks.acquire('rl-fence');
    expect(third.fencingToken).toBeGreaterThan(second.fencingToken);
    await third.release();
  });

  it('keeps working with one server down and fails cleanly with two down', async () => {
    await servers[2].stop();
    const lock = await locks.acquire('rl-degraded');
    await expect(lock.extend()).resolves.toBe(true);
    await expect(lock.release()).resolves.toBe('released');

    await servers[1].stop();
    const started = performance.now();
    await expect(locks.acquire('rl-degraded')).rejects.toBeInstanceOf(LockUnavailableError);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(locks.heldCount()).toBe(0);
    expect(metrics.held).toBe(0);
  });
});

describe('LockService in the application (real RabbitMQ and Redis)', () => {
  const run = randomBytes(4).toString('hex');
  let vhost: TestVhost;
  let redis: Redis;

  beforeAll(async () => {
    vhost = await TestVhost.create('locks');
    redis = await connect(SHARED_REDIS);
  });

  afterAll(async () => {
    await deleteKeys(redis, [`mp:lock:app-${run}-*`, `mp:fence:app-${run}-*`]);
    redis.disconnect();
    await vhost?.delete();
  });

  it('is provided by DI, reports its metrics, and releases held locks when the app closes', async () => {
    const app = await startApp({ AMQP_URL: vhost.url(), LOCK_TTL_MS: '5000' });
    const keys = ['a', 'b'].map((n) => `app-${run}-${n}`);
    try {
      await waitUntilReady(app);
      const locks = app.get(LockService);
      await Promise.all(keys.map((k) => locks.acquire(k)));
      expect(await redis.exists(...keys.map((k) => `mp:lock:${k}`))).toBe(2);
      expect(await metricValue('locks_held')).toBeGreaterThanOrEqual(2);
      const metrics = await http(app).get('/metrics');
      expect(metrics.text).toMatch(
        /^lock_acquire_duration_seconds_count\{outcome="acquired"\} \d+/m,
      );
    } finally {
      // closing runs the lock module's hook after the consumers drained and before Redis quits
      await app.close();
    }
    expect(await redis.exists(...keys.map((k) => `mp:lock:${k}`))).toBe(0);
  });
});

describe('the application in Redlock mode (REDIS_LOCK_URLS: 3 Redis servers of the test)', () => {
  const run = randomBytes(4).toString('hex');
  const servers: TestRedisServer[] = [];
  let vhost: TestVhost;
  let redis: Redis;
  let app: INestApplication;
  let broker: TestBroker;

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) servers.push(await TestRedisServer.start());
    vhost = await TestVhost.create('redlock');
    redis = await connect(SHARED_REDIS);
    app = await startApp({
      AMQP_URL: vhost.url(),
      REDIS_LOCK_URLS: servers.map((s) => s.url).join(','),
    });
    broker = await TestBroker.connect(vhost.url());
  });

  afterAll(async () => {
    await broker?.close();
    await app?.close();
    await deleteKeys(redis, [
      `ledger:*:rl-${run}-*`,
      `mp:fence:account:rl-${run}-*`,
      `mp:lock:account:rl-${run}-*`,
      'mp:processed:ledger.transactions:*',
    ]);
    redis.disconnect();
    await vhost?.delete();
    await Promise.all(servers.map((s) => s.stop()));
  });

  it('takes account locks in the commit on its own Redis, pauses without a quorum and resumes when a server returns', async () => {
    await waitUntilReady(app);
    expect((await readiness(app)).body.details.locks).toEqual({ status: 'up', mode: 'redlock' });
    const accountId = `rl-${run}-1`;
    await broker.publishJson(
      'transaction.created',
      { accountId, amountCents: 700 },
      {
        messageId: `rl-${run}-a`,
      },
    );
    await waitFor(
      'the first transaction',
      async () => (await redis.get(`ledger:balance:${accountId}`)) === '700',
    );
    // the ledger's commit took the account's lock on the service's Redis, with its effect:
    // nothing was asked of the lock servers
    const keysOn = async (server: TestRedisServer): Promise<string[]> => {
      const client = await connect(server.url);
      try {
        return await client.keys(`mp:*:account:${accountId}`);
      } finally {
        client.disconnect();
      }
    };
    for (const server of servers) expect(await keysOn(server)).toEqual([]);

    await servers[1].stop();
    await servers[2].stop();
    await waitFor('readiness 503 without a lock quorum', async () => {
      const { status, body } = await readiness(app);
      return status === 503 && body.details.locks?.status === 'down';
    });
    await broker.publishJson(
      'transaction.created',
      { accountId, amountCents: 50 },
      {
        messageId: `rl-${run}-b`,
      },
    );

    await servers[2].start();
    await waitUntilReady(app);
    await waitFor(
      'the transaction published without a quorum',
      async () => (await redis.get(`ledger:balance:${accountId}`)) === '750',
    );
    expect(await broker.depth('ledger.transactions.dlq')).toBe(0);

    // a holder on the quorum (another replica's LockService) is recorded on the service's Redis
    // too: the ledger's commit for that account waits for it, then commits as the holder
    await servers[1].start();
    const quorum = await Promise.all(servers.map((server) => connect(server.url)));
    const replica = serviceOn(
      new RedlockBackend(
        quorum.map((client, i) => new LockServer(client, `replica-${i + 1}`)),
        500,
        new LockServer(redis, 'home'),
      ),
    );
    const holder = await replica.locks.acquire(`account:${accountId}`);
    expect(await redis.get(`mp:lock:account:${accountId}`)).toBe(holder.token);
    const contended = await metricValue('lock_contention_total');
    await broker.publishJson(
      'transaction.created',
      { accountId, amountCents: 25 },
      { messageId: `rl-${run}-c` },
    );
    await waitFor(
      'the commit to find the account held',
      async () => (await metricValue('lock_contention_total')) > contended,
    );
    expect(await redis.get(`ledger:balance:${accountId}`)).toBe('750');
    await holder.release();
    quorum.forEach((client) => client.disconnect());
    await waitFor(
      'the transaction committed after the holder let go',
      async () => (await redis.get(`ledger:balance:${accountId}`)) === '775',
    );
    // committed as the holder of the lock it then took on the quorum: with a newer token
    expect(Number(await redis.get(`mp:fence:account:${accountId}`))).toBeGreaterThan(
      holder.fencingToken,
    );
    const locks = app.get(LockService);
    await waitFor('the waiting commit to let go of the lock', () =>
      Promise.resolve(locks.heldCount() === 0),
    );
    // on the lock servers, what the two holders left: the fence, no lock
    for (const server of servers) {
      expect(await keysOn(server)).toEqual([`mp:fence:account:${accountId}`]);
    }
    expect(await redis.exists(`mp:lock:account:${accountId}`)).toBe(0);
  });
});
