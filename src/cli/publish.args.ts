import { parseArgs } from 'node:util';
import {
  optionalInteger,
  optionalPositiveNumber,
  requireInteger,
  resolveAmqpUrl,
  resolveBalanceStore,
  resolveMessageMaxBytes,
  resolveRedisUrl,
  shortString,
  withUsageErrors,
  type BalanceStore,
  type CliEnv,
} from './cli-args.js';
import {
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_ROUTING_KEY,
  DEFAULT_VERIFY_TIMEOUT_S,
  MAX_ACCOUNTS,
  MAX_COUNT,
  MAX_MALFORMED,
} from './cli.constants.js';
import { CliUsageError } from './cli.errors.js';
import { LEDGER_EXCHANGE, LEDGER_QUEUE } from '../ledger/ledger.constants.js';
import { deadLetterQueueName } from '../messaging/queue.topology.js';

/** What `npm run publish` was asked to do. */
export interface PublishOptions {
  /** Distinct valid ledger transactions to publish (`--count`). */
  readonly count: number;
  /** Accounts the transactions are spread over (`--accounts`). */
  readonly accounts: number;
  /** Messages per second, all kinds together (`--rate`); unlimited when absent. */
  readonly rate: number | undefined;
  /** Already-published transactions to publish again, same messageId and body (`--duplicates`). */
  readonly duplicates: number;
  /** Invalid messages the service must dead-letter (`--malformed`). */
  readonly malformed: number;
  /** Target exchange (`--exchange`). */
  readonly exchange: string;
  /** Routing key of every message (`--routing-key`). */
  readonly routingKey: string;
  /** Broker URL (`--url`, `AMQP_URL`); holds a password, print it only through `redactUrl`. */
  readonly url: string;
  /** Where the expected balances live (`--redis-url`, `REDIS_URL`); only read with `--verify`. */
  readonly redisUrl: string;
  /**
   * The store `--verify` reads (`--store`, `LEDGER_STORE`): Redis at `redisUrl`, or PostgreSQL
   * (`--database-url`, `DATABASE_URL`); holds a password, print it only through `redactUrl`.
   */
  readonly store: BalanceStore;
  /** Also write the final report as JSON to this path (`--expect-file`). */
  readonly expectFile: string | undefined;
  /** After publishing, wait for the service to reach the expected balances (`--verify`). */
  readonly verify: boolean;
  /** How long `--verify` waits, in seconds (`--timeout`). */
  readonly timeoutSeconds: number;
  /** Dead-letter queue whose depth `--verify` reports (`--dlq`). */
  readonly dlq: string;
  /** Publishes awaiting a confirm at once (`--max-in-flight`). */
  readonly maxInFlight: number;
  /** The service's body limit (`MESSAGE_MAX_BYTES`), which oversize messages exceed by 10 %. */
  readonly messageMaxBytes: number;
}

export type PublishCommand =
  { readonly kind: 'help' } | { readonly kind: 'run'; readonly options: PublishOptions };

export const PUBLISH_USAGE = `Usage: npm run publish -- --count N --accounts K [options]

Publishes N ledger transactions over K fresh accounts (plus duplicates and malformed messages)
on a confirm channel, then prints the balance each account must reach.

  --count N            valid transactions to publish (required)
  --accounts K         accounts to spread them over (required)
  --rate R             at most R messages per second (default: unlimited)
  --duplicates D       publish D of the transactions again, same messageId and body (default 0)
  --malformed M        publish M invalid messages the service must dead-letter (default 0)
  --exchange E         target exchange (default "${LEDGER_EXCHANGE}")
  --routing-key K      routing key (default "${DEFAULT_ROUTING_KEY}")
  --url URL            broker URL (default: $AMQP_URL, first of a comma-separated list)
  --expect-file PATH   also write the expected balances as JSON to PATH
  --verify             then poll Redis until every balance matches (exit 1 if not)
  --timeout S          how long --verify waits, in seconds (default ${DEFAULT_VERIFY_TIMEOUT_S})
  --redis-url URL      Redis for --verify (default: $REDIS_URL or redis://localhost:6379)
  --store S            where --verify reads balances: redis or postgres (default: $LEDGER_STORE or redis)
  --database-url URL   PostgreSQL for --verify with --store postgres (default: $DATABASE_URL)
  --dlq Q              dead-letter queue --verify reports (default "${deadLetterQueueName(LEDGER_QUEUE)}")
  --max-in-flight W    publishes awaiting a confirm at once (default ${DEFAULT_MAX_IN_FLIGHT})
  -h, --help           show this help

Environment: AMQP_URL, REDIS_URL, LEDGER_STORE, DATABASE_URL, MESSAGE_MAX_BYTES (oversize messages are 1.1x this).`;

