import { TestRabbitNode } from '../../chaos/support/rabbitmq.node.js';
import { waitFor } from '../../e2e/support/wait-for.js';

/**
 * A RabbitMQ cluster of the suite's own on this machine: N nodes (own names, ports, data and log
 * folders under a temporary directory), joined with `rabbitmqctl join_cluster`. The shared
 * broker is never touched; `stop` stops exactly the nodes this started.
 */
export class TestRabbitCluster {
  private constructor(readonly nodes: readonly TestRabbitNode[]) {}

  static async start(size = 3): Promise<TestRabbitCluster> {
    const started = await Promise.allSettled(
      Array.from({ length: size }, () => TestRabbitNode.start('cluster')),
    );
    const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const cluster = new TestRabbitCluster(nodes);
    try {
      const failed = started.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
      const [seed, ...rest] = nodes;
      for (const node of rest) {
        await node.ctl('stop_app');
        await node.ctl('join_cluster', seed.name);
        await node.startApp();
      }
      await cluster.awaitMembers(size);
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  /** Every node's AMQP URL, with `auth` (`user:password`, percent-encoded) and `path` (vhost). */
  urls(auth = 'guest:guest', path = ''): string[] {
    return this.nodes.map((node) => `${node.url(auth)}${path}`);
  }

  /** The node listening on `port`. */
  nodeOnPort(port: number): TestRabbitNode {
    const node = this.nodes.find((n) => n.port === port);
    if (!node) throw new Error(`no node of the cluster listens on ${port}`);
    return node;
  }

  /** `rabbitmqctl` on the first node that answers (cluster-wide commands). */
  async ctl(...args: string[]): Promise<string> {
    let last: unknown;
    for (const node of this.nodes) {
      try {
        return await node.ctl(...args);
      } catch (error) {
        last = error;
      }
    }
    throw last;
  }

  /** Resolves once `count` nodes are running members of the cluster. */
  async awaitMembers(count: number): Promise<void> {
    await waitFor(
      `${count} running cluster members`,
      async () => {
        const status = await this.ctl('cluster_status', '--formatter', 'json');
        const running = (JSON.parse(status) as { running_nodes?: string[] }).running_nodes ?? [];
        return running.length >= count;
      },
      60_000,
      250,
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
  }
}
