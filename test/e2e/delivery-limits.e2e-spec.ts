import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { GetMessage, XDeath } from 'amqplib';
import { Redis } from 'ioredis';
import { type CliMessaging, openCliMessaging } from '../../src/cli/cli-amqp.connection.js';
import { replayDeadLetters, type DlqReplayResult } from '../../src/cli/dlq-replay.runner.js';
import type { DlqReplayOptions } from '../../src/cli/dlq-replay.args.js';
import {
  DeliveryLimitProbe,
  DeliveryLimitProbeModule,
  LIMITS_EXCHANGE,
  TIERED_QUEUE,
  UNTIERED_QUEUE,
} from './support/delivery-limit-probe.handler.js';
import {
  deleteKeys,
  metricValue,
  readiness,
  startApp,
  TestBroker,
  waitUntilReady,
} from './support/test-app.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { waitFor } from './support/wait-for.js';

const run = promisify(execFile);
const rabbitmqctl = (...args: string[]): Promise<{ stdout: string }> =>
  run('rabbitmqctl', ['-q', ...args], { timeout: 30_000 });

const DLQ = `${TIERED_QUEUE}.dlq`;
const DLX = `${LIMITS_EXCHANGE}.dlx`;
/** RabbitMQ 4.0–4.2's default delivery limit of quorum queues that declare none. */
const RABBITMQ_4_DEFAULT_LIMIT = 20;
const REPLAY_CLI = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'dlq-replay.cli.js');

/**
 * RabbitMQ 4.0–4.2 give every quorum queue a delivery limit of 20 and count every return toward
 * it (a requeueing nack or reject, a closed channel); past it a message is dead-lettered, or
 * dropped when its queue has no dead-letter exchange. RabbitMQ 3.10 counts returns the same way
 * and honours the limit, so a `delivery-limit` policy of 20 on every queue of the vhost gives this
 * broker the 4.x default (a policy and an argument: the lower wins). Each path that once returned
 * a message to be counted is driven past that limit here.
 */
