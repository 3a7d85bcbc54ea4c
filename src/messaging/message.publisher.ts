import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import type { ChannelWrapper } from 'amqp-connection-manager';
import type { ConfirmChannel, Message, Options } from 'amqplib';
import { amqpConfig } from '../config/app.config.js';
import { MessageMetrics } from '../metrics/message.metrics.js';
import {
  recordFailure,
  sampledIds,
  startPublishSpan,
  type TraceIds,
} from '../tracing/message-tracing.js';
import { AmqpConnection } from './amqp.connection.js';
import {
  PublishError,
  PublishNackedError,
  PublisherBufferFullError,
  PublishTimeoutError,
  UnroutableMessageError,
} from './messaging.errors.js';

/** Options of {@link MessagePublisher.publish}: amqplib's publish options plus a timeout. */
export interface PublishOptions extends Omit<Options.Publish, 'mandatory'> {
  /** Reject if the broker has not confirmed within this time; default `PUBLISH_TIMEOUT_MS`. */
  readonly timeoutMs?: number;
  /** Fail with {@link UnroutableMessageError} when no queue is bound (default true). */
  readonly mandatory?: boolean;
}

/** What the publisher reports about each publish (the service's `MessageMetrics`). */
export interface PublishMetrics {
  messagePublished(
    exchange: string,
    outcome: 'confirmed' | 'failed',
    seconds: number,
    trace?: TraceIds,
  ): void;
}

/** Where the publisher reports a channel the broker closed (the service's `PinoLogger`). */
export interface PublishLogger {
  warn(fields: object, message: string): void;
}

/** What the broker confirmed. */
export interface PublishReceipt {
  readonly messageId: string;
  readonly correlationId: string;
}

/**
 * Publishes with publisher confirms. `publish()` resolves only when the broker has taken
 * responsibility for the message, and rejects with a typed {@link PublishError} on nack,
 * unroutable return (`mandatory`), timeout, or a full buffer while the broker is unreachable.
 * Messages are persistent, JSON and carry messageId, correlationId and timestamp by default.
 */
@Injectable()
export class MessagePublisher {
  private channel: ChannelWrapper;
  private closing = false;
  // publishes awaiting their confirm, and how many of them came back unroutable, by identity key
  private readonly pending = new Map<string, { count: number; returned: number }>();
  /** Exchanges this publisher declares on every channel it opens ({@link declareExchange}). */
  private readonly exchanges = new Set<string>();

  /** Outside Nest (the CLI), with metrics and a logger of the caller's own. */
  constructor(
    private readonly connection: AmqpConnection,
    @Inject(amqpConfig.KEY)
    private readonly config: Pick<
      ConfigType<typeof amqpConfig>,
      'publishTimeoutMs' | 'publishBufferLimit'
    >,
    @Inject(MessageMetrics) private readonly metrics: PublishMetrics,
    private readonly logger: PublishLogger,
  ) {
    this.channel = this.openChannel();
  }

  /**
   * A confirm channel that amqp-connection-manager re-creates after each reconnect. A publish the
   * broker refuses (an exchange that does not exist, a permission) closes the channel with an
   * error instead; unlistened, that error would close the whole connection, and with it every
   * consumer's unacked deliveries (each a delivery more toward a quorum queue's limit), and
   * amqp-connection-manager re-creates a channel closed that way only after a reconnect. So the
   * error is caught here and a fresh channel replaces the refused one at once.
   */
  private openChannel(): ChannelWrapper {
    const wrapper = this.connection.manager.createChannel({
      name: 'publisher',
      confirm: true,
      publishTimeout: this.config.publishTimeoutMs,
      setup: async (channel: ConfirmChannel) => {
        channel.on('return', (message: Message) => this.onReturn(message));
        channel.on('error', (err: Error) => this.onChannelRefused(wrapper, err));
        for (const exchange of this.exchanges) await assertTopic(channel, exchange);
      },
    });
    wrapper.on('error', (err: Error) =>
      this.logger.warn({ err, code: 'PUBLISHER_CHANNEL_ERROR' }, 'Publisher channel error'),
    );
    return wrapper;
  }

  private onChannelRefused(wrapper: ChannelWrapper, err: Error): void {
    this.logger.warn(
      { err, code: 'PUBLISHER_CHANNEL_ERROR' },
      'The broker closed the publisher channel; opening a new one',
    );
    if (this.closing || wrapper !== this.channel) return;
    this.channel = this.openChannel();
    // what the refused channel still held fails now instead of at its timeout
    void wrapper.close().catch(() => undefined);
  }

  /**
   * Serializes `payload` as JSON and publishes it, setting `messageId` (a UUID) and
   * `correlationId` (the messageId) when absent; see the class doc for the guarantees.
   */
  async publish(
    exchange: string,
    routingKey: string,
    payload: unknown,
    options: PublishOptions = {},
  ): Promise<PublishReceipt> {
    const content = Buffer.from(JSON.stringify(payload) ?? 'null');
    const messageId = options.messageId ?? randomUUID();
    const correlationId = options.correlationId ?? messageId;
    await this.publishRaw(exchange, routingKey, content, {
      contentType: 'application/json',
      // AMQP timestamps are whole seconds
      timestamp: Math.floor(Date.now() / 1000),
      ...options,
      messageId,
      correlationId,
    });
    return { messageId, correlationId };
  }

