import { Inject, Injectable } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import type { Channel, ConsumeMessage } from 'amqplib';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import type { Logger } from 'pino';
import { processingConfig } from '../config/app.config';
import { MessageMetrics } from '../metrics/message.metrics';
import { IdempotencyStore } from './idempotency.store';
import { MessageContext, type MessageLogFields, type ProcessedMarker } from './message.context';
import { decodeMessage } from './message.decoder';
import type { ProcessingResult } from './message.fate';
import {
  AlreadyProcessed,
  type QueueBinding,
  type RegisteredHandler,
} from './message-handler.interfaces';
import { MessagePublisher } from './message.publisher';
import { MessageSettler } from './message.settler';
import { HEADER, MAX_UNSETTLED_DELIVERIES, NO_HANDLER } from './messaging.constants';
import { DeliveryLimitError, MissingMessageIdError, NoHandlerError } from './messaging.errors';

/** What the processor needs from the consumer a delivery came from. */
export interface ConsumerHandle {
  readonly binding: QueueBinding;
  /** False once the consumer is pausing or stopping: deliveries are handed back unstarted. */
  accepting(): boolean;
  /** Aborted when the shutdown deadline passes. */
  readonly signal: AbortSignal;
}

/**
 * The life of one message (DESIGN §3): route to a handler, decode, check the messageId and the
 * processed marker, run the handler through Nest, write the marker, then hand the result to the
 * {@link MessageSettler}. Never throws: every path ends in exactly one settlement.
 */
@Injectable()
export class MessageProcessor {
  private readonly settler: MessageSettler;
  private readonly handlerLogger: Logger;

  constructor(
    private readonly idempotency: IdempotencyStore,
    private readonly metrics: MessageMetrics,
    publisher: MessagePublisher,
    @Inject(processingConfig.KEY) private readonly config: ConfigType<typeof processingConfig>,
    @InjectPinoLogger(MessageProcessor.name) logger: PinoLogger,
  ) {
    this.settler = new MessageSettler({ publisher, metrics, logger });
    this.handlerLogger = logger.logger.child({ context: 'MessageHandler' });
  }

  async process(
    message: ConsumeMessage,
    channel: Channel,
    consumer: ConsumerHandle,
  ): Promise<void> {
    const startedAt = performance.now();
    const { binding } = consumer;
    this.metrics.messageReceived(binding.queue);
    const headers = message.properties.headers ?? {};
    const routingKey =
      stringHeader(headers[HEADER.originalRoutingKey]) ?? message.fields.routingKey;
    const handler = binding.handlers.find((h) => h.matches(routingKey));
    const log: MessageLogFields = {
      messageId: nonEmpty(message.properties.messageId),
      correlationId: nonEmpty(message.properties.correlationId),
      queue: binding.queue,
      routingKey,
      attempt: attemptOf(headers),
      handler: handler?.id ?? NO_HANDLER,
    };
    let result: ProcessingResult;
    try {
      result = await this.run(message, consumer, handler, log);
    } catch (error) {
      result = { status: 'threw', error };
    }
    await this.settler.settle(
      {
        message,
        channel,
        exchange: binding.exchange,
        queue: binding.queue,
        log,
        startedAt,
        retry: handler?.options.retry,
        nonRetryable: handler?.options.nonRetryable ?? [],
        tiers: binding.retryTiers,
      },
      result,
    );
  }

  private async run(
    message: ConsumeMessage,
    consumer: ConsumerHandle,
    handler: RegisteredHandler | undefined,
    log: MessageLogFields,
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
    let marker: ProcessedMarker | undefined;
    if (handler.options.idempotent) {
      if (log.messageId === undefined)
        return { status: 'invalid', error: new MissingMessageIdError() };
      marker = this.idempotency.marker(log.queue, log.messageId);
      if (await this.idempotency.isProcessed(marker)) return { status: 'duplicate' };
    }
    const context = new MessageContext({
      ...log,
      exchange:
        stringHeader(message.properties.headers?.[HEADER.originalExchange]) ??
        message.fields.exchange,
      headers: message.properties.headers ?? {},
      redelivered: message.fields.redelivered,
      signal: consumer.signal,
      processedMarker: marker,
      message,
      baseLogger: this.handlerLogger,
    });
    const returned = await handler.invoke(decoded.payload, context);
    if (returned === AlreadyProcessed) return { status: 'duplicate' };
    if (marker && !handler.options.commitsMarker) await this.idempotency.markProcessed(marker);
    return { status: 'succeeded' };
  }
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
