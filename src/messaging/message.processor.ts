import { Inject, Injectable, Optional } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import type { Context } from '@opentelemetry/api';
import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { processingConfig } from '../config/app.config.js';
import { type LinkedSignal, linkedSignal } from '../lifecycle/linked-signal.js';
import { contextLogger, MESSAGE_PROCESSOR_LOGGER } from '../logging/service-logger.js';
import { LockService, LockTimeoutError } from '../lock/index.js';
import type { EffectJournal } from '../lock/guarded-commit.js';
import { MessageLease } from '../lock/message-lease.js';
import { MessageMetrics } from '../metrics/message.metrics.js';
import { slotTagOf } from '../redis/key-slot.js';
import type { PostgresTransaction } from '../postgres/postgres-transaction.js';
import { PostgresTransactions } from '../postgres/postgres-transactions.js';
import {
  extractContext,
  inHandlerSpan,
  sampledIds,
  lockWaited,
  recordFailure,
  startDeliverySpan,
  traceLogFields,
  withContext,
} from '../tracing/message-tracing.js';
import type { Settlement } from './ack.coalescer.js';
import { IdempotencyStore } from './idempotency.store.js';
import { isPostgresEffect } from './message-handler.interfaces.js';
import { MessageContext, type MessageLogFields, type ProcessedMarker } from './message.context.js';
import { decodeMessage } from './message.decoder.js';
import type { ProcessingResult } from './message.fate.js';
import {
  AlreadyProcessed,
  type QueueBinding,
  type RegisteredHandler,
} from './message-handler.interfaces.js';
import { MessagePublisher } from './message.publisher.js';
import { MessageSettler } from './message.settler.js';
import { HEADER, MAX_UNSETTLED_DELIVERIES, NO_HANDLER } from './messaging.constants.js';
import {
  DeliveryLimitError,
  InvalidLockKeyError,
  MissingMessageIdError,
  NoHandlerError,
} from './messaging.errors.js';

/** What the processor needs from the consumer a delivery came from. */
export interface ConsumerHandle {
  readonly binding: QueueBinding;
  /** False once the consumer is pausing or stopping: deliveries are handed back unstarted. */
  accepting(): boolean;
  /** Aborted when the shutdown deadline passes. */
  readonly signal: AbortSignal;
  /** Aborted when the consumer starts stopping: a message still waiting for its lock is handed back. */
  readonly stopSignal: AbortSignal;
  /** One attempt of a handler ended; `failed`: it threw (the kill switch counts these). */
  attempted?(handler: string, failed: boolean): void;
}

/** Longest lock key a handler's `lockKey` may return (it becomes part of a Redis key). */
export const MAX_LOCK_KEY_LENGTH = 512;

/**
 * The life of one message (docs/architecture.md): route to a handler, decode, check the
 * messageId, then the path of the handler's effect kind (the marker, the lock, the handler), then
 * the {@link MessageSettler}. Never throws: every path ends in exactly one settlement.
 */
@Injectable()
export class MessageProcessor {
  private readonly settler: MessageSettler;
  private readonly handlerLogger: Logger;
  /** What every `redis-commit` journals with, or undefined when the journal is off. */
  private readonly effectJournal: EffectJournal | undefined;

  constructor(
    private readonly idempotency: IdempotencyStore,
    private readonly locks: LockService,
    private readonly metrics: MessageMetrics,
    publisher: MessagePublisher,
    @Inject(processingConfig.KEY) private readonly config: ConfigType<typeof processingConfig>,
    @Inject(MESSAGE_PROCESSOR_LOGGER) root: Logger,
    @Optional() private readonly postgres?: PostgresTransactions,
  ) {
    const logger = contextLogger(root, MessageProcessor.name);
    this.settler = new MessageSettler({
      publisher,
      metrics,
      logger,
      logsDebug: () => logger.isLevelEnabled('debug'),
    });
    this.handlerLogger = contextLogger(root, 'MessageHandler');
    this.effectJournal = config.effectJournal.maxLen > 0 ? config.effectJournal : undefined;
  }

