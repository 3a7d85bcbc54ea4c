import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import type { INestApplication } from '@nestjs/common';
import { Redis } from 'ioredis';
import { MessagePublisher, UnroutableMessageError } from '../../src/messaging/index.js';
import {
  deleteKeys,
  type HealthBody,
  http,
  metricValue,
  readiness,
  startApp,
  TestBroker,
  waitUntilReady,
} from './support/test-app.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { waitFor } from './support/wait-for.js';

const QUEUE = 'ledger.transactions';
const DLQ = 'ledger.transactions.dlq';

describe('ledger service (real RabbitMQ and Redis)', () => {
  let vhost: TestVhost;
  let app: INestApplication;
  let broker: TestBroker;
  let redis: Redis;
  const run = randomBytes(4).toString('hex');
  const account = (n: number | string): string => `e2e-${run}-${n}`;
  const balance = async (accountId: string): Promise<number> =>
    Number((await redis.get(`ledger:balance:${accountId}`)) ?? '0');
  const counter = (outcome: string): Promise<number> =>
    metricValue('messages_processed_total', { queue: QUEUE, outcome });
  /**
   * The outcome's count once it reached `atLeast`. An effect (a balance, a dead letter in the DLQ)
   * is visible to the test before the service has read the reply that settles it and counted it.
   */
  const counted = async (outcome: string, atLeast: number): Promise<number> => {
    await waitFor(`${atLeast} ${outcome}`, async () => (await counter(outcome)) >= atLeast);
    return counter(outcome);
  };

  beforeAll(async () => {
    vhost = await TestVhost.create('ledger');
    redis = new Redis('redis://127.0.0.1:6379');
    app = await startApp({ AMQP_URL: vhost.url(), MESSAGE_MAX_BYTES: '2048' });
    await waitUntilReady(app);
    broker = await TestBroker.connect(vhost.url());
  });

  afterAll(async () => {
    await broker?.close();
    await app?.close();
    await deleteKeys(redis, [
      `ledger:balance:e2e-${run}-*`,
      `mp:lock:account:e2e-${run}-*`,
      `mp:fence:account:e2e-${run}-*`,
      'mp:processed:ledger.transactions:*',
      // a lock taken on the (invalid) account of the schema-invalid message, if any
      'mp:lock:account:bad id!',
      'mp:fence:account:bad id!',
    ]);
    redis.disconnect();
    await vhost?.delete();
  });

  it('applies a published transaction to the account balance', async () => {
    const accountId = account('apply');
    const acked = await counter('ack');
    await broker.publishJson(
      'transaction.created',
      { accountId, amountCents: 1250 },
      { messageId: randomUUID() },
    );
    await broker.publishJson(
      'transaction.created',
      { accountId, amountCents: -250 },
      { messageId: randomUUID() },
    );
    await waitFor('balance 1000', async () => (await balance(accountId)) === 1000);
    expect(await counted('ack', acked + 2)).toBe(acked + 2);
  });

  it('applies a messageId published three times once, counting two duplicates', async () => {
    const accountId = account('dup');
    const messageId = randomUUID();
    const [acked, duplicates] = [await counter('ack'), await counter('duplicate')];
    for (let i = 0; i < 3; i++) {
      await broker.publishJson(
        'transaction.created',
        { accountId, amountCents: 700 },
        { messageId },
      );
    }
    await waitFor(
      '3 settlements',
      async () => (await counter('ack')) + (await counter('duplicate')) >= acked + duplicates + 3,
    );
    expect(await balance(accountId)).toBe(700);
    expect(await counter('ack')).toBe(acked + 1);
    expect(await counter('duplicate')).toBe(duplicates + 2);
  });

  it.each([
    [
      'not JSON',
      Buffer.from('{oops'),
      { contentType: 'application/json' },
      'MessageDecodeError',
      'not-json',
    ],
    [
      'wrong content type',
      Buffer.from('{"accountId":"a","amountCents":1}'),
      { contentType: 'text/plain' },
      'MessageDecodeError',
      'content-type',
    ],
    [
      'oversize',
      Buffer.from(JSON.stringify({ accountId: 'a', amountCents: 1, pad: 'x'.repeat(4096) })),
      { contentType: 'application/json' },
      'MessageDecodeError',
      'too-large',
    ],
    [
      'schema-invalid',
      Buffer.from('{"accountId":"bad id!","amountCents":1.5}'),
      { contentType: 'application/json' },
      'MessageValidationError',
      'schema-invalid',
    ],
    [
      'empty body',
      Buffer.alloc(0),
      { contentType: 'application/json' },
      'MessageDecodeError',
      'empty-body',
    ],
    [
      'missing messageId',
      Buffer.from('{"accountId":"a","amountCents":1}'),
      { contentType: 'application/json', messageId: undefined },
      'MissingMessageIdError',
      'missing-message-id',
    ],
  ] as const)(
    'dead-letters a message that is %s, with its reason headers',
    async (_kind, body, props, type, reason) => {
      const messageId = 'messageId' in props ? undefined : randomUUID();
      const deadLettered = await counter('dead_letter');
      await broker.publish('ledger', 'transaction.created', body, {
        ...props,
        messageId,
        correlationId: `corr-${run}`,
      });
      const [dead] = await broker.drain(DLQ, 1);
      const headers = dead.properties.headers ?? {};
      expect(headers['x-exception-type']).toBe(type);
      expect(String(headers['x-exception-message'])).toContain(reason);
      expect(headers['x-original-exchange']).toBe('ledger');
      expect(headers['x-original-routing-key']).toBe('transaction.created');
      expect(headers['x-handler']).toBe('LedgerHandler.apply');
      expect(headers['x-attempts']).toBe(1);
      expect(Number.isNaN(Date.parse(String(headers['x-failed-at'])))).toBe(false);
      expect(dead.properties.correlationId).toBe(`corr-${run}`);
      expect(dead.content.equals(body)).toBe(true);
      if (messageId) expect(dead.properties.messageId).toBe(messageId);
      expect(await counted('dead_letter', deadLettered + 1)).toBe(deadLettered + 1);
      expect((await readiness(app)).status).toBe(200);
    },
  );

  it('keeps a message without a messageId whose dead-letter copy cannot be routed, until it can', async () => {
    const requeued = await counter('requeue');
    const deadLettered = await counter('dead_letter');
    // an operator removed the dead-letter queue's binding: the copy would go nowhere
    await broker.channel.unbindQueue(DLQ, 'ledger.dlx', QUEUE);
    try {
      await broker.publish('ledger', 'transaction.created', '{"accountId":"a","amountCents":1}', {
        contentType: 'application/json',
        correlationId: `corr-unroutable-${run}`,
      });
      // the copy returned unroutable: the original is kept and handed back, again and again
      await waitFor('two requeues', async () => (await counter('requeue')) >= requeued + 2);
      expect(await counter('dead_letter')).toBe(deadLettered);
      expect(await broker.depth(DLQ)).toBe(0);
    } finally {
      await broker.channel.bindQueue(DLQ, 'ledger.dlx', QUEUE);
    }
    const [dead] = await broker.drain(DLQ, 1);
    expect(dead.properties.correlationId).toBe(`corr-unroutable-${run}`);
    expect(dead.properties.headers?.['x-exception-type']).toBe('MissingMessageIdError');
    expect(await counted('dead_letter', deadLettered + 1)).toBe(deadLettered + 1);
  });

  it('dead-letters a message whose routing key reached the queue but matches no handler', async () => {
    const messageId = randomUUID();
    // the default exchange routes by queue name: "ledger.transactions" does not match transaction.*
    await broker.publish('', QUEUE, JSON.stringify({ accountId: account('x'), amountCents: 1 }), {
      contentType: 'application/json',
      messageId,
    });
    const [dead] = await broker.drain(DLQ, 1);
    expect(dead.properties.messageId).toBe(messageId);
    expect(dead.properties.headers?.['x-exception-type']).toBe('NoHandlerError');
    expect(String(dead.properties.headers?.['x-exception-message'])).toContain('no-handler');
    expect(dead.properties.headers?.['x-handler']).toBe('none');
  });

  it('keeps metric series bounded under a flood of unknown routing keys', async () => {
    const seriesOf = async (): Promise<string[]> =>
      (await http(app).get('/metrics')).text
        .split('\n')
        .filter((line) => /^(messages_|message_processing)/.test(line))
        .map((line) => line.replace(/ [^ ]+$/, ''));
    // one dead letter with handler="none" first, so every series the flood could touch exists
    await broker.publish('', QUEUE, 'not json', {
      messageId: randomUUID(),
      headers: { 'x-original-routing-key': 'flood.first' },
    });
    await broker.drain(DLQ, 1);
    const before = await seriesOf();
    for (let i = 0; i < 50; i++) {
      await broker.publish('', QUEUE, JSON.stringify({ accountId: account('f'), amountCents: 1 }), {
        contentType: 'application/json',
        messageId: randomUUID(),
        headers: { 'x-original-routing-key': `flood.${randomUUID()}` },
      });
    }
    expect(await broker.drain(DLQ, 50)).toHaveLength(50);
    expect(await seriesOf()).toEqual(before);
  });

  it('rejects an unroutable publish and confirms a routable one', async () => {
    const publisher = app.get(MessagePublisher);
    const failed = await metricValue('messages_published_total', {
      exchange: 'ledger',
      outcome: 'failed',
    });
    await expect(
      publisher.publish('ledger', 'nobody.listens', { hello: 1 }),
    ).rejects.toBeInstanceOf(UnroutableMessageError);
    expect(
      await metricValue('messages_published_total', { exchange: 'ledger', outcome: 'failed' }),
    ).toBe(failed + 1);
    const accountId = account('pub');
    const receipt = await publisher.publish('ledger', 'transaction.created', {
      accountId,
      amountCents: 5,
    });
    expect(receipt.messageId).toMatch(/^[0-9a-f-]{36}$/);
    await waitFor('balance 5', async () => (await balance(accountId)) === 5);
  });

  it('reconnects after the broker closes its connections and keeps consuming', async () => {
    const received = await metricValue('messages_received_total', { queue: QUEUE });
    const reconnects = await metricValue('amqp_reconnects_total');
    await vhost.closeAllConnections();
    await waitFor(
      'readiness 503 after the forced close',
      async () => (await readiness(app)).status === 503,
      10_000,
      10,
    );
    await waitUntilReady(app);
    expect(await metricValue('amqp_reconnects_total')).toBe(reconnects + 1);
    const accountId = account('reconnect');
    await broker.close();
    broker = await TestBroker.connect(vhost.url());
    await broker.publishJson(
      'transaction.created',
      { accountId, amountCents: 42 },
      { messageId: randomUUID() },
    );
    await waitFor('balance 42 after reconnect', async () => (await balance(accountId)) === 42);
    // every earlier message was settled before the close: only the new one was delivered
    expect(await metricValue('messages_received_total', { queue: QUEUE })).toBe(received + 1);
    expect(await broker.depth(QUEUE)).toBe(0);
  });

  it('serves liveness, readiness and metrics', async () => {
    const live = await http(app).get('/health/live');
    expect(live.status).toBe(200);
    expect((live.body as HealthBody).details.eventLoop).toMatchObject({ status: 'up' });
    const ready = await readiness(app);
    expect(ready.status).toBe(200);
    expect(ready.body.details.amqp.consumers).toEqual([{ queue: QUEUE, attached: true }]);
    expect(ready.body.details.redis.status).toBe('up');
    const metrics = await http(app).get('/metrics');
    expect(metrics.status).toBe(200);
    for (const name of [
      'messages_received_total',
      'messages_processed_total',
      'message_processing_duration_seconds_bucket',
      'messages_in_flight',
      'messages_published_total',
      'amqp_connected 1',
      'redis_connected 1',
      'message_publish_confirm_duration_seconds_bucket',
      'amqp_reconnects_total',
      'redis_reconnects_total 0',
      'lock_acquire_duration_seconds_bucket{le="0.001",outcome="acquired"}',
      'lock_contention_total',
      'locks_held 0',
      'process_cpu_user_seconds_total',
    ]) {
      expect(metrics.text).toContain(name);
    }
    expect(metrics.text).not.toContain('guest:guest');
  });
});
