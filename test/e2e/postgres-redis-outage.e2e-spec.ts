import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import type { INestApplication } from '@nestjs/common';
import { TestDatabase } from './support/postgres.database.js';
import { TestRedisServer } from './support/redis.server.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import {
  metricValue,
  readiness,
  startApp,
  TestBroker,
  waitUntilReady,
} from './support/test-app.js';
import { waitFor } from './support/wait-for.js';

const QUEUE = 'ledger.transactions';

describe("the ledger on PostgreSQL through a Redis outage (a Redis server of the test's own)", () => {
  let vhost: TestVhost;
  let db: TestDatabase;
  let redisServer: TestRedisServer;
  let app: INestApplication;
  let broker: TestBroker;
  const run = randomBytes(4).toString('hex');

  beforeAll(async () => {
    vhost = await TestVhost.create('pg-redis-outage');
    db = await TestDatabase.create('redis_outage');
    redisServer = await TestRedisServer.start();
    app = await startApp({
      AMQP_URL: vhost.url(),
      REDIS_URL: redisServer.url,
      DATABASE_URL: db.url(),
      LEDGER_STORE: 'postgres',
    });
    await waitUntilReady(app);
    broker = await TestBroker.connect(vhost.url());
  });

  afterAll(async () => {
    await broker?.close();
    await app?.close();
    await redisServer?.stop();
    await db?.drop();
    await vhost?.delete();
  });

  it('keeps consuming: its lock and marker live in PostgreSQL, not in Redis', async () => {
    await redisServer.stop();
    await waitFor('Redis seen down', async () => (await metricValue('redis_connected')) === 0);
    // readiness still says Redis is down: the instance has it configured
    const ready = await readiness(app);
    expect(ready.body.details.redis.status).toBe('down');
    const accountId = `pg-outage-${run}`;
    for (let i = 1; i <= 20; i++) {
      await broker.publishJson(
        'transaction.created',
        { accountId, amountCents: i },
        { messageId: randomUUID() },
      );
    }
    await waitFor('all 20 applied in PostgreSQL', async () => {
      const [row] = await db.query<{ balance_cents: string }>(
        'SELECT balance_cents FROM ledger_balances WHERE account_id = $1',
        [accountId],
      );
      return Number(row?.balance_cents ?? 0) === 210;
    });
    expect(await broker.consumerCount(QUEUE)).toBe(1);
    // a commit shows in PostgreSQL before the service has read its reply and counted the ack
    const acked = (): Promise<number> =>
      metricValue('messages_processed_total', { queue: QUEUE, outcome: 'ack' });
    await waitFor('20 acks counted', async () => (await acked()) >= 20);
    expect(await acked()).toBe(20);
    expect(await broker.depth(`${QUEUE}.dlq`)).toBe(0);
  });
});