  async process(
    message: ConsumeMessage,
    channel: Settlement,
    consumer: ConsumerHandle,
  ): Promise<void> {
    const startedAt = performance.now();
    const { binding } = consumer;
    this.metrics.messageReceived(binding.queue);
    const headers = message.properties.headers ?? {};
    const routingKey =
      stringHeader(headers[HEADER.originalRoutingKey]) ?? message.fields.routingKey;
    const handler = handlerFor(binding, routingKey);
    const messageId = nonEmpty(message.properties.messageId);
    const correlationId = nonEmpty(message.properties.correlationId);
    const attempt = attemptOf(headers);
    const handlerId = handler?.id ?? NO_HANDLER;
    // the delivery's span, child of the context its headers carry (the API's no-op without an SDK)
    const traced = startDeliverySpan(extractContext(headers), {
      queue: binding.queue,
      exchange: stringHeader(headers[HEADER.originalExchange]) ?? message.fields.exchange,
      routingKey,
      messageId,
      correlationId,
      bodySize: message.content.length,
      deliveryTag: message.fields.deliveryTag,
      attempt,
      handler: handlerId,
    });
    const ids = traceLogFields(traced.span);
    const log: MessageLogFields = {
      messageId,
      correlationId,
      queue: binding.queue,
      routingKey,
      attempt,
      handler: handlerId,
      ...ids,
    };
    let result: ProcessingResult;
    try {
      result = await withContext(traced.context, () =>
        this.run(message, consumer, handler, log, traced.context),
      );
    } catch (error) {
      result = { status: 'threw', error };
    }
    try {
      // a retry or dead-letter copy is published in the delivery's context: the next attempt
      // (or the dead letter) continues its trace
      let fate = withContext(traced.context, () =>
        this.settler.settle(
          {
            message,
            channel,
            exchange: binding.exchange,
            queue: binding.queue,
            log,
            startedAt,
            sampled: sampledIds(traced.span),
            retry: handler?.options.retry,
            nonRetryable: handler?.options.nonRetryable ?? [],
            tiers: binding.retryTiers,
          },
          result,
        ),
      );
      // an ack settles at once; only a failure's copy or a requeue's delay is waited for
      if (fate instanceof Promise) fate = await fate;
      if (handler && consumer.attempted) {
        // the handler's own verdicts only: not bad input, a busy key, a shutdown or an outage,
        // nor an error it declared non-retryable (a bad message, not a failing downstream)
        if (result.status === 'succeeded' || result.status === 'duplicate') {
          consumer.attempted(handler.id, false);
        } else if (
          fate.action === 'retry' ||
          (result.status === 'threw' &&
            fate.action === 'dead-letter' &&
            log.attempt >= handler.options.retry.maxAttempts)
        ) {
          consumer.attempted(handler.id, true);
        }
      }
      if (traced.span.isRecording()) {
        traced.span.addEvent('settled', { action: fate.action, outcome: fate.outcome });
        traced.span.setAttribute('message_processor.outcome', fate.outcome);
        if ('error' in fate && fate.error !== undefined) recordFailure(traced.span, fate.error);
      }
    } finally {
      traced.span.end();
    }
  }

