import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Redis } from 'ioredis';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { INestApplication } from '@nestjs/common';
import {
  PROBE_EXCHANGE,
  PROBE_QUEUE,
  PROBE_RETRY,
  type ProbeAttempt,
  type ProbeJob,
  RetryProbe,
  RetryProbeModule,
} from './support/retry-probe.handler.js';
import { HAND_BACK_DELAY_MS } from '../../src/messaging/messaging.constants.js';
import {
  metricValue,
  startApp,
  TestBroker,
  waitUntilReady,
  deleteKeys,
} from './support/test-app.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { waitFor } from './support/wait-for.js';

const run = promisify(execFile);
const DLQ = `${PROBE_QUEUE}.dlq`;
/** The schedule: min(max, initial × 2^(n−1)) after failed attempt n. */
const schedule = (attempt: number): number =>
  Math.min(PROBE_RETRY.maxDelayMs, PROBE_RETRY.initialDelayMs * 2 ** (attempt - 1));

describe('delayed retries (real broker delay tiers)', () => {
  let vhost: TestVhost;
  let app: INestApplication;
  let broker: TestBroker;
  let probe: RetryProbe;

  const publish = async (job: ProbeJob, messageId = randomUUID()): Promise<string> => {
    await broker.publish(PROBE_EXCHANGE, 'job.run', JSON.stringify(job), {
      contentType: 'application/json',
      messageId,
    });
    return messageId;
  };
  const attemptsOf = (id: string): ProbeAttempt[] => probe.attempts.get(id) ?? [];
  const succeeded = (id: string): boolean => attemptsOf(id).some((a) => a.succeeded);
  const outcome = (name: string): Promise<number> =>
    metricValue('messages_processed_total', { queue: PROBE_QUEUE, outcome: name });

  beforeAll(async () => {
    vhost = await TestVhost.create('retries');
    app = await startApp({ AMQP_URL: vhost.url() }, [RetryProbeModule]);
    await waitUntilReady(app);
    probe = app.get(RetryProbe);
    broker = await TestBroker.connect(vhost.url());
  });

  afterAll(async () => {
    await broker?.close();
    await app?.close();
    await vhost?.delete();
    // the markers and lock fences its messages left (queue names are this file's own)
    const redis = new Redis('redis://127.0.0.1:6379');
    await deleteKeys(redis, [
      'mp:processed:retry-test.jobs:*',
      'mp:fence:msg:retry-test.jobs:*',
      'mp:lock:msg:retry-test.jobs:*',
    ]);
    redis.disconnect();
  });

  it('declares one delay queue per distinct delay of the schedule', async () => {
    for (const tier of [1, 2, 3]) {
      await expect(
        broker.channel.checkQueue(`${PROBE_QUEUE}.retry.${tier}`),
      ).resolves.toBeDefined();
    }
  });

  it.each([1, 2, 3])(
    'retries a handler that fails %i time(s) and succeeds next, with gaps on schedule (±20 %%)',
    async (k) => {
      const retried = await outcome('retry');
      const id = await publish({ failTimes: k });
      await waitFor(`success after ${k} failures`, () => succeeded(id), 15_000);
      const seen = attemptsOf(id);
      expect(seen.map((a) => a.attempt)).toEqual(Array.from({ length: k + 1 }, (_, i) => i + 1));
      for (let n = 1; n <= k; n++) {
        const gap = seen[n].at - seen[n - 1].at;
        expect(gap).toBeGreaterThanOrEqual(schedule(n) * 0.8);
        expect(gap).toBeLessThanOrEqual(schedule(n) * 1.2);
      }
      expect(await outcome('retry')).toBe(retried + k);
    },
  );

  it('dead-letters an always-failing message after exactly maxAttempts, with every header', async () => {
    const dead = await outcome('dead_letter');
    const id = await publish({ mode: 'always' });
    const [message] = await broker.drain(DLQ, 1, 15_000);
    expect(message.properties.messageId).toBe(id);
    expect(attemptsOf(id).map((a) => a.attempt)).toEqual([1, 2, 3, 4]);
    const h = message.properties.headers ?? {};
    expect(h['x-attempts']).toBe(PROBE_RETRY.maxAttempts);
    expect(h['x-exception-type']).toBe('Error');
    expect(h['x-exception-message']).toBe('downstream keeps failing');
    expect(String(h['x-exception-stacktrace'])).toContain('RetryProbe');
    expect(h['x-original-exchange']).toBe(PROBE_EXCHANGE);
    expect(h['x-original-routing-key']).toBe('job.run');
    expect(h['x-handler']).toBe('RetryProbe.handle');
    const first = Date.parse(String(h['x-first-failed-at']));
    const last = Date.parse(String(h['x-last-failed-at']));
    expect(last - first).toBeGreaterThanOrEqual(schedule(1) + schedule(2) + schedule(3) - 500);
    expect(Date.parse(String(h['x-failed-at']))).toBe(last);
    expect(await outcome('dead_letter')).toBe(dead + 1);
  });

  it('dead-letters a NonRetryableError after one attempt', async () => {
    const id = await publish({ mode: 'non-retryable' });
    const [message] = await broker.drain(DLQ, 1);
    expect(message.properties.messageId).toBe(id);
    expect(message.properties.headers?.['x-exception-type']).toBe('NonRetryableError');
    expect(message.properties.headers?.['x-attempts']).toBe(1);
    expect(attemptsOf(id)).toHaveLength(1);
  });

  it('waits at least the delay a RetryAfterError asks for', async () => {
    const id = await publish({ mode: 'retry-after', retryAfterMs: 500 });
    await waitFor('success after RetryAfterError', () => succeeded(id));
    const [first, second] = attemptsOf(id);
    expect(second.at - first.at).toBeGreaterThanOrEqual(500);
  });

  it('parks a message whose dependency is down, without spending an attempt', async () => {
    const [retried, handedBack] = [await outcome('retry'), await outcome('requeue')];
    const id = await publish({ mode: 'outage-once' });
    await waitFor('success after the outage', () => succeeded(id));
    const [first, second] = attemptsOf(id);
    expect([first.attempt, second.attempt]).toEqual([1, 1]);
    expect(second.at - first.at).toBeGreaterThanOrEqual(HAND_BACK_DELAY_MS * 0.8);
    expect(await outcome('retry')).toBe(retried);
    expect(await outcome('requeue')).toBe(handedBack + 1);
  });

  it('keeps other messages flowing while one waits in a delay tier (prefetch 1)', async () => {
    const slow = await publish({ failTimes: 1 });
    const fast = await publish({});
    await waitFor('both processed', () => succeeded(slow) && succeeded(fast));
    const fastDone = attemptsOf(fast)[0].at;
    const slowRetry = attemptsOf(slow)[1].at;
    // the waiting message holds no prefetch slot: the next one ran before its retry
    expect(fastDone).toBeLessThan(slowRetry);
  });

  it('replays a dead letter with its attempts reset and the original messageId', async () => {
    probe.fixed = false;
    const id = await publish({ mode: 'until-fixed' });
    await waitFor('dead-lettered', async () => (await broker.depth(DLQ)) === 1, 15_000);
    probe.fixed = true;
    const cli = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'dlq-replay.cli.js');
    const { stdout } = await run(process.execPath, [
      cli,
      '--queue',
      PROBE_QUEUE,
      '--url',
      vhost.url(),
    ]);
    expect(stdout).toContain('moved 1');
    await waitFor('replayed message processed', () => succeeded(id));
    const last = attemptsOf(id).at(-1);
    expect(last).toMatchObject({ attempt: 1, succeeded: true });
    expect(await broker.depth(DLQ)).toBe(0);
  });
});