describe('RabbitMQ 4.0–4.2 delivery limits (reproduced on 3.10 by a policy): nothing dropped', () => {
  let vhost: TestVhost;
  let broker: TestBroker;
  let redis: Redis;
  const runId = randomBytes(4).toString('hex');
  const key = (label: string): string => `${runId}-${label}`;

  const publish = async (routingKey: string, job: { key: string }): Promise<string> => {
    const messageId = randomUUID();
    await broker.publish(LIMITS_EXCHANGE, routingKey, JSON.stringify(job), {
      contentType: 'application/json',
      messageId,
    });
    return messageId;
  };

  /** Holds a handler's lock key from outside, as another replica would. */
  const holdLock = async (lockKey: string): Promise<void> => {
    await redis.set(`mp:lock:limits:${lockKey}`, 'held-by-the-test', 'PX', 600_000);
  };
  const releaseLock = async (lockKey: string): Promise<void> => {
    await redis.del(`mp:lock:limits:${lockKey}`);
  };

  /** Every message in `queue`, acked (the test owns the queue while no app runs). */
  const takeAll = async (queue: string): Promise<GetMessage[]> => {
    const got: GetMessage[] = [];
    for (;;) {
      const message = await broker.channel.get(queue, { noAck: true });
      if (message === false) return got;
      got.push(message);
    }
  };

  /**
   * Looks at the first `count` messages of `queue` and returns them with a requeueing nack: each
   * one delivery more for the limit (there is no other way to read without taking).
   */
  const inspect = async (queue: string, count: number): Promise<GetMessage[]> => {
    const channel = await broker.connection.createChannel();
    try {
      const got: GetMessage[] = [];
      while (got.length < count) {
        got.push(
          await waitFor(`a message in ${queue}`, () => channel.get(queue, { noAck: false })),
        );
      }
      for (const message of got) channel.nack(message, false, true);
      await channel.checkQueue(queue);
      return got;
    } finally {
      await channel.close();
    }
  };

  /** Returns the one message of `queue` with a requeueing nack, `times` times (a flaky consumer). */
  const nackRepeatedly = async (queue: string, times: number): Promise<void> => {
    const channel = await broker.connection.createChannel();
    try {
      for (let i = 0; i < times; i++) {
        const message = await waitFor(`a message in ${queue}`, () =>
          channel.get(queue, { noAck: false }),
        );
        channel.nack(message, false, true);
      }
      await channel.checkQueue(queue); // the nacks reached the broker
    } finally {
      await channel.close();
    }
  };

  beforeAll(async () => {
    vhost = await TestVhost.create('limits');
    await rabbitmqctl(
      'set_policy',
      '-p',
      vhost.name,
      'rabbitmq-4-default-delivery-limit',
      '.*',
      JSON.stringify({ 'delivery-limit': RABBITMQ_4_DEFAULT_LIMIT }),
      '--apply-to',
      'queues',
    );
    redis = new Redis('redis://127.0.0.1:6379');
    // the service declares its topology once; each test starts what it needs
    const app = await startApp({ AMQP_URL: vhost.url() }, [DeliveryLimitProbeModule]);
    await waitUntilReady(app);
    await app.close();
    broker = await TestBroker.connect(vhost.url());
  });

  afterAll(async () => {
    await broker?.close();
    await vhost?.delete();
    await deleteKeys(redis, [
      'mp:processed:limits.*',
      `mp:lock:limits:${runId}-*`,
      `mp:fence:limits:${runId}-*`,
    ]);
    redis.disconnect();
  });

  it('control: the policy gives the DLQ a limit of 20, and 21 requeueing nacks drop a dead letter', async () => {
    const { stdout } = await rabbitmqctl('list_queues', '-p', vhost.name, 'name', 'policy');
    expect(stdout).toMatch(new RegExp(`${DLQ.replace(/\./g, '\\.')}\\s+rabbitmq-4-default`));
    await broker.publish(DLX, TIERED_QUEUE, 'doomed', { messageId: 'control' });
    await nackRepeatedly(DLQ, RABBITMQ_4_DEFAULT_LIMIT + 1);
    // what every hand-back of dlq:replay did before: the dead letter is gone, with no trace
    expect(await broker.depth(DLQ)).toBe(0);
  });

  it('moves a message past the delivery limit of Q to Q.dlq with its reason, and replays it to its handler', async () => {
    const id = await publish('job.created', { key: key('over-limit') });
    await nackRepeatedly(TIERED_QUEUE, RABBITMQ_4_DEFAULT_LIMIT + 1);
    expect(await broker.depth(TIERED_QUEUE)).toBe(0);
    const [dead] = await inspect(DLQ, 1);
    expect(dead.properties.messageId).toBe(id);
    const deaths = dead.properties.headers?.['x-death'] as XDeath[];
    expect(deaths[0]).toMatchObject({
      reason: 'delivery_limit',
      queue: TIERED_QUEUE,
      exchange: LIMITS_EXCHANGE,
      'routing-keys': ['job.created'],
    });
    // the replay finds the origin in x-death (the broker wrote no x-original-* headers)
    const { stdout } = await run(process.execPath, [
      REPLAY_CLI,
      '--queue',
      TIERED_QUEUE,
      '--exception-type',
      'delivery_limit',
      '--url',
      vhost.url(),
    ]);
    expect(stdout).toContain('moved 1, skipped 0');
    const app = await startApp({ AMQP_URL: vhost.url() }, [DeliveryLimitProbeModule]);
    try {
      const probe = app.get(DeliveryLimitProbe);
      await waitFor('the replayed message handled', () => probe.runsOf(id).length === 1);
      expect(probe.runsOf(id)[0]).toMatchObject({ queue: TIERED_QUEUE, attempt: 1 });
    } finally {
      await app.close();
    }
    expect(await broker.depth(DLQ)).toBe(0);
  });

  describe('dlq:replay', () => {
    let messaging: CliMessaging;
    const replay = (options: Partial<DlqReplayOptions>): Promise<DlqReplayResult> =>
      replayDeadLetters(
        messaging,
        {
          queue: TIERED_QUEUE,
          dlq: DLQ,
          limit: undefined,
          exceptionType: undefined,
          dryRun: false,
          direct: false,
          url: vhost.url(),
          ...options,
        },
        { signal: new AbortController().signal, publishingUser: 'guest' },
      );

    /** Dead letters as the service writes them, each with its own exception type and origin. */
    const deadLetter = async (
      messageId: string,
      type: string,
      origin: { exchange: string; routingKey: string },
    ): Promise<void> => {
      await broker.publish(DLX, TIERED_QUEUE, JSON.stringify({ key: key(messageId) }), {
        contentType: 'application/json',
        messageId,
        headers: {
          'x-exception-type': type,
          'x-exception-message': `${type} for ${messageId}`,
          'x-original-exchange': origin.exchange,
          'x-original-routing-key': origin.routingKey,
          'x-attempts': 3,
        },
      });
    };
    const snapshot = (messages: GetMessage[]): string[] =>
      messages
        .map((m) =>
          JSON.stringify([
            m.properties.messageId,
            m.content.toString(),
            m.properties.headers?.['x-exception-type'],
            m.properties.headers?.['x-exception-message'],
            m.properties.headers?.['x-original-routing-key'],
          ]),
        )
        .sort();
    const expected = (messageId: string, type: string): string =>
      JSON.stringify([
        messageId,
        JSON.stringify({ key: key(messageId) }),
        type,
        `${type} for ${messageId}`,
        'job.created',
      ]);

    beforeAll(async () => {
      messaging = await openCliMessaging(vhost.url(), 'delivery-limits-e2e');
    });

    afterAll(async () => {
      await messaging?.close();
    });

    beforeEach(async () => {
      await takeAll(DLQ);
    });

    it('loses nothing over 25 dry runs and 25 filtered runs that keep every dead letter', async () => {
      const routed = { exchange: LIMITS_EXCHANGE, routingKey: 'job.created' };
      await deadLetter('keep-1', 'KeptError', routed);
      await deadLetter('keep-2', 'KeptError', routed);
      await deadLetter('keep-3', 'OtherError', routed);
      for (let i = 0; i < 25; i++) {
        const result = await replay({ dryRun: true });
        expect(result).toMatchObject({ examined: 3, returnedUnconfirmed: 0 });
        expect(result.wouldMove).toHaveLength(3);
      }
      for (let i = 0; i < 25; i++) {
        const result = await replay({ exceptionType: 'NoSuchError' });
        expect(result).toMatchObject({ examined: 3, skipped: 3, returnedUnconfirmed: 0 });
        expect(result.moved).toEqual([]);
      }
      const after = await broker.drain(DLQ, 3);
      expect(snapshot(after)).toEqual(
        [
          expected('keep-1', 'KeptError'),
          expected('keep-2', 'KeptError'),
          expected('keep-3', 'OtherError'),
        ].sort(),
      );
      // each read of the same message is a fresh copy: nothing the broker counted follows it
      for (const message of after) {
        expect(message.properties.headers?.['x-delivery-count'] ?? 0).toBe(0);
      }
    });

    it('loses nothing over 25 runs whose replays fail (missing exchange, unroutable key)', async () => {
      await deadLetter('no-exchange', 'KeptError', {
        exchange: 'limits.deleted',
        routingKey: 'job.created',
      });
      await deadLetter('no-route', 'KeptError', {
        exchange: LIMITS_EXCHANGE,
        routingKey: 'nobody.listens',
      });
      for (let i = 0; i < 25; i++) {
        const result = await replay({});
        expect(result.moved).toEqual([]);
        expect(result.failures.map((f) => f.error.name).sort()).toEqual([
          'ExchangeNotFoundError',
          'UnroutableMessageError',
        ]);
        expect(result.returnedUnconfirmed).toBe(0);
      }
      const after = await broker.drain(DLQ, 2);
      expect(after.map((m) => String(m.properties.messageId)).sort()).toEqual([
        'no-exchange',
        'no-route',
      ]);
    });

    it('keeps what a CLI dry run and a filtered CLI run skip, and moves what the filter selects', async () => {
      const routed = { exchange: LIMITS_EXCHANGE, routingKey: 'job.created' };
      await deadLetter('cli-keep', 'KeptError', routed);
      await deadLetter('cli-move', 'FixedError', routed);
      const cli = async (...args: string[]): Promise<string> => {
        const base = [REPLAY_CLI, '--queue', TIERED_QUEUE, '--url', vhost.url()];
        const { stdout } = await run(process.execPath, [...base, ...args]);
        return stdout;
      };
      expect(await cli('--dry-run')).toContain(
        'dry run: would move 2; every message examined kept in the DLQ',
      );
      expect(await cli('--exception-type', 'FixedError')).toContain('moved 1, skipped 1');
      expect(await broker.depth(TIERED_QUEUE)).toBe(1);
      const [kept] = await broker.drain(DLQ, 1);
      expect(kept.properties.messageId).toBe('cli-keep');
      // the failure report stays with the dead letter that was kept
      expect(kept.properties.headers?.['x-exception-message']).toBe('KeptError for cli-keep');
      await takeAll(TIERED_QUEUE);
    });
  });

  it('hands one message back over 25 shutdowns without it ever counting as a delivery', async () => {
    const lockKey = key('shutdown');
    await holdLock(lockKey);
    const id = await publish('job.created', { key: lockKey });
    for (let i = 0; i < 25; i++) {
      const app = await startApp({ AMQP_URL: vhost.url(), LOCK_WAIT_MS: '600000' }, [
        DeliveryLimitProbeModule,
      ]);
      // delivered, and waiting for the key the test holds
      await waitFor('the message delivered', async () => (await broker.depth(TIERED_QUEUE)) === 0);
      await app.close();
      expect(await broker.depth(TIERED_QUEUE)).toBe(1);
      expect(await broker.depth(DLQ)).toBe(0);
    }
    await releaseLock(lockKey);
    const app = await startApp({ AMQP_URL: vhost.url() }, [DeliveryLimitProbeModule]);
    try {
      const probe = app.get(DeliveryLimitProbe);
      await waitFor('handled once the key is free', () => probe.runsOf(id).length === 1);
      // a copy each time, never returned: the broker never counted a delivery of it
      expect(probe.runsOf(id)[0]).toMatchObject({ attempt: 1, deliveryCount: undefined });
    } finally {
      await app.close();
    }
    expect(await broker.depth(DLQ)).toBe(0);
  });

  it('hands a message back on a busy key more than 20 times on a queue without delay tiers, never as poison', async () => {
    const lockKey = key('busy');
    await holdLock(lockKey);
    const app = await startApp({ AMQP_URL: vhost.url(), LOCK_WAIT_MS: '20' }, [
      DeliveryLimitProbeModule,
    ]);
    try {
      await waitUntilReady(app);
      const handedBack = (): Promise<number> =>
        metricValue('messages_processed_total', { queue: UNTIERED_QUEUE, outcome: 'requeue' });
      const start = await handedBack();
      const id = await publish('untiered.created', { key: lockKey });
      const rounds = RABBITMQ_4_DEFAULT_LIMIT + 2;
      await waitFor(
        `${rounds} hand-backs`,
        async () => (await handedBack()) - start >= rounds,
        (rounds + 5) * 1_500,
      );
      await releaseLock(lockKey);
      const probe = app.get(DeliveryLimitProbe);
      await waitFor('handled once the key is free', () => probe.runsOf(id).length === 1, 10_000);
      expect(probe.runsOf(id)[0]).toMatchObject({ attempt: 1, deliveryCount: undefined });
      expect(
        await metricValue('messages_processed_total', {
          queue: UNTIERED_QUEUE,
          outcome: 'dead_letter',
        }),
      ).toBe(0);
    } finally {
      await app.close();
    }
    expect(await broker.depth(`${UNTIERED_QUEUE}.dlq`)).toBe(0);
  }, 60_000);

  it('gets a message the guard cannot copy to the DLQ there through the broker, with its reason', async () => {
    // a user that may not publish to the dead-letter exchanges: the service's own copy fails
    const user = `limits-${runId}`;
    await rabbitmqctl('add_user', user, 'pw');
    try {
      await rabbitmqctl('set_permissions', '-p', vhost.name, user, '.*', '^(?!.*\\.dlx$).*', '.*');
      const id = await publish('job.created', { key: key('guard') });
      // lost by 15 consumers: the service's poison guard (10) dead-letters it before its handler
      await nackRepeatedly(TIERED_QUEUE, 15);
      const url = vhost.url().replace('guest:guest', `${user}:pw`);
      const app = await startApp({ AMQP_URL: url }, [DeliveryLimitProbeModule]);
      try {
        const [dead] = await broker.drain(DLQ, 1, 30_000);
        expect(dead.properties.messageId).toBe(id);
        const deaths = dead.properties.headers?.['x-death'] as XDeath[];
        expect(deaths[0]).toMatchObject({ reason: 'delivery_limit', queue: TIERED_QUEUE });
        expect(app.get(DeliveryLimitProbe).runsOf(id)).toEqual([]);
        expect(
          await metricValue('messages_published_total', { exchange: DLX, outcome: 'failed' }),
        ).toBeGreaterThan(0);
      } finally {
        await app.close();
      }
      expect(await broker.depth(TIERED_QUEUE)).toBe(0);
    } finally {
      await rabbitmqctl('delete_user', user);
    }
  }, 60_000);
});

