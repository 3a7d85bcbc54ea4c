import type { Channel, ConsumeMessage, MessagePropertyHeaders } from 'amqplib';
import type { ProcessingOutcome } from '../metrics/metrics.constants';
import type { MessageLogFields } from './message.context';
import { decideFate, type Fate, type ProcessingResult } from './message.fate';
import { HEADER, MAX_EXCEPTION_MESSAGE_CHARS, MAX_STACKTRACE_CHARS } from './messaging.constants';
import type { PublishOptions } from './message.publisher';
import { NonRetryableError } from './messaging.errors';
import { topologyNames } from './queue.topology';

/** A delivery being settled, with what is needed to act on it and to report it. */
export interface Delivery {
  readonly message: ConsumeMessage;
  /** The channel the message arrived on: acks must go back on the same channel. */
  readonly channel: Pick<Channel, 'ack' | 'nack'>;
  readonly exchange: string;
  readonly queue: string;
  readonly log: MessageLogFields;
  /** `performance.now()` at delivery. */
  readonly startedAt: number;
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
  readonly now?: () => number;
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

  async settle(delivery: Delivery, result: ProcessingResult): Promise<Fate> {
    let fate = decideFate(result);
    if (fate.action === 'dead-letter') {
      try {
        await this.deadLetter(delivery, fate.error);
      } catch (error) {
        // The copy is not safely in the DLQ: keep the original, hand it back a little later.
        fate = {
          action: 'requeue',
          outcome: 'requeue',
          delayMs: 1_000,
          reason: 'dead-letter publish failed',
          error,
        };
      }
    }
    // a dead-lettered original is acked only once its copy is confirmed in the DLQ
    if (fate.action === 'ack' || fate.action === 'dead-letter') this.ack(delivery);
    else if (fate.action === 'requeue') await this.requeue(delivery, fate.delayMs);
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

  private async deadLetter(delivery: Delivery, error: Error): Promise<void> {
    const { message } = delivery;
    const names = topologyNames({ exchange: delivery.exchange, queue: delivery.queue });
    const props = message.properties;
    const headers: MessagePropertyHeaders = { ...(props.headers ?? {}) };
    headers[HEADER.exceptionMessage] = truncate(error.message, MAX_EXCEPTION_MESSAGE_CHARS);
    headers[HEADER.exceptionType] = error.name;
    headers[HEADER.exceptionStacktrace] = truncate(error.stack ?? '', MAX_STACKTRACE_CHARS);
    headers[HEADER.originalExchange] ??= message.fields.exchange;
    headers[HEADER.originalRoutingKey] ??= message.fields.routingKey;
    headers[HEADER.attempts] = delivery.log.attempt;
    headers[HEADER.handler] = delivery.log.handler;
    headers[HEADER.failedAt] = new Date().toISOString();
    await this.deps.publisher.publishRaw(names.deadLetterExchange, names.queue, message.content, {
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
    });
  }

  private report(delivery: Delivery, fate: Fate, seconds: number): void {
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
      case 'requeue':
        if (fate.error === undefined) this.deps.logger.debug(fields, `handed back: ${fate.reason}`);
        else {
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
