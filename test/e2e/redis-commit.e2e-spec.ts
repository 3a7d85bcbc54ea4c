import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import pino from 'pino';
import { LedgerService } from '../../src/ledger/ledger.service.js';
import { LockLostError, LockService, LockTimeoutError } from '../../src/lock/index.js';
import {
  type LockBackend,
  RedlockBackend,
  SingleLockBackend,
} from '../../src/lock/lock.backend.js';
import { LockServer } from '../../src/lock/lock.server.js';
import type { MessageLease } from '../../src/lock/message-lease.js';
import { RedisScript } from '../../src/lock/redis-script.js';
import { MessageContext } from '../../src/messaging/message.context.js';
import { RedisCommit } from '../../src/messaging/redis-commit.js';
import { DependencyUnavailableError } from '../../src/messaging/messaging.errors.js';
import type { LockMetrics } from '../../src/metrics/lock.metrics.js';
import type { RedisConnection } from '../../src/redis/redis.connection.js';
import { redisClientOptions } from '../../src/redis/redis.connection.js';
import { TestRedisServer } from './support/redis.server.js';
import { deleteKeys } from './support/test-app.js';
import { waitFor } from './support/wait-for.js';

const SHARED_REDIS = 'redis://127.0.0.1:6379';

/** What the lock service reports, counted. */
class CountingLockMetrics {
  acquired = 0;
  timeouts = 0;
  contention = 0;
  held = 0;
  acquireFinished(outcome: 'acquired' | 'timeout'): void {
    if (outcome === 'acquired') this.acquired++;
    else this.timeouts++;
  }
  contended(): void {
    this.contention++;
  }
  extension(): void {}
  lockLost(): void {}
  heldChanged(delta: number): void {
    this.held += delta;
  }
}

async function connect(): Promise<Redis> {
  const client = new Redis(SHARED_REDIS, redisClientOptions('commit-script-e2e'));
  client.on('error', () => undefined);
  if (client.status !== 'ready') await once(client, 'ready');
  return client;
}

/** A lock service on the shared Redis, standing for one service process. */
function lockService(
  client: Redis,
  waitMs = 10_000,
  ttlMs = 5_000,
  backend: LockBackend = new SingleLockBackend(new LockServer(client, 'test'), 1_000),
) {
  const metrics = new CountingLockMetrics();
  const locks = new LockService({
    backend,
    defaults: { ttlMs, waitMs, commandTimeoutMs: 1_000 },
    metrics: metrics as unknown as LockMetrics,
    close: () => Promise.resolve(),
  });
  return { locks, metrics };
}

/** A lock held the usual way (before the handler), as the message path takes it. */
async function held(locks: LockService, key: string, waitMs?: number): Promise<MessageLease> {
  const lock = await locks.holdForMessage(key, undefined, { waitMs });
  if (lock === 'processed') throw new Error('no marker was given');
  return lock;
}

/**
 * Locks on other servers (Redlock), as the commit sees them: granted with the fencing token the
 * test chooses (the quorum's), their home record on the service's Redis left out.
 */
class ElsewhereBackend implements LockBackend {
  readonly mode = 'redlock';
  readonly servers = [];
  redisKeyOf(key: string) {
    return `mp:lock:${key}`;
  }
  nextToken = 0;
  tryAcquire() {
    const validUntil = performance.now() + 60_000;
    return Promise.resolve({
      status: 'acquired' as const,
      fencingToken: this.nextToken,
      validUntil,
    });
  }
  extend() {
    return Promise.resolve({ status: 'extended' as const, validUntil: performance.now() + 60_000 });
  }
  release() {
    return Promise.resolve('released' as const);
  }
  isAvailable() {
    return true;
  }
}

