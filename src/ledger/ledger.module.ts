import { Module } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import { serverConfig } from '../config/app.config.js';
import { MessagePublisher } from '../messaging/index.js';
import { MessagingModule } from '../messaging/messaging.module.js';
import { PostgresTransactions } from '../postgres/postgres-transactions.js';
import { LedgerHandler } from './ledger.handler.js';
import { LEDGER_OBSERVER, type LedgerObserver } from './ledger.observer.js';
import { LedgerService } from './ledger.service.js';
import { PostgresLedgerHandler } from './postgres-ledger.handler.js';

/**
 * The example domain: remove this module and add your own handlers the same way. The handler
 * follows `LEDGER_STORE`: balances in Redis (a `redis-commit`) or in PostgreSQL (a
 * `postgres-transaction` that publishes an event through the outbox).
 */
@Module({
  imports: [MessagingModule],
  providers: [
    LedgerService,
    {
      provide: LedgerHandler,
      inject: [
        serverConfig.KEY,
        LedgerService,
        PostgresTransactions,
        MessagePublisher,
        { token: LEDGER_OBSERVER, optional: true },
      ],
      useFactory: (
        config: ConfigType<typeof serverConfig>,
        ledger: LedgerService,
        postgres: PostgresTransactions,
        publisher: MessagePublisher,
        observer: LedgerObserver | undefined,
      ): LedgerHandler | PostgresLedgerHandler =>
        config.ledgerStore === 'postgres'
          ? new PostgresLedgerHandler(postgres, publisher)
          : new LedgerHandler(ledger, observer ?? undefined),
    },
  ],
})
export class LedgerModule {}
