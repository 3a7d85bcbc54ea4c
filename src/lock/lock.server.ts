import type Redis from 'ioredis';
import { LockUnavailableError } from './lock.errors';
import { ACQUIRE, EXTEND, RAISE_FENCE, RELEASE } from './lock.scripts';

/** Prefix of a lock's key (`mp:lock:<key>`) and of its fencing counter (`mp:fence:<key>`). */
export const LOCK_KEY_PREFIX = 'mp:lock:';
export const FENCE_KEY_PREFIX = 'mp:fence:';

/**
 * A fencing counter outlives its last lock by an hour (at least twice the lease). Its time floor
 * makes the expiry safe: a token issued later starts from the server's clock, already past every
 * token issued before (unless the server's clock steps back by more than that hour). One key per
 * lock key would otherwise stay forever (one per message, with the default messageId lock).
 */
export const FENCE_TTL_MS = 3_600_000;

const fenceTtl = (ttlMs: number): number => Math.max(FENCE_TTL_MS, 2 * ttlMs);

/** What ACQUIRE answered. */
export type AcquireReply =
  | { readonly status: 'acquired'; readonly fencingToken: number }
  | { readonly status: 'held'; readonly pttlMs: number }
  | { readonly status: 'processed' };

/** What EXTEND and RELEASE answered: done, no lock at all, or the lock of another token. */
export type TokenReply = 'ok' | 'expired' | 'taken';

interface LockCommands {
  mpLockAcquire(
    lock: string,
    fence: string,
    token: string,
    ttl: number,
    fenceTtl: number,
  ): Promise<[number, string | number]>;
  mpLockAcquireUnlessProcessed(
    lock: string,
    fence: string,
    marker: string,
    token: string,
    ttl: number,
    fenceTtl: number,
  ): Promise<[number, string | number]>;
  mpLockExtend(lock: string, token: string, ttl: number): Promise<number>;
  mpLockRelease(lock: string, token: string): Promise<number>;
  mpLockRaiseFence(
    lock: string,
    fence: string,
    token: string,
    fencingToken: string,
    fenceTtl: number,
  ): Promise<number>;
}

/**
 * One Redis server seen through the lock scripts. Every call has a deadline of its own (besides
 * the client's `commandTimeout`), so a stalled server cannot hold a lock call longer than the
 * lease it is about; a call that misses it rejects with {@link LockUnavailableError}.
 */
export class LockServer {
  private readonly commands: LockCommands;

  constructor(
    readonly client: Redis,
    /** Redacted URL, for errors and logs. */
    readonly label: string,
  ) {
    client.defineCommand('mpLockAcquire', { numberOfKeys: 2, lua: ACQUIRE });
    client.defineCommand('mpLockAcquireUnlessProcessed', { numberOfKeys: 3, lua: ACQUIRE });
    client.defineCommand('mpLockExtend', { numberOfKeys: 1, lua: EXTEND });
    client.defineCommand('mpLockRelease', { numberOfKeys: 1, lua: RELEASE });
    client.defineCommand('mpLockRaiseFence', { numberOfKeys: 2, lua: RAISE_FENCE });
    this.commands = client as unknown as LockCommands;
  }

  async acquire(
    key: string,
    token: string,
    ttlMs: number,
    deadlineMs: number,
    markerKey?: string,
  ): Promise<AcquireReply> {
    const call =
      markerKey === undefined
        ? this.commands.mpLockAcquire(
            LOCK_KEY_PREFIX + key,
            FENCE_KEY_PREFIX + key,
            token,
            ttlMs,
            fenceTtl(ttlMs),
          )
        : this.commands.mpLockAcquireUnlessProcessed(
            LOCK_KEY_PREFIX + key,
            FENCE_KEY_PREFIX + key,
            markerKey,
            token,
            ttlMs,
            fenceTtl(ttlMs),
          );
    let reply: [number, string | number];
    try {
      reply = await this.within(call, deadlineMs, 'acquire');
    } catch (error) {
      // the script may still run after we stopped waiting: never leave that lock behind
      this.release(key, token, deadlineMs).catch(() => undefined);
      throw error;
    }
    const [status, value] = reply;
    if (status === 1) return { status: 'acquired', fencingToken: Number(value) };
    if (status === 2) return { status: 'processed' };
    return { status: 'held', pttlMs: Math.max(0, Number(value)) };
  }

  async extend(key: string, token: string, ttlMs: number, deadlineMs: number): Promise<TokenReply> {
    return tokenReply(
      await this.within(
        this.commands.mpLockExtend(LOCK_KEY_PREFIX + key, token, ttlMs),
        deadlineMs,
        'extend',
      ),
    );
  }

  async release(key: string, token: string, deadlineMs: number): Promise<TokenReply> {
    return tokenReply(
      await this.within(
        this.commands.mpLockRelease(LOCK_KEY_PREFIX + key, token),
        deadlineMs,
        'release',
      ),
    );
  }

  /** Redlock: raises this server's fence to `fencingToken` if the lock is still ours. */
  async raiseFence(
    key: string,
    token: string,
    fencingToken: number,
    deadlineMs: number,
  ): Promise<boolean> {
    const reply = await this.within(
      this.commands.mpLockRaiseFence(
        LOCK_KEY_PREFIX + key,
        FENCE_KEY_PREFIX + key,
        token,
        String(fencingToken),
        FENCE_TTL_MS,
      ),
      deadlineMs,
      'raise fence',
    );
    return reply === 1;
  }

  isReady(): boolean {
    return this.client.status === 'ready';
  }

  private async within<T>(call: Promise<T>, deadlineMs: number, what: string): Promise<T> {
    if (deadlineMs <= 0) {
      call.catch(() => undefined);
      throw new LockUnavailableError(`lock ${what} on ${this.label}: no time left`);
    }
    // the client's own command timeout bounds the call as tightly: no second timer per message
    const clientTimeout = this.client.options.commandTimeout;
    if (clientTimeout !== undefined && clientTimeout <= deadlineMs) {
      try {
        return await call;
      } catch (error) {
        throw this.unavailable(what, error);
      }
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new LockUnavailableError(
              `lock ${what} on ${this.label}: no reply within ${Math.round(deadlineMs)} ms`,
            ),
          ),
        deadlineMs,
      );
    });
    try {
      return await Promise.race([call, deadline]);
    } catch (error) {
      call.catch(() => undefined);
      throw this.unavailable(what, error);
    } finally {
      clearTimeout(timer);
    }
  }

  private unavailable(what: string, error: unknown): LockUnavailableError {
    if (error instanceof LockUnavailableError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new LockUnavailableError(`lock ${what} on ${this.label}: ${message}`, { cause: error });
  }
}

function tokenReply(value: number): TokenReply {
  if (value === 1) return 'ok';
  return value === -1 ? 'taken' : 'expired';
}
