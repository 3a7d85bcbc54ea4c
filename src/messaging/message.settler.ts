import type { ConsumeMessage, MessagePropertyHeaders } from 'amqplib';
import type { Settlement } from './ack.coalescer.js';
import type { ProcessingOutcome } from '../metrics/metrics.constants.js';
import type { TraceIds } from '../tracing/message-tracing.js';
import type { MessageLogFields } from './message.context.js';
import { decideFate, type ErrorClass, type Fate, type ProcessingResult } from './message.fate.js';
import {
  HEADER,
  MAX_EXCEPTION_MESSAGE_CHARS,
  MAX_STACKTRACE_CHARS,
  PUBLISH_FAILED_REQUEUE_DELAY_MS,
} from './messaging.constants.js';
import { type RetryPolicy, tierQueueName } from './retry.policy.js';
import type { PublishOptions } from './message.publisher.js';
import { NonRetryableError } from './messaging.errors.js';
import { topologyNames } from './queue.topology.js';

/** A delivery being settled, with what is needed to act on it and to report it. */
export interface Delivery {
  readonly message: ConsumeMessage;
  /** The channel the message arrived on: acks must go back on the same channel. */
  readonly channel: Settlement;
  readonly exchange: string;
  readonly queue: string;
  readonly log: MessageLogFields;
  /** `performance.now()` at delivery. */
  readonly startedAt: number;
  /** The delivery span's ids when its trace is sampled: the duration's exemplar. */
  readonly sampled?: TraceIds;
  /** The matched handler's retry policy (undefined when none matched). */
  readonly retry: RetryPolicy | undefined;
  readonly nonRetryable: readonly ErrorClass[];
  /** The queue's delay tiers, ascending base delays. */
  readonly tiers: readonly number[];
}

