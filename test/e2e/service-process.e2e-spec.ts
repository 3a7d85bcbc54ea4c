import { describe, it, expect, afterAll } from 'vitest';
import { freePort } from './support/redis.server.js';
import { ServiceProcess } from './support/service.process.js';
import { waitFor } from './support/wait-for.js';

const SECRET = 'sentinel-pw-7f3a';

describe('the service as a process (node dist/main.js)', () => {
  const started: ServiceProcess[] = [];
  afterAll(() => started.forEach((p) => p.kill()));

  it('exits 1 naming every bad variable and what it accepts, without printing a password', async () => {
    const service = ServiceProcess.start({
      AMQP_URL: `amqp://user:${SECRET}@localhost:5672,http://user:${SECRET}@elsewhere`,
      AMQP_PREFETCH: '0',
      LOG_LEVEL: 'loud',
    });
    started.push(service);
    expect(await service.exitCode()).toBe(1);
    expect(service.stderr).toContain('AMQP_URL');
    expect(service.stderr).toContain('amqp:// or amqps://');
    expect(service.stderr).toContain('AMQP_PREFETCH="0": expected an integer from 1 to 65535');
    expect(service.stderr).toContain('LOG_LEVEL="loud": expected one of trace, debug, info');
    expect(service.stderr + service.stdout).not.toContain(SECRET);
  });

  it('starts with the broker unreachable, reports not-ready without secrets, and exits 0 on SIGTERM', async () => {
    const [httpPort, deadPort] = [await freePort(), await freePort()];
    const service = ServiceProcess.start({
      AMQP_URL: `amqp://guest:${SECRET}@127.0.0.1:${deadPort}`,
      REDIS_URL: `redis://:${SECRET}@127.0.0.1:6379`,
      HTTP_PORT: String(httpPort),
    });
    started.push(service);
    const base = `http://127.0.0.1:${httpPort}`;
    const ready = await waitFor('an HTTP answer on /health/ready', async () => {
      const res = await fetch(`${base}/health/ready`);
      return { status: res.status, body: await res.text() };
    });
    expect(ready.status).toBe(503);
    expect(ready.body).toContain('"amqp"');
    const live = await fetch(`${base}/health/live`);
    expect(live.status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('amqp_connected 0');
    await waitFor('a logged connect failure', () => service.stdout.includes('AMQP_CONNECT_FAILED'));

    service.kill('SIGTERM');
    expect(await service.exitCode()).toBe(0);
    for (const text of [ready.body, metrics, service.stdout, service.stderr]) {
      expect(text).not.toContain(SECRET);
    }
    expect(service.stdout).toContain('guest:***@127.0.0.1');
  });
});
