import { describe, it, expect } from 'vitest';
import {
  BadRequestException,
  ForbiddenException,
  HttpException,
  InternalServerErrorException,
  ServiceUnavailableException,
} from '@nestjs/common';
import { MaxRetriesPerRequestError } from 'ioredis';
import {
  decideFate,
  isDependencyOutage,
  isNonRetryable,
  type FateInputs,
} from '../../../src/messaging/message.fate.js';
import { HAND_BACK_DELAY_MS } from '../../../src/messaging/messaging.constants.js';
import {
  DeliveryLimitError,
  DependencyUnavailableError,
  MessageDecodeError,
  MessageValidationError,
  NonRetryableError,
  RetryAfterError,
} from '../../../src/messaging/messaging.errors.js';
import { delayTiers, type RetryPolicy } from '../../../src/messaging/retry.policy.js';
import { LockLostError, LockTimeoutError, LockUnavailableError } from '../../../src/lock/index.js';
import { DEFAULT_POLICY } from './fixtures.js';

/** ioredis's own MaxRetriesPerRequestError (its typings lose the Error base class). */
function maxRetriesPerRequestError(): Error {
  const error: unknown = new MaxRetriesPerRequestError(20);
  if (!(error instanceof Error)) throw new TypeError('MaxRetriesPerRequestError is not an Error');
  return error;
}

/** Errors exactly as ioredis raises them while Redis is unreachable or slow. */
const ioredisOutages: ReadonlyArray<[string, Error]> = [
  ['a command on a closed connection', new Error('Connection is closed.')],
  [
    'a command while offline with the offline queue disabled',
    new Error("Stream isn't writeable and enableOfflineQueue options is false"),
  ],
  ['a command timeout', new Error('Command timed out')],
  ['exhausted retries (MaxRetriesPerRequestError)', maxRetriesPerRequestError()],
  ['a refused connection', new Error('connect ECONNREFUSED 127.0.0.1:6379')],
  ['a reset connection', new Error('read ECONNRESET')],
];

/** The queue's tiers for that policy: 1000, 2000, 4000, 8000 ms. */
const TIERS = delayTiers(DEFAULT_POLICY);

/** Inputs of one attempt; random() = 0 keeps the delay at its base unless a test says otherwise. */
function inputs(overrides: Partial<FateInputs> = {}): FateInputs {
  return {
    attempt: 1,
    retry: DEFAULT_POLICY,
    nonRetryable: [],
    tiers: TIERS,
    random: () => 0,
    ...overrides,
  };
}

/** A handler's own error type, declared non-retryable in a test. */
class InsufficientFundsError extends Error {
  override name = 'InsufficientFundsError';
}

class OverdraftError extends InsufficientFundsError {
  override name = 'OverdraftError';
}

