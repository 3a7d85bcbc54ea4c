import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { INestApplication } from '@nestjs/common';
import { Redis } from 'ioredis';
import {
  metricValue,
  readiness,
  startApp,
  TestBroker,
  waitUntilReady,
} from './support/test-app.js';
import { TestRedisServer } from './support/redis.server.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { waitFor } from './support/wait-for.js';

const QUEUE = 'ledger.transactions';

describe("a Redis outage (a Redis server of the test's own, killed and restarted)", () => {
  let vhost: TestVhost;
  let redisServer: TestRedisServer;
  let app: INestApplication;
  let broker: TestBroker;

  beforeAll(async () => {
    vhost = await TestVhost.create('outage');
    redisServer = await TestRedisServer.start();
    app = await startApp({ AMQP_URL: vhost.url(), REDIS_URL: redisServer.url });
    await waitUntilReady(app);
    broker = await TestBroker.connect(vhost.url());
  });

  afterAll(async () => {
    await broker?.close();
    await app?.close();
    await redisServer?.stop();
    await vhost?.delete();
  });

  it('stops intake and reports not-ready, loses nothing, and resumes when Redis returns', async () => {
    const redis = (): Redis => new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    const before = await metricValue('messages_processed_total', {
      queue: QUEUE,
      outcome: 'dead_letter',
    });

    await redisServer.stop();
    const down = await waitFor('readiness 503 with Redis down', async () => {
      const r = await readiness(app);
      return r.status === 503 ? r : undefined;
    });
    expect(down.body.details.redis.status).toBe('down');
    expect(await metricValue('redis_connected')).toBe(0);

    // published during the outage: it must wait in the queue, not be dead-lettered or spun on
    await broker.publishJson(
      'transaction.created',
      { accountId: 'outage-acc', amountCents: 99 },
      { messageId: randomUUID() },
    );
    await waitFor('message waiting in the queue', async () => (await broker.depth(QUEUE)) === 1);
    expect(await broker.depth(`${QUEUE}.dlq`)).toBe(0);

    await redisServer.start();
    await waitUntilReady(app);
    const client = redis();
    try {
      await waitFor(
        'balance applied after recovery',
        async () => (await client.get('ledger:balance:outage-acc')) === '99',
      );
    } finally {
      client.disconnect();
    }
    expect(await broker.depth(`${QUEUE}.dlq`)).toBe(0);
    expect(
      await metricValue('messages_processed_total', { queue: QUEUE, outcome: 'dead_letter' }),
    ).toBe(before);
  });
});