  /**
   * Publishes a body with exactly the given properties (persistent unless told otherwise): nothing
   * is generated, so a dead-letter copy of a message that had no messageId has none either (and
   * cannot be replayed into a deduplicating handler by accident). Same confirm semantics as
   * {@link publish}.
   */
  async publishRaw(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: PublishOptions = {},
  ): Promise<void> {
    const { timeoutMs, mandatory = true, ...untraced } = options;
    const timeout = timeoutMs ?? this.config.publishTimeoutMs;
    const startedAt = performance.now();
    // a PRODUCER span in the active context, its trace context over the message's own headers
    const traced = startPublishSpan({
      exchange,
      routingKey,
      messageId: untraced.messageId,
      correlationId: untraced.correlationId,
      bodySize: content.length,
    });
    // amqplib types headers as any: an object of header values
    const own = untraced.headers as Record<string, unknown> | undefined;
    const rest = traced ? { ...untraced, headers: { ...own, ...traced.headers } } : untraced;
    const settled = (outcome: 'confirmed' | 'failed', error?: Error): void => {
      const seconds = (performance.now() - startedAt) / 1000;
      if (!traced) {
        this.metrics.messagePublished(exchange, outcome, seconds);
        return;
      }
      this.metrics.messagePublished(exchange, outcome, seconds, sampledIds(traced.span));
      if (error) recordFailure(traced.span, error);
      traced.span.end();
    };
    if (
      !this.connection.isConnected() &&
      this.channel.queueLength() >= this.config.publishBufferLimit
    ) {
      const error = new PublisherBufferFullError(
        `broker unreachable and ${this.channel.queueLength()} messages already buffered (PUBLISH_BUFFER_LIMIT=${this.config.publishBufferLimit})`,
        exchange,
        routingKey,
      );
      settled('failed', error);
      throw error;
    }
    const key = identity(exchange, routingKey, rest.messageId);
    const entry = this.pending.get(key) ?? { count: 0, returned: 0 };
    entry.count++;
    this.pending.set(key, entry);
    let returned = false;
    try {
      await this.channel.publish(exchange, routingKey, content, {
        persistent: true,
        ...rest,
        mandatory,
        timeout,
      });
      // RabbitMQ sends basic.return before the basic.ack of the same message
      if (entry.returned > 0) {
        entry.returned--;
        returned = true;
      }
    } catch (error) {
      const failure = toPublishError(error, exchange, routingKey, timeout);
      settled('failed', failure);
      throw failure;
    } finally {
      entry.count--;
      if (entry.count === 0) this.pending.delete(key);
    }
    if (returned) {
      const error = new UnroutableMessageError(
        `no queue is bound to exchange "${exchange}" for routing key "${routingKey}"`,
        exchange,
        routingKey,
      );
      settled('failed', error);
      throw error;
    }
    settled('confirmed');
  }

  private onReturn(message: Message): void {
    const messageId = message.properties.messageId as string | undefined;
    if (messageId === undefined) return;
    const entry = this.pending.get(
      identity(message.fields.exchange, message.fields.routingKey, messageId),
    );
    if (entry) entry.returned++;
  }

  /**
   * Declares a durable topic exchange this service publishes to (an event exchange nobody else
   * declares), now and again on every channel after a reconnect. Idempotent.
   */
  async declareExchange(exchange: string): Promise<void> {
    if (this.exchanges.has(exchange)) return;
    this.exchanges.add(exchange);
    await this.channel.addSetup((channel: ConfirmChannel) => assertTopic(channel, exchange));
  }

  /** Closes the channel; unconfirmed publishes reject. Called by the messaging lifecycle. */
  async close(): Promise<void> {
    this.closing = true;
    await this.channel.close();
  }
}

async function assertTopic(channel: ConfirmChannel, exchange: string): Promise<void> {
  await channel.assertExchange(exchange, 'topic', { durable: true });
}

// Returns are matched to publishes by exchange, routing key and messageId; publishes without a
// messageId share a key, which is sound because they are routable or not alike.
function identity(exchange: string, routingKey: string, messageId: string | undefined): string {
  return `${exchange}\u0000${routingKey}\u0000${messageId ?? ''}`;
}

function toPublishError(
  error: unknown,
  exchange: string,
  routingKey: string,
  timeoutMs: number,
): PublishError {
  if (error instanceof PublishError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (message === 'timeout') {
    return new PublishTimeoutError(`no confirm within ${timeoutMs} ms`, exchange, routingKey, {
      cause: error,
    });
  }
  if (/nack/i.test(message)) {
    return new PublishNackedError(
      `the broker refused the message: ${message}`,
      exchange,
      routingKey,
      {
        cause: error,
      },
    );
  }
  return new PublishError(`publish failed: ${message}`, exchange, routingKey, { cause: error });
}
