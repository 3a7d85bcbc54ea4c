// A service instance (AppModule from dist/) plus a probe handler locked on `probe:<key>`: each
// run records how many runs on its key were inside the handler when it entered (a Redis counter,
// incremented on entry and decremented on exit), the order it entered in (a Redis sequence) and
// its fencing token, so the test can check that no two runs on one key overlapped across
// processes. Redis serialises the counter, so the check needs no clock: the processes' wall clocks
// (performance.timeOrigin + now) drift apart by fractions of a millisecond and once made two
// back-to-back runs look like they overlapped. Plain JavaScript: it runs as a child process,
// outside the test runner's transform.
//
// Env: the service's own variables, plus PROBE_LIST (the Redis list the records are pushed to;
// the counters are `<PROBE_LIST>:active:<key>` and `<PROBE_LIST>:seq:<key>`).
// Prints `STARTED <httpPort>` once listening.
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { AppModule } from '../../../dist/app.module.js';
import { MessageHandler } from '../../../dist/messaging/index.js';
import { abortableDelay } from '../../../dist/lifecycle/abortable-delay.js';

const LIST = process.env.PROBE_LIST;
if (!LIST) throw new Error('PROBE_LIST is required');
const records = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');

class LockProbe {
  async handle(payload, ctx) {
    const active = `${LIST}:active:${payload.key}`;
    const entered = await records.multi().incr(active).incr(`${LIST}:seq:${payload.key}`).exec();
    const [concurrent, seq] = entered.map(([error, value]) => {
      if (error) throw error;
      return Number(value);
    });
    try {
      await abortableDelay(5 + Math.floor(Math.random() * 16), ctx.signal);
    } finally {
      await records.decr(active);
    }
    await records.rpush(
      LIST,
      JSON.stringify({
        key: payload.key,
        messageId: ctx.messageId,
        lockKey: ctx.lockKey,
        fencingToken: ctx.fencingToken,
        concurrent,
        seq,
        pid: process.pid,
      }),
    );
  }
}
const descriptor = Object.getOwnPropertyDescriptor(LockProbe.prototype, 'handle');
MessageHandler({
  exchange: 'lock-probe',
  routingKey: 'probe.*',
  queue: 'lock-probe.jobs',
  lockKey: (p) => 'probe:' + p.key,
})(LockProbe.prototype, 'handle', descriptor);
Injectable()(LockProbe);

class LockProbeModule {}
Module({ imports: [AppModule], providers: [LockProbe] })(LockProbeModule);

async function main() {
  const app = await NestFactory.create(LockProbeModule, { logger: false });
  let closing;
  process.on('SIGTERM', () => {
    closing ??= app
      .close()
      .then(() => records.quit())
      .then(
        () => process.exit(0),
        (error) => {
          process.stderr.write(`shutdown failed: ${error?.stack ?? error}\n`);
          process.exit(1);
        },
      );
  });
  await app.listen(0);
  process.stdout.write(`STARTED ${app.getHttpServer().address().port}\n`);
}

main().catch((error) => {
  process.stderr.write(`Failed to start: ${error?.stack ?? error}\n`);
  process.exit(1);
});
