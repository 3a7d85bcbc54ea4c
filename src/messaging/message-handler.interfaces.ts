import type { MessageContext } from './message.context';
import type { ErrorClass } from './message.fate';
import type { RetryOptions, RetryPolicy } from './retry.policy';

/** Options of `@MessageHandler()`: everything about the queue a handler consumes. */
export interface MessageHandlerOptions {
  /** Topic exchange the producers publish to (declared durable). Its dead-letter exchange is `<exchange>.dlx`. */
  readonly exchange: string;
  /** Binding pattern(s) on the exchange (`*` one word, `#` zero or more). */
  readonly routingKey: string | readonly string[];
  /** Durable queue to consume; its dead-letter queue is `<queue>.dlq`. */
  readonly queue: string;
  /** Unacknowledged deliveries allowed on this queue's channel; default `AMQP_PREFETCH`. */
  readonly prefetch?: number;
  /**
   * Deduplicate by `messageId` (default true): a message whose processed marker exists is acked
   * as `duplicate`, and a message without a messageId is dead-lettered. `false` processes every
   * delivery, so the handler itself must tolerate redeliveries.
   */
  readonly idempotent?: boolean;
  /**
   * The handler writes `ctx.processedMarker` itself, in the same atomic operation as its effect
   * (see the ledger), so a crash between effect and marker cannot apply the effect twice. The
   * pipeline then does not write the marker after success. Default false: the pipeline writes it.
   */
  readonly commitsMarker?: boolean;
  /**
   * Lock the message for the time its handler runs (default true): a Redis lease with a watchdog
   * and a fencing token (`ctx.fencingToken`), so no two workers run it (or its key) at once.
   */
  readonly lock?: boolean;
  /**
   * Take the lock at commit instead of before the handler (single-Redis mode; under Redlock the
   * lock is taken before, as usual). For a handler whose effect is one `CommitScript` that reads
   * everything it decides on: nothing is sent to Redis before the handler, and the script checks
   * the marker, takes the key if no other worker holds it, mints a fencing token (if the key had
   * a holder within the fence's hour), applies the effect, writes the marker and lets go, in one atomic step (one round trip per message). When
   * another worker holds the key, the commit waits for it as a locked message would and runs
   * again as the holder. Code before the commit runs without the lock (call `ctx.lock.hold()` for
   * work that needs it). Needs `commitsMarker` unless `idempotent: false` (the script writes the
   * marker). Default false.
   */
  readonly lockAtCommit?: boolean;
  /**
   * The key to lock, computed from the decoded JSON payload (before validation), e.g.
   * `(tx: TransactionDto) => 'account:' + tx.accountId` to serialize all work on one account
   * across replicas. Default: the messageId (within the queue).
   */
  readonly lockKey?: (payload: never) => string;
  /**
   * Delayed retries of failed attempts (exponential backoff with proportional jitter, through
   * broker delay queues `<queue>.retry.<n>`). Unset fields default to the `RETRY_*` env vars.
   */
  readonly retry?: RetryOptions;
  /** Error types that dead-letter at once instead of being retried (besides `NonRetryableError`). */
  readonly nonRetryable?: readonly ErrorClass[];
}

/**
 * Return this from a handler that found, while committing, that the message had already been
 * processed (its marker existed): the outcome is `duplicate` instead of `ack`.
 */
export const AlreadyProcessed: unique symbol = Symbol('AlreadyProcessed');

/** A handler as found at bootstrap, with Nest's pipes, guards, interceptors and filters around it. */
export interface RegisteredHandler {
  /** `ClassName.method`, used in logs, metrics and the `x-handler` header. */
  readonly id: string;
  readonly options: Required<
    Omit<MessageHandlerOptions, 'routingKey' | 'prefetch' | 'retry' | 'nonRetryable' | 'lockKey'>
  > & {
    readonly lockKey: ((payload: never) => string) | undefined;
    readonly routingKeys: readonly string[];
    readonly prefetch: number | undefined;
    readonly retry: RetryPolicy;
    readonly nonRetryable: readonly ErrorClass[];
  };
  readonly matches: (routingKey: string) => boolean;
  readonly invoke: (payload: unknown, context: MessageContext) => Promise<unknown>;
  /**
   * Whether `invoke` calls the method directly (no guard, interceptor, pipe or filter applies,
   * so Nest's pipeline would add nothing) rather than through Nest's ExternalContextCreator.
   */
  readonly calledDirectly: boolean;
}

/** One consumed queue and the handlers that share it (usually one). */
export interface QueueBinding {
  readonly queue: string;
  readonly exchange: string;
  readonly routingKeys: readonly string[];
  readonly prefetch: number;
  readonly handlers: readonly RegisteredHandler[];
  /** Distinct retry delays of its handlers, ascending: one delay queue `<queue>.retry.<n>` each. */
  readonly retryTiers: readonly number[];
}
