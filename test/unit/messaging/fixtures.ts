import type { ConsumeMessage, MessagePropertyHeaders } from 'amqplib';
import type { RetryPolicy } from '../../../src/messaging/retry.policy.js';

/** The RETRY_* defaults: 5 attempts, 1000 ms doubling up to 60 s, 20 % proportional jitter (tiers 1000, 2000, 4000, 8000 ms). */
export const DEFAULT_POLICY: RetryPolicy = {
  maxAttempts: 5,
  initialDelayMs: 1_000,
  maxDelayMs: 60_000,
  multiplier: 2,
  jitter: 0.2,
};

export const LEDGER_BODY = Buffer.from('{"accountId":"acc-42","amountCents":1250}');

/** A ledger transaction as amqplib hands it to a consumer of `ledger.transactions`. */
export function ledgerDelivery(
  headers: MessagePropertyHeaders = { 'x-tenant': 'acme' },
): ConsumeMessage {
  return {
    content: LEDGER_BODY,
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
