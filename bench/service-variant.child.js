// The service with one part of its ledger pipeline switched off, for `npm run bench` to show
// what each part costs: every module of AppModule (from dist/) except the ledger's, plus a ledger
// handler on the same queue with VARIANT=
//   no-lock  — deduplication and the atomic effect, no per-account lock;
//   no-dedup — the per-account lock and INCRBY, no processed marker (the lock taken in the
//              INCRBY's commit script, as the ledger's own: the same round trips as (d)).
// Plain JavaScript: Nest needs decorator metadata, which tsx does not emit, so the decorators
// are applied by hand as in test/e2e/support/*.child.js.
'use strict';
require('reflect-metadata');
const { Injectable, Module } = require('@nestjs/common');
const dist = (path) => require(`../dist/${path}`);
const { bootstrap } = dist('bootstrap');
const { AppModule } = dist('app.module');
const { LedgerModule } = dist('ledger/ledger.module');
const { CommitScript, MessageHandler } = dist('messaging');
const { RedisConnection } = dist('redis/redis.connection');
const { LedgerService } = dist('ledger/ledger.service');
const { TransactionDto } = dist('ledger/transaction.dto');
const constants = dist('ledger/ledger.constants');

const VARIANT = process.env.VARIANT;
if (VARIANT !== 'no-lock' && VARIANT !== 'no-dedup') {
  throw new Error('VARIANT must be no-lock or no-dedup');
}

class VariantLedgerHandler {
  constructor(ledger, redis) {
    this.ledger = ledger;
    // the ledger's effect without its marker: the commit script takes the account's lock only
    this.incrby = new CommitScript(redis.client, 'BenchIncrby', {
      numberOfKeys: 1,
      lua: `return redis.call('INCRBY', keys[1], args[1])`,
    });
  }

  async apply(tx, ctx) {
    if (VARIANT === 'no-dedup') {
      await this.incrby.run(ctx, [constants.balanceKey(tx.accountId)], [tx.amountCents]);
      return;
    }
    await this.ledger.apply(ctx, tx.accountId, tx.amountCents);
  }
}
Reflect.defineMetadata('design:paramtypes', [LedgerService, RedisConnection], VariantLedgerHandler);
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
  ...(VARIANT === 'no-lock'
    ? { lock: false, commitsMarker: true }
    : {
        idempotent: false,
        lockKey: (tx) => constants.accountLockKey(tx.accountId),
        lockAtCommit: true,
      }),
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
