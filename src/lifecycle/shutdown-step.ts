/**
 * After the drain deadline, the bookkeeping (hand-backs, ack flush, lock release, closing) has
 * this long before the process exits regardless. Kubernetes' terminationGracePeriodSeconds (and
 * Docker's stop_grace_period) must exceed SHUTDOWN_TIMEOUT_MS plus this.
 */
export const SHUTDOWN_BACKSTOP_MS = 5_000;

/** The longest any one bookkeeping step of shutdown may take once the drain is over. */
export const SHUTDOWN_STEP_TIMEOUT_MS = 1_000;

/**
 * Waits for one shutdown step (cancel a consumer, flush acks, close a channel, quit Redis) for
 * at most `timeoutMs`. Resolves true when it finished in time, false when it failed or did not:
 * a broker or Redis that is down or stalled must not hold the process past its deadline, and
 * every step is best effort (what it could not do, the broker or a lease expiry does for us).
 */
export async function shutdownStep(
  work: Promise<unknown>,
  timeoutMs: number = SHUTDOWN_STEP_TIMEOUT_MS,
): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([work.then(() => true), late]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
