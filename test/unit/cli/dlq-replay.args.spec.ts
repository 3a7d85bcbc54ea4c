import { describe, it, expect } from 'vitest';
import { CliUsageError } from '../../../src/cli/cli.errors.js';
import { parseDlqReplayArgs, type DlqReplayOptions } from '../../../src/cli/dlq-replay.args.js';

function options(argv: string[], env: Record<string, string> = {}): DlqReplayOptions {
  const command = parseDlqReplayArgs(argv, env);
  if (command.kind !== 'run') throw new Error('expected a run command');
  return command.options;
}

describe('parseDlqReplayArgs', () => {
  it('derives the DLQ from the work queue and applies defaults', () => {
    expect(options(['--queue', 'ledger.transactions'])).toEqual({
      queue: 'ledger.transactions',
      dlq: 'ledger.transactions.dlq',
      limit: undefined,
      exceptionType: undefined,
      dryRun: false,
      direct: false,
      url: 'amqp://guest:guest@localhost:5672',
    });
  });

  it('reads every option', () => {
    expect(
      options([
        '--queue',
        'orders',
        '--limit',
        '10',
        '--exception-type',
        'MessageValidationError',
        '--dry-run',
        '--direct',
        '--url',
        'amqp://u:p@h/vh',
      ]),
    ).toEqual({
      queue: 'orders',
      dlq: 'orders.dlq',
      limit: 10,
      exceptionType: 'MessageValidationError',
      dryRun: true,
      direct: true,
      url: 'amqp://u:p@h/vh',
    });
  });

  it('uses the first node of AMQP_URL', () => {
    expect(options(['--queue', 'q'], { AMQP_URL: 'amqp://n1/v,amqp://n2/v' }).url).toBe(
      'amqp://n1/v',
    );
  });

  it.each([
    [[], '--queue is required'],
    [['--queue', ''], '--queue must not be empty'],
    [['--queue', 'ledger.transactions.dlq'], 'use --queue ledger.transactions'],
    [['--queue', 'q', '--limit', '0'], '--limit must be a whole number from 1'],
    [['--queue', 'q', '--limit', 'all'], '--limit must be a whole number'],
    [['--queue', 'q', '--exception-type', ''], '--exception-type must not be empty'],
    [['--queue', 'q', '--requeue'], "Unknown option '--requeue'"],
    [['--queue', 'q', '--url', 'redis://h'], '--url must start with amqp:// or amqps://'],
  ])('rejects %j with a clear message', (argv, message) => {
    expect(() => parseDlqReplayArgs(argv, {})).toThrow(CliUsageError);
    expect(() => parseDlqReplayArgs(argv, {})).toThrow(message);
  });
});
