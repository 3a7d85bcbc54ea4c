import { describe, it, expect } from 'vitest';
import type { Message, MessageProperties } from 'amqplib';
import {
  keptHeaders,
  keptPublishOptions,
  matchesExceptionType,
  replayHeaders,
  replayPublishOptions,
  replayTargetOf,
  summarizeDeadLetter,
} from '../../../src/cli/dlq-replay.message.js';

const NOW = new Date('2026-01-02T03:04:05.678Z');
const Q = 'ledger.transactions';

/** A message the broker dead-lettered itself: past the work queue's delivery limit. */
const BROKER_DEAD_LETTER_HEADERS = {
  'x-death': [
    {
      count: 1,
      reason: 'delivery_limit',
      queue: Q,
      exchange: 'ledger',
      'routing-keys': ['transaction.created'],
    },
  ],
  'x-first-death-exchange': 'ledger',
  'x-first-death-queue': Q,
  'x-first-death-reason': 'delivery_limit',
  'x-delivery-count': 1,
  tenant: 'acme',
};

function deadLetter(
  headers: Record<string, unknown>,
  properties: Partial<MessageProperties> = {},
): Message {
  return {
    content: Buffer.from('{"accountId":"acc-1","amountCents":5}'),
    fields: {
      deliveryTag: 1,
      redelivered: false,
      exchange: 'ledger.dlx',
      routingKey: 'ledger.transactions',
    },
    properties: {
      contentType: 'application/json',
      contentEncoding: undefined,
      headers,
      deliveryMode: 2,
      priority: undefined,
      correlationId: 'corr-1',
      replyTo: undefined,
      expiration: undefined,
      messageId: 'msg-1',
      timestamp: 1_700_000_000,
      type: undefined,
      userId: undefined,
      appId: 'producer',
      clusterId: undefined,
      ...properties,
    },
  };
}

const SERVICE_DEAD_LETTER_HEADERS = {
  'x-exception-message': 'amountCents must be an integer',
  'x-exception-type': 'MessageValidationError',
  'x-exception-stacktrace': 'Error: …',
  'x-original-exchange': 'ledger',
  'x-original-routing-key': 'transaction.created',
  'x-attempts': 5,
  'x-handler': 'LedgerHandler.apply',
  'x-failed-at': '2026-01-01T00:00:00.000Z',
  'x-first-failed-at': '2026-01-01T00:00:00.000Z',
  'x-last-failed-at': '2026-01-01T00:00:00.000Z',
  'x-delivery-count': 3,
  'x-death': [{ count: 1, reason: 'rejected', queue: 'ledger.transactions' }],
  'x-first-death-queue': 'ledger.transactions',
  'x-first-death-reason': 'rejected',
  'x-first-death-exchange': '',
  'x-last-death-queue': 'ledger.transactions',
  tenant: 'acme',
};

