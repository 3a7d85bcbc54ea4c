import { clockDriftMs } from './lock.backoff.js';
import { LOCK_KEY_PREFIX } from './lock.constants.js';
import { LockUnavailableError } from './lock.errors.js';
import type { LockServer, TokenReply } from './lock.server.js';

/** Result of one try to take a lock. `validUntil` is on the `performance.now()` clock. */
export type TryAcquireResult =
  | { readonly status: 'acquired'; readonly fencingToken: number; readonly validUntil: number }
  | { readonly status: 'held'; readonly retryAfterMs: number }
  | { readonly status: 'processed' };

export type ExtendResult =
  | { readonly status: 'extended'; readonly validUntil: number }
  | { readonly status: 'expired' | 'taken' };

/** What `release()` found: released, already expired, held by another token, or no answer. */
export type ReleaseOutcome = 'released' | 'expired' | 'taken' | 'unreachable';

/**
 * Where locks live: one Redis ({@link SingleLockBackend}) or a Redlock quorum of independent ones
 * ({@link RedlockBackend}). Each call fails with `LockUnavailableError` when the servers cannot
 * answer in time, never hangs, and never reports a lock it cannot vouch for.
 */
export interface LockBackend {
  readonly mode: 'single' | 'redlock';
  /**
   * The Redis key of the lock of `key` on the service's own Redis, where commits take and check
   * it: the lock itself on one Redis, its home record under Redlock.
   */
  redisKeyOf(key: string): string;
  tryAcquire(
    key: string,
    token: string,
    ttlMs: number,
    markerKey?: string,
  ): Promise<TryAcquireResult>;
  extend(key: string, token: string, ttlMs: number, deadlineMs: number): Promise<ExtendResult>;
  /**
   * `releasedByCommit`: a commit on the service's Redis already deleted the lock's key there
   * (on one Redis, the lock: nothing is left to ask; under Redlock, its home record).
   */
  release(
    key: string,
    token: string,
    deadlineMs: number,
    releasedByCommit?: boolean,
  ): Promise<ReleaseOutcome>;
  /** Whether enough servers are connected to take a lock. */
  isAvailable(): boolean;
  readonly servers: readonly LockServer[];
}

const now = (): number => performance.now();

/** In place of a call not made. */
const NOTHING_ASKED: Promise<unknown> = Promise.resolve();

/** The lease is valid until its start + TTL − allowed clock drift. */
function validUntil(startedAt: number, ttlMs: number): number {
  return startedAt + ttlMs - clockDriftMs(ttlMs);
}

/** Locks on one Redis: every operation is one script, one round trip. */
export class SingleLockBackend implements LockBackend {
  readonly mode = 'single';
  readonly servers: readonly LockServer[];

  constructor(
    private readonly server: LockServer,
    private readonly commandTimeoutMs: number,
  ) {
    this.servers = [server];
  }

  redisKeyOf(key: string): string {
    return this.server.keyOf(LOCK_KEY_PREFIX, key);
  }

  async tryAcquire(
    key: string,
    token: string,
    ttlMs: number,
    markerKey?: string,
  ): Promise<TryAcquireResult> {
    const startedAt = now();
    const until = validUntil(startedAt, ttlMs);
    const reply = await this.server.acquire(
      key,
      token,
      ttlMs,
      Math.min(this.commandTimeoutMs, until - startedAt),
      markerKey,
    );
    if (reply.status === 'processed') return reply;
    if (reply.status === 'held') return { status: 'held', retryAfterMs: reply.pttlMs };
    return { status: 'acquired', fencingToken: reply.fencingToken, validUntil: until };
  }

  async extend(
    key: string,
    token: string,
    ttlMs: number,
    deadlineMs: number,
  ): Promise<ExtendResult> {
    const startedAt = now();
    const reply = await this.server.extend(
      key,
      token,
      ttlMs,
      Math.min(this.commandTimeoutMs, deadlineMs),
    );
    if (reply === 'ok') return { status: 'extended', validUntil: validUntil(startedAt, ttlMs) };
    return { status: reply };
  }

