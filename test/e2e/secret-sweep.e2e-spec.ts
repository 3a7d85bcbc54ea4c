import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { describeMessage, enc, sentinel, sweep } from './support/secret-sweep.js';
import { freePort, TestRedisServer } from './support/redis.server.js';
import { ServiceProcess } from './support/service.process.js';
import { TestBroker } from './support/test-app.js';
import { waitFor } from './support/wait-for.js';

/**
 * Issue 5: no secret ever reaches a log, a metric, a health body or a header. The real service
 * (`node dist/main.js`) runs with sentinel passwords in AMQP_URL, REDIS_URL and REDIS_LOCK_URLS,
 * on error paths and on the happy path, and every output it produces is swept for them.
 */

const run = promisify(execFile);

async function rabbitmqctl(...args: string[]): Promise<void> {
  await run('rabbitmqctl', ['-q', ...args], { timeout: 30_000 });
}

type LogLine = Record<string, unknown>;

const isLogLine = (value: unknown): value is LogLine => value !== null && typeof value === 'object';

function logLines(text: string): LogLine[] {
  return text.split('\n').flatMap((line) => {
    try {
      const value: unknown = JSON.parse(line);
      return isLogLine(value) ? [value] : [];
    } catch {
      return [];
    }
  });
}

interface HttpAnswer {
  readonly status: number;
  readonly body: string;
  readonly headers: string;
}

interface ReadyBody {
  readonly status: string;
  readonly details?: Record<
    string,
    { readonly status: string; readonly connected?: boolean } | undefined
  >;
}

const STOP_GRACE_MS = 5_000;

/** One `node dist/main.js` with an ephemeral HTTP port, read back from its `HTTP on port` log. */
class Service {
  private port = 0;

  private constructor(readonly process: ServiceProcess) {}

  static async start(env: Record<string, string>, all: Service[]): Promise<Service> {
    const service = new Service(
      ServiceProcess.start({
        HTTP_PORT: '0',
        // the most verbose level: a secret must not reach even a debug line
        LOG_LEVEL: 'debug',
        SHUTDOWN_TIMEOUT_MS: '2000',
        ...env,
      }),
    );
    all.push(service);
    service.port = await waitFor('the service to log its HTTP port', () => {
      if (service.process.child.exitCode !== null) {
        throw new Error(
          `service exited ${service.process.child.exitCode}: ${service.process.stderr}`,
        );
      }
      const port = logLines(service.process.stdout)
        .map((l) =>
          typeof l.msg === 'string' ? /^HTTP on port (\d+)/.exec(l.msg)?.[1] : undefined,
        )
        .find((p) => p !== undefined);
      return port === undefined ? undefined : Number(port);
    });
    return service;
  }

  get stdout(): string {
    return this.process.stdout;
  }

  /** Waits until the service logged a line with this `code`. */
  async logged(code: string, timeoutMs = 15_000): Promise<LogLine> {
    return waitFor(
      `a log line with code ${code}`,
      () => logLines(this.stdout).find((l) => l.code === code),
      timeoutMs,
    );
  }

  async get(path: string): Promise<HttpAnswer> {
    const res = await fetch(`http://127.0.0.1:${this.port}${path}`);
    const headers = [...res.headers].map(([name, value]) => `${name}: ${value}`).join('\n');
    return { status: res.status, body: await res.text(), headers };
  }

  /** Polls readiness until `accept` takes it. */
  async readiness(
    description: string,
    accept: (status: number, body: ReadyBody) => boolean,
  ): Promise<HttpAnswer> {
    return waitFor(`readiness: ${description}`, async () => {
      const answer = await this.get('/health/ready');
      return accept(answer.status, JSON.parse(answer.body) as ReadyBody) ? answer : undefined;
    });
  }

  /** SIGTERM, then SIGKILL if it has not exited within a bound. Safe to call twice. */
  async stop(): Promise<void> {
    const { child } = this.process;
    if (child.exitCode !== null || child.signalCode !== null) return;
    this.process.kill('SIGTERM');
    try {
      await this.process.exitCode(STOP_GRACE_MS);
    } catch {
      this.process.kill('SIGKILL');
      await this.process.exitCode(STOP_GRACE_MS).catch(() => undefined);
    }
  }

