import { describe, it, expect } from 'vitest';
import { Lease } from '../../../src/lock/lease.js';
import type { LockBackend } from '../../../src/lock/lock.backend.js';
import { LockLostError } from '../../../src/lock/lock.errors.js';
import type { LockMetrics } from '../../../src/metrics/lock.metrics.js';

/** A single-Redis backend whose extensions answer as the test says; counts releases. */
function fakeBackend(
  extendStatus: 'extended' | 'taken',
): LockBackend & { releases: number; byCommit: number } {
  const backend = {
    mode: 'single' as const,
    servers: [],
    releases: 0,
    byCommit: 0,
    redisKeyOf: (key: string) => `mp:lock:${key}`,
    tryAcquire: () => Promise.reject(new Error('not used')),
    extend: () =>
      Promise.resolve(
        extendStatus === 'extended'
          ? { status: 'extended' as const, validUntil: performance.now() + 1_000 }
          : { status: 'taken' as const },
      ),
    release: (_key: string, _token: string, _deadlineMs: number, releasedByCommit?: boolean) => {
      if (releasedByCommit) backend.byCommit++;
      else backend.releases++;
      return Promise.resolve('released' as const);
    },
    isAvailable: () => true,
  };
  return backend;
}

function heldLock(backend: LockBackend): {
  lock: Lease;
  held: () => number;
  freed: () => number;
} {
  let held = 0;
  let freed = 0;
  const metrics = {
    heldChanged: (delta: number) => (held += delta),
    extension: () => undefined,
    lockLost: () => undefined,
  } as unknown as LockMetrics;
  const lock = new Lease({
    key: 'account:1',
    token: 'token-1',
    fencingToken: 7,
    ttlMs: 1_000,
    validUntil: performance.now() + 900,
    backend,
    metrics,
    releaseTimeoutMs: 1_000,
    onReleased: () => freed++,
  });
  return { lock, held: () => held, freed: () => freed };
}

describe('Lease', () => {
  it('after releasedByScript, forgets the lock once and leaves the backend only what the commit did not release', async () => {
    const backend = fakeBackend('extended');
    const { lock, held, freed } = heldLock(backend);
    lock.watch();
    expect(held()).toBe(1);
    lock.releasedByScript();
    lock.releasedByScript();
    expect(held()).toBe(0);
    await expect(lock.release()).resolves.toBe('released');
    expect(freed()).toBe(1);
    expect(backend.byCommit).toBe(1);
    expect(backend.releases).toBe(0);
    // the watchdog stopped with it
    await expect(lock.extend()).resolves.toBe(false);
    expect(lock.lost).toBeUndefined();
  });

  it('reports a loss through `lost`, and a signal asked for afterwards is already aborted', async () => {
    const { lock, held } = heldLock(fakeBackend('taken'));
    await expect(lock.extend()).resolves.toBe(false);
    expect(lock.lost).toBeInstanceOf(LockLostError);
    expect(held()).toBe(0);
    expect(lock.signal.aborted).toBe(true);
    expect(lock.signal.reason).toBe(lock.lost);
    await lock.release();
  });

  it('aborts a signal asked for before the loss', async () => {
    const { lock } = heldLock(fakeBackend('taken'));
    const { signal } = lock;
    expect(signal.aborted).toBe(false);
    await lock.extend();
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBeInstanceOf(LockLostError);
    await lock.release();
  });
});
