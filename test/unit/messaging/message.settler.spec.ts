import type { Channel, ConsumeMessage, Message, MessagePropertyHeaders } from 'amqplib';
import { IllegalOperationError } from 'amqplib';
import type { ProcessingOutcome } from '../../../src/metrics/metrics.constants';
import type { MessageLogFields } from '../../../src/messaging/message.context';
import type { PublishOptions } from '../../../src/messaging/message.publisher';
import {
  MessageSettler,
  type Delivery,
  type SettlerDeps,
} from '../../../src/messaging/message.settler';
import {
  MAX_EXCEPTION_MESSAGE_CHARS,
  MAX_STACKTRACE_CHARS,
  REQUEUE_DELAY_MS,
} from '../../../src/messaging/messaging.constants';
import {
  DependencyUnavailableError,
  MessageDecodeError,
  NonRetryableError,
} from '../../../src/messaging/messaging.errors';

const QUEUE = 'ledger.transactions';
const BODY = Buffer.from('{"accountId":"acc-42","amountCents":1250}');

/** A delivery as amqplib hands it to a consumer of `ledger.transactions`. */
function consumeMessage(headers: MessagePropertyHeaders = { 'x-tenant': 'acme' }): ConsumeMessage {
  return {
    content: BODY,
    fields: {
      deliveryTag: 17,
      redelivered: false,
      exchange: 'ledger',
      routingKey: 'transaction.created',
      consumerTag: 'amq.ctag-5Qx1V0h2w8bW',
    },
    properties: {
      contentType: 'application/json',
      contentEncoding: undefined,
      headers,
      deliveryMode: 2,
      priority: undefined,
      correlationId: 'corr-9',
      replyTo: undefined,
      expiration: undefined,
      messageId: 'tx-0001',
      timestamp: 1_735_689_600,
      type: 'transaction.created',
      userId: undefined,
      appId: 'billing',
      clusterId: undefined,
    },
  };
}

/** Every broker-facing and publisher-facing effect, in the order it happened. */
type Effect =
  | { readonly kind: 'ack'; readonly message: Message; readonly allUpTo: boolean | undefined }
  | {
      readonly kind: 'nack';
      readonly message: Message;
      readonly allUpTo: boolean | undefined;
      readonly requeue: boolean | undefined;
    }
  | {
      readonly kind: 'publish';
      readonly exchange: string;
      readonly routingKey: string;
      readonly content: Buffer;
      readonly options: PublishOptions;
    }
  | { readonly kind: 'publish-confirmed' };

/** amqplib's channel, as far as the settler uses it; throws like a closed channel when told to. */
class FakeChannel implements Pick<Channel, 'ack' | 'nack'> {
  closed = false;

  constructor(private readonly effects: Effect[]) {}

  ack(message: Message, allUpTo?: boolean): void {
    if (this.closed) throw new IllegalOperationError('Channel closed');
    this.effects.push({ kind: 'ack', message, allUpTo });
  }

  nack(message: Message, allUpTo?: boolean, requeue?: boolean): void {
    if (this.closed) throw new IllegalOperationError('Channel closed');
    this.effects.push({ kind: 'nack', message, allUpTo, requeue });
  }
}

/** The publisher's publishRaw; each publish confirms when the test says so (or at once). */
class FakePublisher {
  private confirmations: Array<() => void> = [];
  autoConfirm = true;
  failWith: Error | undefined;

  constructor(private readonly effects: Effect[]) {}

  publishRaw(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: PublishOptions,
  ): Promise<void> {
    this.effects.push({ kind: 'publish', exchange, routingKey, content, options });
    if (this.failWith) return Promise.reject(this.failWith);
    if (this.autoConfirm) {
      this.effects.push({ kind: 'publish-confirmed' });
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.confirmations.push(() => {
        this.effects.push({ kind: 'publish-confirmed' });
        resolve();
      });
    });
  }

  confirmNext(): void {
    const confirm = this.confirmations.shift();
    if (!confirm) throw new Error('no publish is waiting for its confirm');
    confirm();
  }
}

