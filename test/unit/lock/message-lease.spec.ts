import { describe, it, expect } from 'vitest';
import type { Lease } from '../../../src/lock/lease.js';
import { LockLostError } from '../../../src/lock/lock.errors.js';
import { MessageLease } from '../../../src/lock/message-lease.js';

/** A lease as the lock service hands it over; `lose()` aborts it as its watchdog would. */
class FakeLease {
  readonly token = 'token-7';
  releases = 0;
  releasedByCommit = 0;
  private readonly controller = new AbortController();

  constructor(
    readonly key: string,
    readonly fencingToken: number,
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get lost(): LockLostError | undefined {
    return this.signal.aborted ? (this.signal.reason as LockLostError) : undefined;
  }

  lose(): void {
    this.controller.abort(new LockLostError(this.key, 'taken'));
  }

  releasedByScript(): void {
    this.releasedByCommit++;
  }

  release(): Promise<'released'> {
    this.releases++;
    return Promise.resolve('released');
  }
}

const asLease = (lease: FakeLease): Lease => lease as unknown as Lease;

describe('MessageLease', () => {
  describe('held before the handler', () => {
    it('tells the commit its token and fence, and a commit on this Redis releases it', async () => {
      const lease = new FakeLease('account:1', 42);
      const lock = MessageLease.held(asLease(lease), 'mp:lock:account:1', 30_000);
      expect(lock.pending).toBe(false);
      expect(lock.fencingToken).toBe(42);
      const args = lock.commitArgs();
      expect(args).toEqual({
        lockKey: 'mp:lock:account:1',
        fenceKey: 'mp:fence:account:1',
        token: 'token-7',
        fencingToken: '42',
        fenceTtlMs: '3600000',
      });
      lock.commitAnswered(args, undefined);
      expect(lease.releasedByCommit).toBe(1);
      await lock.release();
      expect(lease.releases).toBe(1); // the lease's own release resolves without a round trip
    });

    it('aborts its signal when the lease is lost, and says why', () => {
      const lease = new FakeLease('account:1', 42);
      const lock = MessageLease.held(asLease(lease), 'mp:lock:account:1', 30_000);
      const { signal } = lock;
      lease.lose();
      expect(signal.aborted).toBe(true);
      expect(lock.lost).toBeInstanceOf(LockLostError);
    });

    it('fences for at least twice a long lease', () => {
      const lock = MessageLease.held(asLease(new FakeLease('k', 1)), 'mp:lock:k', 4_000_000);
      expect(lock.commitArgs().fenceTtlMs).toBe('8000000');
    });
  });

  describe('left to the commit', () => {
    function pending() {
      const taken: FakeLease[] = [];
      let takenByCommit = 0;
      const lock = MessageLease.atCommit(
        'account:2',
        'mp:lock:account:2',
        30_000,
        () => {
          const lease = new FakeLease('account:2', 77);
          taken.push(lease);
          return Promise.resolve(asLease(lease));
        },
        () => takenByCommit++,
      );
      return { lock, taken, takenByCommit: () => takenByCommit };
    }

    it('asks the commit to take it, and keeps the token the commit minted', async () => {
      const { lock, taken, takenByCommit } = pending();
      expect(lock.pending).toBe(true);
      expect(lock.fencingToken).toBeUndefined();
      const args = lock.commitArgs();
      expect([args.token, args.fencingToken]).toEqual(['', '']);
      lock.commitAnswered(args, '1764000000000001');
      expect(lock.pending).toBe(false);
      expect(lock.fencingToken).toBe(1_764_000_000_000_001);
      expect(takenByCommit()).toBe(1);
      await lock.release();
      expect(taken).toEqual([]); // nothing was ever held
    });

    it('has no token after a commit that minted none (nobody held the key within the hour)', () => {
      const { lock } = pending();
      lock.commitAnswered(lock.commitArgs(), '');
      expect([lock.pending, lock.fencingToken]).toEqual([false, undefined]);
    });

    it('stays pending after a commit that found the message committed before', () => {
      const { lock, takenByCommit } = pending();
      lock.commitAnswered(lock.commitArgs(), undefined);
      expect(lock.pending).toBe(true);
      expect(takenByCommit()).toBe(0);
    });

    it('is held the usual way by hold() (once), then commits as the holder and releases', async () => {
      const { lock, taken } = pending();
      const { signal } = lock;
      await Promise.all([lock.hold(), lock.hold()]);
      expect(taken).toHaveLength(1);
      expect(lock.pending).toBe(false);
      expect(lock.fencingToken).toBe(77);
      expect(lock.commitArgs()).toMatchObject({ token: 'token-7', fencingToken: '77' });
      taken[0].lose();
      expect(signal.aborted).toBe(true);
      await lock.release();
      expect(taken[0].releases).toBe(1);
    });

    it('releases nothing when taking it failed', async () => {
      const lock = MessageLease.atCommit(
        'k',
        'mp:lock:k',
        30_000,
        () => Promise.reject(new Error('busy')),
        () => undefined,
      );
      await expect(lock.hold()).rejects.toThrow('busy');
      await expect(lock.release()).resolves.toBeUndefined();
    });
  });
});
