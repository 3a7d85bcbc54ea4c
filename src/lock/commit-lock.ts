import type { Lock } from './held-lock';
import type { LockLostError } from './lock.errors';
import type { ScriptLock } from './script-lock';

/** What a {@link CommitLock} needs from the lock service. */
export interface CommitLockDeps {
  /** Takes the lock the usual way (local turn, Redis, watchdog running), waiting if it is busy. */
  readonly take: () => Promise<Lock & ScriptLock>;
  /** The commit script took and released the lock: count the acquisition. */
  readonly taken: () => void;
}

const NOTHING_HELD = Promise.resolve();

/**
 * A lock left to the handler's commit script (`lockAtCommit`, single-Redis mode). Nothing is
 * stored while the handler runs: the script checks that no other worker holds the key, mints a
 * fencing token if someone held the key within the fence's hour, applies the effect and writes
 * the marker in one atomic step, so the lock is held for exactly that step and never outlives
 * it. When another worker holds the key, the commit takes the lock the usual way ({@link hold},
 * waiting its turn) and runs again as the holder.
 */
export class CommitLock implements ScriptLock {
  private held: (Lock & ScriptLock) | undefined;
  private holding: Promise<void> | undefined;
  private committed = false;
  private minted: number | undefined;
  /** Created when someone asks for the signal (a handler reading `ctx.signal`). */
  private controller: AbortController | undefined;

  constructor(
    readonly key: string,
    readonly redisKey: string,
    private readonly deps: CommitLockDeps,
  ) {}

  get pending(): boolean {
    return this.held === undefined && !this.committed;
  }

  get token(): string {
    return this.held?.token ?? '';
  }

  get fencingToken(): number | undefined {
    return this.held?.fencingToken ?? this.minted;
  }

  get lost(): LockLostError | undefined {
    return this.held?.lost;
  }

  /**
   * Aborted (with the `LockLostError`) when a lock taken by {@link hold} is lost; never while
   * the lock is pending, since nothing is held then.
   */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.held) this.follow(this.held);
    }
    return this.controller.signal;
  }

  hold(): Promise<void> {
    if (this.committed) return Promise.resolve();
    this.holding ??= this.deps.take().then((lock) => {
      this.held = lock;
      if (this.controller) this.follow(lock);
    });
    return this.holding;
  }

  takenByScript(fencingToken: number | undefined): void {
    if (!this.pending)
      throw new Error(`lock ${this.key} is not pending: the script cannot take it`);
    this.committed = true;
    this.minted = fencingToken;
    this.deps.taken();
  }

  releasedByScript(): void {
    this.held?.releasedByScript();
  }

  private follow(lock: Lock): void {
    const controller = this.controller;
    if (!controller) return;
    const { signal } = lock;
    if (signal.aborted) controller.abort(signal.reason);
    else signal.addEventListener('abort', () => controller.abort(signal.reason), { once: true });
  }

  /** Releases a lock taken by {@link hold}, if the script did not; never throws. */
  release(): Promise<void> {
    // the common case: nothing was held, the script took and released the lock in one step
    if (!this.holding) return NOTHING_HELD;
    return this.holding.then(
      async () => {
        await this.held?.release();
      },
      () => undefined,
    );
  }
}
