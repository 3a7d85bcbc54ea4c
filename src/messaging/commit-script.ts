import { createHash } from 'node:crypto';
import { Command, type Redis } from 'ioredis';
import { FENCE_KEY_PREFIX, FENCE_TTL_MS } from '../lock/lock.server';
import { nextFenceLua } from '../lock/lock.scripts';
import type { MessageContext } from './message.context';
import { DependencyUnavailableError } from './messaging.errors';

/** A handler's effect as one Lua script on the service's Redis. */
export interface CommitScriptDefinition {
  /** How many keys the body reads (`keys[1]` … `keys[n]`): every key it touches must be one. */
  readonly numberOfKeys: number;
  /**
   * The body of a Lua `function(keys, args, fence)`: `keys` and `args` are what {@link
   * CommitScript.run} was given, `fence` the lock's fencing token as a string ('' without a
   * lock, and for a lock taken at commit on a key nobody held within the fence's hour). It runs only when the message is not processed yet and the lock is this message's;
   * what it returns is the reply. Raise an error (`error('...')`) before writing anything to
   * refuse: the marker is then not written and the handler's attempt fails.
   */
  readonly lua: string;
}

/** What a commit did: the body ran (`committed`), or did not run and why. */
export type CommitOutcome<T> =
  | { readonly status: 'committed'; readonly reply: T }
  /** The processed marker existed: an earlier delivery committed this message. */
  | { readonly status: 'duplicate' }
  /**
   * A newer fencing token than this message's lock was already issued or applied for the key:
   * the lease ran out while the handler worked and another worker took the lock.
   */
  | { readonly status: 'stale' };

const NAME = /^[A-Za-z][A-Za-z0-9]{0,63}$/;
const FENCE_TTL_ARG = String(FENCE_TTL_MS);

/**
 * Wraps a body in the commit protocol. KEYS: 1 processed marker ('' = none), 2 the lock's key
 * on this Redis ('' = none here), 3 the key's fence ('' = no lock); then the body's. ARGV: 1 lock
 * token, 2 fencing token ('' = take the lock in this script), 3 marker TTL s, 4 fence TTL ms; then
 * the body's. Replies {1, fence, reply} committed, {0} duplicate, {-1} stale, {2} busy (another
 * worker holds the lock: nothing was written). A lock held by our token is released on every
 * answer but busy.
 */
export function commitLua(body: string): string {
  return `
local body = function(keys, args, fence)
${body}
end
local function release()
  if KEYS[2] ~= '' and ARGV[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('DEL', KEYS[2])
  end
end
if KEYS[1] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then
  release()
  return {0}
end
local fenceText = ''
if KEYS[3] ~= '' then
  if ARGV[2] == '' then
    if redis.call('EXISTS', KEYS[2]) == 1 then return {2} end
    -- a holder within the fence's lifetime may have outlived its lease: a newer token refuses
    -- its late write; a key nobody held since has nobody to fence off, and no token is minted
    if redis.call('EXISTS', KEYS[3]) == 1 then
      ${nextFenceLua('KEYS[3]', 'ARGV[4]')}
      fenceText = text
    end
  else
    local applied = tonumber(redis.call('GET', KEYS[3]) or '0')
    local mine = tonumber(ARGV[2])
    if mine < applied then
      release()
      return {-1}
    end
    if mine > applied then redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[4]) end
    fenceText = ARGV[2]
  end
end
local reply = body({unpack(KEYS, 4)}, {unpack(ARGV, 5)}, fenceText)
if KEYS[1] ~= '' then redis.call('SET', KEYS[1], '1', 'EX', ARGV[3]) end
release()
return {1, fenceText, reply}
`;
}

/**
 * EVALSHA (or EVAL) of a commit, its arguments strings already. ioredis's script commands
 * (`defineCommand`) flatten the argument array (`Array#flat`: about 110 ns per argument, a commit
 * has a dozen) and convert each argument again: a few percent of the service's CPU per message.
 */
class CommitCommand extends Command {
  constructor(name: 'evalsha' | 'eval', args: string[]) {
    super(name, [], { replyEncoding: 'utf8' });
    this.args = args;
  }
}

