import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Redis } from 'ioredis';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { INestApplication } from '@nestjs/common';
import { CrashSurvivor, CrashSurvivorModule } from './support/crash-probe.handler.js';
import {
  metricValue,
  startApp,
  TestBroker,
  waitUntilReady,
  deleteKeys,
} from './support/test-app.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { waitFor } from './support/wait-for.js';

const QUEUE = 'crash-test.jobs';

describe('a crash between the retry publish and the settle', () => {
  let vhost: TestVhost;
  let child: ChildProcess | undefined;
  let app: INestApplication | undefined;
  let broker: TestBroker;

  beforeAll(async () => {
    vhost = await TestVhost.create('crash');
    broker = await TestBroker.connect(vhost.url());
  });

  afterAll(async () => {
    child?.kill('SIGKILL');
    await broker?.close();
    await app?.close();
    await vhost?.delete();
    // the markers and lock fences its messages left (queue names are this file's own)
    const redis = new Redis('redis://127.0.0.1:6379');
    await deleteKeys(redis, [
      'mp:processed:crash-test.jobs:*',
      'mp:fence:msg:crash-test.jobs:*',
      'mp:lock:msg:crash-test.jobs:*',
    ]);
    redis.disconnect();
  });

  it('loses nothing: the message is processed once by the next instance', async () => {
    let output = '';
    child = spawn(
      process.execPath,
      [join(import.meta.dirname, 'support', 'retry-crash.child.js')],
      {
        env: {
          PATH: process.env.PATH ?? '',
          AMQP_URL: vhost.url(),
          REDIS_URL: 'redis://127.0.0.1:6379',
          HTTP_PORT: '0',
          LOG_LEVEL: 'silent',
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(
      'the child to consume',
      async () => output.includes('STARTED') && (await broker.consumerCount(QUEUE)) === 1,
      30_000,
    );

    const messageId = randomUUID();
    await broker.publish('crash-test', 'job.run', '{"n":1}', {
      contentType: 'application/json',
      messageId,
    });
    await waitFor('the retry copy to be confirmed', () => output.includes('RETRY_PUBLISHED'));
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;

    app = await startApp({ AMQP_URL: vhost.url() }, [CrashSurvivorModule]);
    await waitUntilReady(app);
    const survivor = app.get(CrashSurvivor);
    // the unsettled original comes back at once, the retry copy after its delay: one runs, one is deduplicated
    await waitFor(
      'both copies settled',
      async () =>
        (await metricValue('messages_processed_total', { queue: QUEUE, outcome: 'ack' })) +
          (await metricValue('messages_processed_total', {
            queue: QUEUE,
            outcome: 'duplicate',
          })) ===
        2,
    );
    expect(survivor.effects).toEqual([messageId]);
    expect(
      await metricValue('messages_processed_total', { queue: QUEUE, outcome: 'duplicate' }),
    ).toBe(1);
    expect(await broker.depth(`${QUEUE}.dlq`)).toBe(0);
    expect(await broker.depth(QUEUE)).toBe(0);
  });
});
