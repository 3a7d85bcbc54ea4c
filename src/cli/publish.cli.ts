import { writeFile } from 'node:fs/promises';
import type { ChannelModel } from 'amqplib';
import { redactUrl } from '../config/secret-redaction.js';
import { assertExchangeExists, openCliMessaging, queueDepth } from './cli-amqp.connection.js';
import { EXIT_FAILURE, EXIT_OK, LIST_LIMIT, VERIFY_POLL_INTERVAL_MS } from './cli.constants.js';
import { describeCliError } from './cli-error.formatter.js';
import { runCli } from './cli.entrypoint.js';
import { verifyLedgerBalances, type VerifyResult } from './ledger-balance.verifier.js';
import {
  formatPublishReport,
  messagesPerSecond,
  publishReportJson,
  type PublishReport,
} from './ledger-report.formatter.js';
import { balancesOf, planLedgerTraffic, type LedgerTrafficPlan } from './ledger-traffic.plan.js';
import { publishLedgerTraffic, type LedgerTrafficResult } from './ledger-traffic.publisher.js';
import { PUBLISH_USAGE, parsePublishArgs, type PublishOptions } from './publish.args.js';
import { NO_PROGRESS, createProgressReporter } from './progress.reporter.js';

/** How many unroutable / unconfirmed messages are listed before the rest are only counted. */
const FAILURES_LISTED = 10;

async function run(options: PublishOptions): Promise<number> {
  const plan = planLedgerTraffic(options);
  const total = plan.firstPhase.length + plan.duplicatePhase.length;
  process.stderr.write(
    `run ${plan.runId}: publishing ${options.count} transactions over ${options.accounts} accounts, ` +
      `${options.duplicates} duplicates, ${options.malformed} malformed to ${redactUrl(options.url)}\n`,
  );

  const messaging = await openCliMessaging(options.url, 'publish-cli');
  const { model } = messaging;
  try {
    await assertExchangeExists(
      model,
      options.exchange,
      options.url,
      'start the service once so it declares its topology, or fix --exchange or the vhost in --url',
    );
    const dlqBefore = options.verify ? await queueDepth(model, options.dlq) : undefined;

    const progress = total >= LIST_LIMIT ? createProgressReporter('publish', total) : NO_PROGRESS;
    let result: LedgerTrafficResult;
    try {
      result = await publishLedgerTraffic(messaging.publisher, plan, options, () =>
        progress.increment(),
      );
    } finally {
      progress.stop();
    }

    const report = buildReport(plan, result, options);
    process.stdout.write(formatPublishReport(report));
    if (options.expectFile !== undefined) {
      await writeFile(
        options.expectFile,
        `${JSON.stringify(publishReportJson(report), null, 2)}\n`,
      );
      process.stderr.write(`expected balances written to ${options.expectFile}\n`);
    }
    const published = reportPublishFailures(result);

    if (!options.verify) return published ? EXIT_OK : EXIT_FAILURE;
    const verified = await verify(options, report.expectedBalances);
    await reportDlqDepth(model, options, dlqBefore);
    return published && verified ? EXIT_OK : EXIT_FAILURE;
  } finally {
    await messaging.close();
  }
}

function buildReport(
  plan: LedgerTrafficPlan,
  result: LedgerTrafficResult,
  options: PublishOptions,
): PublishReport {
  const delivered = plan.transactions.filter((tx) => result.confirmedMessageIds.has(tx.messageId));
  // Only what the broker took can be applied; a transaction lost in a nack or return is not owed.
  const expectedBalances =
    delivered.length === plan.transactions.length
      ? plan.expectedBalances
      : balancesOf(plan.accountIds, delivered);
  return {
    runId: plan.runId,
    url: redactUrl(options.url),
    exchange: options.exchange,
    routingKey: options.routingKey,
    durationMs: result.durationMs,
    messagesPerSecond: messagesPerSecond(result.published, result.durationMs),
    valid: plan.transactions.length,
    duplicates: plan.duplicatePhase.length,
    malformed: options.malformed,
    malformedByKind: plan.malformedByKind,
    unroutable: result.returned.length,
    unconfirmed: result.unconfirmed.length,
    expectedBalances,
    expectedTotal: delivered.reduce((sum, tx) => sum + tx.amountCents, 0),
  };
}