describe('decideFate', () => {
  it('acks a message whose handler succeeded', () => {
    expect(decideFate({ status: 'succeeded' }, inputs())).toEqual({
      action: 'ack',
      outcome: 'ack',
    });
  });

  it('acks a duplicate with the duplicate outcome', () => {
    expect(decideFate({ status: 'duplicate' }, inputs())).toEqual({
      action: 'ack',
      outcome: 'duplicate',
    });
  });

  it('hands a message back at once, straight to its queue, while the consumer stops', () => {
    for (const attempt of [1, 5, 99]) {
      expect(decideFate({ status: 'stopping' }, inputs({ attempt }))).toEqual({
        action: 'hand-back',
        outcome: 'requeue',
        delayMs: 0,
        tier: undefined,
        reason: 'consumer stopping',
        routine: true,
      });
    }
  });

  it('dead-letters an invalid message with the very error that refused it, on its first attempt', () => {
    const error = new MessageDecodeError('not-json', 'Unexpected token');
    const fate = decideFate({ status: 'invalid', error }, inputs({ attempt: 1 }));
    expect(fate).toEqual({ action: 'dead-letter', outcome: 'dead_letter', error });
    expect(fate.action === 'dead-letter' && fate.error).toBe(error);
  });

  it('dead-letters a poison message (delivery limit) without retrying it', () => {
    const error = new DeliveryLimitError(10);
    expect(decideFate({ status: 'invalid', error }, inputs())).toEqual({
      action: 'dead-letter',
      outcome: 'dead_letter',
      error,
    });
  });

  describe('when the handler threw a retryable error', () => {
    it.each([
      [1, 1_000, 0],
      [2, 2_000, 1],
      [3, 4_000, 2],
      [4, 8_000, 3],
    ])(
      'retries after attempt %i with the schedule delay %i ms in tier %i',
      (attempt, delayMs, tier) => {
        const error = new Error('ledger row locked');
        expect(decideFate({ status: 'threw', error }, inputs({ attempt }))).toEqual({
          action: 'retry',
          outcome: 'retry',
          error,
          delayMs,
          tier,
        });
      },
    );

    it('dead-letters at attempt == maxAttempts with that error', () => {
      const error = new Error('ledger row locked');
      expect(decideFate({ status: 'threw', error }, inputs({ attempt: 5 }))).toEqual({
        action: 'dead-letter',
        outcome: 'dead_letter',
        error,
      });
    });

    it('dead-letters an attempt beyond maxAttempts (a count that overshot)', () => {
      const fate = decideFate({ status: 'threw', error: new Error('x') }, inputs({ attempt: 6 }));
      expect(fate.action).toBe('dead-letter');
    });

    it('dead-letters at once under a policy of one attempt', () => {
      const once: RetryPolicy = { ...DEFAULT_POLICY, maxAttempts: 1 };
      const fate = decideFate(
        { status: 'threw', error: new Error('x') },
        inputs({ retry: once, tiers: delayTiers(once) }),
      );
      expect(fate.action).toBe('dead-letter');
    });

    it('dead-letters rather than retry when the queue has no delay tier', () => {
      const fate = decideFate({ status: 'threw', error: new Error('x') }, inputs({ tiers: [] }));
      expect(fate.action).toBe('dead-letter');
    });

    it('dead-letters when no handler matched (no retry policy)', () => {
      const error = new Error('x');
      expect(decideFate({ status: 'threw', error }, inputs({ retry: undefined }))).toEqual({
        action: 'dead-letter',
        outcome: 'dead_letter',
        error,
      });
    });

    it('shortens the delay by the jitter but keeps the tier of the base delay', () => {
      const error = new Error('x');
      const atMost = decideFate(
        { status: 'threw', error },
        inputs({ attempt: 2, random: () => 1 }),
      );
      const halfway = decideFate(
        { status: 'threw', error },
        inputs({ attempt: 2, random: () => 0.5 }),
      );
      expect(atMost).toMatchObject({ action: 'retry', delayMs: 1_600, tier: 1 });
      expect(halfway).toMatchObject({ action: 'retry', delayMs: 1_800, tier: 1 });
    });

    it('keeps the tier of the base delay even when another handler has a tier nearer the jittered one', () => {
      // another handler of the queue retries after 1700 ms; 2000 jittered down to 1600 stays in 2000
      const fate = decideFate(
        { status: 'threw', error: new Error('x') },
        inputs({ attempt: 2, random: () => 1, tiers: [1_000, 1_700, 2_000, 4_000, 8_000] }),
      );
      expect(fate).toMatchObject({ action: 'retry', delayMs: 1_600, tier: 2 });
    });

    it('draws the jitter from Math.random when no random is given', () => {
      const fate = decideFate(
        { status: 'threw', error: new Error('x') },
        inputs({ attempt: 3, random: undefined }),
      );
      if (fate.action !== 'retry') throw new Error(`expected a retry, got ${fate.action}`);
      expect(fate.tier).toBe(2);
      expect(fate.delayMs).toBeGreaterThanOrEqual(3_200);
      expect(fate.delayMs).toBeLessThanOrEqual(4_000);
    });

    it("picks the tier of its base delay among the queue's union of tiers", () => {
      // another handler of the queue retries after 500 and 3000 ms
      const tiers = [500, 1_000, 2_000, 3_000, 4_000, 8_000];
      const tierOf = (attempt: number): number | undefined => {
        const fate = decideFate(
          { status: 'threw', error: new Error('x') },
          inputs({ attempt, tiers }),
        );
        return fate.action === 'retry' ? fate.tier : undefined;
      };
      expect([1, 2, 3, 4].map(tierOf)).toEqual([1, 2, 4, 5]);
    });

    it('caps the delay at maxDelayMs once the schedule reaches it', () => {
      const capped: RetryPolicy = { ...DEFAULT_POLICY, maxAttempts: 8, maxDelayMs: 5_000 };
      const tiers = delayTiers(capped);
      expect(tiers).toEqual([1_000, 2_000, 4_000, 5_000]);
      const fate = decideFate(
        { status: 'threw', error: new Error('x') },
        inputs({ retry: capped, tiers, attempt: 7 }),
      );
      expect(fate).toMatchObject({ action: 'retry', delayMs: 5_000, tier: 3 });
    });

    it.each<[string, Error]>([
      ['ServiceUnavailableException (503)', new ServiceUnavailableException('upstream down')],
      ['InternalServerErrorException (500)', new InternalServerErrorException()],
      ['a plain Error', new Error('division by zero')],
      ['a TypeError', new TypeError("Cannot read properties of undefined (reading 'id')")],
    ])('retries on %s', (_label, error) => {
      expect(decideFate({ status: 'threw', error }, inputs())).toEqual({
        action: 'retry',
        outcome: 'retry',
        error,
        delayMs: 1_000,
        tier: 0,
      });
    });

    it('retries a thrown string as an Error carrying that string', () => {
      const fate = decideFate({ status: 'threw', error: 'kaboom' }, inputs());
      expect(fate.action).toBe('retry');
      const error = fate.action === 'retry' ? fate.error : undefined;
      expect(error).toBeInstanceOf(Error);
      expect(error?.message).toBe('kaboom');
    });

    it('dead-letters a thrown object after the last attempt as an Error describing the value', () => {
      const fate = decideFate(
        { status: 'threw', error: { code: 42, reason: 'nope' } },
        inputs({ attempt: 5 }),
      );
      expect(fate.action).toBe('dead-letter');
      const error = fate.action === 'dead-letter' ? fate.error : undefined;
      expect(error).toBeInstanceOf(Error);
      expect(error?.message).toBe('non-error thrown: {"code":42,"reason":"nope"}');
    });

    it('describes thrown values JSON cannot encode instead of failing', () => {
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      const last = inputs({ attempt: 5 });
      const fromCircular = decideFate({ status: 'threw', error: circular }, last);
      const fromUndefined = decideFate({ status: 'threw', error: undefined }, last);
      expect(fromCircular.action === 'dead-letter' && fromCircular.error.message).toBe(
        'non-error thrown: [object Object]',
      );
      expect(fromUndefined.action === 'dead-letter' && fromUndefined.error.message).toBe(
        'non-error thrown: undefined',
      );
    });
  });

  describe('when the handler threw RetryAfterError', () => {
    it('retries after exactly the requested delay, in the smallest tier at least that long', () => {
      const error = new RetryAfterError(500);
      expect(decideFate({ status: 'threw', error }, inputs({ random: () => 1 }))).toEqual({
        action: 'retry',
        outcome: 'retry',
        error,
        delayMs: 500,
        tier: 0,
      });
    });

    it('ignores the schedule and the jitter of the attempt', () => {
      const fate = decideFate(
        { status: 'threw', error: new RetryAfterError(3_000) },
        inputs({ attempt: 1, random: () => 1 }),
      );
      expect(fate).toMatchObject({ action: 'retry', delayMs: 3_000, tier: 2 });
    });

    it('uses the largest tier for a delay beyond every tier, keeping the delay', () => {
      const fate = decideFate(
        { status: 'threw', error: new RetryAfterError(30_000) },
        inputs({ attempt: 1 }),
      );
      expect(fate).toMatchObject({ action: 'retry', delayMs: 30_000, tier: 3 });
    });

    it('rounds a fractional delay up and a zero or negative one to 1 ms', () => {
      const delayOf = (ms: number): number | undefined => {
        const fate = decideFate({ status: 'threw', error: new RetryAfterError(ms) }, inputs());
        return fate.action === 'retry' ? fate.delayMs : undefined;
      };
      expect(delayOf(499.2)).toBe(500);
      expect(delayOf(0)).toBe(1);
      expect(delayOf(-20)).toBe(1);
    });

    it('dead-letters after the last attempt like any other failure', () => {
      const error = new RetryAfterError(500);
      expect(decideFate({ status: 'threw', error }, inputs({ attempt: 5 }))).toEqual({
        action: 'dead-letter',
        outcome: 'dead_letter',
        error,
      });
    });
  });

  describe('when the handler threw a non-retryable error', () => {
    it.each<[string, Error]>([
      ['NonRetryableError', new NonRetryableError('amount is negative')],
      ['MessageValidationError', new MessageValidationError(['amountCents must be an integer'])],
      ['BadRequestException (400) from a Nest pipe', new BadRequestException('bad payload')],
      ['ForbiddenException (403) from a guard', new ForbiddenException()],
      ['an HttpException 499', new HttpException('client closed request', 499)],
    ])('dead-letters on its first attempt on %s with that error', (_label, error) => {
      expect(decideFate({ status: 'threw', error }, inputs({ attempt: 1 }))).toEqual({
        action: 'dead-letter',
        outcome: 'dead_letter',
        error,
      });
    });

    it('dead-letters an error of a declared non-retryable class, and of its subclasses', () => {
      const declared = inputs({ nonRetryable: [InsufficientFundsError] });
      const own = new InsufficientFundsError('balance 10 < 1250');
      const sub = new OverdraftError('overdraft limit reached');
      expect(decideFate({ status: 'threw', error: own }, declared)).toEqual({
        action: 'dead-letter',
        outcome: 'dead_letter',
        error: own,
      });
      expect(decideFate({ status: 'threw', error: sub }, declared).action).toBe('dead-letter');
    });

    it('still retries that class when the handler did not declare it', () => {
      const error = new InsufficientFundsError('balance 10 < 1250');
      expect(decideFate({ status: 'threw', error }, inputs()).action).toBe('retry');
    });

    it('dead-letters a RetryAfterError a handler declared non-retryable', () => {
      const fate = decideFate(
        { status: 'threw', error: new RetryAfterError(500) },
        inputs({ nonRetryable: [RetryAfterError] }),
      );
      expect(fate.action).toBe('dead-letter');
    });
  });

  describe('when a dependency is down', () => {
    it('hands a copy back for HAND_BACK_DELAY_MS in the shortest tier at least that long', () => {
      const error = new DependencyUnavailableError('redis', 'marker write failed');
      expect(decideFate({ status: 'threw', error }, inputs())).toEqual({
        action: 'hand-back',
        outcome: 'requeue',
        delayMs: HAND_BACK_DELAY_MS,
        tier: TIERS.findIndex((t) => t >= HAND_BACK_DELAY_MS),
        reason: 'dependency unavailable',
        error,
      });
    });

    it.each([1, 4, 5, 50])(
      'hands it back at attempt %i too: an outage spends no attempt and never dead-letters',
      (attempt) => {
        const error = new DependencyUnavailableError('redis', 'Connection is closed.');
        expect(decideFate({ status: 'threw', error }, inputs({ attempt }))).toMatchObject({
          action: 'hand-back',
          outcome: 'requeue',
          delayMs: HAND_BACK_DELAY_MS,
        });
      },
    );

    it('hands it back after HAND_BACK_DELAY_MS, straight to the queue, without delay tiers', () => {
      const error = new DependencyUnavailableError('redis', 'Connection is closed.');
      expect(
        decideFate({ status: 'threw', error }, inputs({ retry: undefined, tiers: [] })),
      ).toEqual({
        action: 'hand-back',
        outcome: 'requeue',
        delayMs: HAND_BACK_DELAY_MS,
        tier: undefined,
        reason: 'dependency unavailable',
        error,
      });
    });

    it.each(ioredisOutages)('hands the message back after %s', (_label, error) => {
      const fate = decideFate({ status: 'threw', error }, inputs({ attempt: 5 }));
      expect(fate).toMatchObject({
        action: 'hand-back',
        outcome: 'requeue',
        delayMs: HAND_BACK_DELAY_MS,
      });
      expect(fate.action === 'hand-back' && fate.error).toBe(error);
    });

    it('hands back a thrown string that reports a refused connection', () => {
      const fate = decideFate(
        { status: 'threw', error: 'connect ECONNREFUSED 10.0.0.1:6379' },
        inputs(),
      );
      expect(fate).toMatchObject({ action: 'hand-back', delayMs: HAND_BACK_DELAY_MS });
    });
  });

  describe('when the lock stayed busy (or could not be reached, or was lost)', () => {
    it.each([1, 5, 50])(
      'hands a busy message back at attempt %i like an outage: no attempt spent, never a DLQ',
      (attempt) => {
        const error = new LockTimeoutError('account:acc-42', 5_000);
        expect(decideFate({ status: 'busy', error }, inputs({ attempt }))).toEqual({
          action: 'hand-back',
          outcome: 'requeue',
          delayMs: HAND_BACK_DELAY_MS,
          tier: TIERS.findIndex((t) => t >= HAND_BACK_DELAY_MS),
          reason: 'lock busy',
          error,
          routine: true,
        });
      },
    );

    it('hands a busy message back after HAND_BACK_DELAY_MS without delay tiers', () => {
      const error = new LockTimeoutError('account:acc-42', 5_000);
      expect(
        decideFate({ status: 'busy', error }, inputs({ retry: undefined, tiers: [] })),
      ).toMatchObject({
        action: 'hand-back',
        tier: undefined,
        delayMs: HAND_BACK_DELAY_MS,
        reason: 'lock busy',
        routine: true,
      });
    });

    it('hands the message back when the lock servers cannot be reached', () => {
      const error = new LockUnavailableError('lock quorum unreachable');
      expect(decideFate({ status: 'threw', error }, inputs({ attempt: 5 }))).toMatchObject({
        action: 'hand-back',
        reason: 'dependency unavailable',
      });
    });

    it('retries a handler that lost its lock, spending the attempt', () => {
      const error = new LockLostError('account:acc-42', 'expired');
      expect(decideFate({ status: 'threw', error }, inputs({ attempt: 1 }))).toMatchObject({
        action: 'retry',
        outcome: 'retry',
        error,
      });
    });
  });

  describe('a RetryAfterError without a usable delay', () => {
    it.each([Number.NaN, Number.POSITIVE_INFINITY])(
      'falls back to the schedule for %p',
      (delay) => {
        const fate = decideFate(
          { status: 'threw', error: new RetryAfterError(delay) },
          inputs({ attempt: 1 }),
        );
        expect(fate).toMatchObject({ action: 'retry', delayMs: TIERS[0], tier: 0 });
      },
    );
  });
});

