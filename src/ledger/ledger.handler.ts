import { Injectable } from '@nestjs/common';
import { AlreadyProcessed, MessageContext, MessageHandler, NonRetryableError } from '../messaging';
import { StaleFencingTokenError } from './ledger.errors';
import {
  accountLockKey,
  LEDGER_EXCHANGE,
  LEDGER_QUEUE,
  LEDGER_ROUTING_KEY,
} from './ledger.constants';
import { LedgerOracle } from './ledger.oracle';
import { LedgerService } from './ledger.service';
import { TransactionDto } from './transaction.dto';

/** Applies each transaction to its account balance exactly once, one writer per account at a time. */
@Injectable()
export class LedgerHandler {
  constructor(
    private readonly ledger: LedgerService,
    private readonly oracle: LedgerOracle,
  ) {}

  @MessageHandler({
    exchange: LEDGER_EXCHANGE,
    routingKey: LEDGER_ROUTING_KEY,
    queue: LEDGER_QUEUE,
    // serialize per account across replicas; the fencing token guards the write itself
    lockKey: (tx: TransactionDto) => accountLockKey(tx.accountId),
    // the marker check, the account's lock, the fencing token, the balance and the marker: one
    // commit script, one round trip per message (the lock is taken by the script itself, or,
    // when another worker holds the account, waited for and held through the commit)
    commitsMarker: true,
    lockAtCommit: true,
  })
  async apply(tx: TransactionDto, ctx: MessageContext): Promise<typeof AlreadyProcessed | void> {
    if (!ctx.processedMarker) throw new NonRetryableError('the ledger requires deduplication');
    // test only: the reliability suite's oracle (off in production, no work on this path); its
    // simulated work stands for work that needs the lock before the commit, so it holds it
    if (this.oracle.simulatesWork) await ctx.lock?.hold();
    const atCommit = ctx.lock?.pending === true;
    const start = this.oracle.enabled ? LedgerOracle.clock() : 0;
    if (this.oracle.enabled) await this.oracle.simulateWork(ctx.signal);
    let end = this.oracle.enabled ? LedgerOracle.clock() : 0;
    const result = await this.ledger.apply(ctx, tx.accountId, tx.amountCents);
    if (this.oracle.enabled) {
      if (atCommit) end = LedgerOracle.clock();
      await this.oracle.record({
        atCommit,
        messageId: ctx.messageId ?? '',
        accountId: tx.accountId,
        amountCents: tx.amountCents,
        fencingToken: ctx.fencingToken,
        result,
        start,
        end,
      });
    }
    if (result === 'duplicate') return AlreadyProcessed;
    // a newer lock holder already wrote to this account: ours was lost, retry with a new lock
    if (result === 'stale') throw new StaleFencingTokenError(tx.accountId, ctx.fencingToken);
    if (ctx.logs('debug')) {
      ctx.logger.debug(
        { accountId: tx.accountId, amountCents: tx.amountCents, fencingToken: ctx.fencingToken },
        'transaction applied',
      );
    }
  }
}
