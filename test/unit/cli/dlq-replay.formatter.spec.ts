import { describe, it, expect } from 'vitest';
import { formatDlqReplayReport } from '../../../src/cli/dlq-replay.formatter.js';
import type { DeadLetterSummary } from '../../../src/cli/dlq-replay.message.js';
import type { DlqReplayResult } from '../../../src/cli/dlq-replay.runner.js';

function summary(i: number, exceptionType = 'MessageValidationError'): DeadLetterSummary {
  return {
    messageId: `msg-${i}`,
    exceptionType,
    originalRoutingKey: 'transaction.created',
    target: { exchange: 'ledger', routingKey: 'transaction.created' },
  };
}

function result(overrides: Partial<DlqReplayResult>): DlqReplayResult {
  return {
    depthAtStart: 10,
    examined: 10,
    moved: [],
    wouldMove: [],
    skipped: 0,
    failures: [],
    stoppedByFailure: false,
    returnedUnconfirmed: 0,
    interrupted: false,
    ...overrides,
  };
}

const CONTEXT = { dlq: 'ledger.transactions.dlq', dryRun: false, budget: 10 };

function lastLine(text: string): string {
  return text.trimEnd().split('\n').pop() ?? '';
}

describe('formatDlqReplayReport', () => {
  it('lists each moved message when there are fewer than 50', () => {
    const text = formatDlqReplayReport(
      result({ moved: [summary(1), summary(2)], skipped: 3 }),
      CONTEXT,
    );
    expect(text).toContain(
      'moved msg-1 [MessageValidationError] from "transaction.created" -> "ledger"',
    );
    expect(text).toContain('moved msg-2');
    expect(lastLine(text)).toBe('moved 2, skipped 3');
  });

  it('summarizes by exception type and routing key from 50 messages on', () => {
    const moved = [
      ...Array.from({ length: 40 }, (_, i) => summary(i)),
      ...Array.from({ length: 12 }, (_, i) => summary(100 + i, 'MessageDecodeError')),
    ];
    const text = formatDlqReplayReport(result({ moved }), CONTEXT);
    expect(text).not.toContain('msg-1 ');
    expect(text).toContain('moved 40 x [MessageValidationError] from "transaction.created"');
    expect(text).toContain('moved 12 x [MessageDecodeError] from "transaction.created"');
    expect(lastLine(text)).toBe('moved 52, skipped 0');
  });

  it('reports a dry run as moving nothing', () => {
    const text = formatDlqReplayReport(result({ wouldMove: [summary(1)] }), {
      ...CONTEXT,
      dryRun: true,
    });
    expect(text).toContain('would move msg-1');
    expect(text).toContain('dry run: would move 1; every message examined kept in the DLQ');
    expect(lastLine(text)).toBe('moved 0, skipped 0');
  });

  it('reports failures and an interruption before the final line', () => {
    const text = formatDlqReplayReport(
      result({
        moved: [summary(1)],
        failures: [{ message: summary(2), error: new Error('no confirm within 30000 ms') }],
        stoppedByFailure: true,
        interrupted: true,
        examined: 2,
      }),
      CONTEXT,
    );
    expect(text).toContain('failed msg-2 [MessageValidationError]');
    expect(text).toContain('no confirm within 30000 ms');
    expect(text).toContain('1 not replayed, left in the DLQ; stopped at the first failure');
    expect(text).toContain('interrupted after 2 of 10');
    expect(lastLine(text)).toBe('moved 1, skipped 0');
  });

  it('says when a dead letter could only be returned with a requeueing nack', () => {
    const text = formatDlqReplayReport(
      result({ skipped: 2, returnedUnconfirmed: 2, stoppedByFailure: true }),
      CONTEXT,
    );
    expect(text).toContain('2 could not be copied back to the DLQ either');
    expect(lastLine(text)).toBe('moved 0, skipped 2');
  });
});
