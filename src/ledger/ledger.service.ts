import { Injectable } from '@nestjs/common';
import { RedisConnection } from '../redis/redis.connection';
import type { ProcessedMarker } from '../messaging/message.context';
import { balanceKey } from './ledger.constants';

// Sets the processed marker and applies the amount in one atomic step: either both happen or
// neither, so a crash or a redelivery can never apply a transaction twice.
const APPLY_ONCE = `
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  redis.call('INCRBY', KEYS[2], ARGV[1])
  return 1
end
return 0
`;

type ApplyOnce = (marker: string, balance: string, amount: number, ttl: number) => Promise<number>;

/** Account balances in Redis (`ledger:balance:<accountId>`, integer cents). */
@Injectable()
export class LedgerService {
  private readonly applyOnce: ApplyOnce;

  constructor(private readonly redis: RedisConnection) {
    // defineCommand loads the script once and runs it by SHA (EVALSHA, falling back to EVAL)
    this.redis.client.defineCommand('ledgerApplyOnce', { numberOfKeys: 2, lua: APPLY_ONCE });
    const client = this.redis.client as unknown as { ledgerApplyOnce: ApplyOnce };
    this.applyOnce = client.ledgerApplyOnce.bind(this.redis.client);
  }

  /** Applies the amount unless the marker exists. Resolves `applied` or `duplicate`. */
  async apply(
    accountId: string,
    amountCents: number,
    marker: ProcessedMarker,
  ): Promise<'applied' | 'duplicate'> {
    const applied = await this.applyOnce(
      marker.key,
      balanceKey(accountId),
      amountCents,
      marker.ttlSeconds,
    );
    return applied === 1 ? 'applied' : 'duplicate';
  }
}
