import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { TestBroker } from './support/test-app.js';
import { waitFor } from './support/wait-for.js';

const execFileAsync = promisify(execFile);

/** Runs a command; a failure says what it printed. */
async function run(
  file: string,
  args: readonly string[],
  options: { cwd: string; maxBuffer?: number },
): Promise<{ stdout: string }> {
  try {
    return await execFileAsync(file, args, options);
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`${file} ${args.join(' ')} failed:\n${stdout ?? ''}${stderr ?? ''}`, {
      cause: error,
    });
  }
}
const ROOT = resolve(import.meta.dirname, '../..');
const EXAMPLE = join(ROOT, 'examples/consumer-app');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** What `npm pack --json` says of the tarball. */
interface PackResult {
  readonly filename: string;
  readonly size: number;
  readonly unpackedSize: number;
  readonly entryCount: number;
  readonly files: readonly { readonly path: string }[];
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/**
 * The package as a user gets it: `npm pack` of this repository installed into
 * examples/consumer-app (a Nest application written from the README, outside `src/`), built with
 * its own TypeScript, run against the local RabbitMQ and Redis.
 */
describe('the packed package in a Nest application of its own (npm pack, install, run)', () => {
  let work: string;
  let pack: PackResult;
  let vhost: TestVhost;
  let broker: TestBroker;
  let app: ChildProcess | undefined;
  let output = '';
  let base = '';
  const runId = randomBytes(4).toString('hex');

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'mp-consumer-app-'));
    const { stdout } = await run(NPM, ['pack', '--json', '--pack-destination', work], {
      cwd: ROOT,
      maxBuffer: 16 * 1024 * 1024,
    });
    [pack] = JSON.parse(stdout) as PackResult[];
    const appDir = join(work, 'app');
    await cp(EXAMPLE, appDir, {
      recursive: true,
      filter: (source) => !/[/\\](node_modules|dist)([/\\]|$)/.test(source.slice(EXAMPLE.length)),
    });
    // what a user runs: install the package (here the tarball) into the app, build, start
    await run(
      NPM,
      ['install', '--no-audit', '--no-fund', '--prefer-offline', join(work, pack.filename)],
      { cwd: appDir, maxBuffer: 16 * 1024 * 1024 },
    );
    await run(NPM, ['run', 'build'], { cwd: appDir });
    vhost = await TestVhost.create('package');
    broker = await TestBroker.connect(vhost.url());
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    app = spawn(process.execPath, ['dist/main.js'], {
      cwd: appDir,
      env: {
        PATH: process.env.PATH ?? '',
        AMQP_URL: vhost.url(),
        REDIS_URL: 'redis://127.0.0.1:6379',
        PORT: String(port),
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    app.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    app.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(
      'the consumer app ready',
      async () => {
        if (app?.exitCode !== null || app.signalCode !== null) {
          throw new Error(`the app exited:\n${output}`);
        }
        return (await fetch(`${base}/health`).catch(() => undefined))?.status === 200;
      },
      30_000,
    );
  }, 240_000);

  afterAll(async () => {
    if (app && app.exitCode === null && app.signalCode === null) {
      app.kill('SIGKILL');
      await once(app, 'exit');
    }
    await broker?.close();
    await vhost?.delete();
    const redis = new Redis('redis://127.0.0.1:6379');
    const keys = await redis.keys(`*${runId}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('ships the library and its declarations, and no tests, benchmarks or source maps', () => {
    const paths = pack.files.map((f) => f.path);
    expect(paths).toContain('dist/index.js');
    expect(paths).toContain('dist/index.d.ts');
    expect(paths.filter((p) => p.endsWith('.lua')).length).toBeGreaterThan(0);
    expect(paths.filter((p) => /^(test|bench|src|examples|reports)\//.test(p))).toEqual([]);
    expect(paths.filter((p) => p.endsWith('.map') || p.endsWith('.tsbuildinfo'))).toEqual([]);
    process.stdout.write(
      `packed ${pack.filename}: ${pack.entryCount} files, ${pack.size} bytes (${pack.unpackedSize} unpacked)\n`,
    );
  });

  it("runs the app's handler once per message, absorbs a redelivered copy, dead-letters a poison message", async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `order-${runId}-${i}`);
    for (const [i, id] of ids.entries()) {
      await broker.publish(
        'shop',
        'order.created',
        JSON.stringify({ orderId: `o-${i}`, quantity: i + 1 }),
        {
          messageId: id,
          contentType: 'application/json',
        },
      );
    }
    // the same message again (a producer's retry): a duplicate, not a second effect
    await broker.publish('shop', 'order.created', JSON.stringify({ orderId: 'o-0', quantity: 1 }), {
      messageId: ids[0],
      contentType: 'application/json',
    });
    const poison = `poison-${runId}`;
    await broker.publish('shop', 'order.created', JSON.stringify({ orderId: 7, quantity: 0 }), {
      messageId: poison,
      contentType: 'application/json',
    });
    const dead = await broker.drain('shop.orders.dlq', 1, 30_000);
    expect(dead.map((m) => m.properties.messageId as string)).toEqual([poison]);
    const handled = await waitFor('every order handled', async () => {
      const body = (await (await fetch(`${base}/orders`)).json()) as Record<
        string,
        { times: number }
      >;
      return ids.every((id) => body[id] !== undefined) ? body : undefined;
    });
    await waitFor('the redelivered copy settled as a duplicate', async () =>
      /messages_processed_total\{[^}]*queue="shop.orders"[^}]*outcome="duplicate"[^}]*\} 1\b/.test(
        await (await fetch(`${base}/metrics`)).text(),
      ),
    );
    expect(Object.keys(handled).sort()).toEqual([...ids].sort());
    expect(Object.values(handled).map((e) => e.times)).toEqual(ids.map(() => 1));
  });

  it("shows the messaging checks in the app's health and its metrics on the app's /metrics", async () => {
    const health = (await (await fetch(`${base}/health`)).json()) as {
      status: string;
      details: Record<string, { status: string }>;
    };
    expect(health.status).toBe('ok');
    expect(Object.keys(health.details).sort()).toEqual(['amqp', 'locks', 'redis']);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(
      /messages_processed_total\{[^}]*queue="shop.orders"[^}]*outcome="ack"[^}]*\} 20\b/,
    );
    expect(metrics).toMatch(/messages_processed_total\{[^}]*outcome="dead_letter"[^}]*\} 1\b/);
    // the app's own default metrics, registered once
    expect(metrics.match(/^# HELP process_cpu_user_seconds_total /gm)).toHaveLength(1);
  });

  it("drains on SIGTERM through the app's shutdown hooks, logging through the app's Nest logger", async () => {
    const target = app as ChildProcess;
    target.kill('SIGTERM');
    const [code, signal] = (await once(target, 'exit')) as [number | null, NodeJS.Signals | null];
    // Nest's shutdown hooks close the app, then raise the signal again
    expect({ code, signal }).toEqual({ code: null, signal: 'SIGTERM' });
    // the package's lines went to Nest's console logger: context, message, fields as JSON
    expect(output).toMatch(
      /\[MessageConsumerService\] Starting 1 consumer\(s\) \{.*"queues":\["shop\.orders"\]/,
    );
    expect(output).toMatch(/\[MessageConsumerService\] Consumers drained/);
    expect(output).not.toContain('guest:guest');
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
      version: string;
    };
    expect(pack.filename).toBe(`message-processor-${pkg.version}.tgz`);
  });
});
