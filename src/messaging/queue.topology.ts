import type { Channel, Options } from 'amqplib';
import type { QueueType } from '../config/env.schema';
import {
  DEAD_LETTER_EXCHANGE_SUFFIX,
  DEAD_LETTER_QUEUE_SUFFIX,
  QUORUM_DELIVERY_LIMIT,
} from './messaging.constants';
import { tierQueueName } from './retry.policy';
import { TopologyConflictError } from './messaging.errors';
import type { QueueBinding } from './message-handler.interfaces';

/** `Q.dlq`: the queue holding the dead letters of queue `Q`. */
export function deadLetterQueueName(queue: string): string {
  return `${queue}${DEAD_LETTER_QUEUE_SUFFIX}`;
}

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
    deadLetterQueue: deadLetterQueueName(binding.queue),
  };
}

/**
 * Arguments of the work queue. No broker-side dead-letter exchange: failed deliveries are settled
 * with `reject` only after the service has published a retry or dead-letter copy, and a DLX would
 * add a second copy of each. On quorum queues an explicit `x-delivery-limit` bounds redeliveries
 * of a message a worker keeps crashing on (the service dead-letters such a message itself first).
 */
export function queueArguments(queueType: QueueType): Options.AssertQueue {
  return {
    durable: true,
    arguments: {
      'x-queue-type': queueType,
      ...(queueType === 'quorum' ? { 'x-delivery-limit': QUORUM_DELIVERY_LIMIT } : {}),
    },
  };
}

/**
 * Arguments of a delay tier: messages wait out their per-message expiry, then the broker
 * dead-letters them through the default exchange back into the work queue. Quorum tiers use
 * at-least-once dead-lettering (which requires `reject-publish` overflow), so a retry cannot be
 * lost between the tier and the queue.
 */
export function delayTierArguments(queue: string, queueType: QueueType): Options.AssertQueue {
  return {
    durable: true,
    arguments: {
      'x-queue-type': queueType,
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': queue,
      ...(queueType === 'quorum'
        ? { 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' }
        : {}),
    },
  };
}

/**
 * Declares the exchange, the queue, its dead-letter exchange and queue, the bindings and the
 * delay tiers.
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
    await channel.assertQueue(names.queue, queueArguments(queueType));
    for (const key of binding.routingKeys) {
      await channel.bindQueue(names.queue, names.exchange, key);
    }
    for (let tier = 0; tier < binding.retryTiers.length; tier++) {
      await channel.assertQueue(
        tierQueueName(names.queue, tier),
        delayTierArguments(names.queue, queueType),
      );
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
