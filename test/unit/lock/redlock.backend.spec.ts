import { describe, it, expect } from 'vitest';
import { RedlockBackend } from '../../../src/lock/lock.backend.js';
import { LockUnavailableError } from '../../../src/lock/lock.errors.js';
import type { AcquireReply, LockServer, TokenReply } from '../../../src/lock/lock.server.js';

type Answer<T> = T | 'down';

/** One lock server answering as the test says. */
class FakeServer {
  released = 0;
  raised: number[] = [];

  constructor(
    readonly label: string,
    private readonly acquireAnswer: Answer<AcquireReply>,
    private readonly tokenAnswer: Answer<TokenReply> = 'ok',
  ) {}

  acquire(): Promise<AcquireReply> {
    return this.answer(this.acquireAnswer);
  }

  /** The processed markers it was asked to check, as the service's own Redis. */
  readonly markers: (string | undefined)[] = [];

  /** As the service's own Redis: the acquire answer is what the home record answers. */
  holdHome(_key: string, _token: string, _ttlMs: number, _deadlineMs: number, marker?: string) {
    this.markers.push(marker);
    return this.answer(this.acquireAnswer);
  }

  keyOf(prefix: string, key: string): string {
    return prefix + key;
  }

  raiseFence(_key: string, _token: string, fencingToken: number): Promise<boolean> {
    this.raised.push(fencingToken);
    return this.answer(true);
  }

  extend(): Promise<TokenReply> {
    return this.answer(this.tokenAnswer);
  }

  release(): Promise<TokenReply> {
    this.released++;
    return this.answer(this.tokenAnswer);
  }

  isReady(): boolean {
    return this.acquireAnswer !== 'down';
  }

  private answer<T>(value: Answer<T>): Promise<T> {
    return value === 'down'
      ? Promise.reject(new LockUnavailableError(`${this.label} down`))
      : Promise.resolve(value);
  }
}

const granted = (fencingToken: number): AcquireReply => ({ status: 'acquired', fencingToken });
const held: AcquireReply = { status: 'held', pttlMs: 800 };

/** A quorum of `servers`, their home recording every lock (at fence 0). */
function backend(...servers: FakeServer[]): RedlockBackend {
  return new RedlockBackend(
    servers as unknown as LockServer[],
    1_000,
    new FakeServer('home', granted(1)) as unknown as LockServer,
  );
}

/** A quorum of three granting `token` each, and the service's Redis as their home. */
function withHome(home: FakeServer, token = 50): { backend: RedlockBackend; quorum: FakeServer[] } {
  const quorum = ['a', 'b', 'c'].map((l) => new FakeServer(l, granted(token)));
  return {
    backend: new RedlockBackend(
      quorum as unknown as LockServer[],
      1_000,
      home as unknown as LockServer,
    ),
    quorum,
  };
}

