import { describe, it, expect } from 'vitest';
import { CliUsageError } from '../../../src/cli/cli.errors.js';
import { parsePublishArgs, type PublishOptions } from '../../../src/cli/publish.args.js';

function options(argv: string[], env: Record<string, string> = {}): PublishOptions {
  const command = parsePublishArgs(argv, env);
  if (command.kind !== 'run') throw new Error('expected a run command');
  return command.options;
}

function usageError(argv: string[], env: Record<string, string> = {}): string {
  try {
    parsePublishArgs(argv, env);
  } catch (err) {
    if (err instanceof CliUsageError) return err.message;
    throw err;
  }
  throw new Error(`expected a CliUsageError for ${argv.join(' ')}`);
}

describe('parsePublishArgs', () => {
  it('applies the documented defaults', () => {
    expect(options(['--count', '10', '--accounts', '3'])).toEqual({
      count: 10,
      accounts: 3,
      rate: undefined,
      duplicates: 0,
      malformed: 0,
      exchange: 'ledger',
      routingKey: 'transaction.created',
      url: 'amqp://guest:guest@localhost:5672',
      redisUrl: 'redis://localhost:6379',
      store: { kind: 'redis', url: 'redis://localhost:6379' },
      expectFile: undefined,
      verify: false,
      timeoutSeconds: 120,
      dlq: 'ledger.transactions.dlq',
      maxInFlight: 1000,
      messageMaxBytes: 1_048_576,
    });
  });

  it('reads every option', () => {
    const parsed = options([
      '--count=2000',
      '--accounts',
      '50',
      '--rate',
      '12.5',
      '--duplicates',
      '50',
      '--malformed',
      '20',
      '--exchange',
      'other',
      '--routing-key',
      'transaction.refunded',
      '--url',
      'amqps://u:p@broker:5671/vh',
      '--redis-url',
      'rediss://r:6380',
      '--expect-file',
      '/tmp/expect.json',
      '--verify',
      '--timeout',
      '30',
      '--dlq',
      'other.dlq',
      '--max-in-flight',
      '64',
    ]);
    expect(parsed).toMatchObject({
      count: 2000,
      accounts: 50,
      rate: 12.5,
      duplicates: 50,
      malformed: 20,
      exchange: 'other',
      routingKey: 'transaction.refunded',
      url: 'amqps://u:p@broker:5671/vh',
      redisUrl: 'rediss://r:6380',
      expectFile: '/tmp/expect.json',
      verify: true,
      timeoutSeconds: 30,
      dlq: 'other.dlq',
      maxInFlight: 64,
    });
  });

  it('returns a help command for --help and -h', () => {
    expect(parsePublishArgs(['--help'], {})).toEqual({ kind: 'help' });
    expect(parsePublishArgs(['-h'], {})).toEqual({ kind: 'help' });
  });

  it('takes the first node of a comma-separated AMQP_URL, and --url over the env', () => {
    const env = { AMQP_URL: ' amqp://a:pw@node1:5672/v , amqp://a:pw@node2:5672/v' };
    expect(options(['--count', '1', '--accounts', '1'], env).url).toBe('amqp://a:pw@node1:5672/v');
    expect(options(['--count', '1', '--accounts', '1', '--url', 'amqp://x@h'], env).url).toBe(
      'amqp://x@h',
    );
  });

  it('verifies against PostgreSQL with LEDGER_STORE or --store, and needs its URL then', () => {
    const base = ['--count', '1', '--accounts', '1'];
    const env = { LEDGER_STORE: 'postgres', DATABASE_URL: 'postgres://app:pw@db:5432/ledger' };
    expect(options(base, env).store).toEqual({
      kind: 'postgres',
      url: 'postgres://app:pw@db:5432/ledger',
    });
    expect(
      options([...base, '--store', 'postgres', '--database-url', 'postgresql://h/x'], {}).store,
    ).toEqual({ kind: 'postgres', url: 'postgresql://h/x' });
    expect(options([...base, '--store', 'redis'], env).store.kind).toBe('redis');
    expect(() => options([...base, '--store', 'postgres'], {})).toThrow(
      '--store=postgres needs --database-url or DATABASE_URL',
    );
    expect(() => options([...base, '--store', 'mongo'], {})).toThrow(
      '--store must be redis or postgres, got "mongo"',
    );
    expect(() =>
      options(base, { LEDGER_STORE: 'postgres', DATABASE_URL: 'mysql://a:pw@h/x' }),
    ).toThrow(/DATABASE_URL/);
  });

  it('reads REDIS_URL and MESSAGE_MAX_BYTES from the environment', () => {
    const parsed = options(['--count', '1', '--accounts', '1'], {
      REDIS_URL: 'redis://cache:6379/2',
      MESSAGE_MAX_BYTES: '2048',
    });
    expect(parsed.redisUrl).toBe('redis://cache:6379/2');
    expect(parsed.messageMaxBytes).toBe(2048);
  });

  it.each([
    [['--accounts', '3'], '--count is required'],
    [['--count', '3'], '--accounts is required'],
    [
      ['--count', 'ten', '--accounts', '3'],
      '--count must be a whole number from 0 to 1000000 (got "ten")',
    ],
    [['--count', '1.5', '--accounts', '3'], '--count must be a whole number'],
    [['--count=-1', '--accounts', '3'], '--count must be a whole number'],
    [['--count', '-1', '--accounts', '3'], "Option '--count' argument is ambiguous"],
    [['--count', '3', '--accounts', '0'], '--accounts must be a whole number from 1'],
    [['--count', '3', '--accounts', '1', '--rate', '0'], '--rate must be a number greater than 0'],
    [
      ['--count', '3', '--accounts', '1', '--rate', 'fast'],
      '--rate must be a number greater than 0',
    ],
    [
      ['--count', '3', '--accounts', '1', '--duplicates', '4'],
      '--duplicates (4) cannot exceed --count (3)',
    ],
    [['--count', '0', '--accounts', '1'], 'nothing to publish'],
    [['--count', '3', '--accounts', '1', '--timeout', '5'], '--timeout only applies with --verify'],
    [
      ['--count', '3', '--accounts', '1', '--verify', '--timeout', '0'],
      '--timeout must be a whole number',
    ],
    [
      ['--count', '3', '--accounts', '1', '--max-in-flight', '0'],
      '--max-in-flight must be a whole number',
    ],
    [['--count', '3', '--accounts', '1', '--bogus'], "Unknown option '--bogus'"],
    [['--count', '3', '--accounts', '1', 'extra'], "Unexpected argument 'extra'"],
    [['--count'], "Option '--count <value>' argument missing"],
    [
      ['--count', '3', '--accounts', '1', '--url', 'http://h'],
      '--url must start with amqp:// or amqps://',
    ],
    [['--count', '3', '--accounts', '1', '--dlq', ''], '--dlq must not be empty'],
    [
      ['--count', '3', '--accounts', '1', '--routing-key', 'k'.repeat(256)],
      '--routing-key must be at most 255 bytes',
    ],
  ])('rejects %j with a clear message', (argv, message) => {
    expect(usageError(argv)).toContain(message);
  });

  it('rejects a bad environment value, naming the variable', () => {
    expect(
      usageError(['--count', '1', '--accounts', '1'], { MESSAGE_MAX_BYTES: 'lots' }),
    ).toContain('MESSAGE_MAX_BYTES must be a whole number');
    expect(
      usageError(['--count', '1', '--accounts', '1'], { REDIS_URL: 'localhost:6379' }),
    ).toContain('REDIS_URL must start with redis:// or rediss://');
  });

  it('never puts a password in an error message', () => {
    const message = usageError([
      '--count',
      '1',
      '--accounts',
      '1',
      '--url',
      'http://user:s3cret@host',
    ]);
    expect(message).not.toContain('s3cret');
    expect(message).toContain('***');
  });

  it('allows malformed-only runs', () => {
    expect(options(['--count', '0', '--accounts', '1', '--malformed', '6'])).toMatchObject({
      count: 0,
      malformed: 6,
    });
  });
});
