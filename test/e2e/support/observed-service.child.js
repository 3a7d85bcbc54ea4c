// The service as production runs it (AppModule from dist/, the same bootstrap), with the ledger's
// observer seam (LEDGER_OBSERVER) filled by the reliability suite's oracle: each transaction the
// ledger commits is recorded, with its fencing token and timings, in a Redis the suite never
// faults. Used by the reliability and scale-out suites and by the benchmark's latency runs.
// Plain JavaScript: it runs as a child process, outside Jest's transform.
//
// Env: the service's own variables, plus
//   LEDGER_ORACLE_URL       the oracle's Redis (required)
//   LEDGER_ORACLE_DELAY_MS  each run works this long under the account's lock before committing
//   LEDGER_ORACLE_BLOCK_MS  the first run of the process blocks the event loop this long first
'use strict';
require('reflect-metadata');
const { Global, Module } = require('@nestjs/common');
const dist = (path) => require(`../../../dist/${path}`);
const { bootstrap } = dist('bootstrap');
const { AppModule } = dist('app.module');
const { LEDGER_OBSERVER } = dist('ledger/ledger.observer');
const { createRedisClient } = dist('redis/redis.connection');
const { abortableDelay } = dist('lifecycle/abortable-delay');

/** The Redis list of effect records (one JSON object each). */
const EFFECTS_KEY = 'oracle:effects';

const url = process.env.LEDGER_ORACLE_URL;
if (!url) throw new Error('LEDGER_ORACLE_URL is required');
const delayMs = Number(process.env.LEDGER_ORACLE_DELAY_MS ?? 0);
let blockMs = Number(process.env.LEDGER_ORACLE_BLOCK_MS ?? 0);

/** Wall-clock ms (performance.timeOrigin + now), comparable across processes on one host. */
const clock = () => performance.timeOrigin + performance.now();

/**
 * Records, per effect: the messageId, account, amount, fencing token, result, and the window the
 * lock serialized (`start` to `end`). Held before the commit (when this run simulates work, that
 * work needs the lock): `end` is when the commit was sent, since it commits and releases in one
 * step and the next holder may start before the reply is back. Left to the commit (`atCommit`):
 * the lock was held only for the commit's atomic step, somewhere between `start` and the reply.
 */
class OracleObserver {
  constructor() {
    this.client = createRedisClient(url, 'message-processor-oracle');
    this.client.on('error', () => undefined);
    this.runs = new WeakMap();
  }

  get simulatesWork() {
    return delayMs > 0 || blockMs > 0;
  }

  async beforeCommit(ctx) {
    if (this.simulatesWork) await ctx.lock?.hold();
    const atCommit = ctx.lock?.pending === true;
    const start = clock();
    if (blockMs > 0) {
      // once per process: a handler that hogs the event loop
      const until = performance.now() + blockMs;
      blockMs = 0;
      while (performance.now() < until);
    }
    if (delayMs > 0) await abortableDelay(delayMs, ctx.signal);
    this.runs.set(ctx, { atCommit, start, end: clock() });
  }

  async afterCommit(ctx, commit) {
    const run = this.runs.get(ctx);
    if (!run) return;
    const record = {
      atCommit: run.atCommit,
      messageId: ctx.messageId ?? '',
      accountId: commit.accountId,
      amountCents: commit.amountCents,
      fencingToken: ctx.fencingToken,
      result: commit.result,
      start: run.start,
      end: run.atCommit ? clock() : run.end,
      pid: process.pid,
    };
    await this.client.rpush(EFFECTS_KEY, JSON.stringify(record)).catch(() => undefined);
  }

  async onApplicationShutdown() {
    await this.client.quit().catch(() => undefined);
  }
}

class OracleModule {}
Global()(OracleModule);
Module({
  providers: [{ provide: LEDGER_OBSERVER, useValue: new OracleObserver() }],
  exports: [LEDGER_OBSERVER],
})(OracleModule);

class ObservedAppModule {}
Module({ imports: [AppModule, OracleModule] })(ObservedAppModule);

bootstrap(ObservedAppModule).catch((error) => {
  process.stderr.write(`Failed to start: ${error?.stack ?? error}\n`);
  process.exit(1);
});