describe('RedisCommit (real Redis)', () => {
  const run = randomBytes(4).toString('hex');
  const account = (name: string): string => `cs-${run}-${name}`;
  const clients: Redis[] = [];
  let redis: Redis;
  let ledger: LedgerService;

  /** A message's context as the processor builds it, with its marker and lock. */
  function context(
    messageId: string,
    lock: MessageLease | undefined,
    effectJournal?: { maxLen: number; ttlSeconds: number },
  ): MessageContext {
    return new MessageContext({
      messageId,
      correlationId: undefined,
      queue: 'ledger.transactions',
      routingKey: 'transaction.created',
      attempt: 1,
      handler: 'LedgerHandler.apply',
      exchange: 'ledger',
      headers: {},
      redelivered: false,
      signal: new AbortController().signal,
      effect: 'redis-commit',
      processedMarker: { key: `mp:processed:cs-${run}:${messageId}`, ttlSeconds: 60 },
      lock,
      effectJournal,
      message: {} as MessageContext['message'],
      baseLogger: pino({ enabled: false }),
    });
  }

  /** Another process's connection. */
  async function another(): Promise<Redis> {
    const client = await connect();
    clients.push(client);
    return client;
  }

  const balance = async (name: string): Promise<number> =>
    Number((await redis.get(`ledger:balance:${account(name)}`)) ?? 0);
  const lockKeyOf = (name: string): string => `mp:lock:account:${account(name)}`;
  const fenceOf = async (name: string): Promise<number> =>
    Number(await redis.get(`mp:fence:account:${account(name)}`));

  beforeAll(async () => {
    redis = await connect();
    clients.push(redis);
    ledger = new LedgerService({ client: redis } as unknown as RedisConnection);
  });

  afterAll(async () => {
    await deleteKeys(redis, [
      `ledger:balance:cs-${run}-*`,
      `mp:lock:account:cs-${run}-*`,
      `mp:fence:account:cs-${run}-*`,
      `mp:processed:cs-${run}:*`,
      `mp:journal:account:cs-${run}-*`,
      `mp:journal:queue:ledger.transactions`,
    ]);
    clients.forEach((c) => c.disconnect());
  });

  describe('the effect journal', () => {
    const JOURNAL = { maxLen: 1_000, ttlSeconds: 60 };
    const journalOf = async (name: string) =>
      (await redis.xrange(`mp:journal:account:${account(name)}`, '-', '+')).map(([, fields]) => {
        const entry: Record<string, string> = {};
        for (let i = 0; i < fields.length; i += 2) entry[fields[i]] = fields[i + 1];
        return entry;
      });

    it('appends each committed effect in the same step: messageId, token, worker, server time', async () => {
      const { locks } = lockService(redis);
      const key = `account:${account('journal')}`;
      const earlier = await locks.acquire(key); // someone held the key: the commit mints a token
      await earlier.release();
      const before = Date.now() * 1000;
      const first = context('j-1', locks.leaveToCommit(key), JOURNAL);
      await expect(ledger.apply(first, account('journal'), 5)).resolves.toBe('applied');
      const second = context('j-2', await held(locks, key), JOURNAL);
      await expect(ledger.apply(second, account('journal'), 7)).resolves.toBe('applied');
      const entries = await journalOf('journal');
      expect(entries).toEqual([
        {
          messageId: 'j-1',
          fencingToken: String(first.fencingToken),
          otherHolder: '0',
          worker: `${hostname()}:${process.pid}`,
          timeUs: expect.stringMatching(/^\d{16}$/) as unknown as string,
        },
        expect.objectContaining({ messageId: 'j-2', fencingToken: String(second.fencingToken) }),
      ]);
      expect(Number(entries[0].timeUs)).toBeGreaterThanOrEqual(before - 1_000_000);
      expect(Number(entries[1].fencingToken)).toBeGreaterThan(Number(entries[0].fencingToken));
      expect(await redis.pttl(`mp:journal:account:${account('journal')}`)).toBeGreaterThan(0);
    });

    it('journals nothing for a duplicate, a stale or a refused commit, or when it is off', async () => {
      const { locks } = lockService(redis);
      const key = `account:${account('nothing')}`;
      await ledger.apply(context('n-1', locks.leaveToCommit(key), JOURNAL), account('nothing'), 1);
      // a duplicate
      await expect(
        ledger.apply(context('n-1', locks.leaveToCommit(key), JOURNAL), account('nothing'), 1),
      ).resolves.toBe('duplicate');
      // a stale holder: its lease ran out and another worker took the key
      const paused = await held(locks, key);
      await redis.del(lockKeyOf('nothing'));
      const newer = await held(lockService(await another()).locks, key);
      await newer.release();
      await expect(
        ledger.apply(context('n-2', paused, JOURNAL), account('nothing'), 1),
      ).resolves.toBe('stale');
      // journal off
      await ledger.apply(context('n-3', locks.leaveToCommit(key)), account('nothing'), 1);
      expect((await journalOf('nothing')).map((e) => e.messageId)).toEqual(['n-1']);
    });

    it('journals a commit without a lock under its queue', async () => {
      await ledger.apply(context(`q-${run}`, undefined, JOURNAL), account('unlocked'), 2);
      const entries = await redis.xrange('mp:journal:queue:ledger.transactions', '-', '+');
      const mine = entries.filter(([, fields]) => fields.includes(`q-${run}`));
      expect(mine).toHaveLength(1);
      expect(mine[0][1]).toEqual(expect.arrayContaining(['otherHolder', '', 'fencingToken', '']));
    });
  });

  it('takes a free key, mints a fencing token above the last one, commits and holds nothing after', async () => {
    const { locks, metrics } = lockService(redis);
    const earlier = await locks.acquire(`account:${account('free')}`);
    await earlier.release();
    const lock = locks.leaveToCommit(`account:${account('free')}`);
    const ctx = context('free-1', lock);
    expect(ctx.fencingToken).toBeUndefined();

    await expect(ledger.apply(ctx, account('free'), 250)).resolves.toBe('applied');

    expect(await balance('free')).toBe(250);
    expect(await redis.exists(`mp:processed:cs-${run}:free-1`)).toBe(1);
    expect(await redis.exists(lockKeyOf('free'))).toBe(0);
    expect(lock.pending).toBe(false);
    expect(ctx.fencingToken).toBeGreaterThan(earlier.fencingToken);
    expect(await fenceOf('free')).toBe(ctx.fencingToken);
    expect(metrics.acquired).toBe(2);
    expect(metrics.held).toBe(0);
  });

  it('takes a key nobody held within the fence hour without minting a token or writing a fence', async () => {
    const { locks, metrics } = lockService(redis);
    const lock = locks.leaveToCommit(`account:${account('never-held')}`);
    const ctx = context('never-1', lock);

    await expect(ledger.apply(ctx, account('never-held'), 30)).resolves.toBe('applied');

    expect(await balance('never-held')).toBe(30);
    expect(lock.pending).toBe(false);
    expect(ctx.fencingToken).toBeUndefined();
    expect(await redis.exists(`mp:fence:account:${account('never-held')}`)).toBe(0);
    expect(await redis.exists(lockKeyOf('never-held'))).toBe(0);
    expect(metrics.acquired).toBe(1);
    // a holder later on starts the fence; the next commit at commit then supersedes it
    const holder = await held(locks, `account:${account('never-held')}`);
    await holder.release();
    const next = context('never-2', locks.leaveToCommit(`account:${account('never-held')}`));
    await expect(ledger.apply(next, account('never-held'), 1)).resolves.toBe('applied');
    expect(next.fencingToken).toBeGreaterThan(holder.fencingToken ?? Infinity);
  });

  it('does not run the body of a message already committed, and takes nothing', async () => {
    const { locks } = lockService(redis);
    await ledger.apply(
      context('dup-1', locks.leaveToCommit(`account:${account('dup')}`)),
      account('dup'),
      100,
    );
    const fence = await fenceOf('dup');
    const again = locks.leaveToCommit(`account:${account('dup')}`);

    await expect(ledger.apply(context('dup-1', again), account('dup'), 100)).resolves.toBe(
      'duplicate',
    );

    expect(await balance('dup')).toBe(100);
    expect(again.pending).toBe(true);
    expect(await fenceOf('dup')).toBe(fence);
  });

  it('waits for a key another process holds, then commits as the holder and releases in the script', async () => {
    const other = lockService(await another());
    const mine = lockService(redis);
    const key = `account:${account('busy')}`;
    const held = await other.locks.acquire(key);
    const lock = mine.locks.leaveToCommit(key);
    const ctx = context('busy-1', lock);

    const applying = ledger.apply(ctx, account('busy'), 40);
    await waitFor('the commit to find the key busy', () =>
      Promise.resolve(mine.metrics.contention > 0),
    );
    expect(await balance('busy')).toBe(0);
    await held.release();

    await expect(applying).resolves.toBe('applied');
    expect(await balance('busy')).toBe(40);
    expect(ctx.fencingToken).toBeGreaterThan(held.fencingToken);
    expect(await fenceOf('busy')).toBe(ctx.fencingToken);
    expect(await redis.exists(lockKeyOf('busy'))).toBe(0);
    expect(mine.metrics.held).toBe(0);
    expect(mine.locks.heldCount()).toBe(0);
    await lock.release();
    await other.locks.onApplicationShutdown();
  });

  it('gives up with LockTimeoutError when the key stays busy past the wait, writing nothing', async () => {
    const mine = lockService(redis, 100);
    await redis.set(lockKeyOf('stuck'), 'another-process', 'PX', 30_000);
    const lock = mine.locks.leaveToCommit(`account:${account('stuck')}`);

    await expect(
      ledger.apply(context('stuck-1', lock), account('stuck'), 5),
    ).rejects.toBeInstanceOf(LockTimeoutError);

    expect(await balance('stuck')).toBe(0);
    expect(await redis.exists(`mp:processed:cs-${run}:stuck-1`)).toBe(0);
    expect(await redis.get(lockKeyOf('stuck'))).toBe('another-process');
    expect(mine.metrics.timeouts).toBe(1);
  });

  it('refuses (stale) a holder whose lease ran out after another worker committed with a newer token', async () => {
    const { locks } = lockService(redis);
    const key = `account:${account('stale')}`;
    const paused = await held(locks, key);
    // its lease ends (as if it paused past it): another worker commits with the lock at commit
    await redis.del(lockKeyOf('stale'));
    const other = lockService(await another());
    await expect(
      ledger.apply(context('stale-2', other.locks.leaveToCommit(key)), account('stale'), 10),
    ).resolves.toBe('applied');

    await expect(ledger.apply(context('stale-1', paused), account('stale'), 99)).resolves.toBe(
      'stale',
    );

    expect(await balance('stale')).toBe(10);
    expect(await redis.exists(`mp:processed:cs-${run}:stale-1`)).toBe(0);
    await paused.release();
  });

  it('releases a held lock in the script only while it holds our token', async () => {
    const { locks, metrics } = lockService(redis);
    const key = `account:${account('release')}`;
    const lock = await held(locks, key);
    await expect(ledger.apply(context('rel-1', lock), account('release'), 7)).resolves.toBe(
      'applied',
    );
    expect(await redis.exists(lockKeyOf('release'))).toBe(0);
    expect(metrics.held).toBe(0);
    await lock.release();
    expect(locks.heldCount()).toBe(0);
    // another holder's lock (ours expired and was taken) is left alone, duplicate or not
    const next = await held(locks, key, 0);
    await redis.set(lockKeyOf('release'), 'someone-else', 'PX', 30_000);
    await expect(ledger.apply(context('rel-1', next), account('release'), 7)).resolves.toBe(
      'duplicate',
    );
    expect(await redis.get(lockKeyOf('release'))).toBe('someone-else');
    expect(await balance('release')).toBe(7);
  });

  it('records the highest token committed by holders whose tokens come from elsewhere (a quorum) and refuses a lower one', async () => {
    const backend = new ElsewhereBackend();
    const { locks } = lockService(redis, 10_000, 5_000, backend);
    const apply = async (id: string, token: number) => {
      backend.nextToken = token;
      // held before the commit, as `ctx.lock.hold()` holds it
      const lock = await held(locks, `account:${account('redlock')}`);
      expect(lock.pending).toBe(false);
      try {
        return await ledger.apply(context(id, lock), account('redlock'), 100);
      } finally {
        await lock.release();
      }
    };
    await expect(apply('r1', 20)).resolves.toBe('applied');
    await expect(apply('r2', 10)).resolves.toBe('stale');
    await expect(apply('r3', 20)).resolves.toBe('applied');
    await expect(apply('r1', 30)).resolves.toBe('duplicate');
    expect(await balance('redlock')).toBe(200);
    expect(await fenceOf('redlock')).toBe(20);
    expect(await redis.exists(`mp:processed:cs-${run}:r2`)).toBe(0);
    expect(locks.heldCount()).toBe(0);
  });

  describe('under Redlock with its home on this Redis (3 lock servers of the test)', () => {
    const servers: TestRedisServer[] = [];
    const quorum: Redis[] = [];

    beforeAll(async () => {
      for (let i = 0; i < 3; i++) servers.push(await TestRedisServer.start());
      for (const server of servers) {
        const client = new Redis(server.url, redisClientOptions('commit-script-e2e-quorum'));
        client.on('error', () => undefined);
        if (client.status !== 'ready') await once(client, 'ready');
        quorum.push(client);
      }
    });

    afterAll(async () => {
      quorum.forEach((c) => c.disconnect());
      await Promise.all(servers.map((s) => s.stop()));
    });

    /** A process's lock service: the test's quorum, its home on `client` (the service's Redis). */
    const redlock = (client: Redis) =>
      lockService(
        client,
        10_000,
        5_000,
        new RedlockBackend(
          quorum.map((c, i) => new LockServer(c, `quorum-${i + 1}`)),
          1_000,
          new LockServer(client, 'home'),
        ),
      );
    const onQuorum = (redisKey: string): Promise<number[]> =>
      Promise.all(quorum.map((c) => c.exists(redisKey)));

    it('takes a free key in the commit without asking the quorum', async () => {
      const { locks } = redlock(redis);
      const lock = locks.leaveToCommit(`account:${account('rl-free')}`);
      expect(lock.pending).toBe(true);
      await expect(ledger.apply(context('rl-free-1', lock), account('rl-free'), 25)).resolves.toBe(
        'applied',
      );
      expect(await balance('rl-free')).toBe(25);
      // nothing was asked of the lock servers: no lock, no fence, nothing at all
      expect(await Promise.all(quorum.map((c) => c.dbsize()))).toEqual([0, 0, 0]);
    });

    it('waits for a quorum holder (recorded here), then commits as the holder and releases everywhere', async () => {
      const other = redlock(await another());
      const mine = redlock(redis);
      const key = `account:${account('rl-busy')}`;
      const holder = await other.locks.acquire(key);
      expect(await redis.get(lockKeyOf('rl-busy'))).toBe(holder.token);
      expect(await onQuorum(lockKeyOf('rl-busy'))).toEqual([1, 1, 1]);

      const lock = mine.locks.leaveToCommit(key);
      const ctx = context('rl-busy-1', lock);
      const applying = ledger.apply(ctx, account('rl-busy'), 40);
      await waitFor('the commit to find the key busy', () =>
        Promise.resolve(mine.metrics.contention > 0),
      );
      expect(await balance('rl-busy')).toBe(0);
      await holder.release();

      await expect(applying).resolves.toBe('applied');
      await lock.release();
      expect(await balance('rl-busy')).toBe(40);
      expect(ctx.fencingToken).toBeGreaterThan(holder.fencingToken);
      expect(await fenceOf('rl-busy')).toBe(ctx.fencingToken);
      expect(await redis.exists(lockKeyOf('rl-busy'))).toBe(0);
      expect(await onQuorum(lockKeyOf('rl-busy'))).toEqual([0, 0, 0]);
      expect(mine.locks.heldCount()).toBe(0);
      expect(mine.metrics.held).toBe(0);

      // the processed marker lives here too: checked in the same round as the record
      await expect(
        mine.locks.holdForMessage(key, `mp:processed:cs-${run}:rl-busy-1`),
      ).resolves.toBe('processed');
      expect(await redis.exists(lockKeyOf('rl-busy'))).toBe(0);
      expect(await onQuorum(lockKeyOf('rl-busy'))).toEqual([0, 0, 0]);
      await other.locks.onApplicationShutdown();
    });

    it("gives a quorum holder a token at or above this Redis's fence, raised on the quorum", async () => {
      const { locks } = redlock(redis);
      const key = `account:${account('rl-ahead')}`;
      // commits here minted far ahead of the quorum's tokens (a clock ahead, say)
      const ahead = Date.now() * 1000 + 3_600_000_000;
      await redis.set(`mp:fence:${key}`, String(ahead), 'PX', 60_000);
      const holder = await locks.holdForMessage(key, undefined);
      if (holder === 'processed') throw new Error('no marker was given');
      expect(holder.fencingToken).toBe(ahead + 1);
      expect(await Promise.all(quorum.map((c) => c.get(`mp:fence:${key}`)))).toEqual(
        Array(3).fill(String(ahead + 1)),
      );
      const ctx = context('rl-ahead-1', holder);
      await expect(ledger.apply(ctx, account('rl-ahead'), 5)).resolves.toBe('applied');
      await holder.release();
      expect(await fenceOf('rl-ahead')).toBe(ahead + 1);
      expect(locks.heldCount()).toBe(0);
    });
  });

  it('commits without a lock: marker check, body and marker only', async () => {
    await expect(ledger.apply(context('nolock-1', undefined), account('nolock'), 3)).resolves.toBe(
      'applied',
    );
    await expect(ledger.apply(context('nolock-1', undefined), account('nolock'), 3)).resolves.toBe(
      'duplicate',
    );
    expect(await balance('nolock')).toBe(3);
    expect(await redis.exists(`mp:fence:account:${account('nolock')}`)).toBe(0);
  });

  it("passes the body's reply back, and a body that raises writes no marker", async () => {
    const script = new RedisCommit<number>(redis, 'E2eCheckedAdd', {
      numberOfKeys: 1,
      lua: `
        if tonumber(args[1]) < 0 then error('negative amount') end
        return redis.call('INCRBY', keys[1], args[1])`,
    });
    const key = `ledger:balance:${account('script')}`;
    const { locks } = lockService(redis);
    const ok = context('script-1', locks.leaveToCommit(`account:${account('script')}`));
    await expect(script.run(ok, [key], [5])).resolves.toEqual({ status: 'committed', reply: 5 });

    const refused = context('script-2', locks.leaveToCommit(`account:${account('script')}`));
    await expect(script.run(refused, [key], [-1])).rejects.toThrow(/negative amount/);
    expect(await redis.exists(`mp:processed:cs-${run}:script-2`)).toBe(0);
    expect(await redis.exists(lockKeyOf('script'))).toBe(0);
    await expect(script.run(refused, [key, key], [1])).rejects.toThrow('expected 1 keys, got 2');
  });

  it('loads a script Redis does not know yet (EVALSHA refused, then EVAL), and runs it by SHA after', async () => {
    // a body of this run only: its SHA is new to the shared Redis, no SCRIPT FLUSH needed
    const body = `-- ${run}\nreturn redis.call('INCRBY', keys[1], args[1])`;
    const script = new RedisCommit<number>(redis, 'E2eUnloaded', { numberOfKeys: 1, lua: body });
    const sha = RedisScript.load('commit-4.lua', { effect: body }).sha;
    const key = `ledger:balance:${account('unloaded')}`;
    expect(await redis.script('EXISTS', sha)).toEqual([0]);

    await expect(script.run(context('unloaded-1', undefined), [key], [4])).resolves.toEqual({
      status: 'committed',
      reply: 4,
    });
    expect(await redis.script('EXISTS', sha)).toEqual([1]);
    await expect(script.run(context('unloaded-2', undefined), [key], [6])).resolves.toEqual({
      status: 'committed',
      reply: 10,
    });
    await expect(script.run(context('unloaded-2', undefined), [key], [6])).resolves.toEqual({
      status: 'duplicate',
    });
  });

  it('reports an unreachable Redis as DependencyUnavailableError', async () => {
    const down = new Redis('redis://127.0.0.1:1', {
      ...redisClientOptions('commit-script-e2e-down'),
      lazyConnect: true,
      retryStrategy: () => null,
    });
    down.on('error', () => undefined);
    const script = new RedisCommit(down, 'E2eDown', { numberOfKeys: 0, lua: 'return 1' });
    await expect(script.run(context('down-1', undefined), [], [])).rejects.toBeInstanceOf(
      DependencyUnavailableError,
    );
    down.disconnect();
  });

  it('refuses to run for a handler whose effect is not redis-commit', async () => {
    const commit = new RedisCommit(redis, 'E2eWrongKind', { numberOfKeys: 0, lua: 'return 1' });
    const ctx = { ...context('wrong-1', undefined), effect: 'marker-after' as const };
    await expect(commit.run(ctx, [], [])).rejects.toThrow(/effect: \{ kind: 'redis-commit' \}/);
  });

  it('aborts the signal of a lock held for the commit when another token takes the key', async () => {
    const { locks } = lockService(redis, 10_000, 300);
    const lock = locks.leaveToCommit(`account:${account('lost')}`);
    await lock.hold();
    const { signal } = lock;
    expect(signal.aborted).toBe(false);
    // another token takes the key: the watchdog's next extension (every 100 ms) finds it gone
    await redis.set(lockKeyOf('lost'), 'thief', 'PX', 30_000);
    await waitFor('the watchdog to find the lock taken', () => Promise.resolve(signal.aborted));
    expect(lock.lost).toBeInstanceOf(LockLostError);
    expect(signal.reason).toBe(lock.lost);
    await lock.release();
    expect(await redis.get(lockKeyOf('lost'))).toBe('thief');
  });
});