describe('replayTargetOf', () => {
  it('goes back to the original exchange and routing key', () => {
    expect(
      replayTargetOf(deadLetter(SERVICE_DEAD_LETTER_HEADERS), 'ledger.transactions', false),
    ).toEqual({
      exchange: 'ledger',
      routingKey: 'transaction.created',
    });
  });

  it('reads headers that amqplib decoded as byte arrays', () => {
    const message = deadLetter({
      'x-original-exchange': Buffer.from('ledger'),
      'x-original-routing-key': Buffer.from('transaction.created'),
    });
    expect(replayTargetOf(message, 'q', false)).toEqual({
      exchange: 'ledger',
      routingKey: 'transaction.created',
    });
  });

  it('goes straight to the queue when the original headers are missing', () => {
    expect(
      replayTargetOf(deadLetter({ 'x-original-exchange': 'ledger' }), 'ledger.transactions', false),
    ).toEqual({
      exchange: '',
      routingKey: 'ledger.transactions',
    });
    expect(replayTargetOf(deadLetter({}), 'ledger.transactions', false)).toEqual({
      exchange: '',
      routingKey: 'ledger.transactions',
    });
  });

  it("goes back to where the broker's x-death says a message it dead-lettered came from", () => {
    expect(replayTargetOf(deadLetter(BROKER_DEAD_LETTER_HEADERS), Q, false)).toEqual({
      exchange: 'ledger',
      routingKey: 'transaction.created',
    });
  });

  it('goes straight to the queue when x-death says it came through the default exchange', () => {
    const headers = {
      'x-death': [
        { count: 1, reason: 'delivery_limit', queue: Q, exchange: '', 'routing-keys': [Q] },
      ],
    };
    expect(replayTargetOf(deadLetter(headers), Q, false)).toEqual({ exchange: '', routingKey: Q });
  });

  it('ignores the x-death entries of other queues', () => {
    const headers = {
      'x-death': [
        {
          count: 1,
          reason: 'expired',
          queue: `${Q}.retry.1`,
          exchange: 'elsewhere',
          'routing-keys': ['k'],
        },
      ],
    };
    expect(replayTargetOf(deadLetter(headers), Q, false)).toEqual({ exchange: '', routingKey: Q });
  });

  it('goes straight to the queue with --direct', () => {
    expect(
      replayTargetOf(deadLetter(SERVICE_DEAD_LETTER_HEADERS), 'ledger.transactions', true),
    ).toEqual({
      exchange: '',
      routingKey: 'ledger.transactions',
    });
  });
});

describe('matchesExceptionType', () => {
  it('matches everything without a filter, and only the exact type with one', () => {
    const message = deadLetter(SERVICE_DEAD_LETTER_HEADERS);
    expect(matchesExceptionType(message, undefined)).toBe(true);
    expect(matchesExceptionType(message, 'MessageValidationError')).toBe(true);
    expect(matchesExceptionType(message, 'MessageDecodeError')).toBe(false);
    expect(matchesExceptionType(deadLetter({}), 'MessageValidationError')).toBe(false);
  });

  it("matches the broker's reason for a message it dead-lettered itself", () => {
    const message = deadLetter(BROKER_DEAD_LETTER_HEADERS);
    expect(matchesExceptionType(message, 'delivery_limit')).toBe(true);
    expect(matchesExceptionType(message, 'MessageValidationError')).toBe(false);
  });
});

describe('replayHeaders', () => {
  it('removes the dead-letter bookkeeping and keeps the application headers', () => {
    expect(replayHeaders(deadLetter(SERVICE_DEAD_LETTER_HEADERS), NOW, Q)).toEqual({
      'x-original-exchange': 'ledger',
      'x-original-routing-key': 'transaction.created',
      tenant: 'acme',
      'x-replayed-at': '2026-01-02T03:04:05.678Z',
      'x-replay-count': 1,
    });
  });

  it('records the origin from x-death in x-original-*, so the handler is found by its routing key', () => {
    expect(replayHeaders(deadLetter(BROKER_DEAD_LETTER_HEADERS), NOW, Q)).toEqual({
      'x-original-exchange': 'ledger',
      'x-original-routing-key': 'transaction.created',
      tenant: 'acme',
      'x-replayed-at': '2026-01-02T03:04:05.678Z',
      'x-replay-count': 1,
    });
  });

  it('strips x-acquired-count (RabbitMQ 4.3) as it strips x-delivery-count', () => {
    const headers = replayHeaders(deadLetter({ 'x-acquired-count': 4 }), NOW, Q);
    expect(headers).not.toHaveProperty('x-acquired-count');
  });

  it('counts replays', () => {
    expect(replayHeaders(deadLetter({ 'x-replay-count': 2 }), NOW, Q)['x-replay-count']).toBe(3);
    expect(replayHeaders(deadLetter({ 'x-replay-count': '4' }), NOW, Q)['x-replay-count']).toBe(5);
    expect(replayHeaders(deadLetter({ 'x-replay-count': 'junk' }), NOW, Q)['x-replay-count']).toBe(
      1,
    );
  });

  it('copes with a message without headers', () => {
    const message = deadLetter({});
    message.properties.headers = undefined;
    expect(replayHeaders(message, NOW, Q)).toEqual({
      'x-replayed-at': NOW.toISOString(),
      'x-replay-count': 1,
    });
  });
});

