import type { ConsumeMessage, MessagePropertyHeaders } from 'amqplib';
import type { Level, Logger } from 'pino';
import type { EffectJournal } from '../lock/guarded-commit.js';
import type { MessageLock } from '../lock/message-lease.js';
import type { PostgresTransaction } from '../postgres/postgres-transaction.js';
import type { EffectKind } from './message-handler.interfaces.js';

export type { MessageLock } from '../lock/message-lease.js';

/** Where a handler that commits its effect atomically with the processed marker must write it. */
export interface ProcessedMarker {
  /** Redis key to set (any value) in the same transaction as the effect. */
  readonly key: string;
  /** Expiry of the marker in seconds (`IDEMPOTENCY_TTL_S`). */
  readonly ttlSeconds: number;
  /**
   * On a Redis Cluster: the hash tag (`{…}`) that starts every key of the message's commit (the
   * marker's, the lock's, the journal's), so they share one slot. Undefined otherwise.
   */
  readonly slotTag?: string;
}

/** Fields every log line about a message carries. */
export interface MessageLogFields {
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly queue: string;
  readonly routingKey: string;
  readonly attempt: number;
  readonly handler: string;
  /** The delivery span's trace and span ids, when the message is traced. */
  readonly trace_id?: string;
  readonly span_id?: string;
}

/** What the processor builds a context from. */
export interface MessageContextInit extends MessageLogFields {
  readonly exchange: string;
  readonly headers: Readonly<MessagePropertyHeaders>;
  readonly redelivered: boolean;
  /** The signal, or how to make it on first use (most handlers never ask for it). */
  readonly signal: AbortSignal | (() => AbortSignal);
  readonly effect: EffectKind;
  readonly processedMarker: ProcessedMarker | undefined;
  readonly lock: MessageLock | undefined;
  readonly effectJournal?: EffectJournal;
  readonly transaction?: PostgresTransaction;
  readonly message: ConsumeMessage;
  readonly baseLogger: Logger;
}

/**
 * Everything a handler may want to know about the message it is processing. Received as the
 * second argument of a `@MessageHandler()` method (or through `@Ctx()`); in interceptors and
 * filters, `host.switchToRpc().getContext<MessageContext>()`.
 */
export class MessageContext {
  /** The AMQP `messageId` property (the deduplication key). */
  readonly messageId: string | undefined;
  /** The AMQP `correlationId` property, for tracing across services. */
  readonly correlationId: string | undefined;
  /** Exchange the message was published to (the original one, for retried messages). */
  readonly exchange: string;
  /** Routing key it was published with (the original one, for retried messages). */
  readonly routingKey: string;
  /** The queue it was consumed from. */
  readonly queue: string;
  /** `ClassName.method` of the handler. */
  readonly handler: string;
  /** Application headers of the message. */
  readonly headers: Readonly<MessagePropertyHeaders>;
  /** 1 for the first attempt, incremented by each retry. */
  readonly attempt: number;
  /** True when the broker delivered it before (a previous consumer did not settle it). */
  readonly redelivered: boolean;
  /** The handler's effect kind (`@MessageHandler({ effect })`). */
  readonly effect: EffectKind;
  /**
   * The message's processed marker (what a `redis-commit` writes with the effect); undefined
   * for an `idempotent` handler, which has none.
   */
  readonly processedMarker: ProcessedMarker | undefined;
  /**
   * The message's lock; undefined when the handler runs without one. Pending for a
   * `redis-commit` handler until its commit takes it (or `ctx.lock.hold()` does).
   */
  readonly lock: MessageLock | undefined;
  /**
   * The effect journal a `RedisCommit` appends to (`EFFECT_JOURNAL_MAXLEN`, `EFFECT_JOURNAL_TTL_S`);
   * undefined when it is off.
   */
  readonly effectJournal: EffectJournal | undefined;
  /**
   * The PostgreSQL transaction of a `postgres-transaction` handler (write through `query`, or
   * its `client` handed to a query builder) or of a `postgres-commit` one (queue writes with
   * `execute`); publish through its outbox (`publish`, `publishQuery`). Committed with the
   * processed marker when the handler returns. Undefined for the other effect kinds.
   */
  readonly transaction: PostgresTransaction | undefined;
  /** The raw delivery, for advanced needs (properties, fields). Do not ack or nack it yourself. */
  readonly message: ConsumeMessage;

  private cachedLogger: Logger | undefined;
  private signalOrFactory: AbortSignal | (() => AbortSignal);

  constructor(init: MessageContextInit) {
    this.messageId = init.messageId;
    this.correlationId = init.correlationId;
    this.exchange = init.exchange;
    this.routingKey = init.routingKey;
    this.queue = init.queue;
    this.handler = init.handler;
    this.headers = init.headers;
    this.attempt = init.attempt;
    this.redelivered = init.redelivered;
    this.signalOrFactory = init.signal;
    this.effect = init.effect;
    this.processedMarker = init.processedMarker;
    this.lock = init.lock;
    this.effectJournal = init.effectJournal;
    this.transaction = init.transaction;
    this.message = init.message;
    this.baseLogger = init.baseLogger;
    this.fields = {
      messageId: init.messageId,
      correlationId: init.correlationId,
      queue: init.queue,
      routingKey: init.routingKey,
      attempt: init.attempt,
      handler: init.handler,
      ...(init.trace_id === undefined ? {} : { trace_id: init.trace_id, span_id: init.span_id }),
    };
  }

  private readonly fields: MessageLogFields;

  private readonly baseLogger: Logger;

  /**
   * Aborted when the handler must stop: its lock was lost (reason: a `LockLostError`) or the
   * shutdown deadline passed. Pass it to fetch, database drivers and timers.
   */
  get signal(): AbortSignal {
    if (typeof this.signalOrFactory === 'function') this.signalOrFactory = this.signalOrFactory();
    return this.signalOrFactory;
  }

  /** The key this message is locked on (`lockKey(payload)` or the messageId); undefined when unlocked. */
  get lockKey(): string | undefined {
    return this.lock?.key;
  }

  /**
   * The lock's fencing token, strictly increasing per lock key. Make the storage you write to
   * refuse a token lower than the last it applied (a `RedisCommit` does): a worker that paused
   * past its lease then cannot overwrite newer work. Undefined when the handler runs without a
   * lock, and while a `redis-commit` lock is pending (after the commit, the token it minted, if
   * any).
   */
  get fencingToken(): number | undefined {
    return this.lock?.fencingToken;
  }

  /** The fields every log line about this message carries (with `trace_id`/`span_id` when traced). */
  get logFields(): MessageLogFields {
    return this.fields;
  }

  /**
   * Whether a line at `level` would be written: check it before building a debug line, so a
   * message at info level does not pay for a child logger it never uses.
   */
  logs(level: Level): boolean {
    return this.baseLogger.isLevelEnabled(level);
  }

  /** A logger whose every line carries the message's identifiers (created on first use). */
  get logger(): Logger {
    this.cachedLogger ??= this.baseLogger.child(this.logFields);
    return this.cachedLogger;
  }
}
