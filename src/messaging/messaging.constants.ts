/** Metadata key under which `@MessageHandler()` stores its options on a method. */
export const MESSAGE_HANDLER_METADATA = 'message-processor:message-handler';
/**
 * The parameters `@MessageHandler()` gave a method that declared none: (payload, context). The
 * same object as its route-args metadata, as long as nothing (an override in a subclass with
 * parameter decorators of its own) replaced those.
 */
export const DEFAULT_PARAMETERS_METADATA = 'message-processor:default-parameters';

/** Suffixes of the topology (docs/architecture.md, Topology): `E.dlx` for exchange `E`, `Q.dlq` for queue `Q`. */
export const DEAD_LETTER_EXCHANGE_SUFFIX = '.dlx';
export const DEAD_LETTER_QUEUE_SUFFIX = '.dlq';

/** Prefix of the Redis key that marks a message as processed: `<prefix><queue>:<messageId>`. */
export const PROCESSED_MARKER_PREFIX = 'mp:processed:';

/** Headers this service writes on its copies (retries, dead letters, hand-backs), and reads. */
export const HEADER = {
  exceptionMessage: 'x-exception-message',
  exceptionType: 'x-exception-type',
  exceptionStacktrace: 'x-exception-stacktrace',
  originalExchange: 'x-original-exchange',
  originalRoutingKey: 'x-original-routing-key',
  attempts: 'x-attempts',
  handler: 'x-handler',
  failedAt: 'x-failed-at',
  firstFailedAt: 'x-first-failed-at',
  lastFailedAt: 'x-last-failed-at',
  /**
   * Set by quorum queues on redelivery: how many deliveries of this message failed. RabbitMQ up to
   * 4.2 counts every return (nack or reject with requeue, a closed channel or connection); 4.3+
   * counts only failures (reject, a closed channel or connection), not a nack with requeue.
   */
  deliveryCount: 'x-delivery-count',
  /** Set by quorum queues on RabbitMQ 4.3+: how many times the message was handed to a consumer. */
  acquiredCount: 'x-acquired-count',
  /** Set by the broker on dead-lettering (a delay tier expiring a message back into its queue). */
  death: 'x-death',
} as const;

/**
 * A message whose `x-delivery-count` reached this is dead-lettered before its handler runs: that
 * many consumers lost it with their channel or connection (a worker crashes or hangs on it). The
 * service itself never returns a message with a requeueing nack or reject while its copy can be
 * published (see `MessageSettler`), so on every RabbitMQ version the count is made of such losses.
 */
export const MAX_UNSETTLED_DELIVERIES = 10;

/**
 * `x-delivery-limit` of quorum work queues: the broker's own last line of defence, above
 * {@link MAX_UNSETTLED_DELIVERIES} so the service dead-letters (with reasons) first. Past it the
 * broker dead-letters the message to `E.dlx` (the work queue's dead-letter exchange) with x-death
 * reason `delivery_limit`: it lands in `Q.dlq`, never dropped.
 */
export const QUORUM_DELIVERY_LIMIT = 20;

/**
 * `x-delivery-limit` of quorum dead-letter queues. RabbitMQ 4.0+ gives a quorum queue without one
 * a limit of 20 and drops a message past it when the queue has no dead-letter exchange; 3.x has
 * no default, and `-1` (4.x: unlimited) makes 3.x drop on the first return. A billion returns is
 * the same on every version: in effect, none. A policy with a lower `delivery-limit` wins over it.
 */
export const DEAD_LETTER_QUEUE_DELIVERY_LIMIT = 1_000_000_000;

/** Header values are bounded so a dead-lettered message stays far below the frame size. */
export const MAX_EXCEPTION_MESSAGE_CHARS = 1_000;
export const MAX_STACKTRACE_CHARS = 4_000;

/** Deeper JSON is refused before it reaches validation (recursive validators overflow the stack). */
export const MAX_JSON_DEPTH = 64;

/** Label and header value used when no handler matched the message. */
export const NO_HANDLER = 'none';

/**
 * How long a message handed back for "not now" (a dependency down, its lock busy) waits before it
 * is delivered again: in a delay tier, or, on a queue without tiers, in the process before its copy
 * is published to the queue. Either way nothing spins while the cause is still there.
 */
export const HAND_BACK_DELAY_MS = 1_000;

/** Consumer re-attach backoff after a channel or consumer is lost (ms). */
export const REATTACH_BACKOFF = { initialMs: 500, maxMs: 30_000 } as const;

/**
 * Delay before a message whose copy could not be published goes back with a requeueing nack (the
 * one hand-back that the broker counts as a delivery, on RabbitMQ up to 4.2).
 */
export const PUBLISH_FAILED_REQUEUE_DELAY_MS = 1_000;

/** Backoff after a conflicting declaration: an operator has to act, so retry slowly. */
export const TOPOLOGY_CONFLICT_RETRY_MS = 60_000;
