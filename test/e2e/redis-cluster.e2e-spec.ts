import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Injectable, Module, type INestApplication } from '@nestjs/common';
import { Cluster } from 'ioredis';
import { type MessageContext, MessageHandler, RedisCommit } from '../../src/messaging/index.js';
import { slotTagOf } from '../../src/redis/key-slot.js';
import { RedisConnection } from '../../src/redis/redis.connection.js';
import { TestRedisCluster } from '../cluster/support/redis.cluster.js';
import { metricValue, startApp, TestBroker, waitUntilReady } from './support/test-app.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { waitFor } from './support/wait-for.js';

const PASSWORD = `pw-${randomBytes(6).toString('hex')}`;

/**
 * A `redis-commit` handler that builds its effect key from `ctx.lockKey`: on a Redis Cluster the
 * lock key starts with its slot's hash tag, so the key lands in the slot of the commit's own
 * keys. `tally.wrong` names a key of no particular slot: refused before Redis is asked.
 */
@Injectable()
class TallyHandler {
  private readonly commit: RedisCommit;
  constructor(redis: RedisConnection) {
    this.commit = new RedisCommit(redis.client, 'Tally', {
      numberOfKeys: 1,
      lua: `return redis.call('INCRBY', keys[1], args[1])`,
    });
  }

  @MessageHandler({
    exchange: 'tally',
    routingKey: 'tally.*',
    queue: 'tally.counts',
    lockKey: (p: { key: string }) => `tally:${p.key}`,
    effect: { kind: 'redis-commit' },
    retry: { maxAttempts: 2, initialDelayMs: 100, maxDelayMs: 100 },
  })
  async count(p: { key: string; wrong?: boolean }, ctx: MessageContext): Promise<void> {
    const key = p.wrong ? `tally:count:${p.key}` : `tally:count:${ctx.lockKey ?? ''}`;
    await this.commit.run(ctx, [key], [1]);
  }
}

/** A `marker-after` handler locked per key: the lock script checks the marker in its slot. */
@Injectable()
class MarkerHandler {
  readonly runs = new Map<string, number>();

  @MessageHandler({
    exchange: 'tally',
    routingKey: 'marker.*',
    queue: 'tally.markers',
    lockKey: (p: { key: string }) => `marker:${p.key}`,
  })
  handle(_p: { key: string }, ctx: MessageContext): void {
    const id = ctx.messageId ?? '';
    this.runs.set(id, (this.runs.get(id) ?? 0) + 1);
  }
}

@Module({ providers: [TallyHandler, MarkerHandler] })
class ClusterHandlersModule {}

/**
 * The service on a Redis Cluster of the test's own (three masters, a replica each;
 * `REDIS_URL=redis+cluster://…`): the ledger (its commit's keys in the balance's slot, by
 * `effect.slotKey`), a commit that builds its keys from `ctx.lockKey`, a marker-after handler
 * with a lock, and a commit whose key is in another slot (dead-lettered, with a message that
 * says how to fix it).
 */
