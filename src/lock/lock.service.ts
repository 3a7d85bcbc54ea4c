import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { type OnApplicationShutdown } from '@nestjs/common';
import { abortableDelay } from '../lifecycle/abortable-delay.js';
import { shutdownStep } from '../lifecycle/shutdown-step.js';
import type { LockMetrics } from '../metrics/lock.metrics.js';
import { Lease, type Lock } from './lease.js';
import type { LockBackend } from './lock.backend.js';
import { fullJitterDelay } from './lock.backoff.js';
import { MAX_KEY_LENGTH } from './lock.constants.js';
import { LockTimeoutError, LockUnavailableError } from './lock.errors.js';
import { LocalTurns } from './local-turns.js';
import { MessageLease } from './message-lease.js';

export interface AcquireOptions {
  /** Lease length; default `LOCK_TTL_MS`. */
  readonly ttlMs?: number;
  /** How long to wait while someone else holds the lock; default `LOCK_WAIT_MS` (0 = one try). */
  readonly waitMs?: number;
  /** Aborts the wait (rejecting with the signal's reason). */
  readonly signal?: AbortSignal;
}

export interface LockDefaults {
  readonly ttlMs: number;
  readonly waitMs: number;
  /** Upper bound of any single lock call. */
  readonly commandTimeoutMs: number;
}

export interface LockServiceDeps {
  readonly backend: LockBackend;
  readonly defaults: LockDefaults;
  readonly metrics: LockMetrics;
  /** Closes connections the service owns (Redlock servers), after every lock is released. */
  readonly close: () => Promise<void>;
}

export interface LockStatus {
  readonly mode: 'single' | 'redlock';
  readonly available: boolean;
  readonly servers: readonly { readonly url: string; readonly up: boolean }[];
}

/**
 * Redis lease locks with tokens, fencing tokens, a watchdog and bounded waiting. One Redis, or a
 * Redlock quorum when `REDIS_LOCK_URLS` lists 3 or more servers. Inside one process, work on the
 * same key queues locally (FIFO), so only one waiter per key polls Redis.
 */
