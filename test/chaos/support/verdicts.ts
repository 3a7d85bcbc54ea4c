import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Verdict } from './chaos.harness.js';
import type { PgVerdict } from './postgres-chaos.harness.js';

const REPORTS = join(import.meta.dirname, '..', '..', '..', 'reports');

/** Timings of a fault, in ms, for the report. */
export interface FaultTimings {
  readonly detectMs?: number;
  readonly recoverMs?: number;
  /** Redeliveries acked as `duplicate` (from /metrics of the instances still alive). */
  readonly duplicatesAbsorbed?: number;
  /** Cluster runs: per fault, from the kill to the instance's connection to another node. */
  readonly reconnectMs?: readonly number[];
  /** Deliveries handed back for "not now" (`requeue` outcomes of the live instances). */
  readonly handedBack?: number;
  /** Lock extensions (`lock_extensions_total` of the live instances). */
  readonly extended?: number;
  /** Locks lost under running handlers (`lock_lost_total` of the live instances). */
  readonly locksLost?: number;
}

/**
 * Appends a test's verdict to `reports/chaos-results.jsonl`, from which
 * `test/chaos/write-report.js` renders the table of docs/reliability.md.
 */
export function recordVerdict(
  test: string,
  verdict: Verdict,
  timings: FaultTimings = {},
  file = 'chaos-results.jsonl',
): void {
  mkdirSync(REPORTS, { recursive: true });
  appendFileSync(
    join(REPORTS, file),
    `${JSON.stringify({ test, at: new Date().toISOString(), ...timings, ...verdict })}\n`,
  );
}

/**
 * Appends a verdict of the ledger on PostgreSQL to `reports/chaos-postgres-results.jsonl`
 * (its own table in docs/reliability.md: its columns differ).
 */
export function recordPgVerdict(
  test: string,
  verdict: PgVerdict,
  timings: FaultTimings = {},
): void {
  mkdirSync(REPORTS, { recursive: true });
  appendFileSync(
    join(REPORTS, 'chaos-postgres-results.jsonl'),
    `${JSON.stringify({ test, at: new Date().toISOString(), ...timings, ...verdict })}\n`,
  );
}

/**
 * The hard criteria of the suite, each on its own, as one object to compare: every one of them
 * can fail (each has a negative control that makes it fail, in the smoke subset).
 */
export function hardCriteria(verdict: Verdict): Record<string, number> {
  return {
    lost: verdict.lost,
    stuck: verdict.stuck,
    unexpected: verdict.unexpected,
    duplicateEffects: verdict.duplicateEffects,
    balanceErrors: verdict.balanceErrors,
    markerJournalMismatches: verdict.markerJournalMismatches,
    lockOverlaps: verdict.lockOverlaps,
    tokenOrderViolations: verdict.tokenOrderViolations,
    metricsMismatches: verdict.metricsMismatches,
    secretsFound: verdict.secretsFound,
  };
}

export const PASSING = {
  lost: 0,
  stuck: 0,
  unexpected: 0,
  duplicateEffects: 0,
  balanceErrors: 0,
  markerJournalMismatches: 0,
  lockOverlaps: 0,
  tokenOrderViolations: 0,
  metricsMismatches: 0,
  secretsFound: 0,
};

/**
 * The criteria of a test where an instance can apply an effect without learning it did (the
 * reply of its commit timed out: Redis stalled) or learn afterwards that its lease was lost (a
 * worker stopped or blocked past its TTL, locks deleted): all of them, with the per-instance
 * metrics reconciled with the journal (`metricsUnreconciled`) instead of equal to it. Such an
 * instance hands the message back, and the redelivery is acked as `duplicate`.
 */
export function reconciledCriteria(verdict: Verdict): Record<string, number> {
  const criteria: Record<string, number> = hardCriteria(verdict);
  delete criteria.metricsMismatches;
  criteria.metricsUnreconciled = verdict.metricsUnreconciled;
  return criteria;
}

export const RECONCILED_PASSING: Record<string, number> = {
  ...Object.fromEntries(
    Object.entries(PASSING).filter(([criterion]) => criterion !== 'metricsMismatches'),
  ),
  metricsUnreconciled: 0,
};

/** A pause that is part of a fault scenario (how long a fault lasts, a kill schedule), not a wait. */
export const scenarioPause = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));
