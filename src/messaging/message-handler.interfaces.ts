import type { KillSwitchOptions, KillSwitchPolicy } from './kill-switch.js';
import type { MessageContext } from './message.context.js';
import type { ErrorClass } from './message.fate.js';
import type { RetryOptions, RetryPolicy } from './retry.policy.js';

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
   * How the handler's effect is made once-in-effect (default `{ kind: 'marker-after' }`); see
   * {@link HandlerEffect}.
   */
  readonly effect?: HandlerEffect;
  /**
   * What must not run at the same time across all replicas: the key to lock, computed from the
   * decoded JSON payload (before validation), e.g. `(tx: TransactionDto) => 'account:' +
   * tx.accountId` to serialize all work on one account. Default: the messageId (within the
   * queue). `false`: no lock at all.
   */
  readonly lockKey?: ((payload: never) => string) | false;
  /**
   * Delayed retries of failed attempts (exponential backoff with proportional jitter, through
   * broker delay queues `<queue>.retry.<n>`). Unset fields default to the `RETRY_*` env vars.
   */
  readonly retry?: RetryOptions;
  /** Error types that dead-letter at once instead of being retried (besides `NonRetryableError`). */
  readonly nonRetryable?: readonly ErrorClass[];
  /**
   * When this handler's attempts fail too often (a downstream is down), its queue's consumer
   * stops taking messages for a while, then tries one at a time (README, "Kill switch"). Unset
   * fields default to the `KILL_SWITCH_*` env vars; `false`: this handler never trips it.
   */
  readonly killSwitch?: KillSwitchOptions | false;
  /** What the handler does, one sentence (its operation's summary in the AsyncAPI document). */
  readonly description?: string;
  /** What the handler publishes: events that appear in the AsyncAPI document as `send` operations. */
  readonly publishes?: readonly MessagePublication[];
}

/** A message a handler publishes, declared for the AsyncAPI document. */
export interface MessagePublication {
  readonly exchange: string;
  readonly routingKey: string;
  /** The class of its payload (its class-validator decorators become its JSON Schema). */
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type -- any class, as Nest's Type
  readonly payload?: Function;
  readonly description?: string;
}

/**
 * How a handler's effect is made once-in-effect: one declaration, one path through the service.
 *
 * - `marker-after` (the default): the handler runs holding the message's lock; the service writes
 *   the processed marker once it succeeded, and acks. A redelivery whose marker exists is acked
 *   as `duplicate` without running the handler. A crash after the effect and before the marker
 *   runs the handler again: make its effect idempotent, or use a transactional kind.
 * - `redis-commit`: the handler's effect is one {@link RedisCommit} on the service's Redis,
 *   committed in one atomic step with the marker check, the lock (taken right there, when no other
 *   worker holds the key), the fencing token and the marker: no crash can apply it twice, and a
 *   worker whose lease ran out cannot write. Code before the commit runs without the lock (call
 *   `ctx.lock.hold()` for work that needs it) and runs again on a redelivery.
 * - `postgres-transaction`: the handler's effect is writes to PostgreSQL (`DATABASE_URL`) in the
 *   transaction it gets as `ctx.transaction`; the service takes the key's lock in that
 *   transaction (PostgreSQL's own, held to COMMIT: no Redis, no fencing token), writes the
 *   processed marker (a row of `mp_inbox`) in it, and commits when the handler returns. A
 *   redelivery whose marker row exists is acked as `duplicate` without running the handler; a
 *   failure rolls back effect and marker together. What the handler
 *   publishes with `ctx.transaction.publish()` goes out through the outbox after the commit.
 * - `postgres-commit`: as `postgres-transaction`, but nothing is sent to PostgreSQL before the
 *   handler: it queues its writes (`ctx.transaction.execute()`) and events (`publish()`,
 *   `publishQuery()`), and the service sends BEGIN, the key's lock, the inbox row, the writes,
 *   the outbox rows and COMMIT in one round trip. A redelivery whose inbox row exists is refused
 *   there, writes and all (`duplicate`); the handler's code runs again for it, so it must not
 *   have effects of its own. The handler cannot read in the transaction.
 * - `idempotent`: the handler tolerates redeliveries itself: every delivery runs it, no marker is
 *   read or written, and no messageId is required. It still runs holding its lock (the `lockKey`,
 *   or the messageId when there is one).
 */
export type HandlerEffect =
  | { readonly kind: 'marker-after' }
  | {
      readonly kind: 'redis-commit';
      /**
       * On a Redis Cluster, one key of the effect, from the payload (e.g. `(tx) =>
       * 'ledger:balance:' + tx.accountId`): the service puts the commit's own keys (marker, lock,
       * fence, journal) in that key's hash slot, so the effect's keys keep their names and must
       * only share that slot with each other. Without it, the commit's keys go in the lock key's
       * slot and the effect's keys must be built from `ctx.lockKey`, which then starts with the
       * slot's hash tag. Not read on one Redis server or Sentinel.
       */
      readonly slotKey?: (payload: never) => string;
    }
  | { readonly kind: 'postgres-transaction' }
  | { readonly kind: 'postgres-commit' }
  | { readonly kind: 'idempotent' };

/** The kinds of {@link HandlerEffect}. */
export type EffectKind = HandlerEffect['kind'];

/** Whether an effect kind keeps its lock and marker in PostgreSQL (and needs `DATABASE_URL`). */
export function isPostgresEffect(kind: EffectKind): boolean {
  return kind === 'postgres-transaction' || kind === 'postgres-commit';
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
  readonly options: {
    readonly exchange: string;
    readonly queue: string;
    readonly routingKeys: readonly string[];
    readonly prefetch: number | undefined;
    readonly effect: EffectKind;
    /** The key to lock: the handler's function, the messageId (`'message-id'`) or none. */
    readonly lockKey: ((payload: never) => string) | 'message-id' | false;
    /** A `redis-commit` handler's `effect.slotKey`, if it names one. */
    readonly slotKey?: (payload: never) => string;
    readonly retry: RetryPolicy;
    readonly nonRetryable: readonly ErrorClass[];
    readonly killSwitch: KillSwitchPolicy;
    /** The class of the handler's first parameter, when it is one (`design:paramtypes`). */
    // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type -- any class
    readonly payloadType?: Function;
    readonly publishes?: readonly MessagePublication[];
    readonly description?: string;
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
