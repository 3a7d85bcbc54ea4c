import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { deleteKeys, TestBroker } from './support/test-app.js';
import { TestRedisServer } from './support/redis.server.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { ServiceProcess } from './support/service.process.js';
import { TcpProxy } from './support/tcp.proxy.js';
import { waitFor } from './support/wait-for.js';

const CHILD = join(import.meta.dirname, 'support', 'shutdown-probe.child.js');
const QUEUE = 'shutdown-probe.jobs';
const SHARED_REDIS = 'redis://127.0.0.1:6379';

interface ProbeRecord {
  phase: 'start' | 'end';
  messageId: string;
  key: string;
  pid: number;
}

async function httpStatus(service: ServiceProcess, path: string): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${service.httpPort}${path}`)).status;
  } catch {
    return 0;
  }
}

describe('graceful shutdown (the service as a process, real RabbitMQ and Redis)', () => {
  const run = randomBytes(4).toString('hex');
  const services: ServiceProcess[] = [];
  let vhost: TestVhost;
  let broker: TestBroker;
  let redis: Redis;
  let test = 0;
  let list = '';

  /** Starts the probe service; resolves once it is ready. */
  async function start(env: Record<string, string> = {}): Promise<ServiceProcess> {
    const service = ServiceProcess.start(
      {
        AMQP_URL: vhost.url(),
        REDIS_URL: SHARED_REDIS,
        HTTP_PORT: '0',
        LOG_LEVEL: 'info',
        AMQP_PREFETCH: '20',
        SHUTDOWN_TIMEOUT_MS: '10000',
        PROBE_LIST: list,
        ...env,
      },
      CHILD,
    );
    services.push(service);
    await waitFor(
      'the probe service to be ready',
      async () => {
        if (service.child.exitCode !== null) throw new Error(`exited:\n${service.stderr}`);
        return (
          service.httpPort !== undefined && (await httpStatus(service, '/health/ready')) === 200
        );
      },
      30_000,
    );
    return service;
  }

  async function records(): Promise<ProbeRecord[]> {
    return (await redis.lrange(list, 0, -1)).map((r) => JSON.parse(r) as ProbeRecord);
  }

  async function publish(count: number, keys: number): Promise<string[]> {
    const ids = Array.from({ length: count }, (_, i) => `${run}-t${test}-m${i}`);
    ids.forEach((messageId, i) => {
      const body = JSON.stringify({ key: `${run}-t${test}-k${i % keys}` });
      broker.channel.publish('shutdown-probe', 'probe.run', Buffer.from(body), {
        persistent: true,
        contentType: 'application/json',
        messageId,
      });
    });
    await broker.channel.waitForConfirms();
    return ids;
  }

  /** Sends SIGTERM and resolves with the exit code and how long the process took to exit. */
  async function terminate(service: ServiceProcess): Promise<{ code: number | null; ms: number }> {
    const t0 = performance.now();
    service.kill('SIGTERM');
    const code = await service.exitCode(30_000);
    return { code, ms: performance.now() - t0 };
  }

  const lockKeys = (): Promise<string[]> => redis.keys(`mp:lock:probe:${run}-t${test}-*`);

  beforeAll(async () => {
    vhost = await TestVhost.create('shutdown');
    broker = await TestBroker.connect(vhost.url());
    redis = new Redis(SHARED_REDIS);
  });

  beforeEach(() => {
    test++;
    list = `shutdown-e2e:${run}:${test}`;
  });

  afterAll(async () => {
    for (const service of services) service.kill('SIGKILL');
    await Promise.all(services.map((s) => s.exitCode(10_000).catch(() => undefined)));
    await broker?.close();
    await deleteKeys(redis, [
      `shutdown-e2e:${run}:*`,
      `mp:lock:probe:${run}-*`,
      `mp:fence:probe:${run}-*`,
      `mp:processed:${QUEUE}:${run}-*`,
    ]);
    redis?.disconnect();
    await vhost?.delete();
  });

  it('drains 20 in-flight messages, hands the rest back, exits 0; a second instance finishes the rest once', async () => {
    const first = await start({ PROBE_DELAY_MS: '200' });
    // 15 keys: 15 runs start at once, the others of the 20 prefetched wait for their key's lock
    const ids = await publish(40, 15);
    await waitFor('10 runs under way', async () => (await records()).length >= 10);

    const signalled = performance.now();
    first.kill('SIGTERM');
    await waitFor(
      'readiness 503',
      async () => (await httpStatus(first, '/health/ready')) === 503,
      1_000,
      10,
    );
    const notReadyAfterMs = performance.now() - signalled;
    const code = await first.exitCode(15_000);
    expect(code).toBe(0);
    expect(notReadyAfterMs).toBeLessThan(1_000);
    expect(first.stdout).toContain('Shutdown complete');
    expect(await lockKeys()).toEqual([]);
    const byFirst = await records();
    // every run the first instance started, it finished: nothing cut off mid-way
    const started = byFirst.filter((r) => r.phase === 'start').map((r) => r.messageId);
    const ended = byFirst.filter((r) => r.phase === 'end').map((r) => r.messageId);
    expect(ended.sort()).toEqual(started.sort());
    expect(ended.length).toBeGreaterThanOrEqual(15);
    expect(ended.length).toBeLessThan(ids.length);

    const second = await start({ PROBE_DELAY_MS: '10' });
    await waitFor(
      `${ids.length} finished runs`,
      async () => (await records()).filter((r) => r.phase === 'end').length >= ids.length,
    );
    await waitFor('the queue to drain', async () => (await broker.depth(QUEUE)) === 0);
    const ends = (await records()).filter((r) => r.phase === 'end').map((r) => r.messageId);
    expect(ends.sort()).toEqual([...ids].sort());
    // /metrics of the second instance: what it settled is what it ran
    const metrics = await (await fetch(`http://127.0.0.1:${second.httpPort}/metrics`)).text();
    const acks = Number(
      /messages_processed_total\{queue="shutdown-probe\.jobs",handler="ShutdownProbe\.handle",outcome="ack"\} (\d+)/.exec(
        metrics,
      )?.[1] ?? 0,
    );
    expect(acks).toBe(ids.length - ended.length);
    expect(await terminate(second)).toMatchObject({ code: 0 });
    expect(await broker.depth(`${QUEUE}.dlq`)).toBe(0);
  });

  it('exits within the deadline + 1 s when a handler hangs, and the message is processed once later', async () => {
    const deadlineMs = 2_000;
    const first = await start({ PROBE_HANG: '1', SHUTDOWN_TIMEOUT_MS: String(deadlineMs) });
    const [id] = await publish(1, 1);
    await waitFor('the run to start', async () => (await records()).length === 1);
    const { code, ms } = await terminate(first);
    expect(code).toBe(1);
    expect(ms).toBeLessThan(deadlineMs + 1_000);
    expect(first.stdout).toContain('SHUTDOWN_FORCED');
    expect(await lockKeys()).toEqual([]);

    const second = await start();
    await waitFor('the message to be processed', async () =>
      (await records()).some((r) => r.phase === 'end'),
    );
    await waitFor('the queue to drain', async () => (await broker.depth(QUEUE)) === 0);
    const ends = (await records()).filter((r) => r.phase === 'end');
    expect(ends.map((r) => [r.messageId, r.pid])).toEqual([[id, second.child.pid]]);
    expect((await terminate(second)).code).toBe(0);
  });

  it('exits within the deadline when the broker is gone, and loses nothing it had taken', async () => {
    const deadlineMs = 3_000;
    const proxy = await TcpProxy.start(5672);
    const first = await start({
      AMQP_URL: vhost.url(proxy.port),
      SHUTDOWN_TIMEOUT_MS: String(deadlineMs),
      PROBE_DELAY_MS: '1000',
      AMQP_HEARTBEAT_S: '1',
    });
    const [id] = await publish(1, 1);
    await waitFor('the run to start', async () => (await records()).length === 1);
    await proxy.cut();
    await waitFor(
      'readiness 503 with the broker gone',
      async () => (await httpStatus(first, '/health/ready')) === 503,
    );
    const { code, ms } = await terminate(first);
    expect(ms).toBeLessThan(deadlineMs);
    expect(code).toBe(0);

    // its ack never reached the broker: the message comes back, and deduplication absorbs it
    const second = await start();
    await waitFor('the queue to drain', async () => (await broker.depth(QUEUE)) === 0);
    const ends = (await records()).filter((r) => r.phase === 'end');
    expect(ends.map((r) => r.messageId)).toEqual([id]);
    expect((await terminate(second)).code).toBe(0);
  });

  it('exits within the deadline when Redis is gone', async () => {
    const deadlineMs = 3_000;
    const ownRedis = await TestRedisServer.start();
    const first = await start({ REDIS_URL: ownRedis.url, SHUTDOWN_TIMEOUT_MS: String(deadlineMs) });
    await ownRedis.stop();
    await waitFor(
      'readiness 503 with Redis gone',
      async () => (await httpStatus(first, '/health/ready')) === 503,
    );
    const { code, ms } = await terminate(first);
    expect(ms).toBeLessThan(deadlineMs);
    expect(code).toBe(0);
  });

  it('re-declares and re-attaches a queue deleted under its consumer, and is ready again', async () => {
    const service = await start({ PROBE_DELAY_MS: '10' });
    await broker.channel.deleteQueue(QUEUE);
    await waitFor(
      'readiness 503 with the consumer cancelled',
      async () => (await httpStatus(service, '/health/ready')) === 503,
    );
    await waitFor(
      'readiness 200 again',
      async () => (await httpStatus(service, '/health/ready')) === 200,
      15_000,
    );
    const [id] = await publish(1, 1);
    await waitFor('the message to be processed', async () =>
      (await records()).some((r) => r.phase === 'end' && r.messageId === id),
    );
    expect((await terminate(service)).code).toBe(0);
  });
});
