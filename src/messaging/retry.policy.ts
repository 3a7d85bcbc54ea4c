import { HandlerConfigurationError } from './messaging.errors.js';

/** Retry options of `@MessageHandler({ retry })`; unset fields come from `RETRY_*` env vars. */
export interface RetryOptions {
  /** Attempts in all, the first included (1 = never retry). Default `RETRY_MAX_ATTEMPTS`. */
  readonly maxAttempts?: number;
  /** Delay before the first retry. Default `RETRY_INITIAL_DELAY_MS`. */
  readonly initialDelayMs?: number;
  /** Upper bound of any delay. Default `RETRY_MAX_DELAY_MS`. */
  readonly maxDelayMs?: number;
  /** Growth factor between consecutive delays. Default 2. */
  readonly multiplier?: number;
  /**
   * Proportional jitter, 0–1: each delay is drawn uniformly from `[base × (1 − jitter), base]`.
   * Default 0.2. See {@link jitteredDelay} for why not full jitter.
   */
  readonly jitter?: number;
}

/** A fully resolved retry policy. */
export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly multiplier: number;
  readonly jitter: number;
}

export const DEFAULT_MULTIPLIER = 2;
export const DEFAULT_JITTER = 0.2;

export function resolveRetryPolicy(
  handlerId: string,
  options: RetryOptions | undefined,
  defaults: Pick<RetryPolicy, 'maxAttempts' | 'initialDelayMs' | 'maxDelayMs'>,
): RetryPolicy {
  const policy: RetryPolicy = {
    maxAttempts: options?.maxAttempts ?? defaults.maxAttempts,
    initialDelayMs: options?.initialDelayMs ?? defaults.initialDelayMs,
    maxDelayMs: options?.maxDelayMs ?? Math.max(defaults.maxDelayMs, options?.initialDelayMs ?? 0),
    multiplier: options?.multiplier ?? DEFAULT_MULTIPLIER,
    jitter: options?.jitter ?? DEFAULT_JITTER,
  };
  const problems: string[] = [];
  if (!Number.isInteger(policy.maxAttempts) || policy.maxAttempts < 1)
    problems.push('maxAttempts must be an integer >= 1');
  if (!Number.isInteger(policy.initialDelayMs) || policy.initialDelayMs < 1)
    problems.push('initialDelayMs must be an integer >= 1');
  if (!Number.isInteger(policy.maxDelayMs) || policy.maxDelayMs < policy.initialDelayMs)
    problems.push('maxDelayMs must be an integer >= initialDelayMs');
  if (!(policy.multiplier >= 1)) problems.push('multiplier must be >= 1');
  if (!(policy.jitter >= 0 && policy.jitter <= 1)) problems.push('jitter must be between 0 and 1');
  if (problems.length > 0)
    throw new HandlerConfigurationError(`${handlerId}: retry ${problems.join('; ')}`);
  return policy;
}

/** The delay after failed attempt `attempt` (1-based): min(max, initial × multiplier^(attempt−1)). */
export function baseDelay(policy: RetryPolicy, attempt: number): number {
  return Math.min(
    policy.maxDelayMs,
    Math.round(policy.initialDelayMs * policy.multiplier ** (attempt - 1)),
  );
}

/** The distinct base delays a policy can ask for, ascending: one broker delay tier each. */
export function delayTiers(policy: RetryPolicy): number[] {
  const tiers = new Set<number>();
  for (let attempt = 1; attempt < policy.maxAttempts; attempt++)
    tiers.add(baseDelay(policy, attempt));
  return [...tiers].sort((a, b) => a - b);
}

/**
 * Proportional jitter: uniform in `[base × (1 − jitter), base]`. Messages of one tier queue expire
 * in FIFO order, so a message behind one with a longer expiry waits for it. With proportional
 * jitter that wait is at most `base × jitter`; full jitter (`[0, base]`) would let it grow to the
 * whole delay. A fifth of the delay still spreads a burst of failures over time.
 */
export function jitteredDelay(
  base: number,
  jitter: number,
  random: () => number = Math.random,
): number {
  return Math.max(1, Math.round(base * (1 - jitter * random())));
}

/**
 * The tier (index into ascending `tiers`) for a delay: the smallest whose base delay is at least
 * `delayMs`, so the message never waits behind longer expiries than its tier's own; the largest
 * tier when none is long enough (a `RetryAfterError` beyond the schedule).
 */
export function tierFor(tiers: readonly number[], delayMs: number): number {
  const index = tiers.findIndex((t) => t >= delayMs);
  return index === -1 ? tiers.length - 1 : index;
}

/** Name of the delay queue of tier `index` (0-based) of queue `queue`: `Q.retry.<n>`, n from 1. */
export function tierQueueName(queue: string, index: number): string {
  return `${queue}.retry.${index + 1}`;
}
