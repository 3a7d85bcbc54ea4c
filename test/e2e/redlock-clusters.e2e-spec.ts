import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { INestApplication } from '@nestjs/common';
import { Redis } from 'ioredis';
import { LockService } from '../../src/lock/index.js';
import { keySlot } from '../../src/redis/key-slot.js';
import { TestRedisCluster } from '../cluster/support/redis.cluster.js';
import { askRedis } from './support/redis.server.js';
import {
  deleteKeys,
  http,
  metricValue,
  startApp,
  TestBroker,
  waitUntilReady,
} from './support/test-app.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { waitFor } from './support/wait-for.js';

const PASSWORD = `pw-${randomBytes(6).toString('hex')}`;

/**
 * Locks on a Redlock quorum whose three members are Redis Clusters (`REDIS_LOCK_URLS` of
 * `redis+cluster://` URLs; one node serving every slot each, so three processes), the service's
 * own Redis one server: the lock servers tag the lock and fence keys with their slot themselves,
 * so each lock script's keys share one, and the ledger stays exact (its commits take their locks
 * on the service's Redis, where every lock taken on the quorum is recorded too).
 */
describe('Redlock over three Redis Clusters (real RabbitMQ and Redis)', () => {
  const clusters: TestRedisCluster[] = [];
  let vhost: TestVhost;
  let app: INestApplication;
  let broker: TestBroker;
  let redis: Redis;
  const run = randomBytes(3).toString('hex');
  const accounts = Array.from({ length: 12 }, (_, i) => `rl-${run}-${i}`);

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) clusters.push(await TestRedisCluster.startOneNode(PASSWORD));
    vhost = await TestVhost.create('redlock-clusters');
    redis = new Redis('redis://127.0.0.1:6379');
    app = await startApp({
      AMQP_URL: vhost.url(),
      REDIS_LOCK_URLS: clusters.map((c) => c.url).join(','),
    });
    await waitUntilReady(app);
    broker = await TestBroker.connect(vhost.url());
  }, 60_000);

  afterAll(async () => {
    await broker?.close();
    await app?.close();
    await deleteKeys(redis, [
      `ledger:balance:rl-${run}-*`,
      `mp:fence:account:rl-${run}-*`,
      `mp:journal:account:rl-${run}-*`,
      `mp:processed:ledger.transactions:rl-${run}-*`,
    ]);
    redis?.disconnect();
    await vhost?.delete();
    for (const cluster of clusters) await cluster.stop();
  }, 60_000);

  it('reports the quorum up, and applies each transaction once under its locks', async () => {
    const body = (await http(app).get('/health/ready').expect(200)).body as {
      details: { locks: { mode: string } };
    };
    expect(body.details.locks.mode).toBe('redlock');
    let published = 0;
    const expected = new Map<string, number>();
    for (let i = 0; i < 240; i++) {
      const accountId = accounts[i % accounts.length];
      await broker.publishJson(
        'transaction.created',
        { accountId, amountCents: 3 },
        { messageId: `rl-${run}-${i}` },
      );
      published++;
      expected.set(accountId, (expected.get(accountId) ?? 0) + 3);
    }
    await waitFor(
      `${published} acked`,
      async () =>
        (await metricValue('messages_processed_total', {
          queue: 'ledger.transactions',
          outcome: 'ack',
        })) >= published,
      60_000,
    );
    for (const accountId of accounts) {
      expect(Number(await redis.get(`ledger:balance:${accountId}`))).toBe(expected.get(accountId));
    }
    // the ledger's commits took their locks on the service's Redis; locks held on the quorum
    // (the accounts', all at once: one batch per slot on each lock server) go to the clusters
    const locks = app.get(LockService);
    const held = await Promise.all(accounts.map((a) => locks.acquire(`account:${a}`)));
    expect(held.every((lock) => lock.fencingToken > 0)).toBe(true);
    expect(await Promise.all(held.map((lock) => lock.release()))).toEqual(
      held.map(() => 'released'),
    );
    // on each lock server, the fences (which outlive their locks) are tagged with their key's
    // slot, the lock and fence of a key in one slot; no lock is left behind
    for (const cluster of clusters) {
      const port = cluster.nodes[0].port;
      const keys = await askRedis(port, PASSWORD, (c) => c.keys(`mp:*account:rl-${run}-*`));
      if (keys === false) throw new Error(`lock server ${port} did not answer`);
      expect(keys.filter((k) => k.startsWith('mp:lock:'))).toEqual([]);
      const fences = keys.filter((k) => k.startsWith('mp:fence:'));
      expect(fences.length).toBe(accounts.length);
      for (const fence of fences) {
        const lockKey = fence.slice('mp:fence:'.length).replace(/^\{[^}]+\}/, '');
        expect(keySlot(fence)).toBe(keySlot(lockKey));
      }
    }
  }, 90_000);
});