  async release(
    key: string,
    token: string,
    deadlineMs: number,
    releasedByCommit = false,
  ): Promise<ReleaseOutcome> {
    if (releasedByCommit) return 'released';
    try {
      return releaseOutcome(
        await this.server.release(key, token, Math.min(this.commandTimeoutMs, deadlineMs)),
      );
    } catch {
      return 'unreachable';
    }
  }

  isAvailable(): boolean {
    return this.server.isReady();
  }
}

/**
 * How far ahead of this process's clock (µs) a Redlock acquisition proposes its fencing token:
 * ahead of the servers' clocks by more than their usual skew, so that each server mints exactly
 * the token proposed (tokens are the servers' µs clocks at the least).
 */
const PROPOSED_FENCE_LEAD_US = 1_000_000;

/**
 * Redlock over N ≥ 3 independent Redis servers (antirez's algorithm): a lock is held when a quorum
 * of N/2+1 servers granted it and time is left: validity = TTL − elapsed − drift. Fencing token:
 * the highest token the granting servers issued, which each of them must hold as its fence before
 * the lock counts, so that the next holder's quorum (which overlaps ours) issues a higher one.
 * Every server is asked for the same token (this clock plus a second): when all that granted
 * minted it, that holds already; otherwise the fences are raised in a second round.
 *
 * Every lock is also recorded on its `home`, the service's own Redis, where effects, markers
 * and fences live, in the same round (`holdHome`, which checks the processed marker too): a
 * `redis-commit` handler's commit takes and checks the key's lock on that Redis, atomically with
 * its effect, as on one Redis, without asking the quorum; a quorum holder's record there keeps
 * those commits out while it holds the key. The lock is held when the quorum granted it and the
 * home recorded it; its token is at least the home's fence.
 */
export class RedlockBackend implements LockBackend {
  readonly mode = 'redlock';
  readonly quorum: number;

  constructor(
    readonly servers: readonly LockServer[],
    private readonly commandTimeoutMs: number,
    private readonly home: LockServer,
  ) {
    if (servers.length < 3) throw new Error('Redlock needs at least 3 independent Redis servers');
    this.quorum = Math.floor(servers.length / 2) + 1;
  }

  redisKeyOf(key: string): string {
    return this.home.keyOf(LOCK_KEY_PREFIX, key);
  }

  async tryAcquire(
    key: string,
    token: string,
    ttlMs: number,
    markerKey?: string,
  ): Promise<TryAcquireResult> {
    const startedAt = now();
    const until = validUntil(startedAt, ttlMs);
    const callDeadline = (): number => Math.min(this.commandTimeoutMs, until - now());
    // every server is asked for the same token, ahead of their clocks: when all that grant mint
    // exactly it (the usual case), their fences agree already and no second round is needed
    const proposed = Date.now() * 1000 + PROPOSED_FENCE_LEAD_US;
    const { replies, atHome } = await withHome(
      this.servers.map((s) => s.acquire(key, token, ttlMs, callDeadline(), '', proposed)),
      this.home.holdHome(key, token, ttlMs, callDeadline(), markerKey),
    );
    const granted: { server: LockServer; fencingToken: number }[] = [];
    let heldFor = 0;
    let failures = 0;
    replies.forEach((reply, i) => {
      if (reply.status === 'rejected') failures++;
      else if (reply.value.status === 'acquired') {
        granted.push({ server: this.servers[i], fencingToken: reply.value.fencingToken });
      } else if (reply.value.status === 'held') heldFor = Math.max(heldFor, reply.value.pttlMs);
    });
    if (atHome.status === 'rejected') {
      await this.release(key, token, this.commandTimeoutMs);
      throw new LockUnavailableError("lock record on the service's Redis failed", {
        cause: atHome.reason,
      });
    }
    const home = atHome.value;
    if (home.status === 'processed') {
      await this.release(key, token, this.commandTimeoutMs);
      return { status: 'processed' };
    }
    if (home.status === 'held') heldFor = Math.max(heldFor, home.pttlMs);
    else if (granted.length >= this.quorum && until > now()) {
      // home.fencingToken: the lowest token the home accepts a commit with
      const fencingToken = Math.max(home.fencingToken, ...granted.map((g) => g.fencingToken));
      if (granted.every((g) => g.fencingToken === fencingToken)) {
        return { status: 'acquired', fencingToken, validUntil: until };
      }
      // a server minted another token (its fence was ahead, or its clock), or the home's fence
      // is ahead: raise the granters' fences to the highest
      const raised = await Promise.allSettled(
        granted.map((g) => g.server.raiseFence(key, token, fencingToken, callDeadline())),
      );
      const confirmed = raised.filter((r) => r.status === 'fulfilled' && r.value).length;
      if (confirmed >= this.quorum && until > now()) {
        return { status: 'acquired', fencingToken, validUntil: until };
      }
    }
    // no quorum in time: give back what we got, on every server (a late grant included)
    await this.release(key, token, this.commandTimeoutMs);
    if (failures > this.servers.length - this.quorum) {
      const first = replies.find((r) => r.status === 'rejected');
      throw new LockUnavailableError(
        `lock quorum unreachable: ${failures} of ${this.servers.length} lock servers failed`,
        { cause: first?.status === 'rejected' ? first.reason : undefined },
      );
    }
    return { status: 'held', retryAfterMs: heldFor };
  }

