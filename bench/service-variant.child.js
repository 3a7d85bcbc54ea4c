// The service with one part of its ledger pipeline switched off, for `npm run bench` to show
// what each part costs: every module of AppModule (from dist/) except the ledger's, plus a ledger
// handler on the same queue with VARIANT=
//   no-lock  — deduplication and the atomic effect, no per-account lock;
//   no-dedup — the per-account lock and INCRBY, no processed marker (the lock released in the
//              INCRBY's script, as the ledger's own script does: the same round trips as (d)).
// Plain JavaScript: Nest needs decorator metadata, which tsx does not emit, so the decorators
// are applied by hand as in test/e2e/support/*.child.js.
'use strict';
require('reflect-metadata');
const { Injectable, Module } = require('@nestjs/common');
const dist = (path) => require(`../dist/${path}`);
const { bootstrap } = dist('bootstrap');
const { AppModule } = dist('app.module');
const { LedgerModule } = dist('ledger/ledger.module');
const { MessageHandler } = dist('messaging');
const { RedisConnection } = dist('redis/redis.connection');
const { LedgerService } = dist('ledger/ledger.service');
const { TransactionDto } = dist('ledger/transaction.dto');
const constants = dist('ledger/ledger.constants');

const VARIANT = process.env.VARIANT;
if (VARIANT !== 'no-lock' && VARIANT !== 'no-dedup') {
  throw new Error('VARIANT must be no-lock or no-dedup');
}

// KEYS: balance, lock ('' = none). ARGV: amount, lock token.
const INCRBY_AND_RELEASE = `
if KEYS[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return redis.call('INCRBY', KEYS[1], ARGV[1])
`;

class VariantLedgerHandler {
  constructor(ledger, redis) {
    this.ledger = ledger;
    this.redis = redis;
    redis.client.defineCommand('benchIncrbyAndRelease', {
      numberOfKeys: 2,
      lua: INCRBY_AND_RELEASE,
    });
  }

  async apply(tx, ctx) {
    if (VARIANT === 'no-dedup') {
      const lockKey = ctx.lock?.redisKey;
      await this.redis.client.benchIncrbyAndRelease(
        constants.balanceKey(tx.accountId),
        lockKey ?? '',
        tx.amountCents,
        lockKey === undefined ? '' : ctx.lock.token,
      );
      if (lockKey !== undefined) ctx.lock.releasedByScript();
      return;
    }
    await this.ledger.apply(tx.accountId, tx.amountCents, ctx.processedMarker, undefined);
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
    : { idempotent: false, lockKey: (tx) => constants.accountLockKey(tx.accountId) }),
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
