import { LOCK_BACKOFF } from './lock.constants.js';

/**
 * Delay before try `attempt + 1` (attempt 0 = after the first refusal): uniform in
 * [1, min(cap, base·2^attempt)] ms, so contenders spread out instead of retrying in lockstep.
 */
export function fullJitterDelay(
  attempt: number,
  options: { readonly baseMs: number; readonly capMs: number } = LOCK_BACKOFF,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** Math.min(attempt, 30));
  return Math.max(1, Math.round(random() * ceiling));
}

/** Redlock's allowance for clock drift between the client and the servers: 1 % of the TTL + 2 ms. */
export function clockDriftMs(ttlMs: number): number {
  return Math.floor(ttlMs * 0.01) + 2;
}
