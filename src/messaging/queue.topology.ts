import type { Channel, Options } from 'amqplib';
import type { QueueType } from '../config/env.schema';
import { DEAD_LETTER_EXCHANGE_SUFFIX, DEAD_LETTER_QUEUE_SUFFIX } from './messaging.constants';
import { TopologyConflictError } from './messaging.errors';
import type { QueueBinding } from './message-handler.interfaces';

/** Names of DESIGN §4 for a handler queue `Q` on exchange `E`. */
export function topologyNames(binding: Pick<QueueBinding, 'queue' | 'exchange'>): {
  exchange: string;
  deadLetterExchange: string;
  queue: string;
  deadLetterQueue: string;
} {
  return {
    exchange: binding.exchange,
    deadLetterExchange: `${binding.exchange}${DEAD_LETTER_EXCHANGE_SUFFIX}`,
    queue: binding.queue,
    deadLetterQueue: `${binding.queue}${DEAD_LETTER_QUEUE_SUFFIX}`,
  };
}

/** Arguments of the work queue: its type, and where the broker itself dead-letters (limits, TTLs). */
export function queueArguments(
  binding: Pick<QueueBinding, 'queue' | 'exchange'>,
  queueType: QueueType,
): Options.AssertQueue {
  const names = topologyNames(binding);
  return {
    durable: true,
    arguments: {
      'x-queue-type': queueType,
      'x-dead-letter-exchange': names.deadLetterExchange,
      'x-dead-letter-routing-key': names.queue,
    },
  };
}

/**
 * Declares the exchange, the queue, its dead-letter exchange and queue, and the bindings.
 * Every call is idempotent, so it runs again after each reconnect (as amqp-connection-manager's
 * setup functions do). A conflicting existing declaration closes the channel with a 406; that is
 * turned into one {@link TopologyConflictError} naming the resource and the argument.
 */
export async function declareTopology(
  channel: Channel,
  binding: QueueBinding,
  queueType: QueueType,
): Promise<void> {
  const names = topologyNames(binding);
  try {
    await channel.assertExchange(names.exchange, 'topic', { durable: true });
    await channel.assertExchange(names.deadLetterExchange, 'direct', { durable: true });
    await channel.assertQueue(names.deadLetterQueue, {
      durable: true,
      arguments: { 'x-queue-type': queueType },
    });
    await channel.bindQueue(names.deadLetterQueue, names.deadLetterExchange, names.queue);
    await channel.assertQueue(names.queue, queueArguments(binding, queueType));
    for (const key of binding.routingKeys) {
      await channel.bindQueue(names.queue, names.exchange, key);
    }
  } catch (error) {
    throw asTopologyConflict(error) ?? error;
  }
}

// RabbitMQ: "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': ..."
// and "... inequivalent arg 'type' for exchange 'e' ..."
const INEQUIVALENT = /inequivalent arg '([^']+)' for (?:queue|exchange) '([^']+)'/;

export function asTopologyConflict(error: unknown): TopologyConflictError | undefined {
  if (!(error instanceof Error)) return undefined;
  const match = INEQUIVALENT.exec(error.message);
  if (!match) return undefined;
  const brokerMessage = /PRECONDITION_FAILED - (.*?)"?$/.exec(error.message)?.[1] ?? error.message;
  return new TopologyConflictError(match[2], match[1], brokerMessage);
}
