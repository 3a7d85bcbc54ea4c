import type { Redis } from 'ioredis';
import { FENCE_KEY_PREFIX, FENCE_TTL_MS, LOCK_KEY_PREFIX } from './lock.constants.js';
import { LockUnavailableError } from './lock.errors.js';
import { RedisScript } from './redis-script.js';

/** The fence of a lock whose lease is `ttlMs` outlives it: at least twice the lease. */
export const fenceTtl = (ttlMs: number): number => Math.max(FENCE_TTL_MS, 2 * ttlMs);

/** What `acquire-3.lua` answered. */
export type AcquireReply =
  | { readonly status: 'acquired'; readonly fencingToken: number }
  | { readonly status: 'held'; readonly pttlMs: number }
  | { readonly status: 'processed' };

/** What `extend-1.lua` and `release-1.lua` answered: done, no lock at all, or another token's. */
export type TokenReply = 'ok' | 'expired' | 'taken';

const SCRIPTS = {
  acquire: RedisScript.load('acquire-3.lua'),
  extend: RedisScript.load('extend-1.lua'),
  release: RedisScript.load('release-1.lua'),
  raiseFence: RedisScript.load('raise-fence-2.lua'),
};

/**
 * One Redis server seen through the lock scripts. Every call has a deadline of its own (besides
 * the client's `commandTimeout`), so a stalled server cannot hold a lock call longer than the
 * lease it is about; a call that misses it rejects with {@link LockUnavailableError}.
 */
export class LockServer {
  constructor(
    readonly client: Redis,
    /** Redacted URL, for errors and logs. */
    readonly label: string,
  ) {}

  /** Takes the lock of `key` for `token`, unless `markerKey` (a processed marker) exists. */
  async acquire(
    key: string,
    token: string,
    ttlMs: number,
    deadlineMs: number,
    markerKey = '',
  ): Promise<AcquireReply> {
    const call = SCRIPTS.acquire.run(
      this.client,
      [LOCK_KEY_PREFIX + key, FENCE_KEY_PREFIX + key, markerKey],
      [token, String(ttlMs), String(fenceTtl(ttlMs))],
    );
    let reply: unknown;
    try {
      reply = await this.within(call, deadlineMs, 'acquire');
    } catch (error) {
      // the script may still run after we stopped waiting: never leave that lock behind
      this.release(key, token, deadlineMs).catch(() => undefined);
      throw error;
    }
    const [status, value] = reply as [number, string | number];
    if (status === 1) return { status: 'acquired', fencingToken: Number(value) };
    if (status === 2) return { status: 'processed' };
    return { status: 'held', pttlMs: Math.max(0, Number(value)) };
  }

  async extend(key: string, token: string, ttlMs: number, deadlineMs: number): Promise<TokenReply> {
    const call = SCRIPTS.extend.run(this.client, [LOCK_KEY_PREFIX + key], [token, String(ttlMs)]);
    return tokenReply(await this.within(call, deadlineMs, 'extend'));
  }

  async release(key: string, token: string, deadlineMs: number): Promise<TokenReply> {
    const call = SCRIPTS.release.run(this.client, [LOCK_KEY_PREFIX + key], [token]);
    return tokenReply(await this.within(call, deadlineMs, 'release'));
  }

  /** Redlock: raises this server's fence to `fencingToken` if the lock is still ours. */
  async raiseFence(
    key: string,
    token: string,
    fencingToken: number,
    deadlineMs: number,
  ): Promise<boolean> {
    const call = SCRIPTS.raiseFence.run(
      this.client,
      [LOCK_KEY_PREFIX + key, FENCE_KEY_PREFIX + key],
      [token, String(fencingToken), String(FENCE_TTL_MS)],
    );
    return (await this.within(call, deadlineMs, 'raise fence')) === 1;
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

function tokenReply(value: unknown): TokenReply {
  if (value === 1) return 'ok';
  return value === -1 ? 'taken' : 'expired';
}
