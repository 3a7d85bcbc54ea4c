import type { Channel, Options } from 'amqplib';
import type { QueueBinding } from '../../../src/messaging/message-handler.interfaces';
import { TopologyConflictError } from '../../../src/messaging/messaging.errors';
import {
  QUORUM_DELIVERY_LIMIT,
  MAX_UNSETTLED_DELIVERIES,
} from '../../../src/messaging/messaging.constants';
import {
  asTopologyConflict,
  declareTopology,
  delayTierArguments,
  queueArguments,
  topologyNames,
} from '../../../src/messaging/queue.topology';

const QUEUE_TYPE_CONFLICT =
  `Channel closed by server: 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - ` +
  `inequivalent arg 'x-queue-type' for queue 'ledger.transactions' in vhost '/': received the ` +
  `value 'quorum' of type 'longstr' but current is none"`;

const EXCHANGE_TYPE_CONFLICT =
  `Channel closed by server: 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - ` +
  `inequivalent arg 'type' for exchange 'ledger' in vhost '/': received 'topic' but current is 'direct'"`;

type Call =
  | {
      op: 'assertExchange';
      exchange: string;
      type: string;
      options: Options.AssertExchange | undefined;
    }
  | { op: 'assertQueue'; queue: string; options: Options.AssertQueue | undefined }
  | { op: 'bindQueue'; queue: string; source: string; pattern: string };

/** The declaring part of an amqplib channel; records each call and can fail like the broker. */
class FakeChannel {
  readonly calls: Call[] = [];
  /** Reject the call whose index is this (0-based) with `failure`. */
  failAt: number | undefined;
  failure: Error = new Error(QUEUE_TYPE_CONFLICT);

  assertExchange(exchange: string, type: string, options?: Options.AssertExchange) {
    return this.record({ op: 'assertExchange', exchange, type, options }, { exchange });
  }

  assertQueue(queue: string, options?: Options.AssertQueue) {
    return this.record(
      { op: 'assertQueue', queue, options },
      { queue, messageCount: 0, consumerCount: 0 },
    );
  }

  bindQueue(queue: string, source: string, pattern: string) {
    return this.record({ op: 'bindQueue', queue, source, pattern }, {});
  }

  asChannel(): Channel {
    return this as unknown as Channel;
  }

  private record<T>(call: Call, reply: T): Promise<T> {
    const index = this.calls.length;
    this.calls.push(call);
    return index === this.failAt ? Promise.reject(this.failure) : Promise.resolve(reply);
  }
}

const binding: QueueBinding = {
  queue: 'ledger.transactions',
  exchange: 'ledger',
  routingKeys: ['transaction.*', 'refund.#'],
  prefetch: 50,
  handlers: [],
  retryTiers: [1_000, 2_000, 4_000, 8_000],
};

/** The same queue with no handler that retries. */
const withoutRetries: QueueBinding = { ...binding, retryTiers: [] };

/** What a quorum delay tier of `ledger.transactions` is declared with. */
const QUORUM_TIER: Options.AssertQueue = {
  durable: true,
  arguments: {
    'x-queue-type': 'quorum',
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': 'ledger.transactions',
    'x-dead-letter-strategy': 'at-least-once',
    'x-overflow': 'reject-publish',
  },
};

describe('topologyNames', () => {
  it('derives the dead-letter exchange and queue names of DESIGN §4', () => {
    expect(topologyNames(binding)).toEqual({
      exchange: 'ledger',
      deadLetterExchange: 'ledger.dlx',
      queue: 'ledger.transactions',
      deadLetterQueue: 'ledger.transactions.dlq',
    });
  });
});

