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
 * transaction with the message's processed marker, sent in one round trip (`postgres-commit`).
 * A crash before the commit leaves neither balance, marker nor event; after it, the event is
 * sent by the relay (at least once, with the transaction's id as messageId) and a redelivery is
 * a `duplicate`.
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
    // one writer per account across replicas, locked in PostgreSQL at commit
    lockKey: (tx: TransactionDto) => accountLockKey(tx.accountId),
    // the balance, the event and the marker in one round trip
    effect: { kind: 'postgres-commit' },
  })
  apply(tx: TransactionDto, ctx: MessageContext): Promise<void> {
    const db = ctx.transaction as NonNullable<MessageContext['transaction']>;
    db.execute(
      `INSERT INTO ledger_balances (account_id, balance_cents) VALUES ($1, $2)
       ON CONFLICT (account_id) DO UPDATE SET balance_cents = ledger_balances.balance_cents + EXCLUDED.balance_cents`,
      [tx.accountId, tx.amountCents],
    );
    // the event's balance is the one the statement above left, read in the same transaction
    db.publishQuery(
      LEDGER_EVENTS_EXCHANGE,
      LEDGER_APPLIED_ROUTING_KEY,
      `SELECT json_build_object('accountId', account_id, 'amountCents', $2::bigint, 'balanceCents', balance_cents)
         FROM ledger_balances WHERE account_id = $1`,
      [tx.accountId, tx.amountCents],
      { messageId: ctx.messageId },
    );
    if (ctx.logs('debug')) {
      ctx.logger.debug(
        { accountId: tx.accountId, amountCents: tx.amountCents },
        'transaction queued',
      );
    }
    return Promise.resolve();
  }
}