  private async run(
    message: ConsumeMessage,
    consumer: ConsumerHandle,
    handler: RegisteredHandler | undefined,
    log: MessageLogFields,
    traceContext: Context,
  ): Promise<ProcessingResult> {
    if (!consumer.accepting()) return { status: 'stopping' };
    if (!handler) {
      return { status: 'invalid', error: new NoHandlerError(log.queue, log.routingKey) };
    }
    const deliveries = Number(message.properties.headers?.[HEADER.deliveryCount] ?? 0);
    if (deliveries >= MAX_UNSETTLED_DELIVERIES) {
      return { status: 'invalid', error: new DeliveryLimitError(deliveries) };
    }
    const decoded = decodeMessage(message.content, message.properties, this.config.messageMaxBytes);
    if (!decoded.ok) return { status: 'invalid', error: decoded.error };
    const { effect } = handler.options;
    if (effect !== 'idempotent' && log.messageId === undefined) {
      return { status: 'invalid', error: new MissingMessageIdError() };
    }
    const lockKey = lockKeyOf(handler, decoded.payload, log);
    if (lockKey instanceof InvalidLockKeyError) return { status: 'invalid', error: lockKey };
    let slotTag: string | undefined;
    let redisLockKey = lockKey;
    if (this.idempotency.clustered && !isPostgresEffect(effect)) {
      // on a Redis Cluster the message's keys (marker, lock, fence, journal) share one slot: the
      // slot of the effect key its handler names, or of its lock key
      const slotKey = slotKeyOf(handler, decoded.payload);
      if (slotKey instanceof InvalidLockKeyError) return { status: 'invalid', error: slotKey };
      slotTag = slotTagOf(slotKey ?? lockKey ?? `${log.queue}:${log.messageId ?? ''}`);
      if (lockKey !== undefined) redisLockKey = slotTag + lockKey;
    }
    const marker =
      effect === 'idempotent'
        ? undefined
        : this.idempotency.marker(log.queue, log.messageId as string, slotTag);
    const call: HandlerCall = {
      message,
      consumer,
      handler,
      log,
      payload: decoded.payload,
      marker,
      traceContext,
    };
    switch (effect) {
      case 'marker-after':
        return this.markerAfter(call, redisLockKey);
      case 'redis-commit':
        return this.redisCommit(call, redisLockKey);
      case 'postgres-transaction':
        return this.postgresTransaction(call, lockKey, 'interactive');
      case 'postgres-commit':
        return this.postgresTransaction(call, lockKey, 'at-commit');
      case 'idempotent':
        return this.idempotent(call, redisLockKey);
    }
  }

  /** Lock (checking the marker in the same round trip), run, write the marker, release. */
  private async markerAfter(
    call: HandlerCall,
    lockKey: string | undefined,
  ): Promise<ProcessingResult> {
    const marker = call.marker as ProcessedMarker;
    let lease: MessageLease | undefined;
    if (lockKey !== undefined) {
      const held = await this.hold(call, lockKey, marker.key);
      if (!(held instanceof MessageLease)) return held;
      lease = held;
    } else if (await this.idempotency.isProcessed(marker)) {
      return { status: 'duplicate' };
    }
    return this.runLeased(call, lease, () => this.idempotency.markProcessed(marker));
  }

  /**
   * Nothing sent before the handler: its commit checks the marker and takes the lock with the
   * effect, on the service's Redis (under Redlock too: quorum holders are recorded there).
   */
  private async redisCommit(
    call: HandlerCall,
    lockKey: string | undefined,
  ): Promise<ProcessingResult> {
    const { consumer } = call;
    const lease =
      lockKey === undefined
        ? undefined
        : this.locks.leaveToCommit(lockKey, { signal: consumer.stopSignal });
    try {
      return await this.invoke(call, lease);
    } catch (error) {
      if (lease?.lost) throw lease.lost;
      // a commit that waited for a busy key ends as a wait before a handler does
      if (error instanceof LockTimeoutError || error === consumer.stopSignal.reason) {
        return this.notTaken(consumer, error);
      }
      throw error;
    } finally {
      await lease?.release();
    }
  }

  /**
   * One PostgreSQL transaction: the key's lock (a row lock held to COMMIT, no Redis), the inbox
   * row (its existence: `duplicate`), the handler's writes, the outbox rows, COMMIT. The lock
   * lives in the database that holds the effect, so no holder can outlive it and write: a
   * session the server ended (idle past `LOCK_TTL_MS`) cannot commit. A messageId lock is the
   * inbox row itself. `at-commit` (`postgres-commit`): the handler first, then all of it in one
   * round trip.
   */
  private async postgresTransaction(
    call: HandlerCall,
    lockKey: string | undefined,
    mode: 'interactive' | 'at-commit',
  ): Promise<ProcessingResult> {
    const postgres = this.postgres;
    if (!postgres) throw new Error('PostgresModule is not imported');
    const { log, message, handler, consumer } = call;
    try {
      const entry = {
        queue: log.queue,
        messageId: log.messageId as string,
        lockKey: handler.options.lockKey === 'message-id' ? undefined : lockKey,
      };
      const origin = {
        correlationId: log.correlationId,
        headers: message.properties.headers ?? {},
      };
      const work = (tx: PostgresTransaction): Promise<ProcessingResult> =>
        this.invoke(call, undefined, tx);
      const outcome =
        mode === 'interactive'
          ? await postgres.runInbox(entry, origin, work)
          : await postgres.runCommit(entry, origin, work);
      return outcome.status === 'duplicate' ? { status: 'duplicate' } : outcome.value;
    } catch (error) {
      if (error instanceof LockTimeoutError) return this.notTaken(consumer, error);
      throw error;
    }
  }

