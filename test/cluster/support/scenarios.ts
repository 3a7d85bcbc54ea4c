import type { ChaosRun } from '../../chaos/support/chaos.harness.js';
import { scenarioPause } from '../../chaos/support/verdicts.js';
import { waitFor } from '../../e2e/support/wait-for.js';
import { connectedPorts, readiness } from './failover.js';

/** The deadline the issue sets for an instance to be connected to another node after a kill. */
export const RECONNECT_DEADLINE_MS = 5_000;

export interface NodeKill {
  /** Per instance that was on the node: kill → connected to another node. */
  readonly reconnectMs: number[];
  /** Per instance that was on the node: kill → ready again (consumers attached). */
  readonly readyMs: number[];
}

function cluster(run: ChaosRun): NonNullable<ChaosRun['cluster']> {
  if (!run.cluster) throw new Error('not a cluster run');
  return run.cluster;
}

/**
 * kill -9 of the RabbitMQ node instance `index` is connected to. Every instance on that node must
 * be connected to another node within {@link RECONNECT_DEADLINE_MS}; then the node is started
 * again (it rejoins the cluster, its quorum queue replicas catch up).
 */
export async function killNodeOf(run: ChaosRun, index: number): Promise<NodeKill> {
  const port = connectedPorts(run.services[index]).at(-1);
  if (port === undefined) throw new Error(`instance ${index} logged no AMQP connection`);
  const node = cluster(run).nodeOnPort(port);
  const affected = run.services.filter((s) => connectedPorts(s).at(-1) === port);
  const before = affected.map((s) => connectedPorts(s).length);
  const killedAt = await node.kill();
  const reconnectMs = await Promise.all(
    affected.map(async (service, i) => {
      await waitFor(
        `instance connected to another node within ${RECONNECT_DEADLINE_MS} ms of the kill`,
        () => {
          const ports = connectedPorts(service);
          return ports.length > before[i] && ports.at(-1) !== port;
        },
        RECONNECT_DEADLINE_MS - (performance.now() - killedAt),
        20,
      );
      return performance.now() - killedAt;
    }),
  );
  const readyMs = await Promise.all(
    affected.map(async (service) => {
      await run.waitReady([service]);
      return performance.now() - killedAt;
    }),
  );
  await node.launch();
  await cluster(run).awaitMembers(3);
  // tracing is a node setting: the restarted node traces its deliveries again
  await run.traceOn();
  return { reconnectMs, readyMs };
}

export interface LockQuorumOutage {
  /** Second lock server stopped → every instance not ready. */
  readonly pausedMs: number;
  /** Effects applied in the 3 s after every instance reported not ready (must be 0). */
  readonly appliedWithoutQuorum: number;
  /** A lock server back → every instance ready and work going on. */
  readonly resumeMs: number;
}

/**
 * Redlock over 3 servers: one stopped → locks (and work) go on; a second stopped → no quorum:
 * consumers detach and readiness fails, nothing is applied; one back → work resumes.
 */
export async function lockQuorumOutage(run: ChaosRun): Promise<LockQuorumOutage> {
  const [first, second] = run.lockServers;
  await first.stop();
  const base = await run.effects();
  await waitFor(
    'work going on with 2 of 3 lock servers',
    async () => (await run.effects()) >= base + 200,
    30_000,
  );
  for (const service of run.services) {
    if ((await readiness(service)) !== 200) throw new Error('not ready with 2 of 3 lock servers');
  }
  await second.stop();
  const stoppedAt = performance.now();
  await waitFor(
    'every instance not ready without a lock quorum',
    async () => {
      const codes = await Promise.all(run.services.map(readiness));
      return codes.every((code) => code === 503);
    },
    15_000,
    20,
  );
  const pausedMs = performance.now() - stoppedAt;
  const frozen = await run.effects();
  await scenarioPause(3_000);
  const appliedWithoutQuorum = (await run.effects()) - frozen;
  await second.start();
  const backAt = performance.now();
  await run.waitReady(run.services);
  await waitFor(
    'work resumed',
    async () => (await run.effects()) >= frozen + appliedWithoutQuorum + 100,
    30_000,
  );
  const resumeMs = performance.now() - backAt;
  await first.start();
  return { pausedMs, appliedWithoutQuorum, resumeMs };
}
