import { LIST_LIMIT } from './cli.constants.js';
import type { DeadLetterSummary } from './dlq-replay.message.js';
import type { DlqReplayResult } from './dlq-replay.runner.js';

/** What the report needs to know about the run besides its result. */
export interface DlqReplayReportContext {
  readonly dlq: string;
  readonly dryRun: boolean;
  readonly budget: number;
}

/**
 * The report printed on stdout: each message when fewer than `LIST_LIMIT`, otherwise counts per
 * exception type and routing key; always ending with `moved N, skipped M`.
 */
export function formatDlqReplayReport(
  result: DlqReplayResult,
  context: DlqReplayReportContext,
): string {
  const lines = [
    `${context.dlq}: ${result.depthAtStart} ready at start, examined ${result.examined}`,
  ];
  const listed = context.dryRun ? result.wouldMove : result.moved;
  const verb = context.dryRun ? 'would move' : 'moved';
  if (listed.length < LIST_LIMIT) {
    lines.push(...listed.map((message) => `  ${verb} ${describe(message)}`));
  } else {
    lines.push(...summarize(listed).map((line) => `  ${verb} ${line}`));
  }
  if (context.dryRun) {
    lines.push(
      `dry run: would move ${result.wouldMove.length}; every message examined kept in the DLQ`,
    );
  }
  for (const failure of result.failures.slice(0, LIST_LIMIT)) {
    lines.push(`  failed ${describe(failure.message)}: ${failure.error.message}`);
  }
  if (result.failures.length > 0) {
    lines.push(
      `${result.failures.length} not replayed, left in the DLQ` +
        (result.stoppedByFailure ? '; stopped at the first failure that would repeat' : ''),
    );
  }
  if (result.returnedUnconfirmed > 0) {
    lines.push(
      `${result.returnedUnconfirmed} could not be copied back to the DLQ either: returned to it ` +
        'with a requeueing nack (a delivery, for the delivery limit of RabbitMQ up to 4.2)',
    );
  }
  if (result.interrupted) lines.push(`interrupted after ${result.examined} of ${context.budget}`);
  lines.push(`moved ${result.moved.length}, skipped ${result.skipped}`);
  return `${lines.join('\n')}\n`;
}

function describe(message: DeadLetterSummary): string {
  const exchange =
    message.target.exchange === '' ? '(default exchange)' : `"${message.target.exchange}"`;
  return (
    `${message.messageId ?? '(no messageId)'} [${message.exceptionType ?? 'no exception type'}] ` +
    `from "${message.originalRoutingKey ?? '?'}" -> ${exchange} "${message.target.routingKey}"`
  );
}

/** `count × type from routing key`, largest groups first. */
function summarize(messages: readonly DeadLetterSummary[]): string[] {
  const groups = new Map<string, number>();
  for (const message of messages) {
    const key = `[${message.exceptionType ?? 'no exception type'}] from "${message.originalRoutingKey ?? '?'}"`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  return [...groups]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([key, count]) => `${count} x ${key}`);
}
