import { Injectable } from '@nestjs/common';
import { RedisConnection } from '../redis/redis.connection';
import type { MessageLock, ProcessedMarker } from '../messaging/message.context';
import { balanceKey, fenceKey } from './ledger.constants';

// One atomic step: refuse a stale fencing token, else set the processed marker and apply the
// amount, and remember the token. Either all happen or nothing does, so a crash or a redelivery
// can never apply a transaction twice, and a worker whose lock expired while it was paused
// (a newer holder already wrote with a higher token) cannot write at all. With a lock on this
// Redis, the same step releases it (if it still holds our token), saving a round trip.
// KEYS: marker, balance, fence, lock ('' = none). ARGV: amount, marker ttl, fencing token
// ('' = unfenced), lock token. Returns 1 applied, 0 duplicate, -1 stale token.
const APPLY_ONCE = `
if KEYS[4] ~= '' and redis.call('GET', KEYS[4]) == ARGV[4] then redis.call('DEL', KEYS[4]) end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[3] ~= '' then
  local last = tonumber(redis.call('GET', KEYS[3]) or '0')
  local token = tonumber(ARGV[3])
  if token < last then return -1 end
  if token > last then redis.call('SET', KEYS[3], ARGV[3]) end
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])
redis.call('INCRBY', KEYS[2], ARGV[1])
return 1
`;

type ApplyOnce = (
  marker: string,
  balance: string,
  fence: string,
  lock: string,
  amount: number,
  ttl: number,
  fencingToken: string,
  lockToken: string,
) => Promise<number>;

/** What {@link LedgerService.apply} did. */
export type ApplyResult = 'applied' | 'duplicate' | 'stale';

/** Account balances in Redis (`ledger:balance:<accountId>`, integer cents). */
@Injectable()
export class LedgerService {
  private readonly applyOnce: ApplyOnce;

  constructor(private readonly redis: RedisConnection) {
    // defineCommand loads the script once and runs it by SHA (EVALSHA, falling back to EVAL)
    this.redis.client.defineCommand('ledgerApplyOnce', { numberOfKeys: 4, lua: APPLY_ONCE });
    const client = this.redis.client as unknown as { ledgerApplyOnce: ApplyOnce };
    this.applyOnce = client.ledgerApplyOnce.bind(this.redis.client);
  }

  /**
   * Applies the amount unless the marker exists (`duplicate`) or a higher fencing token than the
   * lock's was already applied to the account (`stale`: this writer's lock was lost). A lock
   * that lives on this Redis is released in the same script, whatever the result.
   */
  async apply(
    accountId: string,
    amountCents: number,
    marker: ProcessedMarker,
    lock: MessageLock | undefined,
  ): Promise<ApplyResult> {
    const releaseKey = lock?.redisKey;
    const result = await this.applyOnce(
      marker.key,
      balanceKey(accountId),
      fenceKey(accountId),
      releaseKey ?? '',
      amountCents,
      marker.ttlSeconds,
      lock === undefined ? '' : String(lock.fencingToken),
      releaseKey === undefined ? '' : (lock?.token ?? ''),
    );
    // the script ran; had the call failed, whether it ran would be unknown: the service releases
    if (releaseKey !== undefined) lock?.releasedByScript();
    if (result === 1) return 'applied';
    return result === 0 ? 'duplicate' : 'stale';
  }
}