  /**
   * Stops the service (so its shutdown logs are swept too) and returns every output it produced:
   * stdout, stderr, the liveness, readiness and metrics bodies with their headers, plus `extra`.
   */
  async outputs(extra: Record<string, string> = {}): Promise<Record<string, string>> {
    const http: Record<string, string> = {};
    for (const path of ['/health/live', '/health/ready', '/metrics']) {
      const answer = await this.get(path);
      http[`${path} body`] = answer.body;
      http[`${path} headers`] = answer.headers;
    }
    await this.stop();
    return { ...http, ...extra, stdout: this.stdout, stderr: this.process.stderr };
  }
}

const deadUrl = async (password: string): Promise<string> =>
  `redis://:${enc(password)}@127.0.0.1:${await freePort()}`;

describe('no secret reaches a log, a metric, a health body or a header (the service as a process)', () => {
  const services: Service[] = [];
  const user = `sweep-${randomBytes(4).toString('hex')}`;
  /** The RabbitMQ user's real password, and the Redis password of the happy path. */
  const realPassword = sentinel(true);
  let userCreated = false;
  let vhost: TestVhost | undefined;
  let redis: TestRedisServer | undefined;
  let guestUrl = '';

  beforeAll(async () => {
    [vhost, redis] = await Promise.all([
      TestVhost.create('secrets'),
      TestRedisServer.start(),
      rabbitmqctl('add_user', user, realPassword).then(() => (userCreated = true)),
    ]);
    await rabbitmqctl('set_permissions', '-p', vhost.name, user, '.*', '.*', '.*');
    guestUrl = vhost.url();
  });

  afterAll(async () => {
    await Promise.allSettled(services.map((s) => s.stop()));
    await Promise.allSettled([
      userCreated ? rabbitmqctl('delete_user', user) : undefined,
      vhost?.delete(),
      redis?.stop(),
    ]);
  });

  /** The broker URL of the test's user on its vhost, with `password`. */
  const userUrl = (password: string, port = 5672): string =>
    `amqp://${user}:${enc(password)}@127.0.0.1:${port}/${enc(vhost?.name ?? '')}`;

  it('wrong AMQP password: the connect failure is logged and readiness is 503, without the password', async () => {
    const wrong = sentinel();
    const service = await Service.start(
      { AMQP_URL: userUrl(wrong), REDIS_URL: redis?.url ?? '' },
      services,
    );
    await service.logged('AMQP_CONNECT_FAILED');
    await service.readiness('503, amqp down', (status, body) => {
      return status === 503 && body.details?.amqp?.status === 'down';
    });
    expect(sweep(await service.outputs(), [wrong], [user])).toEqual([]);
  });

  it('broker down at boot: the connect failure is logged, without the password', async () => {
    const password = sentinel(true);
    const service = await Service.start(
      { AMQP_URL: userUrl(password, await freePort()), REDIS_URL: redis?.url ?? '' },
      services,
    );
    await service.logged('AMQP_CONNECT_FAILED');
    await service.readiness('503, amqp down', (status, body) => {
      return status === 503 && body.details?.amqp?.status === 'down';
    });
    expect(sweep(await service.outputs(), [password], [user])).toEqual([]);
  });

  it('Redis down: the Redis error is logged and readiness is 503, without the password', async () => {
    const password = sentinel();
    const service = await Service.start(
      { AMQP_URL: guestUrl, REDIS_URL: await deadUrl(password) },
      services,
    );
    await service.logged('REDIS_ERROR');
    await service.readiness('503, redis down', (status, body) => {
      return status === 503 && body.details?.redis?.status === 'down';
    });
    expect(sweep(await service.outputs(), [password], [])).toEqual([]);
  });

  describe('with a Redis that requires a password', () => {
    let guarded: TestRedisServer | undefined;
    const real = sentinel(true);

    beforeAll(async () => {
      guarded = await TestRedisServer.start(['--requirepass', real]);
    });

    afterAll(async () => {
      await guarded?.stop();
    });

    it('wrong Redis password: the Redis error is logged and readiness is 503, without either password', async () => {
      const wrong = sentinel(true);
      const service = await Service.start(
        {
          AMQP_URL: guestUrl,
          REDIS_URL: `redis://:${enc(wrong)}@127.0.0.1:${guarded?.port ?? 0}`,
        },
        services,
      );
      const error = await service.logged('REDIS_ERROR');
      expect(JSON.stringify(error)).toMatch(/WRONGPASS|NOAUTH|invalid password/i);
      await service.readiness('503, redis down', (status, body) => {
        return status === 503 && body.details?.redis?.status === 'down';
      });
      expect(sweep(await service.outputs(), [wrong, real], [])).toEqual([]);
    });

    it('wrong Redlock passwords: the lock server errors are logged and locks are down, without any password', async () => {
      const wrong = [sentinel(), sentinel(true), sentinel()];
      const service = await Service.start(
        {
          AMQP_URL: guestUrl,
          REDIS_URL: redis?.url ?? '',
          REDIS_LOCK_URLS: wrong
            .map((pw) => `redis://:${enc(pw)}@127.0.0.1:${guarded?.port ?? 0}`)
            .join(','),
        },
        services,
      );
      await service.logged('LOCK_SERVER_ERROR');
      await service.readiness('503, locks down', (status, body) => {
        return status === 503 && body.details?.locks?.status === 'down';
      });
      expect(sweep(await service.outputs(), [...wrong, real], [])).toEqual([]);
    });
  });

  it('Redlock servers down: readiness reports locks down, without their passwords', async () => {
    const passwords = [sentinel(), sentinel(true), sentinel()];
    const service = await Service.start(
      {
        AMQP_URL: guestUrl,
        REDIS_URL: redis?.url ?? '',
        REDIS_LOCK_URLS: (await Promise.all(passwords.map(deadUrl))).join(','),
      },
      services,
    );
    await service.logged('LOCK_SERVER_ERROR');
    // the broker and Redis are up; consumers stay paused while there is no lock quorum
    const ready = await service.readiness(
      '503, locks down, broker and Redis up',
      (status, body) => {
        const details = body.details ?? {};
        return (
          status === 503 &&
          details.locks?.status === 'down' &&
          details.amqp?.connected === true &&
          details.redis?.status === 'up'
        );
      },
    );
    expect(ready.body).toContain('no quorum');
    expect(sweep(await service.outputs(), passwords, [])).toEqual([]);
  });

  describe('happy path: the right sentinel credentials', () => {
    let guarded: TestRedisServer | undefined;
    let broker: TestBroker | undefined;

    beforeAll(async () => {
      guarded = await TestRedisServer.start(['--requirepass', realPassword]);
      broker = await TestBroker.connect(guestUrl);
    });

    afterAll(async () => {
      await broker?.close();
      await guarded?.stop();
    });

    it('dead-letters a malformed message with no secret in its headers or body, nor anywhere else', async () => {
      const service = await Service.start(
        {
          AMQP_URL: userUrl(realPassword),
          REDIS_URL: `redis://:${enc(realPassword)}@127.0.0.1:${guarded?.port ?? 0}`,
        },
        services,
      );
      await service.readiness('200', (status) => status === 200);
      const messageId = randomUUID();
      await broker?.publish('ledger', 'transaction.created', 'not json', {
        contentType: 'application/json',
        messageId,
      });
      const [dead] = (await broker?.drain('ledger.transactions.dlq', 1)) ?? [];
      expect(dead?.properties.messageId).toBe(messageId);
      const outputs = await service.outputs({
        'dead-lettered message properties and headers': dead ? describeMessage(dead) : '',
        'dead-lettered message body': dead?.content.toString('utf8') ?? '',
      });
      expect(sweep(outputs, [realPassword], [user])).toEqual([]);
    });
  });
});
