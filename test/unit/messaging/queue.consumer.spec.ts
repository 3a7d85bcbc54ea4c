import { describe, it, expect, afterEach, vi } from 'vitest';
import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { AckCoalescer } from '../../../src/messaging/ack.coalescer.js';
import type { QueueBinding } from '../../../src/messaging/message-handler.interfaces.js';
import type { ConsumerHandle } from '../../../src/messaging/message.processor.js';
import { QueueConsumer } from '../../../src/messaging/queue.consumer.js';
import { type FakeChannel, FakeConnection } from '../support/fake-channel.js';
import { RecordingLogger } from '../support/recording-logger.js';

const QUEUE = 'ledger.transactions';

const binding: QueueBinding = {
  queue: QUEUE,
  exchange: 'ledger',
  routingKeys: ['transaction.*'],
  prefetch: 50,
  handlers: [],
  retryTiers: [1_000],
};

/** How a test's deliveries are processed: acked at once unless the test holds them. */
type Processing = (
  message: ConsumeMessage,
  acks: AckCoalescer,
  consumer: ConsumerHandle,
) => Promise<void>;

function setup(processing?: Processing) {
  const connection = new FakeConnection();
  const logger = new RecordingLogger();
  const state = { brokerUp: true, missing: undefined as string | undefined };
  const settlements: AckCoalescer[] = [];
  const consumer = new QueueConsumer(binding, {
    connection: () => (state.brokerUp ? connection.asModel() : undefined),
    unavailableDependency: () => state.missing,
    process: (message, acks, handle) => {
      settlements.push(acks as AckCoalescer);
      if (processing) return processing(message, acks as AckCoalescer, handle);
      acks.ack(message);
      return Promise.resolve();
    },
    queueType: 'quorum',
    vhost: 'prod',
    logger: logger as unknown as Logger,
  });
  /** The channel that consumes (the declarations run on channels of their own). */
  const consuming = (): FakeChannel => {
    const channel = connection.consuming.at(-1);
    if (!channel) throw new Error('no consuming channel');
    return channel;
  };
  return { connection, logger, state, consumer, consuming, settlements };
}

const message = (): Omit<ConsumeMessage, 'fields'> =>
  ({ content: Buffer.from('{}'), properties: { headers: {} } }) as Omit<ConsumeMessage, 'fields'>;

/** Lets the acks of this turn go out (they are coalesced to the end of the turn). */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function conflict(queue: string, argument: string, current: string): Error {
  return new Error(
    `Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - ` +
      `inequivalent arg '${argument}' for queue '${queue}' in vhost 'prod': received the value 'x' of type 'longstr' but current is ${current}"`,
  );
}

afterEach(() => {
  vi.useRealTimers();
});

