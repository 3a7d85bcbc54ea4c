import type { CliEnv } from './cli-args.js';
import { describeCliError } from './cli-error.formatter.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './cli.constants.js';
import { CliUsageError } from './cli.errors.js';

/** A parsed command line: print the usage, or run with these options. */
export type CliCommand<O> =
  { readonly kind: 'help' } | { readonly kind: 'run'; readonly options: O };

/** What a CLI plugs into {@link runCli}. */
export interface CliDefinition<O> {
  /** Name used in error lines (`<name> failed: ...`). */
  readonly name: string;
  readonly usage: string;
  parse(argv: readonly string[], env: CliEnv): CliCommand<O>;
  run(options: O): Promise<number>;
  /** URLs whose passwords must be scrubbed from error text. */
  secretUrls(options: O): readonly string[];
}

/**
 * The shared shape of every CLI: parse (usage errors exit 2 with one line), run, report any
 * failure without a password, and set the exit code rather than calling `process.exit`, so
 * buffered output is flushed.
 */
export function runCli<O>(
  definition: CliDefinition<O>,
  argv: readonly string[],
  env: CliEnv,
): void {
  execute(definition, argv, env).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${definition.name} crashed: ${describeCliError(err, [])}\n`);
      process.exitCode = EXIT_FAILURE;
    },
  );
}

async function execute<O>(
  definition: CliDefinition<O>,
  argv: readonly string[],
  env: CliEnv,
): Promise<number> {
  let options: O;
  try {
    const command = definition.parse(argv, env);
    if (command.kind === 'help') {
      process.stdout.write(`${definition.usage}\n`);
      return EXIT_OK;
    }
    options = command.options;
  } catch (err) {
    if (!(err instanceof CliUsageError)) throw err;
    process.stderr.write(`error: ${err.message}\n(run with --help for the options)\n`);
    return EXIT_USAGE;
  }
  try {
    return await definition.run(options);
  } catch (err) {
    process.stderr.write(
      `${definition.name} failed: ${describeCliError(err, definition.secretUrls(options))}\n`,
    );
    return EXIT_FAILURE;
  }
}
