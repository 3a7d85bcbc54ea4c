import { describe, it, expect } from 'vitest';
import type { Channel, Options } from 'amqplib';
import { type ChannelCall, FakeConnection } from '../support/fake-channel.js';
import type { QueueBinding } from '../../../src/messaging/message-handler.interfaces.js';
import { TopologyConflictError } from '../../../src/messaging/messaging.errors.js';
import {
  DEAD_LETTER_QUEUE_DELIVERY_LIMIT,
  QUORUM_DELIVERY_LIMIT,
  MAX_UNSETTLED_DELIVERIES,
} from '../../../src/messaging/messaging.constants.js';
import {
  asTopologyConflict,
  deadLetterQueueArguments,
  declareTopology,
  delayTierArguments,
  migrationCommand,
  queueArguments,
  topologyNames,
  topologyPresent,
} from '../../../src/messaging/queue.topology.js';

const QUEUE_TYPE_CONFLICT =
  `Channel closed by server: 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - ` +
  `inequivalent arg 'x-queue-type' for queue 'ledger.transactions' in vhost '/': received the ` +
  `value 'quorum' of type 'longstr' but current is none"`;

const EXCHANGE_TYPE_CONFLICT =
  `Channel closed by server: 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - ` +
  `inequivalent arg 'type' for exchange 'ledger' in vhost '/': received 'topic' but current is 'direct'"`;

/** The declarations the broker received, on every channel, in order (closes left out). */
function declarations(connection: FakeConnection): ChannelCall[] {
  return connection.calls.filter((c) => c.op !== 'close');
}

/** A connection whose channels `declareTopology` opens; `refuseCall` fails one like the broker. */
function broker(): { connection: FakeConnection; openChannel: () => Promise<Channel> } {
  const connection = new FakeConnection();
  return { connection, openChannel: () => connection.createChannel() };
}

