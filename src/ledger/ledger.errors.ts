/**
 * The ledger refused a write: a higher fencing token was already applied to the account, so this
 * writer's lock had been lost (it paused past its lease). Retried: the next attempt takes a new lock.
 */
export class StaleFencingTokenError extends Error {
  override readonly name = 'StaleFencingTokenError';

  constructor(accountId: string, fencingToken: number | undefined) {
    super(`stale fencing token ${String(fencingToken)} for account ${accountId}: write refused`);
  }
}
