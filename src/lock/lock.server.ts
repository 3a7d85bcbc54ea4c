import { keySlot, slotTagOf } from '../redis/key-slot.js';
import { commandTimeoutOf, type RedisClient } from '../redis/redis.connection.js';
import { FENCE_KEY_PREFIX, FENCE_TTL_MS, LOCK_KEY_PREFIX } from './lock.constants.js';
import { LockUnavailableError } from './lock.errors.js';
import { RedisScript } from './redis-script.js';

/** The fence of a lock whose lease is `ttlMs` outlives it: at least twice the lease. */
export const fenceTtl = (ttlMs: number): number => Math.max(FENCE_TTL_MS, 2 * ttlMs);

/** What an acquire answered (`lock-ops-0.lua`). */
export type AcquireReply =
  | { readonly status: 'acquired'; readonly fencingToken: number }
  | { readonly status: 'held'; readonly pttlMs: number }
  | { readonly status: 'processed' };

/** What an extend or a release answered: done, no lock at all, or another token's. */
export type TokenReply = 'ok' | 'expired' | 'taken';

/** Every lock operation, batched per server and turn ({@link LockServer}). */
const LOCK_OPS = RedisScript.load('lock-ops-0.lua');

/** A key whose first characters are a hash tag (`{…}`, not empty): the slot of its keys. */
const STARTS_WITH_TAG = /^\{[^}]+\}/;

/** Operations per script call at most: a call blocks the server while it runs (µs each). */
const MAX_OPS_PER_CALL = 256;

/** One operation waiting for the next call of `lock-ops-0.lua`. */
interface QueuedOp {
  readonly keys: readonly string[];
  readonly args: readonly string[];
  readonly resolve: (reply: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * One Redis server seen through the lock script. Operations asked in one turn of the event loop
 * (a burst of deliveries each taking its lock, a batch of commit replies each releasing one) go
 * to the server together, in the order asked, as one `lock-ops-0.lua` call at the end of the
 * turn: one command instead of one per operation, on each server. Every operation has a deadline
 * of its own (besides the client's `commandTimeout`), so a stalled server cannot hold a lock call
 * longer than the lease it is about; an operation that misses it rejects with
 * {@link LockUnavailableError}.
 */
export class LockServer {
  private queue: QueuedOp[] = [];
  private flushing: NodeJS.Immediate | undefined;
  /** The client's own command timeout (each node's, on a Redis Cluster), if it has one. */
  private readonly commandTimeoutMs: number | undefined;

  constructor(
    readonly client: RedisClient,
    /** Redacted URL, for errors and logs. */
    readonly label: string,
  ) {
    this.commandTimeoutMs = commandTimeoutOf(client);
  }

  /**
   * Takes the lock of `key` for `token`, unless `markerKey` (a processed marker) exists. The
   * fencing token minted is at least `proposedFence` (Redlock: the same for every server).
   */
  acquire(
    key: string,
    token: string,
    ttlMs: number,
    deadlineMs: number,
    markerKey = '',
    proposedFence?: number,
  ): Promise<AcquireReply> {
    const call = this.ask(this.keysToTake(key, markerKey), [
      'a',
      token,
      String(ttlMs),
      String(fenceTtl(ttlMs)),
      proposedFence === undefined ? '' : String(proposedFence),
    ]);
    return this.acquired(call, key, token, deadlineMs, 'acquire');
  }

  /**
   * Redlock: records a quorum holder's lock of `key` on this server, the service's own Redis,
   * where commits take and check it, unless `markerKey` exists. Mints nothing: `acquired`
   * carries the lowest fencing token a commit here accepts (1 + the key's fence).
   */
  holdHome(
    key: string,
    token: string,
    ttlMs: number,
    deadlineMs: number,
    markerKey = '',
  ): Promise<AcquireReply> {
    const call = this.ask(this.keysToTake(key, markerKey), ['h', token, String(ttlMs)]);
    return this.acquired(call, key, token, deadlineMs, 'home record');
  }

  async extend(key: string, token: string, ttlMs: number, deadlineMs: number): Promise<TokenReply> {
    const call = this.ask([this.keyOf(LOCK_KEY_PREFIX, key)], ['e', token, String(ttlMs)]);
    return tokenReply(await this.within(call, deadlineMs, 'extend'));
  }

  async release(key: string, token: string, deadlineMs: number): Promise<TokenReply> {
    const call = this.ask([this.keyOf(LOCK_KEY_PREFIX, key)], ['r', token]);
    return tokenReply(await this.within(call, deadlineMs, 'release'));
  }

  /** Redlock: raises this server's fence to `fencingToken` if the lock is still ours. */
  async raiseFence(
    key: string,
    token: string,
    fencingToken: number,
    deadlineMs: number,
  ): Promise<boolean> {
    const call = this.ask(
      [this.keyOf(LOCK_KEY_PREFIX, key), this.keyOf(FENCE_KEY_PREFIX, key)],
      ['f', token, String(fencingToken), String(FENCE_TTL_MS)],
    );
    return (await this.within(call, deadlineMs, 'raise fence')) === 1;
  }

  /** The keys of an acquire or a home record: the lock, its fence, the marker. */
  private keysToTake(key: string, markerKey: string): string[] {
    const lockKey = this.keyOf(LOCK_KEY_PREFIX, key);
    // on a Redis Cluster, no marker is '!' and a key of the lock's slot, not '' (slot 0)
    const marker = markerKey === '' && this.client.isCluster ? `!${lockKey}` : markerKey;
    return [lockKey, this.keyOf(FENCE_KEY_PREFIX, key), marker];
  }

  /** An acquire's or a home record's reply: > 0 taken, 0 the marker exists, < 0 held. */
  private async acquired(
    call: Promise<unknown>,
    key: string,
    token: string,
    deadlineMs: number,
    what: string,
  ): Promise<AcquireReply> {
    let reply: number;
    try {
      reply = (await this.within(call, deadlineMs, what)) as number;
    } catch (error) {
      // the script may still run after we stopped waiting: never leave that lock behind
      this.release(key, token, deadlineMs).catch(() => undefined);
      throw error;
    }
    if (reply > 0) return { status: 'acquired', fencingToken: reply };
    if (reply === 0) return { status: 'processed' };
    return { status: 'held', pttlMs: -1 - reply };
  }

  /**
   * The Redis key of a lock's `key` under `prefix`. On a Redis Cluster the lock and its fence
   * must share a slot: a key that does not start with a hash tag gets its own slot's (the
   * service's Redis being a cluster, the message path tags its keys already; a Redlock server
   * that is a cluster while the service's Redis is not gets them here).
   */
  keyOf(prefix: string, key: string): string {
    if (!this.client.isCluster || STARTS_WITH_TAG.test(key)) return prefix + key;
    return prefix + slotTagOf(key) + key;
  }

  /** Queues one operation for the call at the end of this turn. */
  private ask(keys: readonly string[], args: readonly string[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ keys, args, resolve, reject });
      this.flushing ??= setImmediate(() => this.flush());
    });
  }