/**
 * Queues declared by the version before the dead-letter route: redeclaring them with the new
 * arguments is refused (406), and deleting them would lose their messages.
 */
describe('queues an earlier version declared without the dead-letter route', () => {
  let vhost: TestVhost;
  let broker: TestBroker;

  const setPolicy = async (name: string, pattern: string, definition: string, priority: number) =>
    rabbitmqctl(
      'set_policy',
      '-p',
      vhost.name,
      '--apply-to',
      'queues',
      '--priority',
      String(priority),
      name,
      pattern,
      definition,
    );

  beforeAll(async () => {
    vhost = await TestVhost.create('legacy');
    await setPolicy(
      'rabbitmq-4-default-delivery-limit',
      '.*',
      JSON.stringify({ 'delivery-limit': RABBITMQ_4_DEFAULT_LIMIT }),
      0,
    );
    broker = await TestBroker.connect(vhost.url());
    const channel = broker.channel;
    await channel.assertExchange(LIMITS_EXCHANGE, 'topic', { durable: true });
    await channel.assertExchange(DLX, 'direct', { durable: true });
    await channel.assertQueue(DLQ, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await channel.bindQueue(DLQ, DLX, TIERED_QUEUE);
    await channel.assertQueue(TIERED_QUEUE, {
      durable: true,
      arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 20 },
    });
  });

  afterAll(async () => {
    await broker?.close();
    await vhost?.delete();
  });

  it('uses them as they are, says which policy each needs, and the policies give the protection', async () => {
    const app = await startApp({ AMQP_URL: vhost.url() }, [DeliveryLimitProbeModule]);
    let needed: { queue: string; missingArgument: string; policy: string }[];
    try {
      await waitUntilReady(app);
      const consumers = (await readiness(app)).body.details.amqp.consumers as {
        queue: string;
        migrationNeeded?: typeof needed;
      }[];
      needed = consumers.flatMap((c) => c.migrationNeeded ?? []);
    } finally {
      await app.close();
    }
    expect(needed.map((n) => [n.queue, n.missingArgument]).sort()).toEqual([
      [TIERED_QUEUE, 'x-dead-letter-exchange'],
      [DLQ, 'x-delivery-limit'],
    ]);
    for (const { queue, policy } of needed) {
      await setPolicy(`mp-migrate-${queue}`, `^${queue.replace(/\./g, '\\.')}$`, policy, 10);
    }
    // the work queue now dead-letters past its limit, instead of dropping
    await broker.publish(LIMITS_EXCHANGE, 'job.created', '{"key":"legacy"}', {
      contentType: 'application/json',
      messageId: 'over-limit',
    });
    const channel = await broker.connection.createChannel();
    try {
      for (let i = 0; i <= RABBITMQ_4_DEFAULT_LIMIT; i++) {
        const message = await waitFor('the message', () =>
          channel.get(TIERED_QUEUE, { noAck: false }),
        );
        channel.nack(message, false, true);
      }
      // and the DLQ keeps a dead letter past 20 returns
      for (let i = 0; i <= RABBITMQ_4_DEFAULT_LIMIT + 4; i++) {
        const message = await waitFor('the dead letter', () => channel.get(DLQ, { noAck: false }));
        expect(message.properties.messageId).toBe('over-limit');
        channel.nack(message, false, true);
      }
      await channel.checkQueue(DLQ);
    } finally {
      await channel.close();
    }
    const [dead] = await broker.drain(DLQ, 1);
    const deaths = dead.properties.headers?.['x-death'] as XDeath[];
    expect(deaths[0]).toMatchObject({ reason: 'delivery_limit', queue: TIERED_QUEUE });
  });
});