describe('on a Redis Cluster (real RabbitMQ, a 3-master Redis Cluster of the test’s own)', () => {
  let cluster: TestRedisCluster;
  let vhost: TestVhost;
  let app: INestApplication;
  let broker: TestBroker;
  let redis: Cluster;
  const run = randomBytes(3).toString('hex');

  beforeAll(async () => {
    cluster = await TestRedisCluster.start(PASSWORD);
    vhost = await TestVhost.create('redis-cluster');
    app = await startApp(
      { AMQP_URL: vhost.url(), REDIS_URL: cluster.url, EFFECT_JOURNAL_MAXLEN: '100' },
      [ClusterHandlersModule],
    );
    await waitUntilReady(app);
    broker = await TestBroker.connect(vhost.url());
    redis = new Cluster(
      cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
      { redisOptions: { password: PASSWORD, protocol: 2 } },
    );
  }, 90_000);

  afterAll(async () => {
    await broker?.close();
    await app?.close();
    redis?.disconnect();
    await vhost?.delete();
    await cluster?.stop();
  }, 60_000);

  it('applies the ledger once per transaction, accounts spread over every master', async () => {
    const accounts = Array.from({ length: 40 }, (_, i) => `rc-${run}-${i}`);
    const expected = new Map<string, number>();
    let published = 0;
    for (let i = 0; i < 400; i++) {
      const accountId = accounts[i % accounts.length];
      const amountCents = (i % 7) + 1;
      const messageId = `rc-${run}-tx-${i}`;
      // every tenth transaction published twice: applied once
      const copies = i % 10 === 0 ? 2 : 1;
      for (let c = 0; c < copies; c++) {
        await broker.publishJson('transaction.created', { accountId, amountCents }, { messageId });
        published++;
      }
      expected.set(accountId, (expected.get(accountId) ?? 0) + amountCents);
    }
    const settled = async (): Promise<number> =>
      (await metricValue('messages_processed_total', {
        queue: 'ledger.transactions',
        outcome: 'ack',
      })) +
      (await metricValue('messages_processed_total', {
        queue: 'ledger.transactions',
        outcome: 'duplicate',
      }));
    await waitFor(`${published} settled`, async () => (await settled()) >= published, 60_000);
    for (const accountId of accounts) {
      expect(Number(await redis.get(`ledger:balance:${accountId}`))).toBe(expected.get(accountId));
    }
    expect(
      await metricValue('messages_processed_total', {
        queue: 'ledger.transactions',
        outcome: 'duplicate',
      }),
    ).toBe(40);
    // the balances live on all three masters: one slot per account, not one hot slot
    const masters = new Set(
      await Promise.all(
        accounts.map(async (a) => {
          const slot = Number(await redis.call('CLUSTER', 'KEYSLOT', `ledger:balance:${a}`));
          return cluster.masterOf(slot);
        }),
      ),
    );
    expect(masters.size).toBe(3);
  }, 90_000);

  it('commits keys built from ctx.lockKey, and runs a locked marker-after handler once', async () => {
    for (let i = 0; i < 60; i++) {
      await broker.publish('tally', 'tally.add', JSON.stringify({ key: `k${i % 6}` }), {
        contentType: 'application/json',
        messageId: `rc-${run}-t-${i}`,
      });
      await broker.publish('tally', 'marker.run', JSON.stringify({ key: `m${i % 6}` }), {
        contentType: 'application/json',
        messageId: `rc-${run}-m-${i % 30}`,
      });
    }
    await waitFor('60 tallies and 60 markers settled', async () => {
      const counted = await metricValue('messages_processed_total', {
        queue: 'tally.counts',
        outcome: 'ack',
      });
      const marked =
        (await metricValue('messages_processed_total', {
          queue: 'tally.markers',
          outcome: 'ack',
        })) +
        (await metricValue('messages_processed_total', {
          queue: 'tally.markers',
          outcome: 'duplicate',
        }));
      return counted >= 60 && marked >= 60;
    });
    // each key's count under its tagged lock key: 10 per key, 60 in all
    let total = 0;
    for (let k = 0; k < 6; k++) {
      const tag = slotTagOf(`tally:k${k}`);
      const value = Number(await redis.get(`tally:count:${tag}tally:k${k}`));
      expect(value).toBe(10);
      total += value;
    }
    expect(total).toBe(60);
    // 30 distinct messageIds published twice each: each ran once
    const runs = app.get(MarkerHandler).runs;
    expect(runs.size).toBe(30);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
  }, 60_000);

  it('dead-letters at once a commit whose key is in another slot, saying how to fix it', async () => {
    await broker.publish('tally', 'tally.add', JSON.stringify({ key: 'stray', wrong: true }), {
      contentType: 'application/json',
      messageId: `rc-${run}-wrong`,
    });
    const [dead] = await broker.drain('tally.counts.dlq', 1);
    const headers = dead.properties.headers ?? {};
    expect(headers['x-exception-type']).toBe('NonRetryableError');
    expect(String(headers['x-exception-message'])).toContain('effect.slotKey');
    expect(headers['x-attempts']).toBe(1);
    expect(await redis.exists('tally:count:stray')).toBe(0);
  }, 30_000);
});
