import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { type INestApplication, Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Registry } from 'prom-client';
import {
  type MessageContext,
  MessageHandler,
  MessageProcessorHealth,
  MessageProcessorModule,
} from '../../src/index.js';
import { MessageConsumerService } from '../../src/messaging/message-consumer.service.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { TestBroker } from './support/test-app.js';
import { waitFor } from './support/wait-for.js';

const tag = randomBytes(3).toString('hex');
const EXCHANGE = `kill-switch-${tag}`;
const QUEUE = `kill-switch-${tag}`;
const MESSAGES = 40;

/** A handler whose downstream is down until the test heals it. */
@Injectable()
class DownstreamProbe {
  broken = true;
  /** Attempts that failed, and messages applied (once each, by messageId). */
  failures = 0;
  readonly applied = new Map<string, number>();

  @MessageHandler({
    exchange: EXCHANGE,
    routingKey: 'work.#',
    queue: QUEUE,
    prefetch: 10,
    retry: { maxAttempts: 20, initialDelayMs: 100, maxDelayMs: 200, jitter: 0 },
    killSwitch: {
      thresholdPercent: 50,
      minAttempts: 8,
      windowMs: 10_000,
      restartMs: 700,
      trickle: 3,
    },
  })
  handle(_payload: unknown, ctx: MessageContext): void {
    if (this.broken) {
      this.failures++;
      throw new Error('downstream: 503 Service Unavailable');
    }
    const id = ctx.messageId ?? '';
    this.applied.set(id, (this.applied.get(id) ?? 0) + 1);
  }
}

/**
 * The kill switch against the real broker: a handler failing every attempt trips it (the consumer
 * detaches, messages wait in the queue, readiness stays up), it re-trips while the downstream is
 * still down, and once healed it trickles back and resumes; every message applied once, none
 * dead-lettered.
 */
describe('kill switch (real RabbitMQ and Redis)', () => {
  let vhost: TestVhost;
  let broker: TestBroker;
  let app: INestApplication;
  const registry = new Registry();
  const metric = async (name: string, labels: Record<string, string>): Promise<number> => {
    const values = (await registry.getSingleMetric(name)?.get())?.values ?? [];
    return (
      values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0
    );
  };
  const consumer = () =>
    app
      .get(MessageConsumerService)
      .status()
      .find((c) => c.queue === QUEUE);
  const ready = async (): Promise<boolean> => {
    const checks = await Promise.all(
      app
        .get(MessageProcessorHealth)
        .readiness()
        .map(async (check) => check()),
    );
    return checks.every((c) => Object.values(c)[0].status === 'up');
  };

  beforeAll(async () => {
    vhost = await TestVhost.create('killswitch');
    broker = await TestBroker.connect(vhost.url());
    const moduleRef = await Test.createTestingModule({
      imports: [
        MessageProcessorModule.forRoot({
          amqp: { urls: vhost.url() },
          redis: { url: 'redis://127.0.0.1:6379' },
          metrics: { registry },
          logLevel: 'silent',
        }),
      ],
      providers: [DownstreamProbe],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    await waitFor('the module ready', ready);
  });

  afterAll(async () => {
    await app?.close();
    await broker?.close();
    await vhost?.delete();
  });

  it('trips on a failing downstream, holds the messages, and recovers when it heals', async () => {
    const probe = app.get(DownstreamProbe);
    const ids = Array.from({ length: MESSAGES }, (_, i) => `ks-${tag}-${i}`);
    for (const id of ids) {
      await broker.publish(EXCHANGE, 'work.item', '{}', {
        messageId: id,
        contentType: 'application/json',
      });
    }
    await waitFor('the kill switch tripped', () => consumer()?.killSwitch?.state === 'open');
    expect(consumer()?.attached).toBe(false);
    expect(consumer()?.killSwitch?.reason).toMatch(
      /^kill switch: DownstreamProbe\.handle: \d+ of the last \d+ attempts failed within 10000 ms \(threshold 50 %\)$/,
    );
    expect(await metric('consumers_paused', { queue: QUEUE, reason: 'kill_switch' })).toBe(1);
    // detached on purpose: the replica stays ready, the messages wait in the queue
    expect(await ready()).toBe(true);
    const waiting = await broker.depth(QUEUE);
    expect(waiting).toBeGreaterThan(0);

    // still down when it tries one message at a time: it trips again
    await waitFor(
      'a second trip',
      async () => (await metric('kill_switch_trips_total', { queue: QUEUE })) >= 2,
    );
    const failuresBeforeHealing = probe.failures;
    probe.broken = false;
    await waitFor('every message applied', () => ids.every((id) => probe.applied.has(id)), 30_000);
    await waitFor('the switch closed', () => consumer()?.killSwitch === undefined);
    expect(consumer()?.attached).toBe(true);
    expect(await metric('consumers_paused', { queue: QUEUE, reason: 'kill_switch' })).toBe(0);
    // once each, none dead-lettered; far fewer failed attempts than messages × retries
    expect([...probe.applied.values()].every((n) => n === 1)).toBe(true);
    expect(await broker.depth(`${QUEUE}.dlq`)).toBe(0);
    expect(await metric('messages_processed_total', { queue: QUEUE, outcome: 'dead_letter' })).toBe(
      0,
    );
    expect(failuresBeforeHealing).toBeLessThan(MESSAGES);
  });
});