/** The parts of the collaborators the settler uses (small fakes in unit tests). */
export interface SettlerDeps {
  readonly publisher: {
    publishRaw(
      exchange: string,
      routingKey: string,
      content: Buffer,
      options: PublishOptions,
    ): Promise<void>;
  };
  readonly metrics: {
    messageSettled(
      queue: string,
      handler: string,
      outcome: ProcessingOutcome,
      seconds: number,
      trace?: TraceIds,
    ): void;
  };
  readonly logger: {
    debug(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
  /** Whether debug lines are written; when not, a plain ack builds no log line at all. */
  readonly logsDebug?: () => boolean;
  readonly now?: () => number;
  /** Wall clock for the failure-time headers. */
  readonly clock?: () => Date;
  readonly random?: () => number;
  readonly scheduleRequeue?: (fn: () => void, delayMs: number) => void;
}

/**
 * Settles every delivery: ONE place decides its fate ({@link decideFate}), acts on it on the
 * broker, records the outcome metric and writes the outcome log line. Nothing else acks or nacks.
 */
export class MessageSettler {
  private readonly now: () => number;
  private readonly scheduleRequeue: (fn: () => void, delayMs: number) => void;

  constructor(private readonly deps: SettlerDeps) {
    this.now = deps.now ?? (() => performance.now());
    this.scheduleRequeue = deps.scheduleRequeue ?? ((fn, ms) => void setTimeout(fn, ms));
  }

  /**
   * Settles the delivery. An ack (the common case) is settled at once and returns the fate
   * itself; anything that publishes a copy or waits returns a promise of it.
   */
  settle(delivery: Delivery, result: ProcessingResult): Fate | Promise<Fate> {
    const fate = decideFate(result, {
      attempt: delivery.log.attempt,
      retry: delivery.retry,
      nonRetryable: delivery.nonRetryable,
      tiers: delivery.tiers,
      random: this.deps.random,
    });
    if (fate.action !== 'ack') return this.settleFailure(delivery, fate);
    this.ack(delivery);
    return this.finish(delivery, fate);
  }

  /**
   * Every fate but an ack publishes a copy first (to a delay tier, the DLQ, or back to the queue)
   * and acks the original once the broker confirmed the copy: never a reject, which would put a
   * second copy in the DLQ through the queue's dead-letter exchange, and never a requeueing nack,
   * which RabbitMQ up to 4.2 counts toward the delivery limit. Only a copy that could not be
   * published leaves the original to a requeueing nack.
   */
  private async settleFailure(
    delivery: Delivery,
    decided: Exclude<Fate, { action: 'ack' }>,
  ): Promise<Fate> {
    let fate: Exclude<Fate, { action: 'ack' }> = decided;
    if (fate.action === 'hand-back' && fate.tier === undefined && fate.delayMs > 0) {
      // no delay tier on this queue: the wait holds its prefetch slot, as a nack's delay would
      await this.delay(fate.delayMs);
    }
    if (delivery.channel.closed) {
      fate = {
        action: 'requeue',
        outcome: 'requeue',
        delayMs: 0,
        reason: `${fate.action} not needed: the channel closed and the broker took the message back`,
      };
    } else if (fate.action !== 'requeue') {
      try {
        await this.publishCopy(delivery, fate);
      } catch (error) {
        // The copy is not safely on the broker: keep the original, hand it back a little later.
        fate = {
          action: 'requeue',
          outcome: 'requeue',
          delayMs: PUBLISH_FAILED_REQUEUE_DELAY_MS,
          reason: `${fate.action} publish failed`,
          error,
        };
      }
    }
    if (fate.action === 'requeue') await this.requeue(delivery, fate.delayMs);
    else this.ack(delivery);
    return this.finish(delivery, fate);
  }

  /** Records the outcome metric and writes the outcome log line. */
  private finish(delivery: Delivery, fate: Fate): Fate {
    const seconds = (this.now() - delivery.startedAt) / 1000;
    this.deps.metrics.messageSettled(
      delivery.queue,
      delivery.log.handler,
      fate.outcome,
      seconds,
      delivery.sampled,
    );
    this.report(delivery, fate, seconds);
    return fate;
  }

  private ack(delivery: Delivery): void {
    try {
      delivery.channel.ack(delivery.message);
    } catch (error) {
      // The channel died: the broker redelivers and the processed marker absorbs it.
      this.deps.logger.debug({ ...delivery.log, err: error }, 'ack not sent: channel closed');
    }
  }

  private delay(ms: number): Promise<void> {
    return new Promise<void>((resolve) => this.scheduleRequeue(resolve, ms));
  }

  private async requeue(delivery: Delivery, delayMs: number): Promise<void> {
    if (delivery.channel.closed) return; // taken back by the broker already
    if (delayMs > 0) await this.delay(delayMs);
    try {
      delivery.channel.nack(delivery.message, false, true);
    } catch (error) {
      this.deps.logger.debug({ ...delivery.log, err: error }, 'nack not sent: channel closed');
    }
  }

  /**
   * Publishes the copy a fate needs: a retry to its delay tier (through the default exchange, with
   * a per-message expiry; the tier dead-letters it back into the queue), a dead letter to `E.dlx`,
   * a hand-back to a delay tier or straight to the queue. Body and properties are the original's;
   * headers say why, when and how many times it failed.
   */
  private async publishCopy(
    delivery: Delivery,
    fate: Extract<Fate, { action: 'retry' | 'dead-letter' | 'hand-back' }>,
  ): Promise<void> {
    const { message } = delivery;
    const props = message.properties;
    const now = (this.deps.clock?.() ?? new Date()).toISOString();
    const headers: MessagePropertyHeaders = { ...(props.headers ?? {}) };
    // set by the queue on redelivery; copied over they would read as deliveries of the new message
    delete headers[HEADER.deliveryCount];
    delete headers[HEADER.acquiredCount];
    headers[HEADER.originalExchange] ??= message.fields.exchange;
    headers[HEADER.originalRoutingKey] ??= message.fields.routingKey;
    if (fate.action === 'hand-back') {
      // the attempt did not count: the next delivery runs as the same attempt number
      headers[HEADER.attempts] = delivery.log.attempt - 1;
      if (fate.tier === undefined) {
        await this.publishTo('', delivery.queue, delivery, headers, undefined);
      } else {
        const tier = tierQueueName(delivery.queue, fate.tier);
        await this.publishTo('', tier, delivery, headers, fate.delayMs);
      }
      return;
    }
    headers[HEADER.exceptionMessage] = truncate(fate.error.message, MAX_EXCEPTION_MESSAGE_CHARS);
    headers[HEADER.exceptionType] = fate.error.name;
    headers[HEADER.exceptionStacktrace] = truncate(fate.error.stack ?? '', MAX_STACKTRACE_CHARS);
    headers[HEADER.attempts] = delivery.log.attempt;
    headers[HEADER.handler] = delivery.log.handler;
    headers[HEADER.firstFailedAt] ??= now;
    headers[HEADER.lastFailedAt] = now;
    if (fate.action === 'dead-letter') headers[HEADER.failedAt] = now;
    const names = topologyNames({ exchange: delivery.exchange, queue: delivery.queue });
    const [exchange, routingKey] =
      fate.action === 'retry'
        ? ['', tierQueueName(delivery.queue, fate.tier)]
        : [names.deadLetterExchange, names.queue];
    await this.publishTo(
      exchange,
      routingKey,
      delivery,
      headers,
      fate.action === 'retry' ? fate.delayMs : undefined,
    );
  }

  private async publishTo(
    exchange: string,
    routingKey: string,
    delivery: Delivery,
    headers: MessagePropertyHeaders,
    expirationMs: number | undefined,
  ): Promise<void> {
    const props = delivery.message.properties;
    await this.deps.publisher.publishRaw(exchange, routingKey, delivery.message.content, {
      headers,
      contentType: props.contentType as string | undefined,
      contentEncoding: props.contentEncoding as string | undefined,
      messageId: props.messageId as string | undefined,
      correlationId: props.correlationId as string | undefined,
      timestamp: props.timestamp as number | undefined,
      type: props.type as string | undefined,
      appId: props.appId as string | undefined,
      priority: props.priority as number | undefined,
      persistent: true,
      ...(expirationMs === undefined ? {} : { expiration: String(expirationMs) }),
    });
  }

  private report(delivery: Delivery, fate: Fate, seconds: number): void {
    // the common case, at info level: nothing to write, so nothing to build
    if (fate.action === 'ack' && this.deps.logsDebug?.() === false) return;
    const fields = {
      ...delivery.log,
      outcome: fate.outcome,
      durationMs: Math.round(seconds * 1000),
    };
    switch (fate.action) {
      case 'ack':
        this.deps.logger.debug(
          fields,
          fate.outcome === 'duplicate' ? 'duplicate acked' : 'processed',
        );
        return;
      case 'retry':
        this.deps.logger.warn(
          {
            ...fields,
            code: 'RETRY_SCHEDULED',
            reason: fate.error.name,
            delayMs: fate.delayMs,
            err: fate.error,
          },
          `retry in ${fate.delayMs} ms: ${truncate(fate.error.message, 200)}`,
        );
        return;
      case 'dead-letter':
        this.deps.logger.warn(
          {
            ...fields,
            code: 'DEAD_LETTERED',
            reason: fate.error.name,
            // a stack says nothing about a bad input; it matters for a handler's own failure
            ...(fate.error instanceof NonRetryableError ? {} : { err: fate.error }),
          },
          `dead-lettered: ${truncate(fate.error.message, 200)}`,
        );
        return;
      case 'hand-back':
        if (fate.routine) {
          this.deps.logger.debug(
            { ...fields, reason: fate.reason, delayMs: fate.delayMs },
            `handed back for ${fate.delayMs} ms: ${fate.reason}`,
          );
          return;
        }
        this.deps.logger.warn(
          {
            ...fields,
            code: 'HANDED_BACK',
            reason: fate.reason,
            delayMs: fate.delayMs,
            err: fate.error,
          },
          `handed back for ${fate.delayMs} ms: ${fate.reason}`,
        );
        return;
      case 'requeue':
        if (fate.error === undefined) {
          this.deps.logger.debug(fields, `handed back: ${fate.reason}`);
        } else {
          this.deps.logger.warn(
            { ...fields, code: 'HANDED_BACK', reason: fate.reason, err: fate.error },
            `handed back with a requeueing nack: ${fate.reason}`,
          );
        }
    }
  }
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