export class LockService
  extends EventEmitter<{ availability: [] }>
  implements OnApplicationShutdown
{
  private readonly held = new Set<Lease>();
  private readonly turns = new LocalTurns();
  private closing = false;
  /**
   * Lock tokens: 96 random bits drawn once per process, then a counter. Unique across holders
   * (all a token must be: it is compared, never trusted as a secret), without a call into the
   * CSPRNG for every message.
   */
  private readonly tokenNonce = randomBytes(12).toString('base64url');
  private tokenCounter = 0;

  constructor(private readonly deps: LockServiceDeps) {
    super();
  }

  get mode(): 'single' | 'redlock' {
    return this.deps.backend.mode;
  }

  /** Takes the lock, waiting up to `waitMs`. Rejects with `LockTimeoutError` or `LockUnavailableError`. */
  acquire(key: string, options: AcquireOptions = {}): Promise<Lock> {
    return this.takeLock(key, options);
  }

  /**
   * Runs `fn` holding the lock, with the watchdog extending it every TTL/3, and always releases
   * it. If the lock was lost before `fn` settled, rejects with the `LockLostError` (also the
   * reason of `lock.signal`), even if `fn` resolved: its work was not protected to the end.
   */
  async withLock<T>(
    key: string,
    fn: (lock: Lock) => Promise<T>,
    options: AcquireOptions = {},
  ): Promise<T> {
    const lock = await this.takeLock(key, options);
    lock.watch();
    try {
      const value = await fn(lock);
      lock.signal.throwIfAborted();
      return value;
    } catch (error) {
      if (lock.signal.aborted) throw lock.signal.reason;
      throw error;
    } finally {
      await lock.release();
    }
  }

  /**
   * A message's lock, held before its handler runs: checks the processed marker (`markerKey`)
   * and takes the lock in one round trip (one script on a single Redis); resolves `processed`
   * (nothing locked) when the marker exists. The lease's watchdog is running.
   */
  async holdForMessage(
    key: string,
    markerKey: string | undefined,
    options: AcquireOptions = {},
  ): Promise<MessageLease | 'processed'> {
    const lease = await this.take(key, options, markerKey);
    if (lease === 'processed') return lease;
    lease.watch();
    return MessageLease.held(lease, this.deps.backend.redisKeyOf(key), this.ttlOf(options));
  }

  /**
   * A message's lock left to its handler's commit, which takes it atomically with the effect
   * when no other worker holds the key: nothing is sent before that. When the key is busy, the
   * commit holds it the usual way, waiting as {@link acquire} does (`signal` aborts the wait),
   * and runs again as the holder. Under Redlock the commit takes it the same way on the
   * service's Redis, where every quorum holder's lock is recorded too (`RedlockBackend`'s
   * home).
   */
  leaveToCommit(key: string, options: AcquireOptions = {}): MessageLease {
    const { backend, metrics } = this.deps;
    return MessageLease.atCommit(
      key,
      backend.redisKeyOf(key),
      this.ttlOf(options),
      async () => {
        const lease = await this.takeLock(key, options);
        lease.watch();
        return lease;
      },
      () => metrics.acquireFinished('acquired', 0),
    );
  }

  /** Whether enough lock servers are connected to take a lock. */
  isAvailable(): boolean {
    return this.deps.backend.isAvailable();
  }

  /** For readiness: the mode and which lock servers are connected (URLs redacted). */
  status(): LockStatus {
    const { backend } = this.deps;
    return {
      mode: backend.mode,
      available: backend.isAvailable(),
      servers: backend.servers.map((s) => ({ url: s.label, up: s.isReady() })),
    };
  }

  /** Locks this process holds now. */
  heldCount(): number {
    return this.held.size;
  }

  /** Shutdown: stop every watchdog, release every lock still held, then close own connections. */
  async onApplicationShutdown(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // a lock that cannot be released now expires with its lease
    await shutdownStep(Promise.all([...this.held].map((lock) => lock.release())));
    await shutdownStep(this.deps.close());
  }

  private ttlOf(options: AcquireOptions): number {
    return options.ttlMs ?? this.deps.defaults.ttlMs;
  }

  /** Without a marker to check, `take` resolves a lock or rejects. */
  private async takeLock(key: string, options: AcquireOptions): Promise<Lease> {
    const lock = await this.take(key, options, undefined);
    if (lock === 'processed') throw new Error('unreachable: no marker was given');
    return lock;
  }

  private async take(
    key: string,
    options: AcquireOptions,
    markerKey: string | undefined,
  ): Promise<Lease | 'processed'> {
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
      throw new TypeError(`lock key must be a string of 1-${MAX_KEY_LENGTH} characters`);
    }
    const { backend, defaults, metrics } = this.deps;
    const ttlMs = options.ttlMs ?? defaults.ttlMs;
    const waitMs = options.waitMs ?? defaults.waitMs;
    if (!Number.isSafeInteger(ttlMs) || ttlMs < 10)
      throw new RangeError('ttlMs must be an integer ≥ 10');
    if (!Number.isFinite(waitMs) || waitMs < 0) throw new RangeError('waitMs must be ≥ 0');
    if (this.closing) throw new LockUnavailableError('the lock service is shutting down');
    const { signal } = options;
    const startedAt = performance.now();
    const deadline = startedAt + waitMs;
    const timedOut = (): LockTimeoutError => {
      metrics.acquireFinished('timeout', (performance.now() - startedAt) / 1000);
      return new LockTimeoutError(key, waitMs);
    };
    const turn = await this.turns.enter(key, waitMs, signal);
    if (turn.waited) metrics.contended();
    if (!turn.granted) throw timedOut();
    let handedOver = false;
    try {
      const token = `${this.tokenNonce}.${(this.tokenCounter++).toString(36)}`;
      for (let attempt = 0; ; attempt++) {
        const result = await backend.tryAcquire(key, token, ttlMs, markerKey);
        if (result.status === 'processed') return 'processed';
        if (result.status === 'acquired') {
          const lock: Lease = new Lease({
            key,
            token,
            fencingToken: result.fencingToken,
            ttlMs,
            validUntil: result.validUntil,
            backend,
            metrics,
            releaseTimeoutMs: defaults.commandTimeoutMs,
            onReleased: () => {
              this.held.delete(lock);
              this.turns.leave(key);
            },
          });
          this.held.add(lock);
          handedOver = true;
          metrics.acquireFinished('acquired', (performance.now() - startedAt) / 1000);
          return lock;
        }
        metrics.contended();
        const remaining = deadline - performance.now();
        if (remaining <= 0) throw timedOut();
        await abortableDelay(Math.min(fullJitterDelay(attempt), remaining), signal);
      }
    } finally {
      if (!handedOver) this.turns.leave(key);
    }
  }
}
