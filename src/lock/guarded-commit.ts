import { hostname } from 'node:os';
import type { RedisClient } from '../redis/redis.connection.js';
import { JOURNAL_KEY_PREFIX } from './lock.constants.js';
import { MessageLease, type MessageLock } from './message-lease.js';
import { RedisScript } from './redis-script.js';

/** The effect journal's settings (`EFFECT_JOURNAL_*`). */
export interface EffectJournal {
  /** Entries kept per key (at least: the stream is trimmed approximately). */
  readonly maxLen: number;
  /** How long a key's journal outlives its last entry. */
  readonly ttlSeconds: number;
}

/** What guards a commit: a marker that says it ran before, and the lock of its key. */
export interface CommitGuard {
  /** The key whose existence means the commit ran before (written with it); none: always run. */
  readonly marker: { readonly key: string; readonly ttlSeconds: number } | undefined;
  /** The lock of the work, if any: checked by fencing token, or taken by the commit itself. */
  readonly lock: MessageLock | undefined;
  /**
   * Journal the effect in the same step, under `mp:journal:<lock key>` (or `<scope>` without a
   * lock); none: no journal.
   */
  readonly journal: (EffectJournal & { readonly scope: string }) | undefined;
  /** The messageId the journal entry names. */
  readonly messageId: string | undefined;
}

/** Who commits, as the journal names it: this process, on this host. */
const WORKER = `${hostname()}:${process.pid}`;

/** What the commit did. */
export type GuardedCommitReply =
  | { readonly status: 'committed'; readonly reply: unknown }
  | { readonly status: 'duplicate' }
  | { readonly status: 'stale' };

/**
 * An effect committed in one atomic Redis step with its guards (`scripts/commit-4.lua`): the
 * marker check, the lock (taken right there when it was left to the commit, checked by fencing
 * token otherwise), the effect, the marker, the journal entry and the lock's release. A lock left
 * to the commit that another worker holds is taken the usual way (`MessageLock.hold`) and the
 * commit runs again as its holder.
 */
export class GuardedCommit {
  readonly script: RedisScript;

  /**
   * @param effect the body of a Lua `function(keys, args, fence)` (see commit-4.lua)
   * @param unavailable the error to reject with when Redis could not be asked or did not answer
   */
  constructor(
    effect: string,
    private readonly unavailable: (cause: Error) => Error,
  ) {
    this.script = RedisScript.load('commit-4.lua', { effect });
  }

  /**
   * Runs the effect with `keys` and `args` (strings already) under `guard`. Rejects with Redis's
   * `ReplyError` when the effect raised one, with `unavailable(cause)` when Redis could not be
   * asked (whether the commit ran is then unknown: the marker decides on a later delivery), and
   * as `MessageLock.hold` does when the key was busy.
   */
  async run(
    client: RedisClient,
    guard: CommitGuard,
    keys: readonly string[],
    args: readonly string[],
  ): Promise<GuardedCommitReply> {
    const lease = guard.lock instanceof MessageLease ? guard.lock : undefined;
    if (guard.lock && !lease) throw new TypeError('the lock of a commit must be the message lock');
    const { journal } = guard;
    const journalKey = journal ? JOURNAL_KEY_PREFIX + (lease?.key ?? journal.scope) : '';
    for (;;) {
      const lock = lease?.commitArgs();
      const guards = [
        guard.marker?.key ?? '',
        lock?.lockKey ?? '',
        lock?.fenceKey ?? '',
        journalKey,
      ];
      if (client.isCluster) {
        // Redis Cluster refuses a script whose keys are in different slots, '' included: an
        // absent guard is '!' and a key of the slot instead (the script reads both as absent)
        const inSlot = [...guards, ...keys].find((key) => key !== '');
        if (inSlot !== undefined) {
          guards.forEach((key, i) => {
            if (key === '') guards[i] = `!${inSlot}`;
          });
        }
      }
      let reply: [number, string?, unknown?];
      try {
        reply = (await this.script.run(
          client,
          [...guards, ...keys],
          [
            lock?.token ?? '',
            lock?.fencingToken ?? '',
            String(guard.marker?.ttlSeconds ?? 0),
            lock?.fenceTtlMs ?? '0',
            String(journal?.maxLen ?? 0),
            String((journal?.ttlSeconds ?? 0) * 1000),
            guard.messageId ?? '',
            WORKER,
            ...args,
          ],
        )) as [number, string?, unknown?];
      } catch (error) {
        if (error instanceof Error && error.name === 'ReplyError') throw error;
        throw this.unavailable(error instanceof Error ? error : new Error(String(error)));
      }
      const [status, fence, value] = reply;
      if (status === 2 && lease) {
        // another worker holds the key: wait for it the usual way, then commit as the holder
        await lease.hold();
        continue;
      }
      if (lease && lock) lease.commitAnswered(lock, status === 1 ? (fence ?? '') : undefined);
      if (status === 1) return { status: 'committed', reply: value };
      if (status === 0) return { status: 'duplicate' };
      if (status === -1) return { status: 'stale' };
      throw new Error(`unexpected commit reply ${JSON.stringify(reply)}`);
    }
  }
}
