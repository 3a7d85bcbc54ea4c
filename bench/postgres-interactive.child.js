// The ledger on PostgreSQL as an interactive transaction (`postgres-transaction`), for
// `npm run bench:postgres` to set against the ledger's one-round-trip form (`postgres-commit`):
// every module of AppModule (from dist/) except the ledger's, plus a ledger handler on the same
// queue that upserts the balance, reads it back (RETURNING) and publishes the event: three round
// trips per message. Needs DATABASE_URL; the ledger's table is created by the service (run it
// once with LEDGER_STORE=postgres first). Plain JavaScript: decorators applied by hand, as in
// bench/service-variant.child.js.
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { bootstrap } from '../dist/bootstrap.js';
import { AppModule } from '../dist/app.module.js';
import { LedgerModule } from '../dist/ledger/ledger.module.js';
import { MessageHandler } from '../dist/messaging/index.js';
import { TransactionDto } from '../dist/ledger/transaction.dto.js';
import * as constants from '../dist/ledger/ledger.constants.js';

class InteractiveLedgerHandler {
  async apply(tx, ctx) {
    const db = ctx.transaction;
    const { rows } = await db.query(
      `INSERT INTO ledger_balances (account_id, balance_cents) VALUES ($1, $2)
       ON CONFLICT (account_id) DO UPDATE SET balance_cents = ledger_balances.balance_cents + EXCLUDED.balance_cents
       RETURNING balance_cents`,
      [tx.accountId, tx.amountCents],
    );
    await db.publish(
      constants.LEDGER_EVENTS_EXCHANGE,
      constants.LEDGER_APPLIED_ROUTING_KEY,
      {
        accountId: tx.accountId,
        amountCents: tx.amountCents,
        balanceCents: Number(rows[0].balance_cents),
      },
      { messageId: ctx.messageId },
    );
  }
}
Reflect.defineMetadata(
  'design:paramtypes',
  [TransactionDto, Object],
  InteractiveLedgerHandler.prototype,
  'apply',
);
MessageHandler({
  exchange: constants.LEDGER_EXCHANGE,
  routingKey: constants.LEDGER_ROUTING_KEY,
  queue: constants.LEDGER_QUEUE,
  effect: { kind: 'postgres-transaction' },
  lockKey: (tx) => constants.accountLockKey(tx.accountId),
})(
  InteractiveLedgerHandler.prototype,
  'apply',
  Object.getOwnPropertyDescriptor(InteractiveLedgerHandler.prototype, 'apply'),
);
Injectable()(InteractiveLedgerHandler);

class InteractiveModule {}
Module({
  imports: Reflect.getMetadata('imports', AppModule).filter((m) => m !== LedgerModule),
  providers: [InteractiveLedgerHandler],
})(InteractiveModule);

bootstrap(InteractiveModule).catch((error) => {
  process.stderr.write(`Failed to start: ${error?.stack ?? error}\n`);
  process.exit(1);
});