describe('QueueConsumer', () => {
  it('declares the topology on a channel of its own, then sets the prefetch and consumes', async () => {
    const { connection, consumer, consuming, logger } = setup();
    await consumer.converge();
    expect(consumer.status()).toEqual({ queue: QUEUE, attached: true });
    expect(consuming().calls.map((c) => c.op)).toEqual(['prefetch', 'consume']);
    expect(consuming().calls[0]).toEqual({ op: 'prefetch', count: 50 });
    const declaring = connection.channels.find((c) => c !== consuming());
    expect(declaring?.calls.map((c) => c.op)).toEqual([
      'assertExchange',
      'assertExchange',
      'assertQueue',
      'bindQueue',
      'assertQueue',
      'bindQueue',
      'assertQueue',
      'close',
    ]);
    expect(logger.lines.at(-1)).toMatchObject({ level: 'info', msg: 'Consumer attached' });
  });

  it('re-attaches after its channel closed with passive checks, declaring again only what is gone', async () => {
    vi.useFakeTimers();
    const { connection, consumer, consuming } = setup();
    await consumer.converge();
    const declared = connection.calls.length;
    consuming().closeByBroker();
    await vi.advanceTimersByTimeAsync(REATTACH_MAX_FIRST_MS);
    expect(consumer.status().attached).toBe(true);
    // a lookup, not a declaration: with a cluster node hung, a binding waits for net_ticktime
    const again = connection.calls.slice(declared).map((c) => c.op);
    expect(again).toEqual([
      'checkExchange',
      'checkExchange',
      'checkQueue',
      'checkQueue',
      'checkQueue',
      'close',
      'prefetch',
      'consume',
    ]);
    // the queue deleted (the broker cancels the consumer): the next check fails, all is declared
    const checked = connection.calls.length;
    connection.refuseWhen = (call) =>
      call.op === 'checkQueue' && call.queue === QUEUE
        ? Object.assign(new Error('404 (NOT-FOUND)'), { code: 404 })
        : undefined;
    consuming().cancelConsumer();
    await vi.advanceTimersByTimeAsync(REATTACH_MAX_FIRST_MS);
    expect(consumer.status().attached).toBe(true);
    const ops = connection.calls.slice(checked).map((c) => c.op);
    expect(ops.filter((op) => op === 'bindQueue')).toHaveLength(2);
    expect(ops.at(-1)).toBe('consume');
  });

  it('stays detached while a dependency is down, and attaches once it is back', async () => {
    const { connection, consumer, state } = setup();
    state.missing = 'Redis is not ready';
    await consumer.converge();
    expect(connection.channels).toEqual([]);
    expect(consumer.status().attached).toBe(false);
    state.missing = undefined;
    await consumer.converge();
    expect(consumer.status().attached).toBe(true);
  });

  it('detaches when a dependency goes away: no new deliveries, messages wait in the queue', async () => {
    const { consumer, consuming, state, logger } = setup();
    await consumer.converge();
    state.missing = 'Redis is not ready';
    await consumer.converge();
    expect(consuming().calls.at(-1)).toEqual({ op: 'cancel', consumerTag: `ctag-${QUEUE}` });
    expect(consumer.status().attached).toBe(false);
    expect(consumer.accepting()).toBe(false);
    expect(logger.codes()).toContain('CONSUMER_PAUSED');
    state.missing = undefined;
    await consumer.converge();
    expect(consumer.status().attached).toBe(true);
    expect(consuming().calls.filter((c) => c.op === 'consume')).toHaveLength(2);
  });

  it('hands each delivery to the processor with a settlement on the same channel', async () => {
    const { consumer, consuming, settlements } = setup();
    await consumer.converge();
    const first = consuming().deliver(message());
    const second = consuming().deliver(message());
    await nextTurn();
    expect(settlements).toHaveLength(2);
    expect(settlements[0]).toBe(settlements[1]);
    // acked together at the end of the turn: one multiple ack
    expect(consuming().acked).toEqual(
      new Set([first.fields.deliveryTag, second.fields.deliveryTag]),
    );
    expect(consuming().calls.filter((c) => c.op === 'ack')).toEqual([
      { op: 'ack', tag: 2, multiple: true },
    ]);
  });

  it('re-attaches on a new channel after the broker closed its channel', async () => {
    vi.useFakeTimers();
    const { connection, consumer, consuming, logger, settlements } = setup((m, acks) => {
      void m;
      void acks;
      return new Promise<void>(() => undefined);
    });
    await consumer.converge();
    const first = consuming();
    first.deliver(message());
    first.closeByBroker();
    expect(consumer.status().attached).toBe(false);
    expect(logger.codes()).toContain('CONSUMER_CHANNEL_CLOSED');
    // the delivery in flight settles nothing on the dead channel: the broker has it back
    expect(settlements[0].closed).toBe(true);
    await vi.advanceTimersByTimeAsync(REATTACH_MAX_FIRST_MS);
    expect(consumer.status().attached).toBe(true);
    expect(consuming()).not.toBe(first);
    expect(connection.consuming).toHaveLength(2);
  });

  it('re-declares and re-attaches after the broker cancelled the consumer (queue deleted, consumer timeout)', async () => {
    vi.useFakeTimers();
    const { consumer, consuming, logger } = setup();
    await consumer.converge();
    consuming().cancelConsumer();
    expect(consumer.status()).toMatchObject({ attached: false });
    expect(consumer.status().error).toMatch(/deleted, or a delivery unacknowledged past/);
    expect(logger.codes()).toContain('CONSUMER_CANCELLED');
    await vi.advanceTimersByTimeAsync(REATTACH_MAX_FIRST_MS);
    expect(consumer.status().attached).toBe(true);
    expect(consuming().calls.filter((c) => c.op === 'consume')).toHaveLength(2);
  });

  it('stays up and detached on a conflicting declaration, naming it, and tries again a minute later', async () => {
    vi.useFakeTimers();
    const { connection, consumer, logger } = setup();
    connection.onChannel = (channel, index) => {
      if (index === 1)
        channel.refuse('assertQueue', conflict(`${QUEUE}.dlq`, 'x-queue-type', "'classic'"));
    };
    await consumer.converge();
    const status = consumer.status();
    expect(status.attached).toBe(false);
    expect(status.error).toContain(`"${QUEUE}.dlq" already exists with a different "x-queue-type"`);
    expect(logger.lines.filter((l) => l.fields.code === 'TOPOLOGY_CONFLICT')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(59_000);
    expect(connection.channels).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(consumer.status().attached).toBe(true);
  });

  it('uses a queue an earlier version declared, reports the policy it needs once, and stays attached', async () => {
    const { connection, consumer, consuming, logger } = setup();
    // the DLQ exists as the earlier version declared it: refused with the new argument only
    connection.refuseWhen = (call) =>
      call.op === 'assertQueue' &&
      call.queue === `${QUEUE}.dlq` &&
      (call.options?.arguments as Record<string, unknown> | undefined)?.['x-delivery-limit'] !==
        undefined
        ? conflict(`${QUEUE}.dlq`, 'x-delivery-limit', 'none')
        : undefined;
    await consumer.converge();
    expect(consumer.status()).toMatchObject({
      attached: true,
      legacyQueues: [{ queue: `${QUEUE}.dlq`, missingArgument: 'x-delivery-limit' }],
    });
    const migration = logger.lines.filter((l) => l.fields.code === 'TOPOLOGY_MIGRATION_NEEDED');
    expect(migration).toHaveLength(1);
    expect(migration[0].msg).toContain(
      "rabbitmqctl set_policy --vhost 'prod' --apply-to queues --priority 10 'mp-migrate-ledger.transactions.dlq'",
    );
    // after the channel is lost and the consumer re-attached, the same finding is not logged again
    vi.useFakeTimers();
    const first = consuming();
    first.closeByBroker();
    await vi.advanceTimersByTimeAsync(REATTACH_MAX_FIRST_MS);
    expect(consuming()).not.toBe(first);
    expect(consumer.status()).toMatchObject({
      attached: true,
      legacyQueues: [{ queue: `${QUEUE}.dlq` }],
    });
    expect(logger.lines.filter((l) => l.fields.code === 'TOPOLOGY_MIGRATION_NEEDED')).toHaveLength(
      1,
    );
  });

  it('stop(): stops intake, waits for the deliveries in flight, then proves the acks reached the broker', async () => {
    let finish: (() => void) | undefined;
    const { consumer, consuming } = setup(
      (m, acks) =>
        new Promise<void>((resolve) => {
          finish = () => {
            acks.ack(m);
            resolve();
          };
        }),
    );
    await consumer.converge();
    const channel = consuming();
    channel.deliver(message());
    const stopping = consumer.stop(10_000);
    await nextTurn();
    expect(channel.calls.at(-1)?.op).toBe('cancel');
    expect(consumer.accepting()).toBe(false);
    finish?.();
    await expect(stopping).resolves.toBe(0);
    // the ack went out, and a round trip after it
    expect(channel.calls.slice(-2).map((c) => c.op)).toEqual(['ack', 'checkQueue']);
    expect(channel.outstanding.size).toBe(0);
  });

  it('stop(): at the deadline, aborts the signal of what still runs and says how many', async () => {
    let handle: ConsumerHandle | undefined;
    const { consumer, consuming } = setup((_m, _acks, h) => {
      handle = h;
      return new Promise<void>(() => undefined);
    });
    await consumer.converge();
    consuming().deliver(message());
    await expect(consumer.stop(20)).resolves.toBe(1);
    expect(handle?.signal.aborted).toBe(true);
    expect(handle?.stopSignal.aborted).toBe(true);
  });

  it('close(): closes its channel, and what is still in flight learns its settlement is closed', async () => {
    const { consumer, consuming, settlements } = setup(() => new Promise<void>(() => undefined));
    await consumer.converge();
    const channel = consuming();
    channel.deliver(message());
    await consumer.close();
    expect(channel.closed).toBe(true);
    expect(settlements[0].closed).toBe(true);
    await consumer.close(); // idempotent
  });
});

/** The first re-attach waits at most REATTACH_BACKOFF.initialMs (half to all of it). */
const REATTACH_MAX_FIRST_MS = 500;
