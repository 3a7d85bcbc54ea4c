import { Inject, Injectable, Optional } from '@nestjs/common';
import { AlreadyProcessed, MessageContext, MessageHandler } from '../messaging/index.js';
import { StaleFencingTokenError } from './ledger.errors.js';
import {
  accountLockKey,
  balanceKey,
  LEDGER_EXCHANGE,
  LEDGER_QUEUE,
  LEDGER_ROUTING_KEY,
} from './ledger.constants.js';
import { LEDGER_OBSERVER, type LedgerObserver } from './ledger.observer.js';
import { LedgerService } from './ledger.service.js';
import { TransactionDto } from './transaction.dto.js';

/** Applies each transaction to its account balance exactly once, one writer per account at a time. */
@Injectable()
export class LedgerHandler {
  constructor(
    private readonly ledger: LedgerService,
    @Optional() @Inject(LEDGER_OBSERVER) private readonly observer?: LedgerObserver,
  ) {}

  @MessageHandler({
    exchange: LEDGER_EXCHANGE,
    routingKey: LEDGER_ROUTING_KEY,
    queue: LEDGER_QUEUE,
    // serialize per account across replicas; the fencing token guards the write itself
    lockKey: (tx: TransactionDto) => accountLockKey(tx.accountId),
    // the marker check, the account's lock, the fencing token, the balance and the marker: one
    // commit, one round trip per message (the lock is taken by the commit itself or, when another
    // worker holds the account, waited for and held through the commit)
    // on a Redis Cluster, the commit's own keys go in the balance's slot: the balance keeps its
    // name (`ledger:balance:<accountId>`) and each account its own slot
    effect: { kind: 'redis-commit', slotKey: (tx: TransactionDto) => balanceKey(tx.accountId) },
  })
  async apply(tx: TransactionDto, ctx: MessageContext): Promise<typeof AlreadyProcessed | void> {
    if (this.observer) await this.observer.beforeCommit(ctx);
    const result = await this.ledger.apply(ctx, tx.accountId, tx.amountCents);
    if (this.observer) await this.observer.afterCommit(ctx, { ...tx, result });
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
