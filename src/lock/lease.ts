import type { LockMetrics } from '../metrics/lock.metrics.js';
import type { LockBackend, ReleaseOutcome } from './lock.backend.js';
import { LockLostError, type LockLossReason } from './lock.errors.js';

/** A lease on a key, as `LockService.acquire` and `withLock` hand it to the code it protects. */
export interface Lock {
  readonly key: string;
  /** Random token of this holder; the servers only extend or release the lock for it. */
  readonly token: string;
  /**
   * Strictly increasing per key across holders. Pass it to the storage you write to and make it
   * refuse a write whose token is lower than the last one it accepted: that, not the lease, is
   * what stops a holder that paused past its lease (GC, SIGSTOP, a slow network) from writing.
   */
  readonly fencingToken: number;
  /** Aborted (with a `LockLostError`) when the lock is lost: stop working and do not commit. */
  readonly signal: AbortSignal;
  /** The `LockLostError` once the lock is lost (the signal's reason), without creating the signal. */
  readonly lost: LockLostError | undefined;
  /** Extends the lease to `ttlMs` from now; false when the lock is no longer ours. */
  extend(ttlMs?: number): Promise<boolean>;
  /** Gives the lock back. Never throws; says what it found. */
  release(): Promise<ReleaseOutcome>;
}

export interface LeaseInit {
  readonly key: string;
  readonly token: string;
  readonly fencingToken: number;
  readonly ttlMs: number;
  /** `performance.now()` instant at which the lease may have ended (TTL − elapsed − drift). */
  readonly validUntil: number;
  readonly backend: LockBackend;
  readonly metrics: LockMetrics;
  readonly releaseTimeoutMs: number;
  /** Called once, when the lock is released: frees the local turn. */
  readonly onReleased: () => void;
}

const now = (): number => performance.now();

/**
 * A lock this process holds. Its signal aborts at the end of the lease unless the lease was
 * extended in time; {@link watch} starts a watchdog that extends every TTL/3, each extension with
 * a deadline at the current end of the lease, so a stalled server makes the lock lost (and the
 * signal abort) no later than the lease could have ended.
 */
export class Lease implements Lock {
  readonly key: string;
  readonly token: string;
  readonly fencingToken: number;
  /** Created when someone asks for the signal: most locks are released without it. */
  private controller: AbortController | undefined;
  private lossReason: LockLostError | undefined;
  private validUntil: number;
  private state: 'held' | 'lost' | 'released' = 'held';
  private expiryTimer: NodeJS.Timeout | undefined;
  private watchdogTimer: NodeJS.Timeout | undefined;
  private releasing: Promise<ReleaseOutcome> | undefined;

  constructor(private readonly init: LeaseInit) {
    this.key = init.key;
    this.token = init.token;
    this.fencingToken = init.fencingToken;
    this.validUntil = init.validUntil;
    init.metrics.heldChanged(1);
    this.armExpiry();
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.lossReason) this.controller.abort(this.lossReason);
    }
    return this.controller.signal;
  }

  get lost(): LockLostError | undefined {
    return this.lossReason;
  }

  /** Milliseconds of lease left as far as this process can vouch (≤ 0 once lost). */
  remainingMs(): number {
    return this.state === 'held' ? this.validUntil - now() : 0;
  }

  /** Starts extending the lease every TTL/3 until release or loss. */
  watch(): void {
    if (this.state === 'held' && !this.watchdogTimer) this.scheduleWatchdog(this.interval);
  }

  async extend(ttlMs: number = this.init.ttlMs): Promise<boolean> {
    if (this.state !== 'held') return false;
    let result;
    try {
      result = await this.init.backend.extend(this.key, this.token, ttlMs, this.validUntil - now());
    } catch (error) {
      this.init.metrics.extension('failed');
      throw error;
    }
    if (this.state !== 'held') return false;
    if (result.status === 'extended') {
      this.init.metrics.extension('extended');
      this.validUntil = result.validUntil;
      this.armExpiry();
      return true;
    }
    this.init.metrics.extension('lost');
    this.lose(result.status);
    return false;
  }

  release(): Promise<ReleaseOutcome> {
    this.releasing ??= this.doRelease();
    return this.releasing;
  }

  /**
   * A commit on the service's Redis released the lock there (deleting its key if it held our
   * token): stop the watchdog and release what is left (on one Redis nothing, no round trip;
   * under Redlock the quorum's keys).
   */
  releasedByScript(): void {
    this.releasing ??= this.doRelease(true);
  }

  private async doRelease(releasedByCommit = false): Promise<ReleaseOutcome> {
    const wasHeld = this.state === 'held';
    this.state = 'released';
    this.stopTimers();
    if (wasHeld) this.init.metrics.heldChanged(-1);
    try {
      // a lost lock may still carry our token on the server (our view of the lease is cautious)
      return await this.init.backend.release(
        this.key,
        this.token,
        this.init.releaseTimeoutMs,
        releasedByCommit,
      );
    } finally {
      this.init.onReleased();
    }
  }

  private get interval(): number {
    return Math.max(1, Math.floor(this.init.ttlMs / 3));
  }

  private scheduleWatchdog(delayMs: number): void {
    this.watchdogTimer = setTimeout(() => void this.tick(), delayMs);
  }

  private async tick(): Promise<void> {
    this.watchdogTimer = undefined;
    if (this.state !== 'held') return;
    try {
      if (await this.extend()) this.scheduleWatchdog(this.interval);
    } catch {
      // no answer in time: try again soon; the expiry timer aborts if the lease runs out first
      if (this.state === 'held') {
        this.scheduleWatchdog(Math.min(this.interval, Math.max(10, this.remainingMs() / 4)));
      }
    }
  }

  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => this.lose('expired'), Math.max(0, this.validUntil - now()));
  }

  private lose(reason: LockLossReason): void {
    if (this.state !== 'held') return;
    this.state = 'lost';
    this.stopTimers();
    this.init.metrics.heldChanged(-1);
    this.init.metrics.lockLost();
    this.lossReason = new LockLostError(this.key, reason);
    this.controller?.abort(this.lossReason);
  }

  private stopTimers(): void {
    clearTimeout(this.expiryTimer);
    clearTimeout(this.watchdogTimer);
    this.expiryTimer = undefined;
    this.watchdogTimer = undefined;
  }
}