describe('asTopologyConflict', () => {
  it("names the queue and the argument of RabbitMQ's 406 for x-queue-type", () => {
    const conflict = asTopologyConflict(new Error(QUEUE_TYPE_CONFLICT));
    expect(conflict).toBeInstanceOf(TopologyConflictError);
    expect(conflict?.resource).toBe('ledger.transactions');
    expect(conflict?.argument).toBe('x-queue-type');
    expect(conflict?.message).toContain('"ledger.transactions"');
    expect(conflict?.message).toContain('"x-queue-type"');
    expect(conflict?.message).toContain('AMQP_QUEUE_TYPE');
  });

  it('keeps the broker text after PRECONDITION_FAILED, without the closing quote', () => {
    const conflict = asTopologyConflict(new Error(QUEUE_TYPE_CONFLICT));
    expect(conflict?.brokerMessage).toBe(
      "inequivalent arg 'x-queue-type' for queue 'ledger.transactions' in vhost '/': received the value 'quorum' of type 'longstr' but current is none",
    );
  });

  it('names the exchange and the "type" argument of an exchange type conflict', () => {
    const conflict = asTopologyConflict(new Error(EXCHANGE_TYPE_CONFLICT));
    expect(conflict).toBeInstanceOf(TopologyConflictError);
    expect(conflict?.resource).toBe('ledger');
    expect(conflict?.argument).toBe('type');
    expect(conflict?.brokerMessage).toBe(
      "inequivalent arg 'type' for exchange 'ledger' in vhost '/': received 'topic' but current is 'direct'",
    );
  });

  it.each<[string, unknown]>([
    ['an unrelated error', new Error('Channel closed by server: 404 (NOT-FOUND)')],
    ['a connection loss', new Error('Connection closed: 320 (CONNECTION-FORCED)')],
    ['a string carrying the 406 text', QUEUE_TYPE_CONFLICT],
    ['undefined', undefined],
  ])('is undefined for %s', (_label, error) => {
    expect(asTopologyConflict(error)).toBeUndefined();
  });
});

describe('queueArguments', () => {
  it('declares a durable quorum work queue with an explicit delivery limit and no dead-letter exchange', () => {
    expect(queueArguments('quorum')).toEqual({
      durable: true,
      arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': QUORUM_DELIVERY_LIMIT },
    });
  });

  it('declares a classic work queue with its type only (classic queues have no delivery limit)', () => {
    expect(queueArguments('classic')).toEqual({
      durable: true,
      arguments: { 'x-queue-type': 'classic' },
    });
  });

  it('sets the broker limit above the service poison guard, so the service dead-letters first', () => {
    expect(QUORUM_DELIVERY_LIMIT).toBe(20);
    expect(QUORUM_DELIVERY_LIMIT).toBeGreaterThan(MAX_UNSETTLED_DELIVERIES);
  });
});

describe('delayTierArguments', () => {
  it('dead-letters expired quorum tier messages through the default exchange, at least once', () => {
    expect(delayTierArguments('ledger.transactions', 'quorum')).toEqual(QUORUM_TIER);
  });

  it('dead-letters expired classic tier messages back into the queue (no quorum-only arguments)', () => {
    expect(delayTierArguments('ledger.transactions', 'classic')).toEqual({
      durable: true,
      arguments: {
        'x-queue-type': 'classic',
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': 'ledger.transactions',
      },
    });
  });
});

