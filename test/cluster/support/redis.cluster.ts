import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import { askRedis, replicaInSync, TestRedisServer } from '../../e2e/support/redis.server.js';
import { waitFor } from '../../e2e/support/wait-for.js';

const run = promisify(execFile);

/** Hash slots of a Redis Cluster. */
const SLOTS = 16_384;

/** One node as `CLUSTER NODES` lists it. */
interface ClusterNode {
  readonly id: string;
  readonly port: number;
  readonly role: 'master' | 'slave';
  readonly failed: boolean;
  /** The master's id, for a replica. */
  readonly masterId: string | undefined;
  /** Slots this master serves (0 for a replica). */
  readonly slots: number;
}

/**
 * A Redis Cluster of the test's own on loopback ports of its own: three masters and one replica
 * each (the machine's `redis-server` with `--cluster-enabled`, joined by `redis-cli --cluster
 * create`), a node declared failed after 1 s (`cluster-node-timeout`), every node with the same
 * password. `stop` stops exactly these processes.
 */
export class TestRedisCluster {
  private constructor(
    private readonly dir: string,
    private readonly password: string,
    readonly nodes: TestRedisServer[],
  ) {}

  static async start(password: string): Promise<TestRedisCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'redis-cluster-'));
    const cluster = new TestRedisCluster(dir, password, []);
    try {
      for (let i = 0; i < 6; i++) await cluster.startNode(i);
      await run(
        'redis-cli',
        [
          '--cluster',
          'create',
          ...cluster.nodes.map((n) => `127.0.0.1:${n.port}`),
          '--cluster-replicas',
          '1',
          '--cluster-yes',
        ],
        // the password from the environment: never on a command line another process can read
        { env: { ...process.env, REDISCLI_AUTH: password }, timeout: 60_000 },
      );
      await waitFor(
        'every slot served, every replica in sync',
        async () => {
          for (const node of cluster.nodes) {
            const info = await cluster.ask(node.port, (c) => c.call('CLUSTER', 'INFO'));
            if (typeof info !== 'string' || !info.includes('cluster_state:ok')) return false;
          }
          const nodes = await cluster.clusterNodes();
          if (nodes.filter((n) => n.role === 'master' && n.slots > 0).length !== 3) return false;
          for (const replica of nodes.filter((n) => n.role === 'slave')) {
            if (!(await replicaInSync(replica.port, password))) return false;
          }
          return true;
        },
        60_000,
        250,
      );
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  /**
   * A cluster of one node that serves every slot: what a client sees of a Redis Cluster (slots,
   * CROSSSLOT, the cluster commands) at the cost of one process, for tests that need several.
   */
  static async startOneNode(password: string): Promise<TestRedisCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'redis-cluster-'));
    const cluster = new TestRedisCluster(dir, password, []);
    try {
      await cluster.startNode(0);
      const port = cluster.nodes[0].port;
      await cluster.ask(port, (c) => c.call('CLUSTER', 'ADDSLOTSRANGE', '0', String(SLOTS - 1)));
      await waitFor('the node serves every slot', async () => {
        const info = await cluster.ask(port, (c) => c.call('CLUSTER', 'INFO'));
        return typeof info === 'string' && info.includes('cluster_state:ok');
      });
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  /** Starts the cluster's node number `n`, in a directory of its own (its nodes.conf, its RDB). */
  private async startNode(n: number): Promise<void> {
    const own = join(this.dir, `node-${n}`);
    mkdirSync(own);
    this.nodes.push(
      await TestRedisServer.start([
        '--dir',
        own,
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        'nodes.conf',
        '--cluster-node-timeout',
        '1000',
        // a node alone knows no address of its own until another node tells it one
        '--cluster-announce-ip',
        '127.0.0.1',
        '--requirepass',
        this.password,
        '--masterauth',
        this.password,
      ]),
    );
  }

  /** `redis+cluster://` URL of the cluster (every node a seed), with the password. */
  get url(): string {
    const hosts = this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',');
    return `redis+cluster://:${encodeURIComponent(this.password)}@${hosts}`;
  }

  /** The cluster's nodes as the first node that answers lists them. */
  async clusterNodes(): Promise<ClusterNode[]> {
    for (const node of this.nodes) {
      const text = await this.ask(node.port, (c) => c.call('CLUSTER', 'NODES'));
      if (typeof text === 'string') return parseNodes(text);
    }
    throw new Error('no cluster node answered');
  }

  /** The port of the master that serves `slot`. */
  async masterOf(slot: number): Promise<number> {
    for (const node of this.nodes) {
      const slots = await this.ask(node.port, (c) => c.call('CLUSTER', 'SLOTS'));
      if (!Array.isArray(slots)) continue;
      for (const range of slots as [number, number, [string, number]][]) {
        if (slot >= range[0] && slot <= range[1]) return Number(range[2][1]);
      }
    }
    throw new Error(`no node serves slot ${slot}`);
  }

  /** SIGKILLs the master on `port`. */
  async killNode(port: number): Promise<void> {
    const node = this.nodes.find((n) => n.port === port);
    if (!node) throw new Error(`${port} is not one of the cluster's nodes`);
    await node.stop();
  }

  /**
   * Resolves with the port of the node that serves `slot` once it is another node than
   * `oldPort` (its replica, promoted) and the cluster answers for every slot again.
   */
  async awaitPromotion(slot: number, oldPort: number, timeoutMs = 60_000): Promise<number> {
    let promoted = oldPort;
    await waitFor(
      `slot ${slot} served by a promoted replica`,
      async () => {
        promoted = await this.masterOf(slot);
        if (promoted === oldPort) return false;
        const info = await this.ask(promoted, (c) => c.call('CLUSTER', 'INFO'));
        return typeof info === 'string' && info.includes('cluster_state:ok');
      },
      timeoutMs,
      100,
    );
    return promoted;
  }

  /** Runs `ask` on a short-lived client of the node on `port`; false if it does not answer. */
  private ask<T>(port: number, ask: (c: Redis) => Promise<T>): Promise<T | false> {
    return askRedis(port, this.password, ask);
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `CLUSTER NODES` text: `<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot>…`. */
function parseNodes(text: string): ClusterNode[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const [id, address, flags, master, , , , , ...ranges] = line.trim().split(' ');
      const port = Number(address.split('@')[0].split(':').pop());
      const slots = ranges
        .filter((r) => !r.startsWith('['))
        .reduce((sum, r) => {
          const [from, to] = r.split('-').map(Number);
          return sum + (to === undefined ? 1 : to - from + 1);
        }, 0);
      return {
        id,
        port,
        role: flags.includes('master') ? 'master' : 'slave',
        failed: flags.includes('fail'),
        masterId: master === '-' ? undefined : master,
        slots,
      } as const;
    });
}