describe('replayPublishOptions', () => {
  it('keeps the properties, is mandatory and persistent', () => {
    const options = replayPublishOptions(
      deadLetter(SERVICE_DEAD_LETTER_HEADERS, {
        type: 'tx',
        priority: 3,
        replyTo: 'r',
        contentEncoding: 'utf-8',
      }),
      NOW,
      'guest',
      Q,
    );
    expect(options).toMatchObject({
      messageId: 'msg-1',
      correlationId: 'corr-1',
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      timestamp: 1_700_000_000,
      appId: 'producer',
      type: 'tx',
      priority: 3,
      replyTo: 'r',
      deliveryMode: 2,
      mandatory: true,
    });
    expect(options.headers).toHaveProperty('x-replay-count', 1);
    expect(options.headers).not.toHaveProperty('x-exception-type');
  });

  it('is persistent when the dead letter says nothing, and keeps an explicit transient mode', () => {
    expect(
      replayPublishOptions(deadLetter({}, { deliveryMode: undefined }), NOW, 'guest', Q)
        .deliveryMode,
    ).toBe(2);
    expect(
      replayPublishOptions(deadLetter({}, { deliveryMode: 1 }), NOW, 'guest', Q).deliveryMode,
    ).toBe(1);
  });

  it('does not invent a messageId the dead letter lacked', () => {
    expect(
      replayPublishOptions(deadLetter({}, { messageId: undefined }), NOW, 'guest', Q),
    ).not.toHaveProperty('messageId');
  });

  it("keeps userId only when it is the publishing user's (RabbitMQ rejects anyone else's)", () => {
    expect(replayPublishOptions(deadLetter({}, { userId: 'guest' }), NOW, 'guest', Q).userId).toBe(
      'guest',
    );
    expect(
      replayPublishOptions(deadLetter({}, { userId: 'svc' }), NOW, 'guest', Q),
    ).not.toHaveProperty('userId');
  });
});

describe('summarizeDeadLetter', () => {
  it('names the message, its exception type and original routing key', () => {
    const target = { exchange: 'ledger', routingKey: 'transaction.created' };
    expect(summarizeDeadLetter(deadLetter(SERVICE_DEAD_LETTER_HEADERS), target)).toEqual({
      messageId: 'msg-1',
      exceptionType: 'MessageValidationError',
      originalRoutingKey: 'transaction.created',
      target,
    });
  });
});

describe('keptHeaders and keptPublishOptions (a dead letter kept in its DLQ)', () => {
  it('keep every header, the failure report and x-death included, but the delivery counts', () => {
    const withCounts = { ...SERVICE_DEAD_LETTER_HEADERS, 'x-acquired-count': 2 };
    const expected: Record<string, unknown> = { ...SERVICE_DEAD_LETTER_HEADERS };
    delete expected['x-delivery-count'];
    expect(keptHeaders(deadLetter(withCounts))).toEqual(expected);
  });

  it('keep the properties of the message, mandatory and persistent, with no replay marks', () => {
    const options = keptPublishOptions(deadLetter(BROKER_DEAD_LETTER_HEADERS), 'guest');
    expect(options).toMatchObject({
      messageId: 'msg-1',
      correlationId: 'corr-1',
      contentType: 'application/json',
      timestamp: 1_700_000_000,
      appId: 'producer',
      deliveryMode: 2,
      mandatory: true,
    });
    expect(options.headers).not.toHaveProperty('x-replay-count');
    expect(options.headers).toHaveProperty('x-first-death-reason', 'delivery_limit');
  });
});