/**
 * A handler's effect committed in one atomic Redis step with everything that makes it safe:
 * the processed-marker check, the lock (taken right there for a `lockAtCommit` handler, checked
 * by fencing token otherwise), the body, the marker and the lock's release. One round trip per
 * message where a hand-written consumer would pay one for its effect alone. Run by SHA (EVALSHA,
 * and EVAL when Redis does not know the script yet). The body's keys must live on the service's Redis
 * (`REDIS_URL`), as the marker does.
 *
 * Fencing: in single-Redis mode the script refuses (`stale`) a token lower than the last one
 * issued for the key (`mp:fence:<key>`), so a worker that paused past its lease cannot write once
 * another took the lock. A lock taken at commit mints a token only when that fence exists (a
 * holder within its hour, who may have outlived its lease); otherwise nobody can hold an older
 * token and writing one would cost every message a key write for nothing. Under Redlock the same key on the service's Redis records the highest
 * token committed, and a lower one is refused.
 */
export class CommitScript<T = unknown> {
  private readonly lua: string;
  private readonly sha: string;
  private readonly keyCount: string;

  constructor(
    private readonly client: Redis,
    name: string,
    private readonly definition: CommitScriptDefinition,
  ) {
    if (!NAME.test(name)) throw new TypeError(`commit script name must match ${NAME.source}`);
    if (!Number.isSafeInteger(definition.numberOfKeys) || definition.numberOfKeys < 0) {
      throw new TypeError('numberOfKeys must be a non-negative integer');
    }
    this.lua = commitLua(definition.lua);
    this.sha = createHash('sha1').update(this.lua).digest('hex');
    this.keyCount = String(3 + definition.numberOfKeys);
  }

  /**
   * Commits for the message of `ctx`. With a pending lock (`lockAtCommit`) that another worker
   * holds, takes the lock the usual way (waiting up to `LOCK_WAIT_MS`; `LockTimeoutError` after)
   * and runs again as its holder. Rejects with `DependencyUnavailableError` when Redis does not
   * answer (whether the script ran is then unknown: the marker decides on the retry), and with
   * Redis's error when the body raised one.
   */
  async run(
    ctx: MessageContext,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<CommitOutcome<T>> {
    if (keys.length !== this.definition.numberOfKeys) {
      throw new TypeError(`expected ${this.definition.numberOfKeys} keys, got ${keys.length}`);
    }
    const lock = ctx.scriptLock;
    const marker = ctx.processedMarker;
    for (;;) {
      const pending = lock?.pending === true;
      const command = [
        this.sha,
        this.keyCount,
        marker?.key ?? '',
        lock?.redisKey ?? '',
        lock ? FENCE_KEY_PREFIX + lock.key : '',
        ...keys,
        lock?.token ?? '',
        lock && !pending ? String(lock.fencingToken) : '',
        String(marker?.ttlSeconds ?? 0),
        FENCE_TTL_ARG,
        ...args.map(String),
      ];
      let reply: unknown;
      try {
        reply = await this.client.sendCommand(new CommitCommand('evalsha', command));
      } catch (error) {
        reply = await this.afterFailure(error, command);
      }
      const [status, fence, value] = reply as [number, string?, T?];
      if (status === 2 && lock && pending) {
        // another worker holds the key: wait for it the usual way, then commit as the holder
        await lock.hold();
        continue;
      }
      if (lock?.redisKey !== undefined) {
        if (!pending) lock.releasedByScript();
        else if (status === 1) lock.takenByScript(fence ? Number(fence) : undefined);
      }
      if (status === 1) return { status: 'committed', reply: value as T };
      if (status === 0) return { status: 'duplicate' };
      if (status === -1) return { status: 'stale' };
      throw new Error(`unexpected commit script reply ${JSON.stringify(reply)}`);
    }
  }

  /**
   * A failed EVALSHA: when Redis does not have the script yet, EVAL (which also caches it);
   * otherwise Redis's error when the body raised one, or `DependencyUnavailableError`.
   */
  private async afterFailure(error: unknown, command: string[]): Promise<unknown> {
    let failure = error;
    if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
      command[0] = this.lua;
      try {
        return await this.client.sendCommand(new CommitCommand('eval', command));
      } catch (evalError) {
        failure = evalError;
      }
    }
    if (failure instanceof Error && failure.name === 'ReplyError') throw failure;
    const message = failure instanceof Error ? failure.message : String(failure);
    throw new DependencyUnavailableError('redis', message, { cause: failure });
  }
}
