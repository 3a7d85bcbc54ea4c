import { type OnApplicationBootstrap } from '@nestjs/common';
import { MessageContext, MessageHandler, type MessagePublisher } from '../messaging/index.js';
import type { Migration } from '../postgres/postgres.schema.js';
import type { PostgresTransactions } from '../postgres/postgres-transactions.js';
import {
  accountLockKey,
  LEDGER_APPLIED_ROUTING_KEY,
  LEDGER_EVENTS_EXCHANGE,
  LEDGER_EXCHANGE,
  LEDGER_QUEUE,
  LEDGER_ROUTING_KEY,
} from './ledger.constants.js';
import { TransactionDto } from './transaction.dto.js';

/** The ledger's table, migrated at start with the service's own. */
export const LEDGER_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    statements: [
      `CREATE TABLE IF NOT EXISTS ledger_balances (
         account_id text PRIMARY KEY,
         balance_cents bigint NOT NULL
       )`,
    ],
  },
];

/** The event of an applied transaction, on `ledger.events` / `transaction.applied`. */
export interface TransactionAppliedEvent {
  readonly accountId: string;
  readonly amountCents: number;
  /** The account's balance right after this transaction. */
  readonly balanceCents: number;
}

/**
 * The ledger on PostgreSQL (`LEDGER_STORE=postgres`): adds each transaction to its account's
 * row of `ledger_balances` and announces it on `ledger.events` through the outbox, in one
 * transaction with the message's processed marker. A crash before the commit leaves neither
 * balance, marker nor event; after it, the event is sent by the relay (at least once, with the
 * transaction's id as messageId) and a redelivery is a `duplicate`.
 */
export class PostgresLedgerHandler implements OnApplicationBootstrap {
  constructor(
    postgres: PostgresTransactions,
    private readonly publisher: MessagePublisher,
  ) {
    postgres.connection?.addMigrations('ledger', LEDGER_MIGRATIONS);
  }

  onApplicationBootstrap(): void {
    // the relay publishes to it; declared on every (re)connect
    void this.publisher.declareExchange(LEDGER_EVENTS_EXCHANGE).catch(() => undefined);
  }

  @MessageHandler({
    exchange: LEDGER_EXCHANGE,
    routingKey: LEDGER_ROUTING_KEY,
    queue: LEDGER_QUEUE,
    // one writer per account across replicas; its fencing token is checked in the transaction
    lockKey: (tx: TransactionDto) => accountLockKey(tx.accountId),
    effect: { kind: 'postgres-transaction' },
  })
  async apply(tx: TransactionDto, ctx: MessageContext): Promise<void> {
    const db = ctx.transaction as NonNullable<MessageContext['transaction']>;
    const { rows } = await db.client.query<{ balance_cents: string }>({
      name: 'ledger_apply', // prepared once per connection
      text: `INSERT INTO ledger_balances (account_id, balance_cents) VALUES ($1, $2)
             ON CONFLICT (account_id) DO UPDATE SET balance_cents = ledger_balances.balance_cents + EXCLUDED.balance_cents
             RETURNING balance_cents`,
      values: [tx.accountId, tx.amountCents],
    });
    const event: TransactionAppliedEvent = {
      accountId: tx.accountId,
      amountCents: tx.amountCents,
      balanceCents: Number(rows[0].balance_cents),
    };
    await db.publish(LEDGER_EVENTS_EXCHANGE, LEDGER_APPLIED_ROUTING_KEY, event, {
      messageId: ctx.messageId,
    });
    if (ctx.logs('debug')) {
      ctx.logger.debug({ ...event, fencingToken: ctx.fencingToken }, 'transaction applied');
    }
  }
}
