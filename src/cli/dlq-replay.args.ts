import { parseArgs } from 'node:util';
import {
  optionalInteger,
  resolveAmqpUrl,
  shortString,
  withUsageErrors,
  type CliEnv,
} from './cli-args.js';
import { LEDGER_QUEUE } from '../ledger/ledger.constants.js';
import { DEAD_LETTER_QUEUE_SUFFIX } from '../messaging/messaging.constants.js';
import { deadLetterQueueName } from '../messaging/queue.topology.js';
import { CliUsageError } from './cli.errors.js';

/** What `npm run dlq:replay` was asked to do. */
export interface DlqReplayOptions {
  /** The work queue whose dead letters are replayed (`--queue`); they are read from `<queue>.dlq`. */
  readonly queue: string;
  /** `<queue>.dlq`. */
  readonly dlq: string;
  /** Look at no more than this many dead letters (`--limit`); all found at start when absent. */
  readonly limit: number | undefined;
  /** Only replay dead letters whose `x-exception-type` header equals this (`--exception-type`). */
  readonly exceptionType: string | undefined;
  /** List what would be replayed and keep every dead letter in the DLQ (`--dry-run`). */
  readonly dryRun: boolean;
  /**
   * Publish straight to `queue` through the default exchange instead of the original exchange and
   * routing key (`--direct`), so other queues bound to that key do not get a second copy.
   */
  readonly direct: boolean;
  /** Broker URL (`--url`, `AMQP_URL`); holds a password, print it only through `redactUrl`. */
  readonly url: string;
}

export type DlqReplayCommand =
  { readonly kind: 'help' } | { readonly kind: 'run'; readonly options: DlqReplayOptions };

export const DLQ_REPLAY_USAGE = `Usage: npm run dlq:replay -- --queue Q [options]

Moves dead letters from Q.dlq back to where they were first published (headers
x-original-exchange / x-original-routing-key, or the broker's x-death; straight to Q when
absent), one confirmed publish at a time; each is acked on the DLQ only after the broker
confirmed its copy. A dead letter that stays (filtered out, dry run, not confirmed) is kept as a
confirmed copy at the end of the DLQ: nothing is handed back to count toward a delivery limit.

  --queue Q             the work queue, e.g. ${LEDGER_QUEUE} (required)
  --limit N             look at no more than N dead letters (default: all present at start)
  --exception-type T    only replay messages whose x-exception-type (or, for a message the
                        broker dead-lettered, x-first-death-reason) is T; others stay
  --dry-run             list what would be replayed, move nothing
  --direct              publish straight to Q (default exchange), not to the original exchange
  --url URL             broker URL (default: $AMQP_URL, first of a comma-separated list)
  -h, --help            show this help`;

/** Parses and validates `npm run dlq:replay` arguments; throws `CliUsageError` with a clear message. */
export function parseDlqReplayArgs(argv: readonly string[], env: CliEnv): DlqReplayCommand {
  const { values } = withUsageErrors(() =>
    parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        queue: { type: 'string' },
        limit: { type: 'string' },
        'exception-type': { type: 'string' },
        'dry-run': { type: 'boolean' },
        direct: { type: 'boolean' },
        url: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (values.help === true) return { kind: 'help' };

  if (values.queue === undefined) {
    throw new CliUsageError(`--queue is required (the work queue, e.g. ${LEDGER_QUEUE})`);
  }
  const queue = shortString('--queue', values.queue, false);
  if (queue.endsWith(DEAD_LETTER_QUEUE_SUFFIX)) {
    throw new CliUsageError(
      `--queue names the work queue, not its DLQ: use --queue ${queue.slice(0, -DEAD_LETTER_QUEUE_SUFFIX.length)}`,
    );
  }
  const dlq = shortString('--queue', deadLetterQueueName(queue), false);
  const exceptionType = values['exception-type'];
  if (exceptionType !== undefined && exceptionType.length === 0) {
    throw new CliUsageError('--exception-type must not be empty');
  }

  return {
    kind: 'run',
    options: {
      queue,
      dlq,
      limit: optionalInteger('--limit', values.limit, 1, Number.MAX_SAFE_INTEGER),
      exceptionType,
      dryRun: values['dry-run'] === true,
      direct: values.direct === true,
      url: resolveAmqpUrl(values.url, env),
    },
  };
}
