import { describe, expect, it, afterEach } from 'vitest';
import { Logger, type LoggerService } from '@nestjs/common';
import { nestLoggerBridge } from '../../../src/logging/service-logger.js';

/** A Nest LoggerService that records what it is given. */
class RecordingNestLogger implements LoggerService {
  readonly lines: [string, unknown, unknown][] = [];
  log(message: unknown, context?: unknown): void {
    this.lines.push(['log', message, context]);
  }
  warn(message: unknown, context?: unknown): void {
    this.lines.push(['warn', message, context]);
  }
  error(message: unknown, ...rest: unknown[]): void {
    // Nest passes (message, stack?, context): the context is last
    this.lines.push(['error', message, rest.at(-1)]);
  }
  debug(message: unknown, context?: unknown): void {
    this.lines.push(['debug', message, context]);
  }
  verbose(message: unknown, context?: unknown): void {
    this.lines.push(['verbose', message, context]);
  }
}

describe('nestLoggerBridge: the package’s lines through an application’s Nest logger', () => {
  afterEach(() => Logger.overrideLogger(false));

  it('hands each line to the Nest method of its level, with its context and fields', () => {
    const nest = new RecordingNestLogger();
    Logger.overrideLogger(nest);
    const root = nestLoggerBridge('info', []);
    const logger = root.child({ context: 'MessageConsumerService' });
    logger.info({ queues: ['shop.orders'] }, 'Starting 1 consumer(s)');
    logger.warn('plain');
    logger.debug({ skipped: true }, 'below the level');
    expect(nest.lines).toEqual([
      ['log', 'Starting 1 consumer(s) {"queues":["shop.orders"]}', 'MessageConsumerService'],
      ['warn', 'plain', 'MessageConsumerService'],
    ]);
    expect(logger.isLevelEnabled('debug')).toBe(false);
  });

  it('scrubs the configured credentials from errors', () => {
    const nest = new RecordingNestLogger();
    Logger.overrideLogger(nest);
    const logger = nestLoggerBridge('info', ['s3cret']);
    logger.error(
      { err: new Error('connect to amqp://user:s3cret@host failed') },
      'AMQP connection attempt failed',
    );
    expect(nest.lines).toHaveLength(1);
    const [method, message, context] = nest.lines[0];
    expect(method).toBe('error');
    expect(context).toBe('MessageProcessor');
    expect(message).toContain('AMQP connection attempt failed');
    expect(message).toContain('connect to amqp://user:');
    expect(message).not.toContain('s3cret');
  });
});
