/** Metadata key under which `@MessageHandler()` stores its options on a method. */
export const MESSAGE_HANDLER_METADATA = 'message-processor:message-handler';
/**
 * The parameters `@MessageHandler()` gave a method that declared none: (payload, context). The
 * same object as its route-args metadata, as long as nothing (an override in a subclass with
 * parameter decorators of its own) replaced those.
 */
export const DEFAULT_PARAMETERS_METADATA = 'message-processor:default-parameters';

/** Suffixes of DESIGN §4: `E.dlx` for exchange `E`, `Q.dlq` for queue `Q`. */
export const DEAD_LETTER_EXCHANGE_SUFFIX = '.dlx';
export const DEAD_LETTER_QUEUE_SUFFIX = '.dlq';

/** Prefix of the Redis key that marks a message as processed: `<prefix><queue>:<messageId>`. */
export const PROCESSED_MARKER_PREFIX = 'mp:processed:';

/** Headers this service writes on dead-lettered messages (DESIGN §3.7). */
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
  /** Set by quorum queues: how many times the broker delivered this message before. */
  deliveryCount: 'x-delivery-count',
  /** Set by the broker on dead-lettering (a delay tier expiring a message back into its queue). */
  death: 'x-death',
} as const;

/**
 * A message delivered this many times without being settled (see x-delivery-count) is
 * dead-lettered before its handler runs: a worker crashes or hangs on it. Hand-backs for "not now"
 * (shutdown, a Redis outage) also count on RabbitMQ 3.x, hence the margin.
 */
export const MAX_UNSETTLED_DELIVERIES = 10;

/**
 * `x-delivery-limit` of quorum work queues: the broker's own last line of defence, above
 * {@link MAX_UNSETTLED_DELIVERIES} so the service dead-letters (with reasons) first.
 */
export const QUORUM_DELIVERY_LIMIT = 20;

/** Header values are bounded so a dead-lettered message stays far below the frame size. */
export const MAX_EXCEPTION_MESSAGE_CHARS = 1_000;
export const MAX_STACKTRACE_CHARS = 4_000;

/** Deeper JSON is refused before it reaches validation (recursive validators overflow the stack). */
export const MAX_JSON_DEPTH = 64;

/** Label and header value used when no handler matched the message. */
export const NO_HANDLER = 'none';

/** Delay before handing a message back when a dependency is down, so a broken link cannot spin. */
export const REQUEUE_DELAY_MS = 500;

/** Consumer re-attach backoff after a channel or consumer is lost (ms). */
export const REATTACH_BACKOFF = { initialMs: 500, maxMs: 30_000 } as const;

/** How long a message waits in a delay tier when a dependency it needs is down. */
export const PARK_DELAY_MS = 1_000;

/** Delay before handing back a message whose retry or dead-letter copy could not be published. */
export const PUBLISH_FAILED_REQUEUE_DELAY_MS = 1_000;

/** Backoff after a conflicting declaration: an operator has to act, so retry slowly. */
export const TOPOLOGY_CONFLICT_RETRY_MS = 60_000;
