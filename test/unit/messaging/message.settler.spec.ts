import { describe, it, expect, afterEach, vi } from 'vitest';
import type { ConsumeMessage } from 'amqplib';
import { FakeChannel } from '../support/fake-channel.js';
import { IllegalOperationError } from 'amqplib';
import type { ProcessingOutcome } from '../../../src/metrics/metrics.constants.js';
import type { MessageLogFields } from '../../../src/messaging/message.context.js';
import type { ErrorClass } from '../../../src/messaging/message.fate.js';
import type { PublishOptions } from '../../../src/messaging/message.publisher.js';
import {
  MessageSettler,
  type Delivery,
  type SettlerDeps,
} from '../../../src/messaging/message.settler.js';
import {
  MAX_EXCEPTION_MESSAGE_CHARS,
  MAX_STACKTRACE_CHARS,
  PUBLISH_FAILED_REQUEUE_DELAY_MS,
  HAND_BACK_DELAY_MS,
} from '../../../src/messaging/messaging.constants.js';
import {
  DependencyUnavailableError,
  MessageDecodeError,
  NonRetryableError,
  RetryAfterError,
} from '../../../src/messaging/messaging.errors.js';
import { delayTiers, type RetryPolicy } from '../../../src/messaging/retry.policy.js';

import { DEFAULT_POLICY, LEDGER_BODY, ledgerDelivery } from './fixtures.js';
import { RecordingLogger } from '../support/recording-logger.js';

const QUEUE = 'ledger.transactions';

/** The wall clock the settler is given: every failure-time header shows it. */
const FAILED_AT = new Date('2025-03-14T09:26:53.589Z');
const FAILED_AT_ISO = '2025-03-14T09:26:53.589Z';

/** Every broker-facing and publisher-facing effect, in the order it happened. */
type Effect =
  | { readonly kind: 'ack'; readonly tag: number; readonly multiple: boolean }
  | {
      readonly kind: 'nack';
      readonly tag: number;
      readonly multiple: boolean;
      readonly requeue: boolean;
    }
  | {
      readonly kind: 'publish';
      readonly exchange: string;
      readonly routingKey: string;
      readonly content: Buffer;
      readonly options: PublishOptions;
    }
  | { readonly kind: 'publish-confirmed' };

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

/** The effects of every settler a test set up: checked after each test for multiple=true. */
const effectLogs: Effect[][] = [];

afterEach(() => {
  const multiple = effectLogs.flat().filter((e) => 'multiple' in e && e.multiple);
  effectLogs.length = 0;
  expect(multiple).toEqual([]);
});

interface SetupOptions {
  readonly now?: () => number;
  readonly scheduleRequeue?: SettlerDeps['scheduleRequeue'];
  /** Default: a fixed clock at {@link FAILED_AT}; `null` leaves the settler on the wall clock. */
  readonly clock?: (() => Date) | null;
  readonly random?: () => number;
  /** The attempt that just ran. Default 3 of {@link DEFAULT_POLICY}'s 5. */
  readonly attempt?: number;
  readonly retry?: RetryPolicy;
  readonly nonRetryable?: readonly ErrorClass[];
  readonly tiers?: readonly number[];
  readonly logsDebug?: () => boolean;
}

