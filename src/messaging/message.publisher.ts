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
  /** The confirm channel the current wrapper set up last, while it is open. */
  private direct: DirectChannel | undefined;
  /** Publishes sent on {@link direct} awaiting their confirm, oldest first. */
  private readonly inFlight = new Set<InFlight>();
  /** Publishes handed to the wrapper awaiting their confirm, oldest first (its own timeouts). */
  private readonly viaWrapper = new Set<InFlight>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Exchanges being declared on the channel: publishes wait in the wrapper meanwhile. */
  private declaring = 0;
  private closing = false;
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
        const direct: DirectChannel = { wrapper, channel, open: true };
        channel.on('return', (message: Message) => this.onReturn(message));
        channel.on('error', (err: Error) => this.onChannelRefused(wrapper, err));
        channel.once('close', () => {
          direct.open = false;
          if (this.direct === direct) this.direct = undefined;
        });
        for (const exchange of this.exchanges) await assertTopic(channel, exchange);
        if (direct.open) this.direct = direct;
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
  publish(
    exchange: string,
    routingKey: string,
    payload: unknown,
    options: PublishOptions = {},
  ): Promise<PublishReceipt> {
    let content: Buffer;
    try {
      content = Buffer.from(JSON.stringify(payload) ?? 'null');
    } catch (error) {
      // a BigInt, a cycle: rejected as every other failure, not thrown
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    const messageId = options.messageId ?? randomUUID();
    const correlationId = options.correlationId ?? messageId;
    const receipt: PublishReceipt = { messageId, correlationId };
    return this.send(exchange, routingKey, content, options.timeoutMs, receipt, {
      persistent: true,
      contentType: 'application/json',
      // AMQP timestamps are whole seconds
      timestamp: Math.floor(Date.now() / 1000),
      ...options,
      messageId,
      correlationId,
      mandatory: options.mandatory ?? true,
    });
  }

  /**
   * Publishes a body with exactly the given properties (persistent unless told otherwise): nothing
   * is generated, so a dead-letter copy of a message that had no messageId has none either (and
   * cannot be replayed into a deduplicating handler by accident). Same confirm semantics as
   * {@link publish}.
   */
  publishRaw(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: PublishOptions = {},
  ): Promise<void> {
    return this.send(exchange, routingKey, content, options.timeoutMs, undefined, {
      persistent: true,
      ...options,
      mandatory: options.mandatory ?? true,
    });
  }

  /**
   * Publishes and waits for the confirm: one promise per publish, settled from the confirm's
   * callback. `props` is this call's own object (the trace headers are merged into it); amqplib
   * reads only the AMQP properties from it, so `timeoutMs` may ride along.
   */
  private send<T>(
    exchange: string,
    routingKey: string,
    content: Buffer,
    timeoutMs: number | undefined,
    /** What the returned promise resolves with once confirmed. */
    result: T,
    props: Options.Publish & { mandatory: boolean },
  ): Promise<T> {
    const timeout = timeoutMs ?? this.config.publishTimeoutMs;
    const startedAt = performance.now();
    // a PRODUCER span in the active context, its trace context over the message's own headers
    const traced = startPublishSpan({
      exchange,
      routingKey,
      messageId: props.messageId,
      correlationId: props.correlationId,
      bodySize: content.length,
    });
    // amqplib types headers as any: an object of header values
    if (traced) props.headers = { ...(props.headers as object | undefined), ...traced.headers };
    const report = (failure: PublishError | undefined): void => {
      const seconds = (performance.now() - startedAt) / 1000;
      const outcome = failure ? 'failed' : 'confirmed';
      if (!traced) {
        this.metrics.messagePublished(exchange, outcome, seconds);
        return;
      }
      this.metrics.messagePublished(exchange, outcome, seconds, sampledIds(traced.span));
      if (failure) recordFailure(traced.span, failure);
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
      report(error);
      return Promise.reject(error);
    }
    return new Promise<T>((resolve, reject) => {
      this.confirm(exchange, routingKey, content, props, timeout, (error, returned) => {
        let failure: PublishError | undefined;
        if (error !== undefined) {
          failure = toPublishError(error, exchange, routingKey, timeout);
        } else if (returned) {
          failure = new UnroutableMessageError(
            `no queue is bound to exchange "${exchange}" for routing key "${routingKey}"`,
            exchange,
            routingKey,
          );
        }
        report(failure);
        if (failure) reject(failure);
        else resolve(result);
      });
    });
  }

  /**
   * Calls `done` once, on the broker's confirm (no error; `returned` if the broker returned the
   * message unroutable first) or the failure. While the channel is up and nothing waits in the
   * wrapper's buffer, the message goes straight onto the amqplib confirm channel the wrapper set
   * up: the wrapper's queue, its timer per message and its two promises cost about a fifth of a
   * publish's CPU (docs/benchmarks.md, "Publisher (g)"). Otherwise (no channel, a reconnect's
   * backlog, an exchange being declared) the wrapper buffers it until the channel is back, as
   * before, so the order of publishes holds. Either way a connection lost
   * before the confirm fails the publish (amqplib fails every unconfirmed callback of a closed
   * channel, and the wrapper passes that on): the caller retries, and the consumer's
   * deduplication absorbs a copy the broker had already taken.
   */
  private confirm(
    exchange: string,
    routingKey: string,
    content: Buffer,
    props: Options.Publish,
    timeout: number,
    done: Done,
  ): void {
    const waiting: InFlight = {
      deadline: performance.now() + timeout,
      done,
      messageId: props.messageId,
      exchange,
      routingKey,
      mandatory: props.mandatory === true,
      returned: false,
    };
    const direct = this.direct;
    if (
      direct === undefined ||
      direct.wrapper !== this.channel ||
      this.declaring > 0 ||
      this.channel.queueLength() > 0
    ) {
      this.buffered(content, props, timeout, waiting);
      return;
    }
    this.inFlight.add(waiting);
    try {
      // the callback holds `waiting` only: see finish()
      direct.channel.publish(exchange, routingKey, content, props, (err: Error | null) =>
        this.settle(waiting, err ?? undefined),
      );
    } catch {
      // the channel closed under us: the wrapper buffers it until the next one
      this.inFlight.delete(waiting);
      this.buffered(content, props, timeout, waiting);
      return;
    }
    this.sweeper ??= setInterval(() => this.sweep(), TIMEOUT_SWEEP_MS);
  }

  /** Through the wrapper: buffered while there is no channel, its own timer per message. */
  private buffered(
    content: Buffer,
    props: Options.Publish,
    timeout: number,
    waiting: InFlight,
  ): void {
    this.viaWrapper.add(waiting);
    const { exchange, routingKey } = waiting;
    this.channel.publish(exchange, routingKey, content, { ...props, timeout }).then(
      () => {
        this.viaWrapper.delete(waiting);
        finish(waiting);
      },
      (error: unknown) => {
        this.viaWrapper.delete(waiting);
        finish(waiting, error ?? new Error('publish failed'));
      },
    );
  }

  /** Ends a direct publish: confirmed (no error) or failed, unless it ended already (timed out). */
  private settle(waiting: InFlight, error?: unknown): void {
    if (this.inFlight.delete(waiting)) finish(waiting, error);
  }

  /**
   * Fails the direct publishes past their deadline with the wrapper's own `timeout` error: one
   * timer for all of them instead of one per message, at the cost of up to
   * {@link TIMEOUT_SWEEP_MS} of lateness.
   */
  private sweep(): void {
    const now = performance.now();
    for (const waiting of this.inFlight) {
      if (waiting.deadline > now) continue;
      this.settle(waiting, new Error('timeout'));
    }
    if (this.inFlight.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /**
   * Marks the publish the broker returned unroutable; its confirm, which RabbitMQ sends right
   * after the return, then fails it. Matched by messageId and route to the oldest mandatory
   * publish of both not marked yet (publishes without a messageId by route alone: on one route
   * they are routable or not alike). A scan of what is in flight, on returns only: the publish path
   * keeps no index for them.
   */
  private onReturn(message: Message): void {
    const messageId = message.properties.messageId as string | undefined;
    const { exchange, routingKey } = message.fields;
    for (const publishes of [this.inFlight, this.viaWrapper]) {
      for (const waiting of publishes) {
        if (
          waiting.mandatory &&
          !waiting.returned &&
          waiting.messageId === messageId &&
          waiting.exchange === exchange &&
          waiting.routingKey === routingKey
        ) {
          waiting.returned = true;
          return;
        }
      }
    }
  }

  /**
   * Declares a durable topic exchange this service publishes to (an event exchange nobody else
   * declares), now and again on every channel after a reconnect. Idempotent.
   */
  async declareExchange(exchange: string): Promise<void> {
    if (this.exchanges.has(exchange)) return;
    this.exchanges.add(exchange);
    this.declaring++;
    try {
      await this.channel.addSetup((channel: ConfirmChannel) => assertTopic(channel, exchange));
    } finally {
      this.declaring--;
    }
  }

  /** Closes the channel; unconfirmed publishes reject. Called by the messaging lifecycle. */
  async close(): Promise<void> {
    this.closing = true;
    // as the wrapper does with its own: what is not confirmed yet fails now
    for (const waiting of this.inFlight) this.settle(waiting, new Error('Channel closed'));
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    await this.channel.close();
  }
}

/** How often direct publishes are checked against their deadline. */
const TIMEOUT_SWEEP_MS = 50;

/** How a publish ends: confirmed (no error; `returned` if it came back unroutable) or failed. */
type Done = (error?: unknown, returned?: boolean) => void;

/**
 * Calls a publish's `done` once and lets go of it. The young generation's GC can keep a confirm
 * callback handed to amqplib alive past its confirm: it promotes even raw amqplib's empty
 * callbacks to the old generation (about 40 bytes per publish; amqplib keeps them in an array it
 * shifts and regrows). Holding only `waiting`, whose `done` is dropped here, a confirmed
 * publish's callback keeps nothing else alive: before, each publish's promise, closures and
 * receipt were promoted with it (about 400 bytes per publish, and the publisher's scavenges took
 * 1.7 times as long; docs/benchmarks.md, "Publisher: the order of the pair, and what a confirmed
 * publish kept").
 */
function finish(waiting: InFlight, error?: unknown): void {
  const { done } = waiting;
  if (done === undefined) return;
  waiting.done = undefined;
  done(error, waiting.returned);
}

/** A publish awaiting its confirm. */
interface InFlight {
  /**
   * `performance.now()` after which it fails with a timeout: swept on the channel itself only
   * (through the wrapper, the wrapper's own timer applies).
   */
  readonly deadline: number;
  /** Until the publish ends ({@link finish}). */
  done: Done | undefined;
  readonly messageId: string | undefined;
  readonly exchange: string;
  readonly routingKey: string;
  /** Only a mandatory publish comes back when no queue takes it. */
  readonly mandatory: boolean;
  /** The broker returned it unroutable (`mandatory`): its confirm follows. */
  returned: boolean;
}

/** The amqplib confirm channel a wrapper set up, for publishing without the wrapper's queue. */
interface DirectChannel {
  readonly wrapper: ChannelWrapper;
  readonly channel: ConfirmChannel;
  /** False from its `close` event on. */
  open: boolean;
}

async function assertTopic(channel: ConfirmChannel, exchange: string): Promise<void> {
  await channel.assertExchange(exchange, 'topic', { durable: true });
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