interface SettledMetric {
  readonly queue: string;
  readonly handler: string;
  readonly outcome: ProcessingOutcome;
  readonly seconds: number;
}

class FakeMetrics {
  readonly settled: SettledMetric[] = [];

  messageSettled(
    queue: string,
    handler: string,
    outcome: ProcessingOutcome,
    seconds: number,
  ): void {
    this.settled.push({ queue, handler, outcome, seconds });
  }
}

interface LogLine {
  readonly level: 'debug' | 'warn' | 'error';
  readonly fields: Record<string, unknown>;
  readonly msg: string;
}

class FakeLogger {
  readonly lines: LogLine[] = [];

  debug(fields: object, msg: string): void {
    this.lines.push({ level: 'debug', fields: { ...fields }, msg });
  }

  warn(fields: object, msg: string): void {
    this.lines.push({ level: 'warn', fields: { ...fields }, msg });
  }

  error(fields: object, msg: string): void {
    this.lines.push({ level: 'error', fields: { ...fields }, msg });
  }
}

/** A scheduler that keeps each delayed requeue until the test runs it. */
class ManualScheduler {
  readonly delays: number[] = [];
  private pending: Array<() => void> = [];
  private notify: (() => void) | undefined;

  readonly schedule = (fn: () => void, delayMs: number): void => {
    this.delays.push(delayMs);
    this.pending.push(fn);
    this.notify?.();
  };

  /** Resolves once something has been scheduled. */
  scheduled(): Promise<void> {
    if (this.pending.length > 0) return Promise.resolve();
    return new Promise((resolve) => (this.notify = resolve));
  }

  runAll(): void {
    const due = this.pending;
    this.pending = [];
    for (const fn of due) fn();
  }
}

function setup(
  options: { now?: () => number; scheduleRequeue?: SettlerDeps['scheduleRequeue'] } = {},
) {
  const effects: Effect[] = [];
  const channel = new FakeChannel(effects);
  const publisher = new FakePublisher(effects);
  const metrics = new FakeMetrics();
  const logger = new FakeLogger();
  const settler = new MessageSettler({
    publisher,
    metrics,
    logger,
    now: options.now ?? (() => 1_250),
    scheduleRequeue: options.scheduleRequeue,
  });
  const log: MessageLogFields = {
    messageId: 'tx-0001',
    correlationId: 'corr-9',
    queue: QUEUE,
    routingKey: 'transaction.created',
    attempt: 3,
    handler: 'LedgerHandler.apply',
  };
  const delivery = (message: ConsumeMessage = consumeMessage()): Delivery => ({
    message,
    channel,
    exchange: 'ledger',
    queue: QUEUE,
    log,
    startedAt: 1_000,
  });
  return { effects, channel, publisher, metrics, logger, settler, delivery };
}