  /** Lock, run, release: no marker read or written. */
  private async idempotent(
    call: HandlerCall,
    lockKey: string | undefined,
  ): Promise<ProcessingResult> {
    let lease: MessageLease | undefined;
    if (lockKey !== undefined) {
      const held = await this.hold(call, lockKey, undefined);
      if (!(held instanceof MessageLease)) return held;
      lease = held;
    }
    return this.runLeased(call, lease);
  }

  /** Runs the handler holding `lease` (if any), then `afterSuccess`, and releases the lease. */
  private async runLeased(
    call: HandlerCall,
    lease: MessageLease | undefined,
    afterSuccess?: () => Promise<void>,
  ): Promise<ProcessingResult> {
    try {
      const result = await this.invoke(call, lease);
      if (result.status === 'succeeded' && afterSuccess) await afterSuccess();
      return result;
    } catch (error) {
      // whatever the handler did after losing its lock was not protected: retry it
      throw lease?.lost ?? error;
    } finally {
      await lease?.release();
    }
  }

  /** The lock held before the handler runs, or the result of not getting it. */
  private async hold(
    { consumer, traceContext }: HandlerCall,
    lockKey: string,
    markerKey: string | undefined,
  ): Promise<MessageLease | ProcessingResult> {
    const waitStartedAt = performance.now();
    try {
      const taken = await this.locks.holdForMessage(lockKey, markerKey, {
        signal: consumer.stopSignal,
      });
      lockWaited(traceContext, taken === 'processed' ? 'processed' : 'acquired', waitStartedAt);
      return taken === 'processed' ? { status: 'duplicate' } : taken;
    } catch (error) {
      return this.notTaken(consumer, error);
    }
  }

  /** A lock wait that ended without the lock: stopping, busy, or (rethrown) a failure. */
  private notTaken(consumer: ConsumerHandle, error: unknown): ProcessingResult {
    if (consumer.stopSignal.aborted) return { status: 'stopping' };
    if (error instanceof LockTimeoutError) return { status: 'busy', error };
    throw error;
  }

  private async invoke(
    { message, consumer, handler, log, payload, marker, traceContext }: HandlerCall,
    lease: MessageLease | undefined,
    transaction?: PostgresTransaction,
  ): Promise<ProcessingResult> {
    // the handler's signal: the consumer's (shutdown deadline) and, with a lock, the lock's;
    // linked on first use only (two listeners and an AbortController most handlers never read)
    let linked: LinkedSignal | undefined;
    const headers = message.properties.headers ?? {};
    const context = new MessageContext({
      messageId: log.messageId,
      correlationId: log.correlationId,
      queue: log.queue,
      routingKey: log.routingKey,
      attempt: log.attempt,
      handler: log.handler,
      trace_id: log.trace_id,
      span_id: log.span_id,
      exchange: stringHeader(headers[HEADER.originalExchange]) ?? message.fields.exchange,
      headers,
      redelivered: message.fields.redelivered,
      signal: lease
        ? () => (linked ??= linkedSignal(consumer.signal, lease.signal)).signal
        : consumer.signal,
      effect: handler.options.effect,
      processedMarker: marker,
      lock: lease,
      effectJournal: this.effectJournal,
      transaction,
      message,
      baseLogger: this.handlerLogger,
    });
    let returned: unknown;
    try {
      returned = await inHandlerSpan(traceContext, log.handler, () =>
        handler.invoke(payload, context),
      );
    } finally {
      linked?.dispose();
    }
    // never an ack for work that finished without its lock (the marker makes the retry cheap)
    if (lease?.lost) throw lease.lost;
    return returned === AlreadyProcessed ? { status: 'duplicate' } : { status: 'succeeded' };
  }
}

/** One delivery on its way to its handler. */
interface HandlerCall {
  readonly message: ConsumeMessage;
  readonly consumer: ConsumerHandle;
  readonly handler: RegisteredHandler;
  readonly log: MessageLogFields;
  readonly payload: unknown;
  /** Undefined for an `idempotent` handler. */
  readonly marker: ProcessedMarker | undefined;
  /** The delivery span's context: the handler's span is its child. */
  readonly traceContext: Context;
}

