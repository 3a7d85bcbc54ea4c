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

export interface NodeFreeze {
  /** Per instance that was on the node: SIGSTOP → connected to another node. */
  readonly reconnectMs: number[];
  /** Per instance that was on the node: SIGSTOP → ready again (consumers attached). */
  readonly readyMs: number[];
  /** SIGSTOP → 200 more effects applied, 50 of them by the moved instances, the node stopped. */
  readonly workOnMs: number;
  /** How long the node was stopped. */
  readonly frozenMs: number;
}

/**
 * The bound within which an instance with heartbeats of `heartbeatS` seconds must be connected to
 * another node after its node hangs: amqplib declares the connection dead when nothing arrived
 * for two heartbeat intervals, checked once per interval (at most three intervals), then the
 * connection manager waits its 2 s before connecting to the next node; 2 s of slack for the
 * handshake and a loaded machine.
 */
function hungNodeBoundMs(heartbeatS: number): number {
  return 3 * heartbeatS * 1_000 + 2_000 + 2_000;
}

/** How long {@link freezeNodeOf} keeps a node stopped at least (under net_ticktime's 45 s). */
const MIN_FROZEN_MS = 20_000;

/** The node (its port) that leads the quorum queue `queue` of the run's cluster. */
export async function leaderPort(run: ChaosRun, queue: string): Promise<number> {
  const listed = await cluster(run).ctl('list_queues', '--no-table-headers', 'name', 'leader');
  const leader = listed
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .find(([name]) => name === queue)?.[1];
  const node = cluster(run).nodes.find((n) => n.name === leader);
  if (!node) throw new Error(`no leader found for ${queue} in: ${listed}`);
  return node.port;
}

/**
 * SIGSTOP (not a kill) of the RabbitMQ node instance `index` is connected to: the node's sockets
 * stay open, nothing answers. Every instance on it must be connected to another node within
 * {@link hungNodeBoundMs} (heartbeats, `AMQP_HEARTBEAT_S` = `heartbeatS`), ready again within
 * 10 s more, and work must go on, all while the node is still stopped; then SIGCONT. The node
 * must not lead the work queue (a queue led by a hung node waits for the cluster's net_ticktime,
 * for every client: docs/architecture.md, Hung broker node), and the test's publisher must be
 * moved off it first (before load starts). Nothing here runs `rabbitmqctl` while the node is
 * stopped (it may wait on it). The node is stopped for well under net_ticktime (60 s: the other
 * nodes declare a silent node down after 45–75 s), so it resumes as a member, as a machine that
 * hung for seconds does.
 */
export async function freezeNodeOf(
  run: ChaosRun,
  index: number,
  heartbeatS: number,
): Promise<NodeFreeze> {
  const port = connectedPorts(run.services[index]).at(-1);
  if (port === undefined) throw new Error(`instance ${index} logged no AMQP connection`);
  const node = cluster(run).nodeOnPort(port);
  if (run.publisherPort === port) throw new Error('the publisher is on the node to freeze');
  const affected = run.services.filter((s) => connectedPorts(s).at(-1) === port);
  const before = affected.map((s) => connectedPorts(s).length);
  const bound = hungNodeBoundMs(heartbeatS);
  const base = await run.effects();
  const frozenAt = await node.freeze();
  const since = (): number => performance.now() - frozenAt;
  try {
    const reconnectMs = await Promise.all(
      affected.map(async (service, i) => {
        await waitFor(
          `instance connected to another node within ${bound} ms of the node's SIGSTOP`,
          () => {
            const ports = connectedPorts(service);
            return ports.length > before[i] && ports.at(-1) !== port;
          },
          bound - since(),
          20,
        );
        return since();
      }),
    );
    const readyMs = await Promise.all(
      affected.map(async (service) => {
        await waitFor(
          `instance ready within ${bound + 10_000} ms of the SIGSTOP, the node still stopped`,
          async () => (await readiness(service)) === 200,
          bound + 10_000 - since(),
          50,
        );
        return since();
      }),
    );
    // the moved instances themselves take messages again, on their new node
    const processed = (): Promise<number[]> =>
      Promise.all(affected.map((s) => run.counterOf(s, 'messages_processed_total')));
    const movedBase = await processed();
    await waitFor(
      'work going on while the node is stopped, on the moved instances too',
      async () =>
        (await run.effects()) >= base + 200 &&
        (await processed()).every((n, i) => n >= movedBase[i] + 50),
      15_000,
    );
    const workOnMs = since();
    // stopped for MIN_FROZEN_MS at least: what runs on the healthy nodes goes on meanwhile
    await scenarioPause(Math.max(0, MIN_FROZEN_MS - since()));
    return { reconnectMs, readyMs, workOnMs, frozenMs: since() };
  } finally {
    node.thaw();
  }
}