/** Prints what the broker did not take; true when it took everything. */
function reportPublishFailures(result: LedgerTrafficResult): boolean {
  for (const returned of result.returned.slice(0, FAILURES_LISTED)) {
    process.stderr.write(
      `unroutable: message ${returned.messageId ?? '(no messageId)'}: ${returned.reply}\n`,
    );
  }
  for (const lost of result.unconfirmed.slice(0, FAILURES_LISTED)) {
    process.stderr.write(
      `not confirmed: message ${lost.messageId ?? '(no messageId)'}: ${lost.reason}\n`,
    );
  }
  const failures = result.returned.length + result.unconfirmed.length;
  const notPublished = result.published - result.acked - result.unconfirmed.length;
  if (failures > 2 * FAILURES_LISTED) process.stderr.write(`… ${failures} failures in all\n`);
  if (failures > 0 || notPublished > 0) {
    process.stderr.write(
      `publish incomplete: ${result.returned.length} unroutable, ${result.unconfirmed.length} ` +
        'not confirmed; the expected balances above count only confirmed transactions\n',
    );
    return false;
  }
  return true;
}

async function verify(
  options: PublishOptions,
  expected: ReadonlyMap<string, number>,
): Promise<boolean> {
  process.stderr.write(
    `verifying ${expected.size} balances in ${redactUrl(options.store.url)} ` +
      `(timeout ${options.timeoutSeconds} s)\n`,
  );
  const progress = createProgressReporter('accounts matching', expected.size);
  let result: VerifyResult;
  try {
    result = await verifyLedgerBalances(options.store, expected, {
      timeoutMs: options.timeoutSeconds * 1000,
      pollIntervalMs: VERIFY_POLL_INTERVAL_MS,
      onPoll: (matching) => progress.update(matching),
    });
  } finally {
    progress.stop();
  }

  const seconds = (result.elapsedMs / 1000).toFixed(1);
  if (result.matched) {
    process.stdout.write(`verify: all ${expected.size} balances match after ${seconds} s\n`);
    return true;
  }
  process.stdout.write(
    result.balancesRead
      ? `verify: ${result.mismatches.length} of ${expected.size} balances still differ after ${seconds} s\n`
      : `verify: could not read the balances from ${storeName(options)} within ${seconds} s\n`,
  );
  for (const mismatch of result.mismatches.slice(0, LIST_LIMIT)) {
    process.stdout.write(
      `  ${mismatch.accountId}: expected ${mismatch.expected}, found ${String(mismatch.actual)}\n`,
    );
  }
  if (result.lastError !== undefined) {
    process.stdout.write(
      `  last ${storeName(options)} error: ${describeCliError(new Error(result.lastError), [options.store.url])}\n`,
    );
  }
  return false;
}

function storeName(options: PublishOptions): string {
  return options.store.kind === 'redis' ? 'Redis' : 'PostgreSQL';
}

async function reportDlqDepth(
  model: ChannelModel,
  options: PublishOptions,
  before: number | undefined,
): Promise<void> {
  const depth = await queueDepth(model, options.dlq);
  if (depth === undefined) {
    process.stdout.write(`dlq: queue "${options.dlq}" does not exist\n`);
    return;
  }
  const delta =
    before === undefined
      ? ''
      : ` (${depth - before >= 0 ? '+' : ''}${depth - before} during this run)`;
  process.stdout.write(
    `dlq: "${options.dlq}" holds ${depth} messages${delta}; this run published ${options.malformed} malformed\n`,
  );
}

// npm runs a script named `publish` after `npm publish` too (a lifecycle hook): not a request
// to send ledger traffic
if (process.env.npm_command === 'publish') process.exit(EXIT_OK);

runCli(
  {
    name: 'publish',
    usage: PUBLISH_USAGE,
    parse: parsePublishArgs,
    run,
    secretUrls: (options) => [options.url, options.redisUrl, options.store.url],
  },
  process.argv.slice(2),
  process.env,
);