  /**
   * Sends what was asked this turn, in order, in calls of at most {@link MAX_OPS_PER_CALL}; on a
   * Redis Cluster, one call per hash slot (a script's keys must share one), in order within it.
   */
  private flush(): void {
    const queued = this.queue;
    this.queue = [];
    this.flushing = undefined;
    if (!this.client.isCluster) {
      this.send(queued);
      return;
    }
    const bySlot = new Map<number, QueuedOp[]>();
    for (const op of queued) {
      const slot = keySlot(op.keys[0]);
      const ops = bySlot.get(slot);
      if (ops) ops.push(op);
      else bySlot.set(slot, [op]);
    }
    for (const ops of bySlot.values()) this.send(ops);
  }

  private send(queued: readonly QueuedOp[]): void {
    for (let from = 0; from < queued.length; from += MAX_OPS_PER_CALL) {
      const ops = queued.slice(from, from + MAX_OPS_PER_CALL);
      const keys: string[] = [];
      const args: string[] = [];
      for (const op of ops) {
        keys.push(...op.keys);
        args.push(...op.args);
      }
      LOCK_OPS.run(this.client, keys, args).then(
        (replies) => {
          const list = replies as unknown[];
          ops.forEach((op, i) => op.resolve(list[i]));
        },
        (error: unknown) => {
          for (const op of ops) op.reject(error);
        },
      );
    }
  }

  isReady(): boolean {
    return this.client.status === 'ready';
  }

  private within<T>(call: Promise<T>, deadlineMs: number, what: string): Promise<T> {
    if (deadlineMs <= 0) {
      call.catch(() => undefined);
      return Promise.reject(
        new LockUnavailableError(`lock ${what} on ${this.label}: no time left`),
      );
    }
    // the client's own command timeout bounds the call as tightly: no second timer per message
    // (and no async frame: this runs for every operation on every server)
    const clientTimeout = this.commandTimeoutMs;
    if (clientTimeout !== undefined && clientTimeout <= deadlineMs) {
      return call.catch((error: unknown) => {
        throw this.unavailable(what, error);
      });
    }
    return this.withTimer(call, deadlineMs, what);
  }

  private async withTimer<T>(call: Promise<T>, deadlineMs: number, what: string): Promise<T> {
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
