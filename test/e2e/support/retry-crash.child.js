// A service instance (from dist/) whose one handler always fails, frozen right after a retry
// copy is confirmed and before the original delivery is settled, so the test can SIGKILL it in
// exactly that window. Plain JavaScript: it runs as a child process, outside the test runner's transform.
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from '../../../dist/app.module.js';
import { MessageHandler } from '../../../dist/messaging/index.js';
import { MessagePublisher } from '../../../dist/messaging/message.publisher.js';

const publishRaw = MessagePublisher.prototype.publishRaw;
MessagePublisher.prototype.publishRaw = async function (exchange, routingKey, ...rest) {
  await publishRaw.call(this, exchange, routingKey, ...rest);
  if (routingKey.includes('.retry.')) {
    process.stdout.write('RETRY_PUBLISHED\n');
    await new Promise(() => undefined); // never settle: wait for SIGKILL
  }
};

class CrashProbe {
  handle() {
    return Promise.reject(new Error('transient failure before the crash'));
  }
}
const descriptor = Object.getOwnPropertyDescriptor(CrashProbe.prototype, 'handle');
MessageHandler({
  exchange: 'crash-test',
  routingKey: 'job.*',
  queue: 'crash-test.jobs',
  retry: { maxAttempts: 3, initialDelayMs: 300, maxDelayMs: 1000 },
})(CrashProbe.prototype, 'handle', descriptor);
Injectable()(CrashProbe);

class CrashModule {}
Module({ imports: [AppModule], providers: [CrashProbe] })(CrashModule);

NestFactory.create(CrashModule, { logger: false })
  .then((app) => app.listen(0))
  .then(() => process.stdout.write('STARTED\n'));
