import type { Server } from 'node:http';
import type { INestApplication, ModuleMetadata } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import amqplib, {
  type ChannelModel,
  type ConfirmChannel,
  type GetMessage,
  type Options,
} from 'amqplib';
import { Redis } from 'ioredis';
import { Logger } from 'nestjs-pino';
import { register } from 'prom-client';
import request from 'supertest';
import { AppModule } from '../../../src/app.module.js';
import { waitFor } from './wait-for.js';

/** Environment of a test app: quiet JSON logs, an ephemeral HTTP port, the given overrides. */
export function applyEnv(overrides: Record<string, string>): () => void {
  const saved = { ...process.env };
  Object.assign(process.env, {
    LOG_LEVEL: 'warn',
    LOG_FORMAT: 'json',
    HTTP_PORT: '0',
    REDIS_URL: 'redis://127.0.0.1:6379',
    ...overrides,
  });
  return () => {
    process.env = saved;
  };
}

/**
 * Boots the real AppModule (as main.ts does), plus any test modules with handlers of their own,
 * and returns it with its HTTP server listening.
 */
export async function startApp(
  env: Record<string, string>,
  extraImports: ModuleMetadata['imports'] = [],
): Promise<INestApplication> {
  const restore = applyEnv(env);
  try {
    const moduleRef = await Test.createTestingModule({
      imports: [AppModule, ...extraImports],
    }).compile();
    const app = moduleRef.createNestApplication({ bufferLogs: true });
    app.useLogger(app.get(Logger));
    await app.listen(0);
    return app;
  } finally {
    restore();
  }
}

/** supertest against the app's HTTP server. */
export function http(app: INestApplication): ReturnType<typeof request> {
  return request(app.getHttpServer() as Server);
}

/** The readiness body Terminus returns. */
export interface HealthBody {
  status: 'ok' | 'error' | 'shutting_down';
  details: Record<string, { status: 'up' | 'down'; [key: string]: unknown }>;
}

export async function readiness(
  app: INestApplication,
): Promise<{ status: number; body: HealthBody }> {
  const res = await http(app).get('/health/ready');
  return { status: res.status, body: res.body as HealthBody };
}

export async function waitUntilReady(app: INestApplication, timeoutMs = 20_000): Promise<void> {
  await waitFor('readiness 200', async () => (await readiness(app)).status === 200, timeoutMs);
}

/** A counter or gauge value from the process registry (0 when the series does not exist yet). */
export async function metricValue(
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = register.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  const match = values.find((v) =>
    Object.entries(labels).every(
      ([k, val]) => String((v.labels as Record<string, unknown>)[k]) === val,
    ),
  );
  return match?.value ?? 0;
}

/** A plain amqplib client for the test side: publishing raw messages and reading queues. */
export class TestBroker {
  private constructor(
    readonly connection: ChannelModel,
    readonly channel: ConfirmChannel,
  ) {}

  static async connect(url: string): Promise<TestBroker> {
    const connection = await amqplib.connect(url);
    const channel = await connection.createConfirmChannel();
    // a forced close (a test of reconnects) must not crash the test process
    connection.on('error', () => undefined);
    channel.on('error', () => undefined);
    return new TestBroker(connection, channel);
  }

  async publish(
    exchange: string,
    routingKey: string,
    body: Buffer | string,
    options: Options.Publish = {},
  ): Promise<void> {
    const content = typeof body === 'string' ? Buffer.from(body) : body;
    this.channel.publish(exchange, routingKey, content, { persistent: true, ...options });
    await this.channel.waitForConfirms();
  }

  async publishJson(
    routingKey: string,
    payload: unknown,
    options: Options.Publish = {},
  ): Promise<void> {
    await this.publish('ledger', routingKey, JSON.stringify(payload), {
      contentType: 'application/json',
      ...options,
    });
  }

  /** Takes every message currently in `queue` (acked), waiting until `count` have arrived. */
  async drain(queue: string, count: number, timeoutMs = 15_000): Promise<GetMessage[]> {
    const got: GetMessage[] = [];
    await waitFor(
      `${count} message(s) in ${queue}`,
      async () => {
        for (;;) {
          const message = await this.channel.get(queue, { noAck: true });
          if (message === false) break;
          got.push(message);
        }
        return got.length >= count ? got : undefined;
      },
      timeoutMs,
    );
    return got;
  }

  /** Consumers on `queue`, 0 while it does not exist (checked on a throw-away channel, since a
   * 404 closes the channel it happens on). */
  async consumerCount(queue: string): Promise<number> {
    const channel = await this.connection.createChannel();
    channel.on('error', () => undefined);
    try {
      return (await channel.checkQueue(queue)).consumerCount;
    } catch {
      return 0;
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  async depth(queue: string): Promise<number> {
    return (await this.channel.checkQueue(queue)).messageCount;
  }

  async close(): Promise<void> {
    try {
      await this.connection.close();
    } catch {
      // already closed by the broker
    }
  }
}

/** Deletes the Redis keys a test created (balances and processed markers). */
export async function deleteKeys(redis: Redis, patterns: readonly string[]): Promise<void> {
  for (const pattern of patterns) {
    const stream = redis.scanStream({ match: pattern, count: 500 });
    for await (const keys of stream as AsyncIterable<string[]>) {
      if (keys.length > 0) await redis.del(...keys);
    }
  }
}