/** The broker's refusal of a queue that exists without `argument`, which this version adds. */
function missingArgument(queue: string, argument: string, value: string): Error {
  return new Error(
    `Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - ` +
      `inequivalent arg '${argument}' for queue '${queue}' in vhost 'prod': received the value ` +
      `'${value}' of type 'longstr' but current is none"`,
  );
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
  it('derives the dead-letter exchange and queue names', () => {
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

const names = topologyNames(binding);

describe('queueArguments', () => {
  it('declares a durable quorum work queue with a delivery limit and a dead-letter route to its DLQ', () => {
    expect(queueArguments(names, 'quorum')).toEqual({
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-delivery-limit': QUORUM_DELIVERY_LIMIT,
        'x-dead-letter-exchange': 'ledger.dlx',
        'x-dead-letter-routing-key': 'ledger.transactions',
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      },
    });
  });

  it('gives a classic work queue the dead-letter route without quorum-only arguments', () => {
    expect(queueArguments(names, 'classic')).toEqual({
      durable: true,
      arguments: {
        'x-queue-type': 'classic',
        'x-dead-letter-exchange': 'ledger.dlx',
        'x-dead-letter-routing-key': 'ledger.transactions',
      },
    });
  });

  it('sets the broker limit above the service poison guard, so the service dead-letters first', () => {
    expect(QUORUM_DELIVERY_LIMIT).toBe(20);
    expect(QUORUM_DELIVERY_LIMIT).toBeGreaterThan(MAX_UNSETTLED_DELIVERIES);
  });
});

describe('deadLetterQueueArguments', () => {
  it('gives a quorum DLQ a positive limit no return count reaches (not -1: 3.x drops at once)', () => {
    expect(deadLetterQueueArguments('quorum')).toEqual({
      durable: true,
      arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': DEAD_LETTER_QUEUE_DELIVERY_LIMIT },
    });
    expect(DEAD_LETTER_QUEUE_DELIVERY_LIMIT).toBeGreaterThanOrEqual(1_000_000_000);
    // an AMQP signed 32-bit integer, whichever way the client encodes it
    expect(DEAD_LETTER_QUEUE_DELIVERY_LIMIT).toBeLessThan(2 ** 31);
  });

  it('declares a classic DLQ with its type only (classic queues have no delivery limit)', () => {
    expect(deadLetterQueueArguments('classic')).toEqual({
      durable: true,
      arguments: { 'x-queue-type': 'classic' },
    });
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
    const { connection, openChannel } = broker();
    const report = await declareTopology(openChannel, binding, 'quorum');
    expect(declarations(connection)).toEqual([
      { op: 'assertExchange', exchange: 'ledger', type: 'topic', options: { durable: true } },
      { op: 'assertExchange', exchange: 'ledger.dlx', type: 'direct', options: { durable: true } },
      {
        op: 'assertQueue',
        queue: 'ledger.transactions.dlq',
        options: deadLetterQueueArguments('quorum'),
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
        options: queueArguments(names, 'quorum'),
      },
      { op: 'bindQueue', queue: 'ledger.transactions', source: 'ledger', pattern: 'transaction.*' },
      { op: 'bindQueue', queue: 'ledger.transactions', source: 'ledger', pattern: 'refund.#' },
      { op: 'assertQueue', queue: 'ledger.transactions.retry.1', options: QUORUM_TIER },
      { op: 'assertQueue', queue: 'ledger.transactions.retry.2', options: QUORUM_TIER },
      { op: 'assertQueue', queue: 'ledger.transactions.retry.3', options: QUORUM_TIER },
      { op: 'assertQueue', queue: 'ledger.transactions.retry.4', options: QUORUM_TIER },
    ]);
    expect(report.legacyQueues).toEqual([]);
  });

  it("declares on a channel of its own and closes it (a refusal must not close the consumer's)", async () => {
    const { connection, openChannel } = broker();
    await declareTopology(openChannel, binding, 'quorum');
    expect(connection.channels).toHaveLength(1);
    expect(connection.channels[0].calls.at(-1)?.op).toBe('close');
  });

  it('declares one delay tier per retry tier of the binding and none without retries', async () => {
    const tierQueues = async (b: QueueBinding): Promise<string[]> => {
      const { connection, openChannel } = broker();
      await declareTopology(openChannel, b, 'quorum');
      return declarations(connection).flatMap((c) =>
        c.op === 'assertQueue' && c.queue.includes('.retry.') ? [c.queue] : [],
      );
    };
    expect(await tierQueues({ ...binding, retryTiers: [500] })).toEqual([
      'ledger.transactions.retry.1',
    ]);
    expect(await tierQueues(withoutRetries)).toEqual([]);
  });

  it('declares every queue with the configured queue type', async () => {
    const { connection, openChannel } = broker();
    await declareTopology(openChannel, binding, 'classic');
    const queueTypes = declarations(connection).flatMap((c) =>
      c.op === 'assertQueue'
        ? [(c.options?.arguments as Record<string, unknown>)['x-queue-type']]
        : [],
    );
    expect(queueTypes).toEqual(['classic', 'classic', 'classic', 'classic', 'classic', 'classic']);
  });

  it('declares classic work and tier queues without quorum-only arguments', async () => {
    const { connection, openChannel } = broker();
    await declareTopology(openChannel, binding, 'classic');
    const quorumOnly = ['x-delivery-limit', 'x-dead-letter-strategy', 'x-overflow'];
    for (const call of declarations(connection)) {
      if (call.op !== 'assertQueue') continue;
      const args = call.options?.arguments as Record<string, unknown>;
      for (const name of quorumOnly) expect(args).not.toHaveProperty(name);
    }
  });

  it('declares the same calls again when run again (idempotent setup after a reconnect)', async () => {
    const first = broker();
    const second = broker();
    await declareTopology(first.openChannel, binding, 'quorum');
    await declareTopology(second.openChannel, binding, 'quorum');
    expect(declarations(second.connection)).toEqual(declarations(first.connection));
  });

  it('rejects with TopologyConflictError when the broker refuses a declaration with a 406', async () => {
    const { connection, openChannel } = broker();
    connection.refuseCall(4, new Error(QUEUE_TYPE_CONFLICT));
    const declaring = declareTopology(openChannel, binding, 'quorum');
    await expect(declaring).rejects.toBeInstanceOf(TopologyConflictError);
    await expect(declaring).rejects.toMatchObject({
      resource: 'ledger.transactions',
      argument: 'x-queue-type',
    });
    expect(declarations(connection)).toHaveLength(5);
  });

  it('names the delay tier when the broker refuses a tier declaration', async () => {
    const { connection, openChannel } = broker();
    connection.refuseCall(
      8,
      missingArgument('ledger.transactions.retry.2', 'x-dead-letter-strategy', 'at-least-once'),
    );
    const declaring = declareTopology(openChannel, binding, 'quorum');
    await expect(declaring).rejects.toMatchObject({
      resource: 'ledger.transactions.retry.2',
      argument: 'x-dead-letter-strategy',
    });
    expect(declarations(connection)).toHaveLength(9);
  });

  it('rethrows any other failure unchanged', async () => {
    const { connection, openChannel } = broker();
    const lost = new Error('Channel ended, no reply will be forthcoming');
    connection.refuseCall(0, lost);
    await expect(declareTopology(openChannel, binding, 'quorum')).rejects.toBe(lost);
  });

  describe('on queues an earlier version declared without the dead-letter arguments', () => {
    it('uses a work queue that lacks its dead-letter exchange as it is, and reports the policy it needs', async () => {
      const { connection, openChannel } = broker();
      connection.refuseCall(
        4,
        missingArgument('ledger.transactions', 'x-dead-letter-exchange', 'ledger.dlx'),
      );
      const report = await declareTopology(openChannel, binding, 'quorum');
      // declared as the earlier version did, on a new channel, then the rest as usual
      expect(declarations(connection).slice(4, 7)).toEqual([
        {
          op: 'assertQueue',
          queue: 'ledger.transactions',
          options: queueArguments(names, 'quorum'),
        },
        {
          op: 'assertQueue',
          queue: 'ledger.transactions',
          options: {
            durable: true,
            arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 20 },
          },
        },
        {
          op: 'bindQueue',
          queue: 'ledger.transactions',
          source: 'ledger',
          pattern: 'transaction.*',
        },
      ]);
      expect(declarations(connection)).toHaveLength(12);
      expect(connection.channels).toHaveLength(2);
      expect(report.legacyQueues).toEqual([
        {
          queue: 'ledger.transactions',
          missingArgument: 'x-dead-letter-exchange',
          policy: JSON.stringify({
            'dead-letter-exchange': 'ledger.dlx',
            'dead-letter-routing-key': 'ledger.transactions',
            'dead-letter-strategy': 'at-least-once',
            overflow: 'reject-publish',
          }),
        },
      ]);
    });

    it('uses a DLQ that lacks its delivery limit as it is, and reports the policy it needs', async () => {
      const { connection, openChannel } = broker();
      connection.refuseCall(
        2,
        missingArgument('ledger.transactions.dlq', 'x-delivery-limit', '1000000000'),
      );
      const report = await declareTopology(openChannel, binding, 'quorum');
      expect(report.legacyQueues).toEqual([
        {
          queue: 'ledger.transactions.dlq',
          missingArgument: 'x-delivery-limit',
          policy: JSON.stringify({ 'delivery-limit': DEAD_LETTER_QUEUE_DELIVERY_LIMIT }),
        },
      ]);
      expect(declarations(connection)[3]).toEqual({
        op: 'assertQueue',
        queue: 'ledger.transactions.dlq',
        options: { durable: true, arguments: { 'x-queue-type': 'quorum' } },
      });
    });

    it('gives a classic legacy work queue a policy without quorum-only keys', async () => {
      const { connection, openChannel } = broker();
      connection.refuseCall(
        4,
        missingArgument('ledger.transactions', 'x-dead-letter-exchange', 'ledger.dlx'),
      );
      const report = await declareTopology(openChannel, binding, 'classic');
      expect(JSON.parse(report.legacyQueues[0].policy)).toEqual({
        'dead-letter-exchange': 'ledger.dlx',
        'dead-letter-routing-key': 'ledger.transactions',
      });
    });

    it('still refuses a different value (only an absent argument is an earlier version)', async () => {
      const { connection, openChannel } = broker();
      connection.refuseCall(
        4,
        new Error(
          `Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - ` +
            `inequivalent arg 'x-delivery-limit' for queue 'ledger.transactions' in vhost '/': ` +
            `received '20' but current is '5'"`,
        ),
      );
      await expect(declareTopology(openChannel, binding, 'quorum')).rejects.toMatchObject({
        resource: 'ledger.transactions',
        argument: 'x-delivery-limit',
      });
    });

    it('reports the real conflict when the queue is not what the earlier version declared either', async () => {
      // a classic queue where quorum is configured: the broker names a missing argument first
      const { connection, openChannel } = broker();
      connection.refuseCall(
        4,
        missingArgument('ledger.transactions', 'x-dead-letter-exchange', 'ledger.dlx'),
      );
      connection.refuseCall(5, new Error(QUEUE_TYPE_CONFLICT));
      await expect(declareTopology(openChannel, binding, 'quorum')).rejects.toMatchObject({
        resource: 'ledger.transactions',
        argument: 'x-queue-type',
      });
    });

    it('still refuses a missing argument it never added (x-queue-type)', async () => {
      const { connection, openChannel } = broker();
      connection.refuseCall(4, new Error(QUEUE_TYPE_CONFLICT));
      await expect(declareTopology(openChannel, binding, 'quorum')).rejects.toBeInstanceOf(
        TopologyConflictError,
      );
    });
  });
});

describe('topologyPresent', () => {
  /** amqplib's rejection of a passive check of something that does not exist. */
  const notFound = (what: string): Error =>
    Object.assign(
      new Error(
        `Operation failed: QueueDeclare; 404 (NOT-FOUND) with message "NOT_FOUND - ${what}"`,
      ),
      { code: 404 },
    );

  it('checks every exchange and queue passively, declaring and binding nothing', async () => {
    const { connection, openChannel } = broker();
    await expect(topologyPresent(openChannel, binding)).resolves.toBe(true);
    expect(connection.calls).toEqual([
      { op: 'checkExchange', exchange: 'ledger' },
      { op: 'checkExchange', exchange: 'ledger.dlx' },
      { op: 'checkQueue', queue: 'ledger.transactions.dlq' },
      { op: 'checkQueue', queue: 'ledger.transactions' },
      { op: 'checkQueue', queue: 'ledger.transactions.retry.1' },
      { op: 'checkQueue', queue: 'ledger.transactions.retry.2' },
      { op: 'checkQueue', queue: 'ledger.transactions.retry.3' },
      { op: 'checkQueue', queue: 'ledger.transactions.retry.4' },
      { op: 'close' },
    ]);
  });

  it('is false when the broker says something is missing (404), checking nothing after it', async () => {
    const { connection, openChannel } = broker();
    connection.refuseCall(5, notFound("no queue 'ledger.transactions.retry.2' in vhost '/'"));
    await expect(topologyPresent(openChannel, binding)).resolves.toBe(false);
    expect(connection.calls.filter((c) => c.op !== 'close')).toHaveLength(6);
  });

  it('rethrows any other failure', async () => {
    const { connection, openChannel } = broker();
    const lost = new Error('Channel ended, no reply will be forthcoming');
    connection.refuseCall(2, lost);
    await expect(topologyPresent(openChannel, binding)).rejects.toBe(lost);
  });
});

describe('migrationCommand', () => {
  it('applies the policy to that queue alone, in the vhost, with the regex escaped', () => {
    expect(
      migrationCommand('prod', {
        queue: 'ledger.transactions.dlq',
        missingArgument: 'x-delivery-limit',
        policy: '{"delivery-limit":1000000000}',
      }),
    ).toBe(
      "rabbitmqctl set_policy --vhost 'prod' --apply-to queues --priority 10 " +
        "'mp-migrate-ledger.transactions.dlq' '^ledger\\.transactions\\.dlq$' " +
        '\'{"delivery-limit":1000000000}\'',
    );
  });
});