/** Parses and validates `npm run publish` arguments; throws `CliUsageError` with a clear message. */
export function parsePublishArgs(argv: readonly string[], env: CliEnv): PublishCommand {
  const { values } = withUsageErrors(() =>
    parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        count: { type: 'string' },
        accounts: { type: 'string' },
        rate: { type: 'string' },
        duplicates: { type: 'string' },
        malformed: { type: 'string' },
        exchange: { type: 'string' },
        'routing-key': { type: 'string' },
        url: { type: 'string' },
        'redis-url': { type: 'string' },
        store: { type: 'string' },
        'database-url': { type: 'string' },
        'expect-file': { type: 'string' },
        verify: { type: 'boolean' },
        timeout: { type: 'string' },
        dlq: { type: 'string' },
        'max-in-flight': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (values.help === true) return { kind: 'help' };

  const count = requireInteger('--count', values.count, 0, MAX_COUNT);
  const accounts = requireInteger('--accounts', values.accounts, 1, MAX_ACCOUNTS);
  const duplicates = optionalInteger('--duplicates', values.duplicates, 0, MAX_COUNT, 0);
  const malformed = optionalInteger('--malformed', values.malformed, 0, MAX_MALFORMED, 0);
  if (duplicates > count) {
    throw new CliUsageError(
      `--duplicates (${duplicates}) cannot exceed --count (${count}): each duplicate republishes ` +
        'a different transaction',
    );
  }
  if (count + malformed === 0) {
    throw new CliUsageError('nothing to publish: give --count or --malformed greater than 0');
  }
  const verify = values.verify === true;
  if (values.timeout !== undefined && !verify) {
    throw new CliUsageError('--timeout only applies with --verify');
  }
  if (values['expect-file'] !== undefined && values['expect-file'].trim().length === 0) {
    throw new CliUsageError('--expect-file must be a path');
  }

  return {
    kind: 'run',
    options: {
      count,
      accounts,
      rate: optionalPositiveNumber('--rate', values.rate),
      duplicates,
      malformed,
      exchange: shortString('--exchange', values.exchange ?? LEDGER_EXCHANGE, true),
      routingKey: shortString('--routing-key', values['routing-key'] ?? DEFAULT_ROUTING_KEY, true),
      url: resolveAmqpUrl(values.url, env),
      redisUrl: resolveRedisUrl(values['redis-url'], env),
      store: resolveBalanceStore(
        { store: values.store, databaseUrl: values['database-url'], redisUrl: values['redis-url'] },
        env,
      ),
      expectFile: values['expect-file'],
      verify,
      timeoutSeconds: optionalInteger(
        '--timeout',
        values.timeout,
        1,
        86_400,
        DEFAULT_VERIFY_TIMEOUT_S,
      ),
      dlq: shortString('--dlq', values.dlq ?? deadLetterQueueName(LEDGER_QUEUE), false),
      maxInFlight: optionalInteger(
        '--max-in-flight',
        values['max-in-flight'],
        1,
        65_535,
        DEFAULT_MAX_IN_FLIGHT,
      ),
      messageMaxBytes: resolveMessageMaxBytes(env),
    },
  };
}