describe('RedlockBackend', () => {
  it('needs at least 3 servers and a majority quorum', () => {
    expect(() => backend(new FakeServer('a', held), new FakeServer('b', held))).toThrow(
      'at least 3',
    );
    const servers = ['a', 'b', 'c', 'd', 'e'].map((l) => new FakeServer(l, held));
    expect(backend(...servers).quorum).toBe(3);
  });

  it('holds the lock on a quorum, with the highest granted token raised on every granter', async () => {
    const servers = [
      new FakeServer('a', granted(10)),
      new FakeServer('b', granted(30)),
      new FakeServer('c', 'down'),
    ];
    const result = await backend(...servers).tryAcquire('k', 't', 1_000);
    expect(result).toMatchObject({ status: 'acquired', fencingToken: 30 });
    expect(servers[0].raised).toEqual([30]);
    expect(servers[1].raised).toEqual([30]);
  });

  it('needs no second round when every granter minted the token proposed to all', async () => {
    const proposals: (number | undefined)[] = [];
    const servers = ['a', 'b', 'c'].map((label) => {
      const server = new FakeServer(label, granted(0));
      // each server mints what it was proposed, as the script does when its fence and clock
      // are behind the proposal
      server.acquire = (...args: unknown[]): Promise<AcquireReply> => {
        const proposed = args[5] as number | undefined;
        proposals.push(proposed);
        return Promise.resolve(granted(proposed ?? 0));
      };
      return server;
    });
    const before = Date.now() * 1000;
    const result = await backend(...servers).tryAcquire('k', 't', 1_000);
    // one proposal for all, ahead of this clock
    expect(new Set(proposals).size).toBe(1);
    expect(proposals[0]).toBeGreaterThan(before);
    expect(result).toMatchObject({ status: 'acquired', fencingToken: proposals[0] });
    expect(servers.map((s) => s.raised)).toEqual([[], [], []]);
  });

  it('reports held and gives back a minority grant when the others hold it', async () => {
    const servers = [
      new FakeServer('a', granted(10)),
      new FakeServer('b', held),
      new FakeServer('c', held),
    ];
    const result = await backend(...servers).tryAcquire('k', 't', 1_000);
    expect(result).toEqual({ status: 'held', retryAfterMs: 800 });
    expect(servers.map((s) => s.released)).toEqual([1, 1, 1]);
  });

  it('fails with LockUnavailableError when too many servers are down for a quorum', async () => {
    const servers = [
      new FakeServer('a', granted(10)),
      new FakeServer('b', 'down'),
      new FakeServer('c', 'down'),
    ];
    await expect(backend(...servers).tryAcquire('k', 't', 1_000)).rejects.toBeInstanceOf(
      LockUnavailableError,
    );
    expect(backend(...servers).isAvailable()).toBe(false);
  });

  it('extends on a quorum and reports taken when another token holds a server', async () => {
    await expect(
      backend(
        new FakeServer('a', held, 'ok'),
        new FakeServer('b', held, 'ok'),
        new FakeServer('c', held, 'down'),
      ).extend('k', 't', 1_000, 500),
    ).resolves.toMatchObject({ status: 'extended' });
    await expect(
      backend(
        new FakeServer('a', held, 'ok'),
        new FakeServer('b', held, 'taken'),
        new FakeServer('c', held, 'expired'),
      ).extend('k', 't', 1_000, 500),
    ).resolves.toEqual({ status: 'taken' });
  });

  it('releases on every server and says what it found', async () => {
    const ok = (l: string) => new FakeServer(l, held, 'ok');
    const expired = (l: string) => new FakeServer(l, held, 'expired');
    const down = (l: string) => new FakeServer(l, held, 'down');
    await expect(backend(ok('a'), ok('b'), down('c')).release('k', 't', 500)).resolves.toBe(
      'released',
    );
    await expect(backend(ok('a'), expired('b'), expired('c')).release('k', 't', 500)).resolves.toBe(
      'expired',
    );
    await expect(backend(ok('a'), down('b'), down('c')).release('k', 't', 500)).resolves.toBe(
      'unreachable',
    );
  });

  describe("its home (the service's own Redis)", () => {
    it('holds when the quorum granted and the home recorded it; commits there find the key by its name', async () => {
      const home = new FakeServer('home', granted(1));
      const { backend: locks, quorum } = withHome(home);
      expect(locks.redisKeyOf('account:1')).toBe('mp:lock:account:1');
      await expect(locks.tryAcquire('k', 't', 1_000, 'marker')).resolves.toMatchObject({
        status: 'acquired',
        fencingToken: 50,
      });
      // the processed marker is checked where it lives, with the record
      expect(home.markers).toEqual(['marker']);
      expect(quorum.map((s) => s.raised)).toEqual([[], [], []]);
    });

    it("raises the granters to the home's fence when it is ahead of their token", async () => {
      const { backend: locks, quorum } = withHome(new FakeServer('home', granted(80)));
      await expect(locks.tryAcquire('k', 't', 1_000)).resolves.toMatchObject({
        status: 'acquired',
        fencingToken: 80,
      });
      expect(quorum.map((s) => s.raised)).toEqual([[80], [80], [80]]);
    });

    it('gives the quorum back when the home finds the marker, another holder, or no answer', async () => {
      const processed = withHome(new FakeServer('home', { status: 'processed' }));
      await expect(processed.backend.tryAcquire('k', 't', 1_000, 'm')).resolves.toEqual({
        status: 'processed',
      });
      expect(processed.quorum.map((s) => s.released)).toEqual([1, 1, 1]);

      const busy = withHome(new FakeServer('home', held));
      await expect(busy.backend.tryAcquire('k', 't', 1_000)).resolves.toEqual({
        status: 'held',
        retryAfterMs: 800,
      });
      expect(busy.quorum.map((s) => s.released)).toEqual([1, 1, 1]);

      const down = withHome(new FakeServer('home', 'down'));
      await expect(down.backend.tryAcquire('k', 't', 1_000)).rejects.toBeInstanceOf(
        LockUnavailableError,
      );
      expect(down.quorum.map((s) => s.released)).toEqual([1, 1, 1]);
      expect(down.backend.isAvailable()).toBe(false);
    });

    it('counts a lock whose home record is gone or taken as lost, and one it cannot reach as unproven', async () => {
      const extend = (answer: Answer<TokenReply>) =>
        withHome(new FakeServer('home', granted(1), answer)).backend.extend('k', 't', 1_000, 500);
      await expect(extend('ok')).resolves.toMatchObject({ status: 'extended' });
      await expect(extend('expired')).resolves.toEqual({ status: 'expired' });
      await expect(extend('taken')).resolves.toEqual({ status: 'taken' });
      await expect(extend('down')).rejects.toBeInstanceOf(LockUnavailableError);
    });

    it("releases the home record with the quorum's, unless a commit did", async () => {
      const home = new FakeServer('home', granted(1));
      const { backend: locks, quorum } = withHome(home);
      await expect(locks.release('k', 't', 500)).resolves.toBe('released');
      expect([...quorum, home].map((s) => s.released)).toEqual([1, 1, 1, 1]);
      // after a commit that deleted the record there, the quorum's only
      await expect(locks.release('k', 't', 500, true)).resolves.toBe('released');
      expect([...quorum, home].map((s) => s.released)).toEqual([2, 2, 2, 1]);
    });
  });
});
