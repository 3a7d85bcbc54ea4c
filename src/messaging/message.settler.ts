import type { ConsumeMessage, MessagePropertyHeaders } from 'amqplib';
import type { Settlement } from './ack.coalescer';
import type { ProcessingOutcome } from '../metrics/metrics.constants';
import type { MessageLogFields } from './message.context';
import { decideFate, type ErrorClass, type Fate, type ProcessingResult } from './message.fate';
import {
  HEADER,
  MAX_EXCEPTION_MESSAGE_CHARS,
  MAX_STACKTRACE_CHARS,
  PUBLISH_FAILED_REQUEUE_DELAY_MS,
} from './messaging.constants';
import { type RetryPolicy, tierQueueName } from './retry.policy';
import type { PublishOptions } from './message.publisher';
import { NonRetryableError } from './messaging.errors';
import { topologyNames } from './queue.topology';

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

  private async settleFailure(
    delivery: Delivery,
    decided: Exclude<Fate, { action: 'ack' }>,
  ): Promise<Fate> {
    let fate = decided;
    if (fate.action === 'retry' || fate.action === 'dead-letter' || fate.action === 'park') {
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
    // a parked message did not fail: its copy carries it on, the original is done
    if (fate.action === 'park') this.ack(delivery);
    // the original goes only once its copy is confirmed; reject (not ack) marks a failed delivery,
    // which RabbitMQ 4.3+ counts toward a quorum queue's delivery limit
    else if (fate.action === 'retry' || fate.action === 'dead-letter') this.reject(delivery);
    else await this.requeue(delivery, fate.delayMs);
    return this.finish(delivery, fate);
  }

  /** Records the outcome metric and writes the outcome log line. */
  private finish(delivery: Delivery, fate: Fate): Fate {
    const seconds = (this.now() - delivery.startedAt) / 1000;
    this.deps.metrics.messageSettled(delivery.queue, delivery.log.handler, fate.outcome, seconds);
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

  private reject(delivery: Delivery): void {
    try {
      delivery.channel.reject(delivery.message, false);
    } catch (error) {
      // the copy is safe; the broker redelivers the original and deduplication absorbs it
      this.deps.logger.debug({ ...delivery.log, err: error }, 'reject not sent: channel closed');
    }
  }

  private async requeue(delivery: Delivery, delayMs: number): Promise<void> {
    if (delayMs > 0) {
      await new Promise<void>((resolve) => this.scheduleRequeue(resolve, delayMs));
    }
    try {
      delivery.channel.nack(delivery.message, false, true);
    } catch (error) {
      this.deps.logger.debug({ ...delivery.log, err: error }, 'nack not sent: channel closed');
    }
  }

  /**
   * Publishes the retry copy (to its delay tier through the default exchange, with a per-message
   * expiry; the tier dead-letters it back into the queue) or the dead-letter copy (to `E.dlx`).
   * Body and properties are the original's; headers say why, when and how many times it failed.
   */
  private async publishCopy(
    delivery: Delivery,
    fate: Extract<Fate, { action: 'retry' | 'dead-letter' | 'park' }>,
  ): Promise<void> {
    const { message } = delivery;
    const props = message.properties;
    const now = (this.deps.clock?.() ?? new Date()).toISOString();
    const headers: MessagePropertyHeaders = { ...(props.headers ?? {}) };
    // set by the queue on redelivery; copied over it would read as redeliveries of the new message
    delete headers[HEADER.deliveryCount];
    headers[HEADER.originalExchange] ??= message.fields.exchange;
    headers[HEADER.originalRoutingKey] ??= message.fields.routingKey;
    if (fate.action === 'park') {
      // the attempt did not count: the next delivery runs as the same attempt number
      headers[HEADER.attempts] = delivery.log.attempt - 1;
      await this.publishTo(
        '',
        tierQueueName(delivery.queue, fate.tier),
        delivery,
        headers,
        fate.delayMs,
      );
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
      case 'park':
        if (fate.routine) {
          this.deps.logger.debug(
            { ...fields, reason: fate.reason, delayMs: fate.delayMs },
            `parked for ${fate.delayMs} ms: ${fate.reason}`,
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
          `parked for ${fate.delayMs} ms: ${fate.reason}`,
        );
        return;
      case 'requeue':
        if (fate.error === undefined || fate.routine) {
          this.deps.logger.debug(fields, `handed back: ${fate.reason}`);
        } else {
          this.deps.logger.warn(
            { ...fields, code: 'HANDED_BACK', reason: fate.reason, err: fate.error },
            `handed back: ${fate.reason}`,
          );
        }
    }
  }
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
