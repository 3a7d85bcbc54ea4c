import type { Channel, Options } from 'amqplib';
import type { QueueType } from '../config/env.schema.js';
import {
  DEAD_LETTER_EXCHANGE_SUFFIX,
  DEAD_LETTER_QUEUE_DELIVERY_LIMIT,
  DEAD_LETTER_QUEUE_SUFFIX,
  QUORUM_DELIVERY_LIMIT,
} from './messaging.constants.js';
import { tierQueueName } from './retry.policy.js';
import { TopologyConflictError } from './messaging.errors.js';
import type { QueueBinding } from './message-handler.interfaces.js';

/** `Q.dlq`: the queue holding the dead letters of queue `Q`. */
export function deadLetterQueueName(queue: string): string {
  return `${queue}${DEAD_LETTER_QUEUE_SUFFIX}`;
}

/** The names of the topology of a handler queue `Q` on exchange `E`. */
export interface TopologyNames {
  readonly exchange: string;
  readonly deadLetterExchange: string;
  readonly queue: string;
  readonly deadLetterQueue: string;
}

export function topologyNames(binding: Pick<QueueBinding, 'queue' | 'exchange'>): TopologyNames {
  return {
    exchange: binding.exchange,
    deadLetterExchange: `${binding.exchange}${DEAD_LETTER_EXCHANGE_SUFFIX}`,
    queue: binding.queue,
    deadLetterQueue: deadLetterQueueName(binding.queue),
  };
}

/**
 * Arguments of the work queue. Its dead-letter exchange is `E.dlx` with the routing key `Q`, the
 * binding of `Q.dlq`: a message the broker itself removes (past the delivery limit, or by an
 * operator's TTL or length policy) lands in `Q.dlq` with its x-death reason instead of vanishing.
 * The service never rejects (it acks once its own copy is confirmed), so nothing arrives there
 * twice. On quorum queues an explicit `x-delivery-limit` bounds redeliveries of a message workers
 * keep losing (the service dead-letters such a message itself first), and the dead-lettering is
 * at-least-once (which needs `reject-publish` overflow), so it cannot be lost on its way.
 */
export function queueArguments(names: TopologyNames, queueType: QueueType): Options.AssertQueue {
  return {
    durable: true,
    arguments: {
      'x-queue-type': queueType,
      ...(queueType === 'quorum' ? { 'x-delivery-limit': QUORUM_DELIVERY_LIMIT } : {}),
      ...deadLetterRoute(names),
      ...(queueType === 'quorum' ? AT_LEAST_ONCE : {}),
    },
  };
}

/**
 * Arguments of the dead-letter queue. Dead letters are returned by nobody but an operator's tool,
 * yet a quorum queue without a limit of its own gets RabbitMQ 4.x's default of 20 and drops a
 * message past it: a limit too high to reach keeps every dead letter on every version.
 */
export function deadLetterQueueArguments(queueType: QueueType): Options.AssertQueue {
  return {
    durable: true,
    arguments: {
      'x-queue-type': queueType,
      ...(queueType === 'quorum' ? { 'x-delivery-limit': DEAD_LETTER_QUEUE_DELIVERY_LIMIT } : {}),
    },
  };
}

/**
 * Arguments of a delay tier: messages wait out their per-message expiry, then the broker
 * dead-letters them through the default exchange back into the work queue. Quorum tiers use
 * at-least-once dead-lettering, so a retry cannot be lost between the tier and the queue.
 */
export function delayTierArguments(queue: string, queueType: QueueType): Options.AssertQueue {
  return {
    durable: true,
    arguments: {
      'x-queue-type': queueType,
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': queue,
      ...(queueType === 'quorum' ? AT_LEAST_ONCE : {}),
    },
  };
}

const AT_LEAST_ONCE = {
  'x-dead-letter-strategy': 'at-least-once',
  'x-overflow': 'reject-publish',
} as const;

function deadLetterRoute(names: TopologyNames): Record<string, string> {
  return {
    'x-dead-letter-exchange': names.deadLetterExchange,
    'x-dead-letter-routing-key': names.queue,
  };
}

/**
 * A queue declared by an earlier version of the service, without an argument this one adds. It is
 * used as it is (redeclaring it with other arguments is refused, and deleting it would lose its
 * messages); a policy gives it the same protection without a restart of anything.
 */
export interface LegacyQueue {
  readonly queue: string;
  /** The first added argument the broker found missing (it reports one per refusal). */
  readonly missingArgument: string;
  /** The policy definition (JSON) that gives the queue what its arguments lack. */
  readonly policy: string;
}

/** The result of a declaration: queues that predate arguments this version adds. */
export interface TopologyReport {
  readonly legacyQueues: readonly LegacyQueue[];
}

/**
 * Declares the exchange, the queue, its dead-letter exchange and queue, the bindings and the
 * delay tiers, on channels of its own (`openChannel`): a refused declaration closes its channel.
 * Every call is idempotent, so it runs again after each reconnect. A queue that exists exactly as
 * an earlier version declared it, without the dead-letter arguments this one adds, is used as it
 * is and reported in {@link TopologyReport.legacyQueues}. Any other conflicting declaration is one
 * {@link TopologyConflictError} naming the resource and the argument.
 */
