import { GuardedCommit } from '../lock/guarded-commit.js';
import { keySlot } from '../redis/key-slot.js';
import type { RedisClient } from '../redis/redis.connection.js';
import type { MessageContext } from './message.context.js';
import {
  DependencyUnavailableError,
  HandlerConfigurationError,
  NonRetryableError,
} from './messaging.errors.js';

/** A handler's effect as Lua on the service's Redis. */
export interface RedisCommitDefinition {
  /** How many keys the effect reads (`keys[1]` … `keys[n]`): every key it touches must be one. */
  readonly numberOfKeys: number;
  /**
   * The body of a Lua `function(keys, args, fence)`: `keys` and `args` are what {@link
   * RedisCommit.run} was given, `fence` the lock's fencing token as a string ('' without a lock,
   * and for a lock the commit took on a key nobody held within the fence's hour). It runs only
   * when the message is not processed yet and the lock is this message's; what it returns is
   * the reply. Raise an error (`error('...')`) before writing anything to refuse: the marker is
   * then not written and the handler's attempt fails.
   */
  readonly lua: string;
}

/** What a commit did: the effect ran (`committed`), or did not run and why. */
export type CommitOutcome<T> =
  | { readonly status: 'committed'; readonly reply: T }
  /** The processed marker existed: an earlier delivery committed this message. */
  | { readonly status: 'duplicate' }
  /**
   * A newer fencing token than this message's lock was already issued or applied for the key:
   * the lease ran out while the handler worked and another worker took the lock.
   */
  | { readonly status: 'stale' };

/** What a commit reads from the message's context. */
export type CommitContext = Pick<
  MessageContext,
  'effect' | 'lock' | 'processedMarker' | 'effectJournal' | 'messageId' | 'queue'
>;

const NAME = /^[A-Za-z][A-Za-z0-9]{0,63}$/;

/**
 * The effect of a `redis-commit` handler (`@MessageHandler({ effect: { kind: 'redis-commit' } })`):
 * Lua on the service's Redis, committed in one atomic step with everything that makes it safe:
 * the processed-marker check, the message's lock (taken right there when no other worker holds
 * the key, checked by fencing token when it was held before), the effect, the marker and the
 * lock's release. One round trip per message. The effect's keys must live on the service's
 * Redis (`REDIS_URL`), as the marker does. With `EFFECT_JOURNAL_MAXLEN` set, the same step
 * appends the effect to the journal of its key (`mp:journal:<lock key>`, a stream).
 *
 * Fencing: the commit refuses (`stale`) a token lower than the last one issued for the key, so a
 * worker that paused past its lease cannot write once another took the lock. A lock the commit
 * takes itself mints a token only when someone held the key within the fence's hour (who may
 * have outlived a lease); otherwise nobody can hold an older token.
 */
export class RedisCommit<T = unknown> {
  private readonly commit: GuardedCommit;

  constructor(
    private readonly client: RedisClient,
    /** For errors: letters and digits, starting with a letter. */
    readonly name: string,
    private readonly definition: RedisCommitDefinition,
  ) {
    if (!NAME.test(name)) throw new TypeError(`commit name must match ${NAME.source}`);
    if (!Number.isSafeInteger(definition.numberOfKeys) || definition.numberOfKeys < 0) {
      throw new TypeError('numberOfKeys must be a non-negative integer');
    }
    this.commit = new GuardedCommit(
      definition.lua,
      (cause) => new DependencyUnavailableError('redis', cause.message, { cause }),
    );
  }

  /**
   * Commits for the message of `ctx`. When the lock was left to this commit and another worker
   * holds the key, takes the lock the usual way (waiting up to `LOCK_WAIT_MS`;
   * `LockTimeoutError` after) and runs again as its holder. Rejects with
   * `DependencyUnavailableError` when Redis does not answer (whether the commit ran is then
   * unknown: the marker decides on the retry), and with Redis's error when the effect raised one.
   */
  async run(
    ctx: CommitContext,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<CommitOutcome<T>> {
    if (ctx.effect !== 'redis-commit') {
      throw new HandlerConfigurationError(
        `RedisCommit ${this.name} runs for a handler declared with effect: { kind: 'redis-commit' } (this one is '${ctx.effect}')`,
      );
    }
    if (keys.length !== this.definition.numberOfKeys) {
      throw new TypeError(`expected ${this.definition.numberOfKeys} keys, got ${keys.length}`);
    }
    const journal = ctx.effectJournal;
    const marker = ctx.processedMarker;
    if (marker?.slotTag !== undefined) {
      // a Redis Cluster refuses the script with CROSSSLOT: say which key and how to fix it, and
      // dead-letter at once (every retry would fail the same way)
      const slot = keySlot(marker.key);
      const stray = keys.find((key) => keySlot(key) !== slot);
      if (stray !== undefined) {
        throw new NonRetryableError(
          `RedisCommit ${this.name}: on a Redis Cluster every key of the commit shares one hash slot; "${stray}" is not in the slot of the message's keys (${slot}): name one effect key as the handler's effect.slotKey, or build the keys from ctx.lockKey (it starts with the slot's hash tag)`,
        );
      }
    }
    const reply = await this.commit.run(
      this.client,
      {
        marker,
        lock: ctx.lock,
        journal: journal && { ...journal, scope: `${marker?.slotTag ?? ''}queue:${ctx.queue}` },
        messageId: ctx.messageId,
      },
      keys,
      args.map(String),
    );
    if (reply.status === 'committed') return { status: 'committed', reply: reply.reply as T };
    return reply;
  }
}
