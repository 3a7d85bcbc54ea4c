import { describe, it, expect } from 'vitest';
import { Writable } from 'node:stream';
import type { ConsumeMessage } from 'amqplib';
import pino from 'pino';
import { MessageContext } from '../../../src/messaging/message.context.js';

function contextAt(level: string, lines: string[]): MessageContext {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return new MessageContext({
    messageId: 'm-1',
    correlationId: 'c-1',
    exchange: 'ledger',
    routingKey: 'transaction.created',
    queue: 'ledger.transactions',
    handler: 'LedgerHandler.apply',
    headers: {},
    attempt: 1,
    redelivered: false,
    signal: new AbortController().signal,
    effect: 'marker-after',
    processedMarker: undefined,
    lock: undefined,
    message: { content: Buffer.alloc(0) } as ConsumeMessage,
    baseLogger: pino({ level }, sink),
  });
}

describe('MessageContext logging', () => {
  it('says whether a level is written, so a debug line can be skipped at info', () => {
    const ctx = contextAt('info', []);
    expect(ctx.logs('debug')).toBe(false);
    expect(ctx.logs('info')).toBe(true);
  });

  it("carries the message's identifiers on every line of its logger", () => {
    const lines: string[] = [];
    contextAt('debug', lines).logger.debug('applied');
    expect(JSON.parse(lines[0])).toMatchObject({
      messageId: 'm-1',
      correlationId: 'c-1',
      queue: 'ledger.transactions',
      attempt: 1,
      msg: 'applied',
    });
  });
});
