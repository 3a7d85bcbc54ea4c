import { BadRequestException } from '@nestjs/common';
import MaxRetriesPerRequestError from 'ioredis/built/errors/MaxRetriesPerRequestError';
import { decideFate, isDependencyOutage } from '../../../src/messaging/message.fate';
import { REQUEUE_DELAY_MS } from '../../../src/messaging/messaging.constants';
import {
  DependencyUnavailableError,
  MessageDecodeError,
  MessageValidationError,
  NonRetryableError,
} from '../../../src/messaging/messaging.errors';

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

describe('decideFate', () => {
  it('acks a message whose handler succeeded', () => {
    expect(decideFate({ status: 'succeeded' })).toEqual({ action: 'ack', outcome: 'ack' });
  });

  it('acks a duplicate with the duplicate outcome', () => {
    expect(decideFate({ status: 'duplicate' })).toEqual({ action: 'ack', outcome: 'duplicate' });
  });

  it('hands a message back at once while the consumer stops', () => {
    expect(decideFate({ status: 'stopping' })).toEqual({
      action: 'requeue',
      outcome: 'requeue',
      delayMs: 0,
      reason: 'shutting down',
    });
  });

  it('dead-letters an invalid message with the very error that refused it', () => {
    const error = new MessageDecodeError('not-json', 'Unexpected token');
    const fate = decideFate({ status: 'invalid', error });
    expect(fate).toEqual({ action: 'dead-letter', outcome: 'dead_letter', error });
    expect(fate.action === 'dead-letter' && fate.error).toBe(error);
  });

  describe('when the handler threw', () => {
    it('hands the message back after REQUEUE_DELAY_MS on DependencyUnavailableError', () => {
      const error = new DependencyUnavailableError('redis', 'marker write failed');
      expect(decideFate({ status: 'threw', error })).toEqual({
        action: 'requeue',
        outcome: 'requeue',
        delayMs: REQUEUE_DELAY_MS,
        reason: 'dependency unavailable',
        error,
      });
    });

    it.each(ioredisOutages)('hands the message back after %s', (_label, error) => {
      const fate = decideFate({ status: 'threw', error });
      expect(fate).toMatchObject({ action: 'requeue', outcome: 'requeue' });
      expect(fate.action === 'requeue' && fate.delayMs).toBe(REQUEUE_DELAY_MS);
      expect(fate.action === 'requeue' && fate.error).toBe(error);
    });

    it.each<[string, Error]>([
      ['NonRetryableError', new NonRetryableError('amount is negative')],
      ['MessageValidationError', new MessageValidationError(['amountCents must be an integer'])],
      ['BadRequestException from a Nest pipe', new BadRequestException('bad payload')],
      ['a plain Error', new Error('division by zero')],
    ])('dead-letters on %s with that error', (_label, error) => {
      expect(decideFate({ status: 'threw', error })).toEqual({
        action: 'dead-letter',
        outcome: 'dead_letter',
        error,
      });
    });

    it('dead-letters a thrown string as an Error carrying that string', () => {
      const fate = decideFate({ status: 'threw', error: 'kaboom' });
      expect(fate.action).toBe('dead-letter');
      const error = fate.action === 'dead-letter' ? fate.error : undefined;
      expect(error).toBeInstanceOf(Error);
      expect(error?.message).toBe('kaboom');
    });

    it('dead-letters a thrown object as an Error describing the value', () => {
      const fate = decideFate({ status: 'threw', error: { code: 42, reason: 'nope' } });
      expect(fate.action).toBe('dead-letter');
      const error = fate.action === 'dead-letter' ? fate.error : undefined;
      expect(error).toBeInstanceOf(Error);
      expect(error?.message).toBe('non-error thrown: {"code":42,"reason":"nope"}');
    });

    it('describes thrown values JSON cannot encode instead of failing', () => {
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      const fromCircular = decideFate({ status: 'threw', error: circular });
      const fromUndefined = decideFate({ status: 'threw', error: undefined });
      expect(fromCircular.action === 'dead-letter' && fromCircular.error.message).toBe(
        'non-error thrown: [object Object]',
      );
      expect(fromUndefined.action === 'dead-letter' && fromUndefined.error.message).toBe(
        'non-error thrown: undefined',
      );
    });

    it('hands back a thrown string that reports a refused connection', () => {
      const fate = decideFate({ status: 'threw', error: 'connect ECONNREFUSED 10.0.0.1:6379' });
      expect(fate).toMatchObject({ action: 'requeue', delayMs: REQUEUE_DELAY_MS });
    });
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
