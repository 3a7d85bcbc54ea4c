/** Why a held lock stopped protecting its critical section. */
export type LockLossReason = 'expired' | 'taken';

/** The lock was still held by someone else when `waitMs` ran out. */
export class LockTimeoutError extends Error {
  override readonly name = 'LockTimeoutError';

  constructor(
    readonly key: string,
    readonly waitedMs: number,
  ) {
    super(`lock "${key}" still held by another worker after ${waitedMs} ms`);
  }
}

/**
 * The lock was lost while its holder worked: it expired (an extension did not succeed in time) or
 * another token holds it now. Work done after this point was not protected by the lock; only the
 * fencing token can stop its writes.
 */
export class LockLostError extends Error {
  override readonly name = 'LockLostError';

  constructor(
    readonly key: string,
    readonly reason: LockLossReason,
  ) {
    super(`lock "${key}" lost (${reason}) while its critical section ran`);
  }
}

/** The lock servers could not be reached or did not answer in time: "not now", not a failure. */
export class LockUnavailableError extends Error {
  override readonly name = 'LockUnavailableError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