function setup(options: SetupOptions = {}) {
  const effects: Effect[] = [];
  effectLogs.push(effects);
  // every ack and nack, in order with the publishes
  const channel = new FakeChannel({
    onCall: (call) => {
      if (call.op === 'ack') effects.push({ kind: 'ack', tag: call.tag, multiple: call.multiple });
      if (call.op === 'nack') {
        effects.push({
          kind: 'nack',
          tag: call.tag,
          multiple: call.multiple,
          requeue: call.requeue,
        });
      }
    },
  });
  const publisher = new FakePublisher(effects);
  const metrics = new FakeMetrics();
  const logger = new RecordingLogger();
  const settler = new MessageSettler({
    publisher,
    metrics,
    logger,
    now: options.now ?? (() => 1_250),
    clock: options.clock === null ? undefined : (options.clock ?? (() => FAILED_AT)),
    random: options.random ?? (() => 0),
    scheduleRequeue: options.scheduleRequeue,
    logsDebug: options.logsDebug,
  });
  const log: MessageLogFields = {
    messageId: 'tx-0001',
    correlationId: 'corr-9',
    queue: QUEUE,
    routingKey: 'transaction.created',
    attempt: options.attempt ?? 3,
    handler: 'LedgerHandler.apply',
  };
  const retry = 'retry' in options ? options.retry : DEFAULT_POLICY;
  // delivered on the channel, which gives it the next delivery tag (1, 2, …)
  const delivery = (message: ConsumeMessage = ledgerDelivery()): Delivery => ({
    message: channel.deliver(message),
    channel,
    exchange: 'ledger',
    queue: QUEUE,
    log,
    startedAt: 1_000,
    retry,
    nonRetryable: options.nonRetryable ?? [],
    tiers: options.tiers ?? (retry ? delayTiers(retry) : []),
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

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

describe('MessageSettler', () => {
  describe('on success', () => {
    it('acks the delivery once, nacks nothing and records the ack outcome', async () => {
      const { settler, delivery, effects, metrics } = setup();
      const message = ledgerDelivery();
      const fate = await settler.settle(delivery(message), { status: 'succeeded' });
      expect(fate).toEqual({ action: 'ack', outcome: 'ack' });
      expect(effects).toEqual([{ kind: 'ack', tag: 1, multiple: false }]);
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

  describe('at info level (debug lines not written)', () => {
    it('writes no line for an ack or a duplicate, and still warns about a retry', async () => {
      const { settler, delivery, effects, metrics, logger } = setup({ logsDebug: () => false });
      await settler.settle(delivery(), { status: 'succeeded' });
      await settler.settle(delivery(), { status: 'duplicate' });
      await settler.settle(delivery(), { status: 'threw', error: new Error('db down') });
      expect(effects.map((e) => e.kind)).toEqual([
        'ack',
        'ack',
        'publish',
        'publish-confirmed',
        'ack',
      ]);
      expect(metrics.settled.map((m) => m.outcome)).toEqual(['ack', 'duplicate', 'retry']);
      expect(logger.lines.map((l) => [l.level, l.fields.code])).toEqual([
        ['warn', 'RETRY_SCHEDULED'],
      ]);
    });
  });

  describe('on retry', () => {
    const failure = (): Error => new Error('ledger row locked by another writer');

    it('publishes the original bytes to the default exchange, routed to the delay tier of the attempt', async () => {
      // attempt 3 of 5 → base delay 4000 ms → third tier
      const { settler, delivery, effects } = setup({ attempt: 3 });
      const fate = await settler.settle(delivery(), { status: 'threw', error: failure() });
      const publish = published(effects);
      expect(publish.exchange).toBe('');
      expect(publish.routingKey).toBe('ledger.transactions.retry.3');
      expect(publish.content.equals(LEDGER_BODY)).toBe(true);
      expect(publish.options.expiration).toBe('4000');
      expect(fate).toMatchObject({ action: 'retry', outcome: 'retry', delayMs: 4_000, tier: 2 });
    });

    it.each([
      [1, 'ledger.transactions.retry.1', '1000'],
      [2, 'ledger.transactions.retry.2', '2000'],
      [4, 'ledger.transactions.retry.4', '8000'],
    ])('routes attempt %i to %s with expiration %s', async (attempt, routingKey, expiration) => {
      const { settler, delivery, effects } = setup({ attempt });
      await settler.settle(delivery(), { status: 'threw', error: failure() });
      expect(published(effects)).toMatchObject({
        exchange: '',
        routingKey,
        options: { expiration },
      });
    });

    it('sets the jittered delay as expiration, keeping the tier of the base delay', async () => {
      const { settler, delivery, effects } = setup({ attempt: 3, random: () => 1 });
      await settler.settle(delivery(), { status: 'threw', error: failure() });
      expect(published(effects)).toMatchObject({
        routingKey: 'ledger.transactions.retry.3',
        options: { expiration: '3200' },
      });
    });

    it('sends a RetryAfterError(500) to the first tier with expiration 500', async () => {
      const { settler, delivery, effects } = setup({ attempt: 3 });
      await settler.settle(delivery(), { status: 'threw', error: new RetryAfterError(500) });
      expect(published(effects)).toMatchObject({
        exchange: '',
        routingKey: 'ledger.transactions.retry.1',
        options: { expiration: '500' },
      });
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

    it('writes the failure headers, the attempt number and both failure times from the clock', async () => {
      const { settler, delivery, effects } = setup({ attempt: 3 });
      const error = failure();
      await settler.settle(delivery(), { status: 'threw', error });
      const headers = headersOf(effects);
      expect(headers).toEqual({
        'x-tenant': 'acme',
        'x-exception-message': 'ledger row locked by another writer',
        'x-exception-type': 'Error',
        'x-exception-stacktrace': error.stack,
        'x-original-exchange': 'ledger',
        'x-original-routing-key': 'transaction.created',
        'x-attempts': 3,
        'x-handler': 'LedgerHandler.apply',
        'x-first-failed-at': FAILED_AT_ISO,
        'x-last-failed-at': FAILED_AT_ISO,
      });
      expect(headers).not.toHaveProperty('x-failed-at');
    });

    it('keeps x-first-failed-at of an earlier failure and moves x-last-failed-at on', async () => {
      const { settler, delivery, effects } = setup({ attempt: 3 });
      const retried = ledgerDelivery({
        'x-tenant': 'acme',
        'x-attempts': 2,
        'x-first-failed-at': '2025-03-14T09:26:50.000Z',
        'x-last-failed-at': '2025-03-14T09:26:51.900Z',
        'x-exception-message': 'the previous failure',
      });
      await settler.settle(delivery(retried), { status: 'threw', error: failure() });
      expect(headersOf(effects)).toMatchObject({
        'x-attempts': 3,
        'x-first-failed-at': '2025-03-14T09:26:50.000Z',
        'x-last-failed-at': FAILED_AT_ISO,
        'x-exception-message': 'ledger row locked by another writer',
      });
    });

    it('removes the delivery counts from the copy and leaves the delivered message as it was', async () => {
      const { settler, delivery, effects } = setup();
      const counts = { 'x-delivery-count': 2, 'x-acquired-count': 3 };
      const message = ledgerDelivery({ 'x-tenant': 'acme', ...counts });
      await settler.settle(delivery(message), { status: 'threw', error: failure() });
      expect(headersOf(effects)).not.toHaveProperty('x-delivery-count');
      expect(headersOf(effects)).not.toHaveProperty('x-acquired-count');
      expect(message.properties.headers).toEqual({ 'x-tenant': 'acme', ...counts });
    });

    it('acks the original (never rejects it) only after the retry publish is confirmed', async () => {
      const { settler, delivery, effects, publisher, metrics } = setup();
      publisher.autoConfirm = false;
      const message = ledgerDelivery();
      const settling = settler.settle(delivery(message), { status: 'threw', error: failure() });
      await flushPromises();
      expect(effects.map((e) => e.kind)).toEqual(['publish']);
      expect(metrics.settled).toEqual([]);
      publisher.confirmNext();
      const fate = await settling;
      expect(effects.map((e) => e.kind)).toEqual(['publish', 'publish-confirmed', 'ack']);
      expect(effects[2]).toEqual({ kind: 'ack', tag: 1, multiple: false });
      expect(fate.action).toBe('retry');
      expect(metrics.settled).toEqual([
        { queue: QUEUE, handler: 'LedgerHandler.apply', outcome: 'retry', seconds: 0.25 },
      ]);
    });

    it('logs the retry once, as a warning with its delay and reason', async () => {
      const { settler, delivery, logger } = setup({ attempt: 2 });
      const error = failure();
      await settler.settle(delivery(), { status: 'threw', error });
      expect(logger.lines).toHaveLength(1);
      expect(logger.lines[0]).toMatchObject({
        level: 'warn',
        msg: 'retry in 2000 ms: ledger row locked by another writer',
        fields: {
          code: 'RETRY_SCHEDULED',
          reason: 'Error',
          delayMs: 2_000,
          outcome: 'retry',
          attempt: 2,
          err: error,
        },
      });
    });

    it('resolves an ack that cannot be sent after the copy, still records the retry, logs at debug', async () => {
      const { settler, delivery, channel, effects, metrics, logger, publisher } = setup();
      publisher.autoConfirm = false;
      const settling = settler.settle(delivery(), { status: 'threw', error: failure() });
      await flushPromises();
      // the channel closes while the copy awaits its confirm
      channel.closeByBroker();
      publisher.confirmNext();
      await expect(settling).resolves.toMatchObject({ action: 'retry' });
      expect(effects.map((e) => e.kind)).toEqual(['publish', 'publish-confirmed']);
      expect(metrics.settled.map((m) => m.outcome)).toEqual(['retry']);
      const debug = logger.lines.find((l) => l.msg === 'ack not sent: channel closed');
      expect(debug?.level).toBe('debug');
      expect(debug?.fields.err).toBeInstanceOf(IllegalOperationError);
    });
  });

  describe('when the copy cannot be published', () => {
    it.each([
      ['retry', new Error('ledger row locked'), { routingKey: 'ledger.transactions.retry.3' }],
      ['dead-letter', new NonRetryableError('handler refused'), { exchange: 'ledger.dlx' }],
    ] as const)(
      'keeps the original of a %s: no ack, a requeue nack after PUBLISH_FAILED_REQUEUE_DELAY_MS',
      async (kind, handlerError, target) => {
        const scheduler = new ManualScheduler();
        const { settler, delivery, effects, publisher, metrics, logger } = setup({
          scheduleRequeue: scheduler.schedule,
        });
        const publishFailure = new Error('publish failed: no confirm within 10000 ms');
        publisher.failWith = publishFailure;
        const message = ledgerDelivery();
        const settling = settler.settle(delivery(message), {
          status: 'threw',
          error: handlerError,
        });
        await scheduler.scheduled();
        expect(scheduler.delays).toEqual([PUBLISH_FAILED_REQUEUE_DELAY_MS]);
        expect(effects.map((e) => e.kind)).toEqual(['publish']);
        scheduler.runAll();
        const fate = await settling;
        expect(effects).toEqual([
          expect.objectContaining({ kind: 'publish', ...target }),
          { kind: 'nack', tag: 1, multiple: false, requeue: true },
        ]);
        expect(fate).toMatchObject({
          action: 'requeue',
          outcome: 'requeue',
          delayMs: PUBLISH_FAILED_REQUEUE_DELAY_MS,
          reason: `${kind} publish failed`,
          error: publishFailure,
        });
        expect(metrics.settled.map((m) => m.outcome)).toEqual(['requeue']);
        expect(logger.lines).toEqual([
          expect.objectContaining({
            level: 'warn',
            msg: `handed back with a requeueing nack: ${kind} publish failed`,
            fields: expect.objectContaining({
              code: 'HANDED_BACK',
              err: publishFailure,
            }) as unknown,
          }),
        ]);
      },
    );

    it('waits PUBLISH_FAILED_REQUEUE_DELAY_MS on the real timer by default', async () => {
      vi.useFakeTimers();
      try {
        const { settler, delivery, effects, publisher } = setup();
        publisher.failWith = new Error('channel closed');
        const settling = settler.settle(delivery(), { status: 'threw', error: new Error('x') });
        await vi.advanceTimersByTimeAsync(PUBLISH_FAILED_REQUEUE_DELAY_MS - 1);
        expect(effects.map((e) => e.kind)).toEqual(['publish']);
        await vi.advanceTimersByTimeAsync(1);
        await settling;
        expect(effects.map((e) => e.kind)).toEqual(['publish', 'nack']);
      } finally {
        vi.useRealTimers();
      }
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
      expect(publish.content.equals(LEDGER_BODY)).toBe(true);
    });

    it('publishes no expiration on a dead-letter copy', async () => {
      const { settler, delivery, effects } = setup();
      await settler.settle(delivery(), { status: 'threw', error: failure() });
      expect(published(effects).options).not.toHaveProperty('expiration');
    });

    it('dead-letters a retryable failure of the last attempt to <exchange>.dlx', async () => {
      const { settler, delivery, effects } = setup({ attempt: 5 });
      const fate = await settler.settle(delivery(), {
        status: 'threw',
        error: new Error('ledger row locked'),
      });
      expect(fate.action).toBe('dead-letter');
      expect(published(effects)).toMatchObject({ exchange: 'ledger.dlx', routingKey: QUEUE });
      expect(headersOf(effects)['x-attempts']).toBe(5);
    });

    it('dead-letters a failure of a type the handler declared non-retryable', async () => {
      class LedgerClosedError extends Error {
        override name = 'LedgerClosedError';
      }
      const { settler, delivery, effects } = setup({
        attempt: 1,
        nonRetryable: [LedgerClosedError],
      });
      await settler.settle(delivery(), {
        status: 'threw',
        error: new LedgerClosedError('period 2024-12 is closed'),
      });
      expect(published(effects).exchange).toBe('ledger.dlx');
      expect(headersOf(effects)['x-exception-type']).toBe('LedgerClosedError');
    });

    it('dead-letters a failure when no handler matched (no retry policy)', async () => {
      const { settler, delivery, effects } = setup({ attempt: 1, retry: undefined });
      await settler.settle(delivery(), { status: 'threw', error: new Error('x') });
      expect(published(effects).exchange).toBe('ledger.dlx');
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

    it('writes every x-exception, x-original and failure-time header and keeps the application headers', async () => {
      const { settler, delivery, effects } = setup();
      const error = failure();
      await settler.settle(delivery(), { status: 'threw', error });
      expect(headersOf(effects)).toEqual({
        'x-tenant': 'acme',
        'x-exception-message': 'amountCents exceeds the account limit',
        'x-exception-type': 'NonRetryableError',
        'x-exception-stacktrace': error.stack,
        'x-original-exchange': 'ledger',
        'x-original-routing-key': 'transaction.created',
        'x-attempts': 3,
        'x-handler': 'LedgerHandler.apply',
        'x-failed-at': FAILED_AT_ISO,
        'x-first-failed-at': FAILED_AT_ISO,
        'x-last-failed-at': FAILED_AT_ISO,
      });
    });

    it('keeps x-first-failed-at of the first retry on the dead-letter copy', async () => {
      const { settler, delivery, effects } = setup({ attempt: 5 });
      const retried = ledgerDelivery({
        'x-attempts': 4,
        'x-first-failed-at': '2025-03-14T09:26:38.000Z',
        'x-last-failed-at': '2025-03-14T09:26:45.000Z',
      });
      await settler.settle(delivery(retried), { status: 'threw', error: new Error('x') });
      expect(headersOf(effects)).toMatchObject({
        'x-attempts': 5,
        'x-first-failed-at': '2025-03-14T09:26:38.000Z',
        'x-last-failed-at': FAILED_AT_ISO,
        'x-failed-at': FAILED_AT_ISO,
      });
    });

    it('reads the clock once per settlement, so all failure times of a copy agree', async () => {
      let tick = 0;
      const clock = (): Date => new Date(FAILED_AT.getTime() + 1_000 * tick++);
      const { settler, delivery, effects } = setup({ clock });
      await settler.settle(delivery(), { status: 'threw', error: failure() });
      const headers = headersOf(effects);
      expect(headers['x-failed-at']).toBe(FAILED_AT_ISO);
      expect(headers['x-last-failed-at']).toBe(FAILED_AT_ISO);
      expect(headers['x-first-failed-at']).toBe(FAILED_AT_ISO);
      expect(tick).toBe(1);
    });

    it('falls back to the wall clock when no clock is injected', async () => {
      const { settler, delivery, effects } = setup({ clock: null });
      const before = Date.now();
      await settler.settle(delivery(), { status: 'threw', error: failure() });
      const after = Date.now();
      const failedAt = String(headersOf(effects)['x-failed-at']);
      expect(failedAt).toMatch(ISO_TIME);
      expect(Date.parse(failedAt)).toBeGreaterThanOrEqual(before);
      expect(Date.parse(failedAt)).toBeLessThanOrEqual(after);
    });

    it('removes x-delivery-count from the copy', async () => {
      const { settler, delivery, effects } = setup();
      const poisoned = ledgerDelivery({ 'x-tenant': 'acme', 'x-delivery-count': 10 });
      await settler.settle(delivery(poisoned), { status: 'threw', error: failure() });
      expect(headersOf(effects)).not.toHaveProperty('x-delivery-count');
      expect(headersOf(effects)['x-tenant']).toBe('acme');
    });

    it('leaves the messageId of a message that had none unset in its dead-letter copy', async () => {
      const { settler, delivery, effects } = setup();
      const message = ledgerDelivery();
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
      const replayed = ledgerDelivery({
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
      const message = ledgerDelivery();
      await settler.settle(delivery(message), { status: 'threw', error: failure() });
      expect(message.properties.headers).toEqual({ 'x-tenant': 'acme' });
    });

    it('truncates the stack trace to MAX_STACKTRACE_CHARS', async () => {
      const { settler, delivery, effects } = setup();
      const error = new NonRetryableError('deep recursion');
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
      const error = new NonRetryableError(`schema-invalid: ${'x'.repeat(5_000)}`);
      await settler.settle(delivery(), { status: 'threw', error });
      const message = String(headersOf(effects)['x-exception-message']);
      expect(message).toHaveLength(MAX_EXCEPTION_MESSAGE_CHARS);
      expect(message.startsWith('schema-invalid: xxx')).toBe(true);
      expect(message.endsWith('…')).toBe(true);
    });

    it('keeps an exception message of exactly MAX_EXCEPTION_MESSAGE_CHARS whole', async () => {
      const { settler, delivery, effects } = setup();
      const text = 'y'.repeat(MAX_EXCEPTION_MESSAGE_CHARS);
      await settler.settle(delivery(), { status: 'threw', error: new NonRetryableError(text) });
      expect(headersOf(effects)['x-exception-message']).toBe(text);
    });

    it('acks the original (a reject would add a second copy through the DLX) only after the publish is confirmed', async () => {
      const { settler, delivery, effects, publisher, metrics } = setup();
      publisher.autoConfirm = false;
      const message = ledgerDelivery();
      const settling = settler.settle(delivery(message), { status: 'threw', error: failure() });
      await flushPromises();
      expect(effects.map((e) => e.kind)).toEqual(['publish']);
      publisher.confirmNext();
      const fate = await settling;
      expect(effects.map((e) => e.kind)).toEqual(['publish', 'publish-confirmed', 'ack']);
      expect(effects[2]).toEqual({ kind: 'ack', tag: 1, multiple: false });
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
      expect(logger.lines[0].fields).not.toHaveProperty('err');
    });

    it('logs the stack of a handler failure that exhausted its attempts', async () => {
      const { settler, delivery, logger } = setup({ attempt: 5 });
      const error = new Error('ledger row locked');
      await settler.settle(delivery(), { status: 'threw', error });
      expect(logger.lines).toEqual([
        expect.objectContaining({
          level: 'warn',
          fields: expect.objectContaining({ code: 'DEAD_LETTERED', err: error }) as unknown,
        }),
      ]);
    });
  });

  describe('on hand-back ("not now")', () => {
    it('hands a delivery refused while stopping back at once: a copy straight to the queue, then the ack', async () => {
      const scheduler = new ManualScheduler();
      const { settler, delivery, effects, metrics, logger } = setup({
        attempt: 3,
        scheduleRequeue: scheduler.schedule,
      });
      const message = ledgerDelivery({ 'x-delivery-count': 4, 'x-acquired-count': 9 });
      await settler.settle(delivery(message), { status: 'stopping' });
      expect(scheduler.delays).toEqual([]);
      expect(effects.map((e) => e.kind)).toEqual(['publish', 'publish-confirmed', 'ack']);
      const copy = published(effects);
      expect([copy.exchange, copy.routingKey]).toEqual(['', QUEUE]);
      expect(copy.options.expiration).toBeUndefined();
      expect(copy.content).toBe(message.content);
      // nothing the broker counted follows the copy, and the attempt that never ran is not spent
      const headers = headersOf(effects);
      expect(headers).not.toHaveProperty('x-delivery-count');
      expect(headers).not.toHaveProperty('x-acquired-count');
      expect(headers['x-attempts']).toBe(2);
      expect(headers['x-original-routing-key']).toBe('transaction.created');
      expect(metrics.settled.map((m) => m.outcome)).toEqual(['requeue']);
      expect(logger.lines.map((l) => l.level)).toEqual(['debug']);
    });

    it('hands a copy back through a delay tier on a dependency outage, then acks the original', async () => {
      const { settler, delivery, effects, metrics } = setup({ attempt: 3 });
      const message = ledgerDelivery();
      await settler.settle(delivery(message), {
        status: 'threw',
        error: new DependencyUnavailableError('redis', 'Connection is closed.'),
      });
      expect(effects.map((e) => e.kind)).toEqual(['publish', 'publish-confirmed', 'ack']);
      const copy = published(effects);
      expect(copy.exchange).toBe('');
      expect(copy.routingKey).toBe(`${QUEUE}.retry.1`);
      expect(copy.options.expiration).toBe(String(HAND_BACK_DELAY_MS));
      // the outage spent no attempt: the copy runs again as attempt 3
      expect(headersOf(effects)['x-attempts']).toBe(2);
      expect(headersOf(effects)['x-exception-type']).toBeUndefined();
      expect(metrics.settled.map((m) => m.outcome)).toEqual(['requeue']);
    });

    it('waits HAND_BACK_DELAY_MS in the process when the queue has no tiers, then copies it to the queue', async () => {
      vi.useFakeTimers();
      try {
        const { settler, delivery, effects, metrics } = setup({ retry: undefined, tiers: [] });
        const message = ledgerDelivery();
        const settling = settler.settle(delivery(message), {
          status: 'threw',
          error: new DependencyUnavailableError('redis', 'Connection is closed.'),
        });
        await vi.advanceTimersByTimeAsync(HAND_BACK_DELAY_MS - 1);
        expect(effects).toEqual([]);
        await vi.advanceTimersByTimeAsync(1);
        await settling;
        expect(effects.map((e) => e.kind)).toEqual(['publish', 'publish-confirmed', 'ack']);
        expect([published(effects).exchange, published(effects).routingKey]).toEqual(['', QUEUE]);
        expect(metrics.settled.map((m) => m.outcome)).toEqual(['requeue']);
      } finally {
        vi.useRealTimers();
      }
    });

    it('falls back to a requeueing nack when the hand-back copy cannot be published', async () => {
      const scheduler = new ManualScheduler();
      const { settler, delivery, effects, publisher } = setup({
        scheduleRequeue: scheduler.schedule,
      });
      publisher.failWith = new Error('channel closed');
      const message = ledgerDelivery();
      const settling = settler.settle(delivery(message), { status: 'stopping' });
      await scheduler.scheduled();
      scheduler.runAll();
      await expect(settling).resolves.toMatchObject({
        action: 'requeue',
        reason: 'hand-back publish failed',
      });
      expect(effects.map((e) => e.kind)).toEqual(['publish', 'nack']);
    });
  });

  describe('on a closed channel', () => {
    it('settles an ack that cannot be sent, records the outcome and logs at debug', () => {
      const { settler, delivery, channel, metrics, logger } = setup();
      channel.closed = true;
      // an ack settles at once: the fate itself, no promise
      expect(settler.settle(delivery(), { status: 'succeeded' })).toEqual({
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

    it.each([
      ['a hand-back', { status: 'stopping' } as const],
      ['a retry', { status: 'threw', error: new Error('db down') } as const],
      ['a dead letter', { status: 'threw', error: new NonRetryableError('bad') } as const],
    ])(
      'publishes no copy for %s: the broker took the delivery back with its channel',
      async (_label, result) => {
        const { settler, delivery, channel, effects, metrics } = setup();
        channel.closed = true;
        await expect(settler.settle(delivery(), result)).resolves.toMatchObject({
          action: 'requeue',
          outcome: 'requeue',
        });
        expect(effects).toEqual([]);
        expect(metrics.settled.map((m) => m.outcome)).toEqual(['requeue']);
      },
    );
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
