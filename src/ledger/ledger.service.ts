import { Injectable } from '@nestjs/common';
import { type CommitContext, RedisCommit } from '../messaging/index.js';
import { RedisConnection } from '../redis/redis.connection.js';
import { balanceKey } from './ledger.constants.js';

/**
 * The ledger's effect: add the amount to the balance. The commit around it makes it safe: it
 * runs only if the processed marker does not exist and the fencing token is not stale, and it
 * writes the marker in the same atomic step, so a crash or a redelivery can never apply a
 * transaction twice and a worker whose lock expired while it was paused cannot write at all.
 */
const APPLY = `redis.call('INCRBY', keys[1], args[1])`;

/** What {@link LedgerService.apply} did. */
export type ApplyResult = 'applied' | 'duplicate' | 'stale';

/** Account balances in Redis (`ledger:balance:<accountId>`, integer cents). */
@Injectable()
export class LedgerService {
  private readonly commit: RedisCommit;

  constructor(redis: RedisConnection) {
    this.commit = new RedisCommit(redis.client, 'LedgerApply', { numberOfKeys: 1, lua: APPLY });
  }

  /**
   * Applies the message's amount to the account, once: `duplicate` when the message was
   * committed before, `stale` when a newer lock holder than this message's was already issued
   * for the key (this writer's lock was lost). The same step takes (or checks) and releases the
   * account's lock.
   */
  async apply(ctx: CommitContext, accountId: string, amountCents: number): Promise<ApplyResult> {
    const outcome = await this.commit.run(ctx, [balanceKey(accountId)], [amountCents]);
    return outcome.status === 'committed' ? 'applied' : outcome.status;
  }
}
