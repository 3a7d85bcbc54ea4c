import type { LockLostError } from './lock.errors';

/**
 * The message's lock as its handler sees it (`ctx.lock`): held while the handler runs, or, for a
 * handler with `lockAtCommit`, left to its commit script ({@link pending}) unless the handler
 * asks for it earlier with {@link hold}.
 */
export interface MessageLock {
  readonly key: string;
  /**
   * Strictly increasing per lock key across holders; undefined while the lock is pending, and
   * after a commit that took a key nobody had held within the fence's hour (nobody to fence off).
   */
  readonly fencingToken: number | undefined;
  /** The `LockLostError` once the lock is lost (its lease ran out or another token took it). */
  readonly lost: LockLostError | undefined;
  /** True while the lock is left to the commit script and nobody holds it for this message. */
  readonly pending: boolean;
  /**
   * Takes the lock now, waiting up to `LOCK_WAIT_MS` (rejects with `LockTimeoutError`), with
   * its watchdog, for work before the commit that must not overlap another worker's. The commit
   * script then runs as the holder. Resolves at once for a lock that is not pending.
   */
  hold(): Promise<void>;
}

/** What a commit script needs from the message's lock (the service's own code, not handlers). */
export interface ScriptLock extends MessageLock {
  /** The lock's Redis key when it lives on the service's Redis; undefined under Redlock. */
  readonly redisKey: string | undefined;
  /** The holder's token ('' while pending: nothing is stored under the lock key yet). */
  readonly token: string;
  /** The script released the lock (whatever it found): stop the watchdog, forget the lock. */
  releasedByScript(): void;
  /**
   * A pending lock was taken and released by the script, which minted this fencing token, or
   * none (undefined) when nobody had held the key within the fence's lifetime.
   */
  takenByScript(fencingToken: number | undefined): void;
}