/** Lets every already-settled promise continue (no time passes). */
function flushPromises(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function published(effects: readonly Effect[]): Extract<Effect, { kind: 'publish' }> {
  const publishes = effects.filter((e) => e.kind === 'publish');
  expect(publishes).toHaveLength(1);
  return publishes[0];
}

function headersOf(effects: readonly Effect[]): Record<string, unknown> {
  return { ...(published(effects).options.headers as Record<string, unknown>) };
}

describe('MessageSettler', () => {
  describe('on success', () => {
    it('acks the delivery once, nacks nothing and records the ack outcome', async () => {
      const { settler, delivery, effects, metrics } = setup();
      const message = consumeMessage();
      const fate = await settler.settle(delivery(message), { status: 'succeeded' });
      expect(fate).toEqual({ action: 'ack', outcome: 'ack' });
      expect(effects).toEqual([{ kind: 'ack', message, allUpTo: undefined }]);
      expect(metrics.settled).toEqual([
        { queue: QUEUE, handler: 'LedgerHandler.apply', outcome: 'ack', seconds: 0.25 },
      ]);
    });
  });

  describe('on a duplicate', () => {
    it('acks the delivery and records the duplicate outcome', async () => {
      const { settler, delivery, effects, metrics, logger } = setup();
      await settler.settle(delivery(), { status: 'duplicate' });
      expect(effects.map((e) => e.kind)).toEqual(['ack']);
      expect(metrics.settled.map((m) => m.outcome)).toEqual(['duplicate']);
      expect(logger.lines).toEqual([
        expect.objectContaining({ level: 'debug', msg: 'duplicate acked' }),
      ]);
    });
  });

  describe('on dead-letter', () => {
    const failure = (): Error => new NonRetryableError('amountCents exceeds the account limit');

    it('publishes the original bytes to <exchange>.dlx with the queue name as routing key', async () => {
      const { settler, delivery, effects } = setup();
      await settler.settle(delivery(), { status: 'threw', error: failure() });
      const publish = published(effects);
      expect(publish.exchange).toBe('ledger.dlx');
      expect(publish.routingKey).toBe(QUEUE);
      expect(publish.content.equals(BODY)).toBe(true);
    });

    it('keeps the identifying properties and publishes persistently', async () => {
      const { settler, delivery, effects } = setup();
      await settler.settle(delivery(), { status: 'threw', error: failure() });
      expect(published(effects).options).toMatchObject({
        messageId: 'tx-0001',
        correlationId: 'corr-9',
        contentType: 'application/json',
        timestamp: 1_735_689_600,
        type: 'transaction.created',
        appId: 'billing',
        persistent: true,
      });
    });

    it('writes every x-exception and x-original header and keeps the application headers', async () => {
      const { settler, delivery, effects } = setup();
      const error = failure();
      const before = Date.now();
      await settler.settle(delivery(), { status: 'threw', error });
      const after = Date.now();
      const headers = headersOf(effects);
      expect(headers).toMatchObject({
        'x-tenant': 'acme',
        'x-exception-message': 'amountCents exceeds the account limit',
        'x-exception-type': 'NonRetryableError',
        'x-exception-stacktrace': error.stack,
        'x-original-exchange': 'ledger',
        'x-original-routing-key': 'transaction.created',
        'x-attempts': 3,
        'x-handler': 'LedgerHandler.apply',
      });
      const failedAt = headers['x-failed-at'];
      expect(typeof failedAt).toBe('string');
      expect(failedAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      const failedAtMs = Date.parse(String(failedAt));
      expect(failedAtMs).toBeGreaterThanOrEqual(before);
      expect(failedAtMs).toBeLessThanOrEqual(after);
    });

    it('leaves the messageId of a message that had none unset in its dead-letter copy', async () => {
      const { settler, delivery, effects } = setup();
      const message = consumeMessage();
      message.properties.messageId = undefined;
      await settler.settle(delivery(message), { status: 'threw', error: failure() });
      const { options } = published(effects);
      expect(options.messageId).toBeUndefined();
      expect(options.correlationId).toBe('corr-9');
    });

    it('uses the error class name as x-exception-type', async () => {
      const { settler, delivery, effects } = setup();
      const error = new MessageDecodeError('not-json', "Expected property name or '}'");
      await settler.settle(delivery(), { status: 'invalid', error });
      expect(headersOf(effects)['x-exception-type']).toBe('MessageDecodeError');
    });

    it('keeps the original exchange and routing key of a message that already carries them', async () => {
      const { settler, delivery, effects } = setup();
      const replayed = consumeMessage({
        'x-original-exchange': 'payments',
        'x-original-routing-key': 'transaction.refunded',
      });
      await settler.settle(delivery(replayed), { status: 'threw', error: failure() });
      expect(headersOf(effects)).toMatchObject({
        'x-original-exchange': 'payments',
        'x-original-routing-key': 'transaction.refunded',
      });
    });

    it('does not modify the headers of the delivered message', async () => {
      const { settler, delivery } = setup();
      const message = consumeMessage();
      await settler.settle(delivery(message), { status: 'threw', error: failure() });
      expect(message.properties.headers).toEqual({ 'x-tenant': 'acme' });
    });

    it('truncates the stack trace to MAX_STACKTRACE_CHARS', async () => {
      const { settler, delivery, effects } = setup();
      const error = new Error('deep recursion');
      error.stack = `Error: deep recursion\n${'    at frame (file.ts:1:1)\n'.repeat(500)}`;
      await settler.settle(delivery(), { status: 'threw', error });
      const stack = String(headersOf(effects)['x-exception-stacktrace']);
      expect(error.stack.length).toBeGreaterThan(MAX_STACKTRACE_CHARS);
      expect(stack).toHaveLength(MAX_STACKTRACE_CHARS);
      expect(stack.endsWith('…')).toBe(true);
      expect(stack.startsWith('Error: deep recursion\n')).toBe(true);
    });

    it('truncates the exception message to MAX_EXCEPTION_MESSAGE_CHARS', async () => {
      const { settler, delivery, effects } = setup();
      const error = new Error(`schema-invalid: ${'x'.repeat(5_000)}`);
      await settler.settle(delivery(), { status: 'threw', error });
      const message = String(headersOf(effects)['x-exception-message']);
      expect(message).toHaveLength(MAX_EXCEPTION_MESSAGE_CHARS);
      expect(message.startsWith('schema-invalid: xxx')).toBe(true);
      expect(message.endsWith('…')).toBe(true);
    });

    it('keeps an exception message of exactly MAX_EXCEPTION_MESSAGE_CHARS whole', async () => {
      const { settler, delivery, effects } = setup();
      const text = 'y'.repeat(MAX_EXCEPTION_MESSAGE_CHARS);
      await settler.settle(delivery(), { status: 'threw', error: new Error(text) });
      expect(headersOf(effects)['x-exception-message']).toBe(text);
    });

    it('acks the original only after the dead-letter publish is confirmed', async () => {
      const { settler, delivery, effects, publisher, metrics } = setup();
      publisher.autoConfirm = false;
      const settling = settler.settle(delivery(), { status: 'threw', error: failure() });
      await flushPromises();
      expect(effects.map((e) => e.kind)).toEqual(['publish']);
      publisher.confirmNext();
      const fate = await settling;
      expect(effects.map((e) => e.kind)).toEqual(['publish', 'publish-confirmed', 'ack']);
      expect(fate).toMatchObject({ action: 'dead-letter', outcome: 'dead_letter' });
      expect(metrics.settled.map((m) => m.outcome)).toEqual(['dead_letter']);
    });

    it('logs a dead-lettered message once, as a warning with its reason', async () => {
      const { settler, delivery, logger } = setup();
      await settler.settle(delivery(), { status: 'threw', error: failure() });
      expect(logger.lines).toHaveLength(1);
      expect(logger.lines[0]).toMatchObject({
        level: 'warn',
        msg: 'dead-lettered: amountCents exceeds the account limit',
        fields: { code: 'DEAD_LETTERED', reason: 'NonRetryableError', outcome: 'dead_letter' },
      });
    });
  });

  describe('when the dead-letter publish fails', () => {
    it('keeps the original: no ack, a requeue nack after 1000 ms, outcome requeue', async () => {
      const scheduler = new ManualScheduler();
      const { settler, delivery, effects, publisher, metrics, logger } = setup({
        scheduleRequeue: scheduler.schedule,
      });
      const publishFailure = new Error('publish failed: no confirm within 10000 ms');
      publisher.failWith = publishFailure;
      const message = consumeMessage();
      const settling = settler.settle(delivery(message), {
        status: 'threw',
        error: new Error('handler bug'),
      });
      await scheduler.scheduled();
      expect(scheduler.delays).toEqual([1_000]);
      expect(effects.map((e) => e.kind)).toEqual(['publish']);
      scheduler.runAll();
      const fate = await settling;
      expect(effects).toEqual([
        expect.objectContaining({ kind: 'publish' }),
        { kind: 'nack', message, allUpTo: false, requeue: true },
      ]);
      expect(fate).toMatchObject({
        action: 'requeue',
        outcome: 'requeue',
        delayMs: 1_000,
        reason: 'dead-letter publish failed',
        error: publishFailure,
      });
      expect(metrics.settled.map((m) => m.outcome)).toEqual(['requeue']);
      expect(logger.lines).toEqual([
        expect.objectContaining({
          level: 'warn',
          msg: 'handed back: dead-letter publish failed',
          fields: expect.objectContaining({ code: 'HANDED_BACK', err: publishFailure }) as unknown,
        }),
      ]);
    });
  });

  describe('on requeue', () => {
    it('nacks a delivery refused while stopping at once, one message only, with requeue', async () => {
      const scheduler = new ManualScheduler();
      const { settler, delivery, effects, metrics } = setup({
        scheduleRequeue: scheduler.schedule,
      });
      const message = consumeMessage();
      await settler.settle(delivery(message), { status: 'stopping' });
      expect(scheduler.delays).toEqual([]);
      expect(effects).toEqual([{ kind: 'nack', message, allUpTo: false, requeue: true }]);
      expect(metrics.settled.map((m) => m.outcome)).toEqual(['requeue']);
    });

    it('hands back a delivery REQUEUE_DELAY_MS after a dependency outage, never acking it', async () => {
      jest.useFakeTimers();
      try {
        const { settler, delivery, effects, metrics } = setup();
        const message = consumeMessage();
        const settling = settler.settle(delivery(message), {
          status: 'threw',
          error: new DependencyUnavailableError('redis', 'Connection is closed.'),
        });
        await jest.advanceTimersByTimeAsync(REQUEUE_DELAY_MS - 1);
        expect(effects).toEqual([]);
        await jest.advanceTimersByTimeAsync(1);
        await settling;
        expect(effects).toEqual([{ kind: 'nack', message, allUpTo: false, requeue: true }]);
        expect(metrics.settled.map((m) => m.outcome)).toEqual(['requeue']);
      } finally {
        jest.useRealTimers();
      }
    });
  });

  describe('on a closed channel', () => {
    it('resolves an ack that cannot be sent, records the outcome and logs at debug', async () => {
      const { settler, delivery, channel, metrics, logger } = setup();
      channel.closed = true;
      await expect(settler.settle(delivery(), { status: 'succeeded' })).resolves.toEqual({
        action: 'ack',
        outcome: 'ack',
      });
      expect(metrics.settled.map((m) => m.outcome)).toEqual(['ack']);
      expect(logger.lines[0]).toMatchObject({
        level: 'debug',
        msg: 'ack not sent: channel closed',
      });
      expect(logger.lines[0].fields.err).toBeInstanceOf(IllegalOperationError);
    });

    it('resolves a nack that cannot be sent and still records the requeue', async () => {
      const { settler, delivery, channel, metrics, logger } = setup();
      channel.closed = true;
      await expect(settler.settle(delivery(), { status: 'stopping' })).resolves.toMatchObject({
        action: 'requeue',
      });
      expect(metrics.settled.map((m) => m.outcome)).toEqual(['requeue']);
      expect(logger.lines.map((l) => l.msg)).toContain('nack not sent: channel closed');
    });
  });

  describe('duration', () => {
    it('reports the seconds between startedAt and the injected clock', async () => {
      let now = 1_000;
      const { settler, delivery, metrics, logger } = setup({ now: () => now });
      now = 3_500;
      await settler.settle(delivery(), { status: 'succeeded' });
      expect(metrics.settled[0].seconds).toBe(2.5);
      expect(logger.lines[0].fields.durationMs).toBe(2_500);
    });
  });
});
