// The service as production runs it (AppModule from dist/, the same bootstrap), with the ledger's
// observer seam (LEDGER_OBSERVER) filled by the reliability suite's oracle: each transaction the
// ledger commits is recorded, with its fencing token and timings, in a Redis the suite never
// faults. Used by the reliability and scale-out suites and by the benchmark's latency runs.
// Plain JavaScript: it runs as a child process, outside the test runner's transform.
//
// Env: the service's own variables, plus
//   LEDGER_ORACLE_URL       the oracle's Redis (required)
//   LEDGER_ORACLE_DELAY_MS  each run works this long under the account's lock before committing;
//                           `oracle:working:<pid>` counts the runs inside that work
//   LEDGER_ORACLE_BLOCK_MS  the first run of the process blocks the event loop this long first
//   LEDGER_ORACLE_HOLD_MS   each run waits this long after its commit, before it returns (and is
//                           acked): the window a kill must hit to make a redelivery of an effect
//                           already applied. `oracle:unacked:<pid>` counts the runs inside it.
//   LEDGER_ORACLE_BUFFERED  1: records are kept and written every 100 ms (and at shutdown) in one
//                           RPUSH, not one round trip per effect before its ack: for the
//                           benchmark's latency runs (the naive consumer records the same way);
//                           never for the suite (a killed process would lose its last records)
//   LEDGER_ORACLE_CONTROL   a negative control: the ledger without one of its protections
//                           no-dedup       the commit neither checks nor writes the marker
//                           no-lock-check  the commit does not check that another worker holds
//                                          the key it takes
//                           no-fencing     the commit does not refuse an older fencing token
import 'reflect-metadata';
import { Global, Module } from '@nestjs/common';
import { bootstrap } from '../../../dist/bootstrap.js';
import { AppModule } from '../../../dist/app.module.js';
import { LEDGER_OBSERVER } from '../../../dist/ledger/ledger.observer.js';
import { createRedisClient } from '../../../dist/redis/redis.connection.js';
import { abortableDelay } from '../../../dist/lifecycle/abortable-delay.js';
import { LedgerService } from '../../../dist/ledger/ledger.service.js';
import { RedisScript } from '../../../dist/lock/redis-script.js';

/** The Redis list of effect records (one JSON object each). */
const EFFECTS_KEY = 'oracle:effects';

const url = process.env.LEDGER_ORACLE_URL;
if (!url) throw new Error('LEDGER_ORACLE_URL is required');
const delayMs = Number(process.env.LEDGER_ORACLE_DELAY_MS ?? 0);
let blockMs = Number(process.env.LEDGER_ORACLE_BLOCK_MS ?? 0);
const holdMs = Number(process.env.LEDGER_ORACLE_HOLD_MS ?? 0);
const control = process.env.LEDGER_ORACLE_CONTROL;
const buffered = process.env.LEDGER_ORACLE_BUFFERED === '1';
const UNACKED_KEY = `oracle:unacked:${process.pid}`;
const WORKING_KEY = `oracle:working:${process.pid}`;

/**
 * The negative controls take one protection out of the commit, and check that they did: a
 * control that changed nothing would pass for the wrong reason.
 */
const COMMIT_CHECKS = {
  'no-lock-check':
    "    if given(KEYS[2]) and redis.call('EXISTS', KEYS[2]) == 1 then return {2} end\n",
  'no-fencing': '    if mine < applied then\n      release()\n      return {-1}\n    end\n',
};
if (control === 'no-lock-check' || control === 'no-fencing') {
  const load = RedisScript.load;
  RedisScript.load = (file, placeholders) => {
    const script = load.call(RedisScript, file, placeholders);
    if (!file.startsWith('commit-')) return script;
    const check = COMMIT_CHECKS[control];
    if (!script.lua.includes(check)) throw new Error(`control ${control}: check not found`);
    return new RedisScript(script.name, script.lua.replace(check, ''), script.numberOfKeys);
  };
} else if (control === 'no-dedup') {
  const apply = LedgerService.prototype.apply;
  LedgerService.prototype.apply = function (ctx, accountId, amountCents) {
    // the context's own fields (its lock, journal, messageId…), without the marker
    return apply.call(this, { ...ctx, processedMarker: undefined }, accountId, amountCents);
  };
} else if (control !== undefined) {
  throw new Error(`unknown LEDGER_ORACLE_CONTROL ${control}`);
}

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
    this.pending = [];
    this.flusher = buffered ? setInterval(() => void this.flush(), 100) : undefined;
  }

  async flush() {
    if (this.pending.length === 0) return;
    await this.client.rpush(EFFECTS_KEY, ...this.pending.splice(0)).catch(() => undefined);
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
    if (delayMs > 0) {
      // the window a stop must hit to leave a holder that outlives its lease mid-work
      // (not awaited: on resuming from a stop, the commit must leave in the pass the work ends in,
      // as a process paused right before its commit would send it)
      const held = ctx.lock !== undefined && ctx.lock.pending !== true;
      if (held) this.client.incr(WORKING_KEY).catch(() => undefined);
      try {
        await abortableDelay(delayMs, ctx.signal);
      } finally {
        if (held) this.client.decr(WORKING_KEY).catch(() => undefined);
      }
    }
    this.runs.set(ctx, { atCommit, start, end: clock() });
  }

  async afterCommit(ctx, commit) {
    const run = this.runs.get(ctx);
    if (!run) return;
    const end = run.atCommit ? clock() : run.end;
    if (holdMs > 0 && commit.result === 'applied') {
      await this.client.incr(UNACKED_KEY).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, holdMs));
      await this.client.decr(UNACKED_KEY).catch(() => undefined);
    }
    const record = {
      atCommit: run.atCommit,
      messageId: ctx.messageId ?? '',
      accountId: commit.accountId,
      amountCents: commit.amountCents,
      fencingToken: ctx.fencingToken,
      result: commit.result,
      start: run.start,
      end,
      pid: process.pid,
    };
    if (buffered) this.pending.push(JSON.stringify(record));
    else await this.client.rpush(EFFECTS_KEY, JSON.stringify(record)).catch(() => undefined);
  }

  async onApplicationShutdown() {
    clearInterval(this.flusher);
    await this.flush();
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
