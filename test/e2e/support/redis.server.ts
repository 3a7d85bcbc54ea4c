import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { waitFor } from './wait-for.js';

/** A free TCP port on loopback, chosen by the kernel. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * Runs `ask` on a short-lived client of the server on `port` (with `password`, if given): no
 * retry, no reconnect. False if the server does not answer or `ask` fails.
 */
export async function askRedis<T>(
  port: number,
  password: string | undefined,
  ask: (client: Redis) => Promise<T>,
): Promise<T | false> {
  const client = new Redis({
    port,
    host: '127.0.0.1',
    password,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    protocol: 2,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await ask(client);
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** Whether the replica on `port` has its link to its primary up and its first sync done. */
export async function replicaInSync(port: number, password: string): Promise<boolean> {
  const info = await askRedis(port, password, (c) => c.info('replication'));
  return (
    typeof info === 'string' &&
    info.includes('master_link_status:up') &&
    info.includes('master_sync_in_progress:0')
  );
}

/** The port chosen for a test server was taken by another process before the server bound it. */
class PortTakenError extends Error {
  override name = 'PortTakenError';
}

/** A Redis server of the test's own, on its own port, that the test may stop and restart. */
export class TestRedisServer {
  private process: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    /** Extra `redis-server` arguments, e.g. `['--requirepass', pw]`; kept across restarts. */
    private readonly extraArgs: readonly string[],
  ) {}

  /**
   * Starts a server on a free port. The port is free when chosen and taken when the server
   * binds, so another test process may take it in between: then the server that answers is not
   * this one, which `start` finds out, and a new port is tried.
   */
  static async start(extraArgs: readonly string[] = []): Promise<TestRedisServer> {
    for (let attempt = 1; ; attempt++) {
      const server = new TestRedisServer(await freePort(), extraArgs);
      try {
        await server.start();
        return server;
      } catch (error) {
        if (!(error instanceof PortTakenError) || attempt >= 3) throw error;
      }
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.process = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        ...this.extraArgs,
      ],
      { stdio: 'ignore' },
    );
    try {
      await waitFor(`redis-server on ${this.port}`, async () => {
        const client = new Redis(this.url, {
          lazyConnect: true,
          // no HELLO: its NOAUTH would close the link before the probe can see the answer
          protocol: 2,
          maxRetriesPerRequest: 0,
          retryStrategy: () => null,
          // the ready check (INFO) of an unauthenticated client closes the link on a --requirepass server
          enableReadyCheck: false,
        });
        // refused until the server listens: the probe's rejection says so, not an 'error' event
        client.on('error', () => undefined);
        try {
          await client.connect();
          return (await client.ping()) === 'PONG';
        } catch (error) {
          // a server started with --requirepass answers, just not to an unauthenticated client
          if (error instanceof Error && error.message.startsWith('NOAUTH')) return true;
          throw error;
        } finally {
          client.disconnect();
        }
      });
      // the server that answered is this one: its process id is the child's
      const pid = await askRedis(this.port, this.password, async (c) => {
        const info = await c.info('server');
        return Number(/process_id:(\d+)/.exec(info)?.[1]);
      });
      if (pid !== this.process.pid) {
        throw new PortTakenError(`port ${this.port}: another process answers there`);
      }
    } catch (error) {
      // a server that never answered (or is not ours) must not outlive the test
      await this.stop();
      throw error;
    }
  }

  /** The `--requirepass` among the server's arguments, if any. */
  private get password(): string | undefined {
    const at = this.extraArgs.indexOf('--requirepass');
    return at >= 0 ? this.extraArgs[at + 1] : undefined;
  }

  async stop(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    if (!child || child.exitCode !== null) return;
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
}
