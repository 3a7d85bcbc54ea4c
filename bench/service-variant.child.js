// The service with one part of its ledger pipeline switched off, for `npm run bench` to show
// what each part costs: every module of AppModule (from dist/) except the ledger's, plus a ledger
// handler on the same queue with VARIANT=
//   no-lock  — deduplication and the atomic effect, no per-account lock (lockKey: false);
//   no-dedup — the per-account lock and INCRBY, no processed marker: the ledger's commit (the
//              lock taken in it, the same round trips as (d)), given no marker to check or write;
//   held     — the ledger's commit as (d), but the account's lock held before it
//              (`ctx.lock.hold()`, its watchdog running), as a handler with work before its
//              commit that must not overlap takes it: under Redlock, the quorum's path.
// Plain JavaScript: Nest needs decorator metadata, which tsx does not emit, so the decorators
// are applied by hand as in test/e2e/support/*.child.js.
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { bootstrap } from '../dist/bootstrap.js';
import { AppModule } from '../dist/app.module.js';
import { LedgerModule } from '../dist/ledger/ledger.module.js';
import { RedisCommit, MessageHandler } from '../dist/messaging/index.js';
import { LedgerService } from '../dist/ledger/ledger.service.js';
import { TransactionDto } from '../dist/ledger/transaction.dto.js';
import * as constants from '../dist/ledger/ledger.constants.js';

const VARIANT = process.env.VARIANT;
if (VARIANT !== 'no-lock' && VARIANT !== 'no-dedup' && VARIANT !== 'held') {
  throw new Error('VARIANT must be no-lock, no-dedup or held');
}

class VariantLedgerHandler {
  constructor(ledger) {
    this.ledger = ledger;
  }

  async apply(tx, ctx) {
    if (VARIANT === 'held') await ctx.lock.hold();
    // no-dedup: the commit is not told the marker, so it neither checks nor writes one
    const target =
      VARIANT === 'no-dedup'
        ? { effect: ctx.effect, lock: ctx.lock, processedMarker: undefined }
        : ctx;
    await this.ledger.apply(target, tx.accountId, tx.amountCents);
  }
}
Reflect.defineMetadata('design:paramtypes', [LedgerService], VariantLedgerHandler);
Reflect.defineMetadata(
  'design:paramtypes',
  [TransactionDto, Object],
  VariantLedgerHandler.prototype,
  'apply',
);
MessageHandler({
  exchange: constants.LEDGER_EXCHANGE,
  routingKey: constants.LEDGER_ROUTING_KEY,
  queue: constants.LEDGER_QUEUE,
  effect: { kind: 'redis-commit' },
  lockKey: VARIANT === 'no-lock' ? false : (tx) => constants.accountLockKey(tx.accountId),
})(
  VariantLedgerHandler.prototype,
  'apply',
  Object.getOwnPropertyDescriptor(VariantLedgerHandler.prototype, 'apply'),
);
Injectable()(VariantLedgerHandler);

class VariantModule {}
Module({
  // AppModule's own imports, whatever they become, except the ledger's
  imports: Reflect.getMetadata('imports', AppModule).filter((m) => m !== LedgerModule),
  providers: [LedgerService, VariantLedgerHandler],
})(VariantModule);

bootstrap(VariantModule).catch((error) => {
  process.stderr.write(`Failed to start: ${error?.stack ?? error}\n`);
  process.exit(1);
});