/**
 * The key a message is locked on: the handler's `lockKey(payload)` (e.g. `account:<id>`, so work
 * on one account is serialized across all replicas) or, by default, its messageId within its
 * queue. Undefined (no lock) with `lockKey: false`, and for a message without messageId on an
 * `idempotent` handler.
 */
function lockKeyOf(
  handler: RegisteredHandler,
  payload: unknown,
  log: MessageLogFields,
): string | InvalidLockKeyError | undefined {
  const custom = handler.options.lockKey;
  if (custom === false) return undefined;
  if (custom === 'message-id') {
    return log.messageId === undefined ? undefined : `msg:${log.queue}:${log.messageId}`;
  }
  return keyFromPayload('lockKey', custom, payload);
}

/**
 * The effect key a `redis-commit` handler names (`effect.slotKey`), whose slot its commit's keys
 * share on a Redis Cluster; undefined when it names none.
 */
function slotKeyOf(
  handler: RegisteredHandler,
  payload: unknown,
): string | InvalidLockKeyError | undefined {
  const slotKey = handler.options.slotKey;
  return slotKey === undefined ? undefined : keyFromPayload('slotKey', slotKey, payload);
}

/** What a handler's key function (`lockKey`, `slotKey`) returns for `payload`, checked. */
function keyFromPayload(
  option: 'lockKey' | 'slotKey',
  keyOf: (payload: never) => string,
  payload: unknown,
): string | InvalidLockKeyError {
  let key: unknown;
  try {
    key = (keyOf as (payload: unknown) => unknown)(payload);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return new InvalidLockKeyError(`${option} threw: ${reason}`);
  }
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_LOCK_KEY_LENGTH) {
    return new InvalidLockKeyError(
      `${option} must return a string of 1-${MAX_LOCK_KEY_LENGTH} characters, got ${typeof key === 'string' ? `${key.length} characters` : typeof key}`,
    );
  }
  return key;
}

/** Routing keys seen per queue, with their handler (or none): most queues see a handful. */
const routes = new WeakMap<QueueBinding, Map<string, RegisteredHandler | undefined>>();
/** Beyond this many distinct routing keys on a queue, the rest are matched every time. */
const MAX_CACHED_ROUTES = 1_024;

function handlerFor(binding: QueueBinding, routingKey: string): RegisteredHandler | undefined {
  let cache = routes.get(binding);
  if (!cache) routes.set(binding, (cache = new Map<string, RegisteredHandler | undefined>()));
  if (cache.has(routingKey)) return cache.get(routingKey);
  const handler = binding.handlers.find((h) => h.matches(routingKey));
  if (cache.size < MAX_CACHED_ROUTES) cache.set(routingKey, handler);
  return handler;
}

function nonEmpty(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

function stringHeader(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

/**
 * 1-based number of the attempt about to run. `x-attempts` (written on every retry copy) counts
 * the attempts made; without it, expiries out of a delay tier recorded in `x-death`; without
 * those, the quorum queue's `x-delivery-count` (each earlier delivery was an attempt that never
 * settled).
 */
export function attemptOf(headers: Record<string, unknown>): number {
  const raw = headers[HEADER.attempts];
  const made = typeof raw === 'number' || typeof raw === 'string' ? Number(raw) : Number.NaN;
  if (Number.isSafeInteger(made) && made >= 0) return made + 1;
  const death = headers[HEADER.death];
  if (Array.isArray(death)) {
    const retries = death.reduce((sum: number, entry: unknown) => {
      if (typeof entry !== 'object' || entry === null) return sum;
      const { queue, reason, count } = entry as Record<string, unknown>;
      const fromTier =
        reason === 'expired' && typeof queue === 'string' && queue.includes('.retry.');
      return fromTier && typeof count === 'number' ? sum + count : sum;
    }, 0);
    if (retries > 0) return retries + 1;
  }
  const deliveries = Number(headers[HEADER.deliveryCount]);
  return Number.isSafeInteger(deliveries) && deliveries > 0 ? deliveries + 1 : 1;
}