export interface RollingRestart {
  /** Per node or instance restarted: the restart begun → it is back and every instance ready. */
  readonly readyMs: number[];
  /** Effects per second over 2-s windows: the median in the 6 s before the restarts. */
  readonly baselineRate: number;
  /** …and the lowest window while they ran. */
  readonly lowestRate: number;
  /** About how long (s) the rate was under half the baseline (windows start every 250 ms). */
  readonly underHalfS: number;
}

/**
 * Runs `restarts` while sampling the oracle's effect count every 250 ms (6 s of it before, for
 * the baseline), and reports the throughput dip: the lowest 2-s window's rate against the
 * median window before.
 */
async function withThroughput(
  run: ChaosRun,
  restarts: () => Promise<number[]>,
): Promise<RollingRestart> {
  const samples: { at: number; effects: number }[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      samples.push({ at: performance.now(), effects: await run.effects() });
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  })();
  let readyMs: number[];
  let from: number;
  try {
    await scenarioPause(6_000);
    from = performance.now();
    readyMs = await restarts();
  } finally {
    sampling = false;
    await sampler;
  }
  const windows = samples.flatMap((s, i) => {
    const end = samples.slice(i).find((e) => e.at >= s.at + 2_000);
    return end ? [{ at: s.at, rate: ((end.effects - s.effects) * 1_000) / (end.at - s.at) }] : [];
  });
  const before = windows.filter((w) => w.at + 2_000 <= from).map((w) => w.rate);
  const during = windows.filter((w) => w.at >= from).map((w) => w.rate);
  before.sort((a, b) => a - b);
  const baselineRate = before[Math.floor(before.length / 2)] ?? 0;
  return {
    readyMs,
    baselineRate,
    lowestRate: Math.min(...during),
    underHalfS: during.filter((rate) => rate < baselineRate / 2).length * 0.25,
  };
}

/**
 * A rolling restart of the broker cluster under load: each node in turn stopped cleanly
 * (`rabbitmqctl stop`) and started again, the next one only once it is a running member again
 * and every instance is ready.
 */
export async function rollingBrokerRestart(run: ChaosRun): Promise<RollingRestart> {
  return withThroughput(run, async () => {
    const readyMs: number[] = [];
    for (const node of cluster(run).nodes) {
      const at = performance.now();
      await node.restart();
      await cluster(run).awaitMembers(3);
      // tracing is a node setting: the restarted node traces its deliveries again
      await run.traceOn();
      await run.waitReady(run.services);
      readyMs.push(performance.now() - at);
    }
    return readyMs;
  });
}

/**
 * A rolling restart of the service under load: each instance in turn sent SIGTERM (it drains
 * and must exit 0), then a new one started in its place and awaited ready before the next.
 */
export async function rollingInstanceRestart(run: ChaosRun): Promise<RollingRestart> {
  return withThroughput(run, async () => {
    const readyMs: number[] = [];
    for (let i = 0; i < run.services.length; i++) {
      const at = performance.now();
      const old = run.services[i];
      old.kill('SIGTERM');
      const code = await old.exitCode(15_000);
      if (code !== 0) throw new Error(`instance ${i} exited with ${String(code)} after SIGTERM`);
      await run.restart(i);
      readyMs.push(performance.now() - at);
    }
    return readyMs;
  });
}
