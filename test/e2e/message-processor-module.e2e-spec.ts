import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { type INestApplication, Injectable, type LoggerService, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Redis } from 'ioredis';
import { register, Registry } from 'prom-client';
import {
  ConfigValidationError,
  type MessageContext,
  MessageHandler,
  MessageProcessorHealth,
  MessageProcessorModule,
  messageProcessorRedisOptions,
} from '../../src/index.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { TestBroker } from './support/test-app.js';
import { waitFor } from './support/wait-for.js';

const QUEUE = `module-probe-${randomBytes(3).toString('hex')}`;

/** A handler of the application's own, found by the module among its providers. */
@Injectable()
class ModuleProbe {
  readonly runs = new Map<string, number>();

  @MessageHandler({ exchange: 'module-probe', routingKey: 'probe.run', queue: QUEUE })
  handle(_payload: unknown, ctx: MessageContext): void {
    const id = ctx.messageId ?? '';
    this.runs.set(id, (this.runs.get(id) ?? 0) + 1);
  }
}

/** A Nest logger of the application's own, which records what it gets. */
class RecordingLogger implements LoggerService {
  readonly lines: string[] = [];
  log(message: unknown, ...rest: unknown[]): void {
    this.lines.push(`${String(rest.at(-1))}: ${String(message)}`);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.log(message, ...rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.log(message, ...rest);
  }
}

/** The application's settings, as a ConfigService would give them. */
const SETTINGS = Symbol('settings');

/**
 * `MessageProcessorModule` in an application of its own, in this process: options (here through
 * `forRootAsync` from a provider of the app), the app's own ioredis client, Prometheus registry
 * and Nest logger (no nestjs-pino), the health checks for the app's controller.
 */
describe('MessageProcessorModule in an application (real RabbitMQ and Redis)', () => {
  let vhost: TestVhost;
  let broker: TestBroker;
  let client: Redis;
  let app: INestApplication;
  const logger = new RecordingLogger();
  /** The application's own Prometheus registry. */
  const registry = new Registry();
  const processed = async (outcome: string): Promise<number> => {
    const metric = registry.getSingleMetric('messages_processed_total');
    const { values } = (await metric?.get()) ?? { values: [] };
    return values.find((v) => v.labels.queue === QUEUE && v.labels.outcome === outcome)?.value ?? 0;
  };

  beforeAll(async () => {
    vhost = await TestVhost.create('module');
    broker = await TestBroker.connect(vhost.url());
    client = new Redis('redis://127.0.0.1:6379', messageProcessorRedisOptions('module-e2e'));
    @Module({
      providers: [{ provide: SETTINGS, useValue: { amqpUrl: vhost.url(), redis: client } }],
      exports: [SETTINGS],
    })
    class SettingsModule {}
    const moduleRef = await Test.createTestingModule({
      imports: [
        MessageProcessorModule.forRootAsync({
          imports: [SettingsModule],
          inject: [SETTINGS],
          useFactory: (settings: { amqpUrl: string; redis: Redis }) => ({
            amqp: { urls: settings.amqpUrl, prefetch: 10 },
            redis: { client: settings.redis },
            metrics: { registry },
          }),
        }),
      ],
      providers: [ModuleProbe],
    }).compile();
    app = moduleRef.createNestApplication({ logger });
    await app.init();
    const health = app.get(MessageProcessorHealth);
    await waitFor('the module ready (consumer attached, Redis and locks up)', async () => {
      const checks = await Promise.all(health.readiness().map(async (check) => check()));
      return checks.every((c) => Object.values(c)[0].status === 'up');
    });
  });

  afterAll(async () => {
    await app?.close();
    await broker?.close();
    await vhost?.delete();
    client?.disconnect();
  });

  it("runs the app's handler through the app's Redis client, once per messageId", async () => {
    const probe = app.get(ModuleProbe);
    const ids = [0, 1, 2].map((i) => `module-${randomBytes(4).toString('hex')}-${i}`);
    for (const id of [...ids, ids[0]]) {
      await broker.publish('module-probe', 'probe.run', '{}', {
        messageId: id,
        contentType: 'application/json',
      });
    }
    const health = app.get(MessageProcessorHealth);
    await waitFor('the three messages and the copy settled', async () => {
      if (!ids.every((id) => probe.runs.has(id))) return false;
      const [amqp] = await Promise.all(health.readiness().map(async (check) => check()));
      return JSON.stringify(amqp).includes('"attached":true');
    });
    // the copy found the marker written through the app's client
    expect(await client.exists(`mp:processed:${QUEUE}:${ids[0]}`)).toBe(1);
    // the four settle concurrently: the copy may be counted before the third original
    await waitFor(
      'the three acked and the copy settled as a duplicate',
      async () => (await processed('duplicate')) === 1 && (await processed('ack')) >= 3,
    );
    expect(ids.map((id) => probe.runs.get(id))).toEqual([1, 1, 1]);
    // on the app's registry only
    expect(await processed('ack')).toBe(3);
    expect(register.getSingleMetric('messages_processed_total')).toBeUndefined();
    await client.del(...ids.map((id) => `mp:processed:${QUEUE}:${id}`));
  });

  it("reports ready through MessageProcessorHealth, and logs through the app's Nest logger", async () => {
    const checks = await Promise.all(
      app
        .get(MessageProcessorHealth)
        .readiness()
        .map(async (check) => check()),
    );
    expect(checks.map((c) => Object.keys(c)[0])).toEqual(['amqp', 'redis', 'locks']);
    expect(checks.map((c) => Object.values(c)[0].status)).toEqual(['up', 'up', 'up']);
    expect(
      logger.lines.some((l) => l.startsWith('MessageConsumerService: Starting 1 consumer(s)')),
    ).toBe(true);
  });

  it("leaves the app's Redis client open when the module closes", async () => {
    await app.close();
    expect(client.status).toBe('ready');
    expect(await client.ping()).toBe('PONG');
  });

  it('fails the start naming each bad option', async () => {
    await expect(
      Test.createTestingModule({
        imports: [
          MessageProcessorModule.forRoot({
            amqp: { prefetch: 0 },
            lock: { ttlMs: 5 },
          }),
        ],
      }).compile(),
    ).rejects.toThrow(ConfigValidationError);
    await expect(
      Test.createTestingModule({
        imports: [MessageProcessorModule.forRoot({ amqp: { prefetch: 0 }, lock: { ttlMs: 5 } })],
      }).compile(),
    ).rejects.toThrow(
      /amqp\.prefetch="0".*\n.*lock\.ttlMs="5"|lock\.ttlMs="5".*\n.*amqp\.prefetch="0"/,
    );
  });
});
