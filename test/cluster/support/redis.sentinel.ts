import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import {
  askRedis,
  freePort,
  replicaInSync,
  TestRedisServer,
} from '../../e2e/support/redis.server.js';
import { waitFor } from '../../e2e/support/wait-for.js';

/** The primary's name in the sentinels' configuration. */
export const PRIMARY_NAME = 'mp-main';

/**
 * A Sentinel-managed Redis of the test's own, all on loopback ports of its own: a primary, two
 * replicas and three sentinels (the machine's `redis-server`, the sentinels with `--sentinel`),
 * quorum 2, a primary declared down after 2 s. `stop` stops exactly these processes.
 *
 * Not 1 s: with 1 s and the two cores busy, a sentinel that had just switched to the promoted
 * replica had no PING reply from it within the second, declared it down, and a second failover
 * demoted it: everything acknowledged on it since its promotion was lost (880 effects in one
 * run). That is what asynchronous replication allows (README, "Running on a cluster"); the
 * test's subject is one failover.
 */
export class TestSentinelGroup {
  private constructor(
    private readonly dir: string,
    private readonly password: string,
    readonly data: TestRedisServer[],
    private readonly sentinelPorts: number[],
    private readonly sentinels: ChildProcess[],
  ) {}

  /**
   * What the sentinels announced since the group was ready (`+sdown`, `+odown`, `+tilt`,
   * `+switch-master`, `+promoted-slave`, `+slave-reconf-done`, `+convert-to-slave`), each with
   * the ms since then and the sentinel that said it: how many failovers a run saw, and why.
   */
  readonly events: string[] = [];
  private readonly watchers: Redis[] = [];

  static async start(password: string): Promise<TestSentinelGroup> {
    const dir = mkdtempSync(join(tmpdir(), 'sentinel-'));
    const group = new TestSentinelGroup(dir, password, [], [], []);
    // each server its own directory: a replica's full sync writes an RDB file, which a server
    // started later in the same directory would load (stale data from another run)
    const args = (n: number): string[] => {
      const own = join(dir, `data-${n}`);
      mkdirSync(own);
      return ['--dir', own, '--requirepass', password, '--masterauth', password];
    };
    try {
      const primary = await TestRedisServer.start(args(0));
      group.data.push(primary);
      for (let i = 1; i <= 2; i++) {
        group.data.push(
          await TestRedisServer.start([
            ...args(i),
            '--replicaof',
            '127.0.0.1',
            String(primary.port),
          ]),
        );
      }
      for (let i = 0; i < 3; i++) await group.startSentinel(primary.port);
      // both replicas in sync, and each sentinel knows them and the two other sentinels: a
      // failover can be agreed, and a promoted replica holds what the primary held
      await waitFor(
        'the replicas in sync, the sentinels see them and each other',
        async () => {
          for (const replica of group.data.slice(1)) {
            if (!(await replicaInSync(replica.port, password))) return false;
          }
          for (const port of group.sentinelPorts) {
            const ok = await group.askSentinel(port, async (s) => {
              const replicas = (await s.call('SENTINEL', 'REPLICAS', PRIMARY_NAME)) as unknown[];
              const others = (await s.call('SENTINEL', 'SENTINELS', PRIMARY_NAME)) as unknown[];
              return replicas.length === 2 && others.length === 2;
            });
            if (!ok) return false;
          }
          return true;
        },
        60_000,
        250,
      );
      await group.watchEvents();
    } catch (error) {
      await group.stop();
      throw error;
    }
    return group;
  }

  private async watchEvents(): Promise<void> {
    const since = performance.now();
    for (const [i, port] of this.sentinelPorts.entries()) {
      const watcher = new Redis({ port, host: '127.0.0.1', protocol: 2 });
      watcher.on('error', () => undefined);
      this.watchers.push(watcher);
      watcher.on('message', (channel: string, message: string) => {
        this.events.push(
          `${Math.round(performance.now() - since)} ms sentinel ${i + 1}: ${channel} ${message}`,
        );
      });
      await watcher.subscribe(
        '+sdown',
        '+odown',
        '+tilt',
        '+switch-master',
        '+promoted-slave',
        '+slave-reconf-done',
        '+convert-to-slave',
      );
    }
  }

  private async startSentinel(primaryPort: number): Promise<void> {
    const port = await freePort();
    const conf = join(this.dir, `sentinel-${port}.conf`);
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${this.dir}`,
        `sentinel monitor ${PRIMARY_NAME} 127.0.0.1 ${primaryPort} 2`,
        `sentinel auth-pass ${PRIMARY_NAME} ${this.password}`,
        `sentinel down-after-milliseconds ${PRIMARY_NAME} 2000`,
        `sentinel failover-timeout ${PRIMARY_NAME} 10000`,
        `sentinel parallel-syncs ${PRIMARY_NAME} 1`,
        '',
      ].join('\n'),
    );
    const child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    this.sentinels.push(child);
    this.sentinelPorts.push(port);
    await waitFor(`sentinel on ${port}`, () =>
      this.askSentinel(port, async (s) => (await s.ping()) === 'PONG'),
    );
  }

  /** Runs `ask` on a short-lived client of the sentinel on `port`; false if it does not answer. */
  private askSentinel<T>(port: number, ask: (s: Redis) => Promise<T>): Promise<T | false> {
    return askRedis(port, undefined, ask);
  }

  /** `redis+sentinel://` URL of the group, with the data nodes' password. */
  get url(): string {
    const hosts = this.sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',');
    return `redis+sentinel://:${encodeURIComponent(this.password)}@${hosts}/${encodeURIComponent(PRIMARY_NAME)}`;
  }

  /** The primary's port, as the first sentinel that answers says. */
  async primaryPort(): Promise<number> {
    for (const port of this.sentinelPorts) {
      const address = await this.askSentinel(
        port,
        (s) => s.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', PRIMARY_NAME) as Promise<string[]>,
      );
      if (address) return Number(address[1]);
    }
    throw new Error('no sentinel answered');
  }

  /** SIGKILLs the primary; resolves with its port. */
  async killPrimary(): Promise<number> {
    const port = await this.primaryPort();
    const server = this.data.find((d) => d.port === port);
    if (!server) throw new Error(`the primary on ${port} is not one of the group's servers`);
    await server.stop();
    return port;
  }

  /** Resolves once the sentinels name a primary other than the one on `oldPort`. */
  async awaitPromotion(oldPort: number, timeoutMs = 60_000): Promise<number> {
    let promoted = oldPort;
    await waitFor(
      'a replica promoted',
      async () => {
        promoted = await this.primaryPort();
        return promoted !== oldPort;
      },
      timeoutMs,
      100,
    );
    return promoted;
  }

  async stop(): Promise<void> {
    for (const watcher of this.watchers) watcher.disconnect();
    await Promise.all(
      this.sentinels.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGKILL');
        await once(child, 'exit');
      }),
    );
    await Promise.all(this.data.map((server) => server.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