describe('isNonRetryable', () => {
  it('is true for NonRetryableError and its subclasses', () => {
    expect(isNonRetryable(new NonRetryableError('no'), [])).toBe(true);
    expect(isNonRetryable(new MessageDecodeError('not-json', 'x'), [])).toBe(true);
    expect(isNonRetryable(new DeliveryLimitError(10), [])).toBe(true);
  });

  it('draws the line for Nest HttpExceptions between 499 and 500', () => {
    expect(isNonRetryable(new HttpException('x', 400), [])).toBe(true);
    expect(isNonRetryable(new HttpException('x', 499), [])).toBe(true);
    expect(isNonRetryable(new HttpException('x', 500), [])).toBe(false);
    expect(isNonRetryable(new HttpException('x', 503), [])).toBe(false);
  });

  it('is true for an instance of a declared class, false otherwise', () => {
    expect(isNonRetryable(new OverdraftError('x'), [RangeError, InsufficientFundsError])).toBe(
      true,
    );
    expect(isNonRetryable(new RangeError('x'), [RangeError])).toBe(true);
    expect(isNonRetryable(new Error('x'), [RangeError, InsufficientFundsError])).toBe(false);
  });

  it('is false for RetryAfterError and DependencyUnavailableError', () => {
    expect(isNonRetryable(new RetryAfterError(100), [])).toBe(false);
    expect(isNonRetryable(new DependencyUnavailableError('redis', 'down'), [])).toBe(false);
  });
});