describe('declareTopology', () => {
  it('declares exchanges, dead-letter queue, queue, bindings and the delay tiers in order', async () => {
    const channel = new FakeChannel();
    await declareTopology(channel.asChannel(), binding, 'quorum');
    expect(channel.calls).toEqual([
      { op: 'assertExchange', exchange: 'ledger', type: 'topic', options: { durable: true } },
      { op: 'assertExchange', exchange: 'ledger.dlx', type: 'direct', options: { durable: true } },
      {
        op: 'assertQueue',
        queue: 'ledger.transactions.dlq',
        options: { durable: true, arguments: { 'x-queue-type': 'quorum' } },
      },
      {
        op: 'bindQueue',
        queue: 'ledger.transactions.dlq',
        source: 'ledger.dlx',
        pattern: 'ledger.transactions',
      },
      {
        op: 'assertQueue',
        queue: 'ledger.transactions',
        options: {
          durable: true,
          arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 20 },
        },
      },
      { op: 'bindQueue', queue: 'ledger.transactions', source: 'ledger', pattern: 'transaction.*' },
      { op: 'bindQueue', queue: 'ledger.transactions', source: 'ledger', pattern: 'refund.#' },
      { op: 'assertQueue', queue: 'ledger.transactions.retry.1', options: QUORUM_TIER },
      { op: 'assertQueue', queue: 'ledger.transactions.retry.2', options: QUORUM_TIER },
      { op: 'assertQueue', queue: 'ledger.transactions.retry.3', options: QUORUM_TIER },
      { op: 'assertQueue', queue: 'ledger.transactions.retry.4', options: QUORUM_TIER },
    ]);
  });

  it('gives the work queue no dead-letter exchange: failed messages are copied by the service', async () => {
    const channel = new FakeChannel();
    await declareTopology(channel.asChannel(), binding, 'quorum');
    const workQueue = channel.calls.find(
      (c) => c.op === 'assertQueue' && c.queue === 'ledger.transactions',
    );
    const args =
      workQueue?.op === 'assertQueue'
        ? (workQueue.options?.arguments as Record<string, unknown>)
        : {};
    expect(args).not.toHaveProperty('x-dead-letter-exchange');
    expect(args).not.toHaveProperty('x-dead-letter-routing-key');
  });

  it('declares one delay tier per retry tier of the binding and none without retries', async () => {
    const tierQueues = async (b: QueueBinding): Promise<string[]> => {
      const channel = new FakeChannel();
      await declareTopology(channel.asChannel(), b, 'quorum');
      return channel.calls.flatMap((c) =>
        c.op === 'assertQueue' && c.queue.includes('.retry.') ? [c.queue] : [],
      );
    };
    expect(await tierQueues({ ...binding, retryTiers: [500] })).toEqual([
      'ledger.transactions.retry.1',
    ]);
    expect(await tierQueues(withoutRetries)).toEqual([]);
  });

  it('declares every queue with the configured queue type', async () => {
    const channel = new FakeChannel();
    await declareTopology(channel.asChannel(), binding, 'classic');
    const queueTypes = channel.calls.flatMap((c) =>
      c.op === 'assertQueue'
        ? [(c.options?.arguments as Record<string, unknown>)['x-queue-type']]
        : [],
    );
    expect(queueTypes).toEqual(['classic', 'classic', 'classic', 'classic', 'classic', 'classic']);
  });

  it('declares classic work and tier queues without quorum-only arguments', async () => {
    const channel = new FakeChannel();
    await declareTopology(channel.asChannel(), binding, 'classic');
    const quorumOnly = ['x-delivery-limit', 'x-dead-letter-strategy', 'x-overflow'];
    for (const call of channel.calls) {
      if (call.op !== 'assertQueue') continue;
      const args = call.options?.arguments as Record<string, unknown>;
      for (const name of quorumOnly) expect(args).not.toHaveProperty(name);
    }
  });

  it('declares the same calls again when run again (idempotent setup after a reconnect)', async () => {
    const first = new FakeChannel();
    const second = new FakeChannel();
    await declareTopology(first.asChannel(), binding, 'quorum');
    await declareTopology(second.asChannel(), binding, 'quorum');
    expect(second.calls).toEqual(first.calls);
  });

  it('rejects with TopologyConflictError when the broker refuses a declaration with a 406', async () => {
    const channel = new FakeChannel();
    channel.failAt = 4; // the work queue
    const declaring = declareTopology(channel.asChannel(), binding, 'quorum');
    await expect(declaring).rejects.toBeInstanceOf(TopologyConflictError);
    await expect(declaring).rejects.toMatchObject({
      resource: 'ledger.transactions',
      argument: 'x-queue-type',
    });
    expect(channel.calls).toHaveLength(5);
  });

  it('names the delay tier when the broker refuses a tier declaration', async () => {
    const channel = new FakeChannel();
    channel.failure = new Error(
      `Channel closed by server: 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - ` +
        `inequivalent arg 'x-dead-letter-strategy' for queue 'ledger.transactions.retry.2' in ` +
        `vhost '/': received the value 'at-least-once' of type 'longstr' but current is none"`,
    );
    channel.failAt = 8; // the second tier
    const declaring = declareTopology(channel.asChannel(), binding, 'quorum');
    await expect(declaring).rejects.toMatchObject({
      resource: 'ledger.transactions.retry.2',
      argument: 'x-dead-letter-strategy',
    });
    expect(channel.calls).toHaveLength(9);
  });

  it('rethrows any other failure unchanged', async () => {
    const channel = new FakeChannel();
    const lost = new Error('Channel ended, no reply will be forthcoming');
    channel.failure = lost;
    channel.failAt = 0;
    await expect(declareTopology(channel.asChannel(), binding, 'quorum')).rejects.toBe(lost);
  });
});
