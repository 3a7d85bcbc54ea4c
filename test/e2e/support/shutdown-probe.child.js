// The service as production runs it (dist/bootstrap: env validation, signals, exit codes), plus a
// probe handler on queue `shutdown-probe.jobs` locked on `probe:<key>`. Each run pushes a record
// to the Redis list PROBE_LIST when it starts and when it ends, so the test can tell what ran,
// where, and whether it finished. Plain JavaScript: it runs as a child process.
//
// Env: the service's own variables, plus
//   PROBE_LIST      Redis list for the records (required)
//   PROBE_DELAY_MS  how long each run works, honouring ctx.signal (default 200)
//   PROBE_HANG      '1': every run hangs forever and ignores its signal (a stuck handler)
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { Redis } from 'ioredis';
import { AppModule } from '../../../dist/app.module.js';
import { bootstrap } from '../../../dist/bootstrap.js';
import { MessageHandler } from '../../../dist/messaging/index.js';
import { abortableDelay } from '../../../dist/lifecycle/abortable-delay.js';

const LIST = process.env.PROBE_LIST;
if (!LIST) throw new Error('PROBE_LIST is required');
const DELAY_MS = Number(process.env.PROBE_DELAY_MS ?? 200);
const HANG = process.env.PROBE_HANG === '1';
const records = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');

function record(phase, payload, ctx) {
  return records.rpush(
    LIST,
    JSON.stringify({ phase, messageId: ctx.messageId, key: payload.key, pid: process.pid }),
  );
}

class ShutdownProbe {
  async handle(payload, ctx) {
    await record('start', payload, ctx);
    if (HANG) await new Promise(() => undefined);
    await abortableDelay(DELAY_MS, ctx.signal);
    await record('end', payload, ctx);
  }
}
const descriptor = Object.getOwnPropertyDescriptor(ShutdownProbe.prototype, 'handle');
MessageHandler({
  exchange: 'shutdown-probe',
  routingKey: 'probe.*',
  queue: 'shutdown-probe.jobs',
  lockKey: (p) => 'probe:' + p.key,
})(ShutdownProbe.prototype, 'handle', descriptor);
Injectable()(ShutdownProbe);

class ShutdownProbeModule {}
Module({ imports: [AppModule], providers: [ShutdownProbe] })(ShutdownProbeModule);

bootstrap(ShutdownProbeModule).catch((error) => {
  process.stderr.write(`Failed to start: ${error?.stack ?? error}\n`);
  process.exit(1);
});
