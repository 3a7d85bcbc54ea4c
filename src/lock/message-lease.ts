import type { Lease } from './lease.js';
import { FENCE_KEY_PREFIX } from './lock.constants.js';
import type { LockLostError } from './lock.errors.js';
import { fenceTtl } from './lock.server.js';

/**
 * The message's lock, as its handler sees it (`ctx.lock`): held while the handler runs, or, for
 * a `redis-commit` handler, left to its commit ({@link pending}) unless the handler asks for it
 * earlier with {@link hold}.
 */
export interface MessageLock {
  readonly key: string;
  /**
   * Strictly increasing per lock key across holders. Undefined while the lock is pending, and
   * after a commit that took a key nobody had held within the fence's hour (nobody to fence off).
   */
  readonly fencingToken: number | undefined;
  /** The `LockLostError` once the lock is lost (its lease ran out or another token took it). */
  readonly lost: LockLostError | undefined;
  /** True while the lock is left to the commit and nobody holds it for this message. */
  readonly pending: boolean;
  /**
   * Takes the lock now, waiting up to `LOCK_WAIT_MS` (rejects with `LockTimeoutError`), with
   * its watchdog, for work before the commit that must not overlap another worker's. The commit
   * then runs as the holder. Resolves at once for a lock that is not pending.
   */
  hold(): Promise<void>;
}

/** What a commit sends about the lock (see `scripts/commit-4.lua`). */
export interface CommitLockArgs {
  /** The lock's Redis key on the service's Redis (under Redlock, its home record's). */
  readonly lockKey: string;
  /** The lock's fence (`mp:fence:<key>`) on the service's Redis. */
  readonly fenceKey: string;
  /** The holder's token ('' while pending). */
  readonly token: string;
  /** The holder's fencing token ('' while pending: the commit takes the lock itself). */
  readonly fencingToken: string;
  /** The fence's expiry (ms), as an acquisition sets it. */
  readonly fenceTtlMs: string;
}

const NOTHING_HELD = Promise.resolve();

/**
 * The lock of one message: a {@link Lease} held before the handler runs, or, on the service's
 * own Redis, a lock left to the handler's commit, which takes it in the same atomic step as the
 * effect when no other worker holds the key. When another worker does, the commit takes the
 * lease the usual way ({@link hold}, waiting its turn) and runs again as its holder.
 */
export class MessageLease implements MessageLock {
  private lease: Lease | undefined;
  private taking: Promise<void> | undefined;
  private committed = false;
  private minted: number | undefined;
  /** Created when someone asks for the signal (a handler reading `ctx.signal`). */
  private controller: AbortController | undefined;

  private constructor(
    readonly key: string,
    /** The lock's key on the service's Redis, where a commit can take and release it. */
    private readonly redisKey: string,
    /** The lease an acquisition of this key asks for. */
    private readonly ttlMs: number,
    private readonly take: (() => Promise<Lease>) | undefined,
    /** A commit took the lock (for the acquisition metric). */
    private readonly takenByCommit: () => void,
    lease: Lease | undefined,
  ) {
    this.lease = lease;
  }

  /** A lock held from the start (its watchdog running). */
  static held(lease: Lease, redisKey: string, ttlMs: number): MessageLease {
    return new MessageLease(lease.key, redisKey, ttlMs, undefined, () => undefined, lease);
  }

  /**
   * A lock left to the commit: `take` holds it the usual way when asked or when the key is busy;
   * `takenByCommit` is called when a commit took it instead.
   */
  static atCommit(
    key: string,
    redisKey: string,
    ttlMs: number,
    take: () => Promise<Lease>,
    takenByCommit: () => void,
  ): MessageLease {
    return new MessageLease(key, redisKey, ttlMs, take, takenByCommit, undefined);
  }

  get pending(): boolean {
    return this.lease === undefined && !this.committed;
  }

  get fencingToken(): number | undefined {
    return this.lease?.fencingToken ?? this.minted;
  }

  get lost(): LockLostError | undefined {
    return this.lease?.lost;
  }

  /**
   * Aborted (with the `LockLostError`) when the lease is lost; never while the lock is pending
   * or after a commit took it, since nothing is held then.
   */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.lease) this.follow(this.lease);
    }
    return this.controller.signal;
  }

  hold(): Promise<void> {
    if (!this.pending || !this.take) return NOTHING_HELD;
    this.taking ??= this.take().then((lease) => {
      this.lease = lease;
      if (this.controller) this.follow(lease);
    });
    return this.taking;
  }

  /** What the commit script is told about the lock. */
  commitArgs(): CommitLockArgs {
    const { lease } = this;
    return {
      lockKey: this.redisKey,
      fenceKey: FENCE_KEY_PREFIX + this.key,
      token: lease?.token ?? '',
      fencingToken: lease ? String(lease.fencingToken) : '',
      fenceTtlMs: String(fenceTtl(this.ttlMs)),
    };
  }

  /**
   * The commit sent with {@link commitArgs} answered (anything but busy). It released a lease
   * held on this Redis (deleting its key if it still held our token) whatever it answered; a
   * pending lock it took and let go of only when it committed, minting `fence` ('' = none).
   */
  commitAnswered(args: CommitLockArgs, committedFence: string | undefined): void {
    if (args.fencingToken !== '') {
      this.lease?.releasedByScript();
      return;
    }
    if (committedFence === undefined) return;
    this.takenByCommit();
    this.committed = true;
    this.minted = committedFence === '' ? undefined : Number(committedFence);
  }

  /** Releases a held lease, unless a commit did; never throws. */
  release(): Promise<void> {
    if (!this.lease && !this.taking) return NOTHING_HELD;
    const taking = this.taking ?? NOTHING_HELD;
    return taking.then(
      async () => {
        await this.lease?.release();
      },
      () => undefined,
    );
  }

  private follow(lease: Lease): void {
    const controller = this.controller;
    if (!controller) return;
    const { signal } = lease;
    if (signal.aborted) controller.abort(signal.reason);
    else signal.addEventListener('abort', () => controller.abort(signal.reason), { once: true });
  }
}