export async function declareTopology(
  openChannel: () => Promise<Channel>,
  binding: QueueBinding,
  queueType: QueueType,
): Promise<TopologyReport> {
  const names = topologyNames(binding);
  const legacyQueues: LegacyQueue[] = [];
  let channel = await openChannel();
  /**
   * Declares `queue`; when the broker says it exists without an argument this version added,
   * declares it again (on a new channel: the refusal closed this one) as the earlier version did.
   * Only if that matches is it a legacy queue; any other difference is the second refusal's conflict.
   */
  const assertQueue = async (
    queue: string,
    options: Options.AssertQueue,
    earlier: Options.AssertQueue,
    policy: () => Record<string, unknown>,
  ): Promise<void> => {
    try {
      await channel.assertQueue(queue, options);
    } catch (error) {
      const missing = missingAddedArgument(error, queue);
      if (missing === undefined) throw error;
      channel = await openChannel();
      await channel.assertQueue(queue, earlier);
      legacyQueues.push({ queue, missingArgument: missing, policy: JSON.stringify(policy()) });
    }
  };
  try {
    await channel.assertExchange(names.exchange, 'topic', { durable: true });
    await channel.assertExchange(names.deadLetterExchange, 'direct', { durable: true });
    await assertQueue(
      names.deadLetterQueue,
      deadLetterQueueArguments(queueType),
      EARLIER_VERSION.deadLetterQueue(queueType),
      () => ({ 'delivery-limit': DEAD_LETTER_QUEUE_DELIVERY_LIMIT }),
    );
    await channel.bindQueue(names.deadLetterQueue, names.deadLetterExchange, names.queue);
    await assertQueue(
      names.queue,
      queueArguments(names, queueType),
      EARLIER_VERSION.queue(queueType),
      () =>
        policyKeys({
          ...deadLetterRoute(names),
          ...(queueType === 'quorum' ? AT_LEAST_ONCE : {}),
        }),
    );
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
  } finally {
    await channel.close().catch(() => undefined);
  }
  return { legacyQueues };
}

/**
 * Whether every exchange and queue {@link declareTopology} declares exists, by passive checks on a
 * channel of its own. A passive check is a lookup; a declaration, and above all a binding, is a
 * metadata transaction every node of a cluster takes part in: with a node hung (stopped, not
 * dead) it waits until the cluster declares that node down (`net_ticktime`, 45–75 s by default),
 * measured 68 s on RabbitMQ 3.10 against 0.3 s for the lookup (docs/architecture.md, Hung broker
 * node). So a consumer that declared its topology once re-attaches after a check; bindings are
 * not checked (AMQP cannot), and go away only with their queue or by an operator's unbind.
 * Resolves false when something is missing (the broker closes the channel with 404), and rejects
 * on any other failure.
 */
export async function topologyPresent(
  openChannel: () => Promise<Channel>,
  binding: QueueBinding,
): Promise<boolean> {
  const names = topologyNames(binding);
  const channel = await openChannel();
  try {
    await channel.checkExchange(names.exchange);
    await channel.checkExchange(names.deadLetterExchange);
    await channel.checkQueue(names.deadLetterQueue);
    await channel.checkQueue(names.queue);
    for (let tier = 0; tier < binding.retryTiers.length; tier++) {
      await channel.checkQueue(tierQueueName(names.queue, tier));
    }
    return true;
  } catch (error) {
    if (error instanceof Error && (error as Error & { code?: unknown }).code === 404) return false;
    throw error;
  } finally {
    await channel.close().catch(() => undefined);
  }
}

/**
 * How the version before the dead-letter route (0.1) declared the work queue and the DLQ: a queue
 * that matches exactly this is used as it is.
 */
const EARLIER_VERSION = {
  queue: (queueType: QueueType): Options.AssertQueue => ({
    durable: true,
    arguments: {
      'x-queue-type': queueType,
      ...(queueType === 'quorum' ? { 'x-delivery-limit': QUORUM_DELIVERY_LIMIT } : {}),
    },
  }),
  deadLetterQueue: (queueType: QueueType): Options.AssertQueue => ({
    durable: true,
    arguments: { 'x-queue-type': queueType },
  }),
};

/**
 * The arguments this version adds to queues an earlier one declared without them. Only their
 * absence (the broker says "current is none") leads to the earlier declaration.
 */
const ADDED_ARGUMENTS: ReadonlySet<string> = new Set([
  'x-dead-letter-exchange',
  'x-dead-letter-routing-key',
  'x-dead-letter-strategy',
  'x-overflow',
  'x-delivery-limit',
]);

// "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange' for queue 'q' in vhost '/':
// received the value 'e.dlx' of type 'longstr' but current is none"
const MISSING_ARGUMENT = /inequivalent arg '([^']+)' for queue '([^']+)' .* but current is none/;

function missingAddedArgument(error: unknown, queue: string): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const match = MISSING_ARGUMENT.exec(error.message);
  if (!match || match[2] !== queue || !ADDED_ARGUMENTS.has(match[1])) return undefined;
  return match[1];
}

/** Queue arguments as policy keys: `x-dead-letter-exchange` → `dead-letter-exchange`. */
function policyKeys(args: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(args).map(([k, v]) => [k.replace(/^x-/, ''), v]));
}

/**
 * The `rabbitmqctl` command that applies a legacy queue's policy: a pattern matching that queue
 * alone, so it does not shadow other policies (a queue follows only its highest-priority policy).
 */
export function migrationCommand(vhost: string, legacy: LegacyQueue): string {
  const pattern = `^${legacy.queue.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
  return (
    `rabbitmqctl set_policy --vhost '${vhost}' --apply-to queues --priority 10 ` +
    `'mp-migrate-${legacy.queue}' '${pattern}' '${legacy.policy}'`
  );
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
