import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Verdict } from './chaos.harness';

const REPORTS = join(__dirname, '..', '..', '..', 'reports');

/** Timings of a fault, in ms, for the report. */
export interface FaultTimings {
  readonly detectMs?: number;
  readonly recoverMs?: number;
  /** Redeliveries acked as `duplicate` (from /metrics of the instances still alive). */
  readonly duplicatesAbsorbed?: number;
  /** Cluster runs: per fault, from the kill to the instance's connection to another node. */
  readonly reconnectMs?: readonly number[];
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

/** The hard pass criteria of the suite, as one object to compare. */
export function hardCriteria(verdict: Verdict): Record<string, number> {
  return {
    lost: verdict.lost,
    stuck: verdict.stuck,
    unexpected: verdict.unexpected,
    lockOverlaps: verdict.lockOverlaps,
    duplicateEffects: verdict.duplicateEffects,
    metricsMismatches: verdict.metricsMismatches,
    secretsFound: verdict.secretsFound,
  };
}

export const PASSING = {
  lost: 0,
  stuck: 0,
  unexpected: 0,
  lockOverlaps: 0,
  duplicateEffects: 0,
  metricsMismatches: 0,
  secretsFound: 0,
};

/**
 * The criteria of a test that breaks leases on purpose (a worker stopped or blocked past its
 * TTL, locks deleted): intervals may overlap there, and the fencing token keeps the writes in
 * order, so everything but the overlap count must still be perfect.
 */
export function leaseBrokenCriteria(verdict: Verdict): Record<string, number> {
  return {
    lost: verdict.lost,
    stuck: verdict.stuck,
    unexpected: verdict.unexpected,
    duplicateEffects: verdict.duplicateEffects,
    secretsFound: verdict.secretsFound,
  };
}

export const LEASE_BROKEN_PASSING = {
  lost: 0,
  stuck: 0,
  unexpected: 0,
  duplicateEffects: 0,
  secretsFound: 0,
};

/** A pause that is part of a fault scenario (how long a fault lasts, a kill schedule), not a wait. */
export const scenarioPause = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));