  async extend(
    key: string,
    token: string,
    ttlMs: number,
    deadlineMs: number,
  ): Promise<ExtendResult> {
    const startedAt = now();
    const until = validUntil(startedAt, ttlMs);
    const deadline = Math.min(this.commandTimeoutMs, deadlineMs);
    const { replies, atHome } = await withHome(
      this.servers.map((s) => s.extend(key, token, ttlMs, deadline)),
      this.home.extend(key, token, ttlMs, deadline),
    );
    const count = (wanted: TokenReply): number =>
      replies.filter((r) => r.status === 'fulfilled' && r.value === wanted).length;
    // without its record at home, commits there no longer wait for this holder: lost
    if (atHome.status === 'fulfilled' && atHome.value !== 'ok') return { status: atHome.value };
    if (count('ok') >= this.quorum && until > now()) {
      if (atHome.status === 'rejected') {
        throw new LockUnavailableError("lock extension: the service's Redis failed", {
          cause: atHome.reason,
        });
      }
      return { status: 'extended', validUntil: until };
    }
    const failures = replies.filter((r) => r.status === 'rejected').length;
    if (count('ok') + failures >= this.quorum && count('taken') === 0) {
      // a quorum may still be ours, but we cannot prove it in time
      throw new LockUnavailableError(
        `lock extension: ${failures} of ${this.servers.length} lock servers failed`,
      );
    }
    return { status: count('taken') > 0 ? 'taken' : 'expired' };
  }

  async release(
    key: string,
    token: string,
    deadlineMs: number,
    releasedByCommit = false,
  ): Promise<ReleaseOutcome> {
    const deadline = Math.min(this.commandTimeoutMs, deadlineMs);
    // the home record goes with the quorum's (what it answers does not change the outcome)
    const { replies } = await withHome<TokenReply, unknown>(
      this.servers.map((s) => s.release(key, token, deadline)),
      releasedByCommit ? NOTHING_ASKED : this.home.release(key, token, deadline),
    );
    const values = replies.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    if (values.filter((v) => v === 'ok').length >= this.quorum) return 'released';
    if (values.includes('taken')) return 'taken';
    // a minority of answers cannot tell whether a quorum still held it
    return values.length >= this.quorum ? 'expired' : 'unreachable';
  }

  isAvailable(): boolean {
    if (!this.home.isReady()) return false;
    return this.servers.filter((s) => s.isReady()).length >= this.quorum;
  }
}

/** The quorum's answers and the home's, asked in the same round. */
async function withHome<T, H>(
  quorum: readonly Promise<T>[],
  home: Promise<H>,
): Promise<{ replies: PromiseSettledResult<T>[]; atHome: PromiseSettledResult<H> }> {
  const [replies, [atHome]] = await Promise.all([
    Promise.allSettled(quorum),
    Promise.allSettled([home]),
  ]);
  return { replies, atHome };
}

function releaseOutcome(reply: TokenReply): ReleaseOutcome {
  return reply === 'ok' ? 'released' : reply;
}
