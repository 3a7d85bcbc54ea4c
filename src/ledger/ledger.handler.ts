import { Injectable } from '@nestjs/common';
import { AlreadyProcessed, MessageContext, MessageHandler, NonRetryableError } from '../messaging';
import { LEDGER_EXCHANGE, LEDGER_QUEUE, LEDGER_ROUTING_KEY } from './ledger.constants';
import { LedgerService } from './ledger.service';
import { TransactionDto } from './transaction.dto';

/** Applies each transaction to its account balance exactly once. */
@Injectable()
export class LedgerHandler {
  constructor(private readonly ledger: LedgerService) {}

  @MessageHandler({
    exchange: LEDGER_EXCHANGE,
    routingKey: LEDGER_ROUTING_KEY,
    queue: LEDGER_QUEUE,
    // the balance and the processed marker are written in one Lua script
    commitsMarker: true,
  })
  async apply(tx: TransactionDto, ctx: MessageContext): Promise<typeof AlreadyProcessed | void> {
    if (!ctx.processedMarker) throw new NonRetryableError('the ledger requires deduplication');
    const result = await this.ledger.apply(tx.accountId, tx.amountCents, ctx.processedMarker);
    if (result === 'duplicate') return AlreadyProcessed;
    ctx.logger.debug(
      { accountId: tx.accountId, amountCents: tx.amountCents },
      'transaction applied',
    );
  }
}
