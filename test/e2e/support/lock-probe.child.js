// A service instance (AppModule from dist/) plus a probe handler locked on `probe:<key>`: each
// run records when it started and ended, on which process and with which fencing token, so the
// test can check that no two runs on one key overlapped across processes. Plain JavaScript: it
// runs as a child process, outside the test runner's transform.
//
// Env: the service's own variables, plus PROBE_LIST (the Redis list the records are pushed to).
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

/** Wall-clock milliseconds with sub-millisecond precision, comparable across local processes. */
const clock = () => performance.timeOrigin + performance.now();

class LockProbe {
  async handle(payload, ctx) {
    const start = clock();
    await abortableDelay(5 + Math.floor(Math.random() * 16), ctx.signal);
    const end = clock();
    await records.rpush(
      LIST,
      JSON.stringify({
        key: payload.key,
        messageId: ctx.messageId,
        lockKey: ctx.lockKey,
        fencingToken: ctx.fencingToken,
        start,
        end,
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
