import { redactUrl } from '../config/secret-redaction.js';
import { openCliMessaging } from './cli-amqp.connection.js';
import { EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, LIST_LIMIT } from './cli.constants.js';
import { runCli } from './cli.entrypoint.js';
import { DLQ_REPLAY_USAGE, parseDlqReplayArgs, type DlqReplayOptions } from './dlq-replay.args.js';
import { formatDlqReplayReport } from './dlq-replay.formatter.js';
import { replayDeadLetters } from './dlq-replay.runner.js';
import { createProgressReporter, type ProgressReporter } from './progress.reporter.js';

/** amqplib's default user when the URL names none. */
const DEFAULT_AMQP_USER = 'guest';

async function run(options: DlqReplayOptions): Promise<number> {
  const stop = new AbortController();
  const onSigint = (): void => {
    if (stop.signal.aborted) process.exit(EXIT_INTERRUPTED);
    process.stderr.write('stopping after the current message (Ctrl-C again to quit at once)\n');
    stop.abort();
  };
  process.on('SIGINT', onSigint);

  process.stderr.write(
    `${options.dryRun ? 'dry run: reading' : 'replaying'} ${options.dlq} at ${redactUrl(options.url)}` +
      `${options.exceptionType === undefined ? '' : ` (only x-exception-type ${options.exceptionType})`}\n`,
  );
  const messaging = await openCliMessaging(options.url, 'dlq-replay-cli');
  let progress: ProgressReporter | undefined;
  let budget = 0;
  try {
    const result = await replayDeadLetters(messaging, options, {
      signal: stop.signal,
      publishingUser: decodeURIComponent(new URL(options.url).username) || DEFAULT_AMQP_USER,
      onStart: (total) => {
        budget = total;
        if (total >= LIST_LIMIT) progress = createProgressReporter('dlq:replay', total);
      },
      onExamined: () => progress?.increment(),
    });
    progress?.stop();
    process.stdout.write(
      formatDlqReplayReport(result, { dlq: options.dlq, dryRun: options.dryRun, budget }),
    );
    if (result.failures.length > 0 || result.returnedUnconfirmed > 0) return EXIT_FAILURE;
    return result.interrupted ? EXIT_INTERRUPTED : EXIT_OK;
  } finally {
    progress?.stop();
    process.off('SIGINT', onSigint);
    await messaging.close();
  }
}

runCli(
  {
    name: 'dlq:replay',
    usage: DLQ_REPLAY_USAGE,
    parse: parseDlqReplayArgs,
    run,
    secretUrls: (options) => [options.url],
  },
  process.argv.slice(2),
  process.env,
);