describe('isDependencyOutage', () => {
  it('is true for DependencyUnavailableError', () => {
    expect(isDependencyOutage(new DependencyUnavailableError('amqp', 'channel closed'))).toBe(true);
  });

  it.each(ioredisOutages)('is true for %s', (_label, error) => {
    expect(isDependencyOutage(error)).toBe(true);
  });

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH'])(
    'is true for a socket error code %s anywhere in the message',
    (code) => {
      expect(isDependencyOutage(new Error(`write ${code} redis:6379`))).toBe(true);
    },
  );

  it('is false for a NonRetryableError even when its message looks like an outage', () => {
    expect(isDependencyOutage(new NonRetryableError('upstream said ECONNREFUSED'))).toBe(false);
  });

  it('is false for a Nest HttpException even when its message looks like an outage', () => {
    expect(isDependencyOutage(new BadRequestException('Connection is closed.'))).toBe(false);
  });

  it('is false for an ordinary failure of the handler', () => {
    expect(
      isDependencyOutage(new TypeError("Cannot read properties of undefined (reading 'id')")),
    ).toBe(false);
  });

  it('matches an outage message only at its start and error codes only as whole words', () => {
    expect(isDependencyOutage(new Error('ledger: Connection is closed. by peer'))).toBe(false);
    expect(isDependencyOutage(new Error('XECONNREFUSEDX'))).toBe(false);
  });
});
