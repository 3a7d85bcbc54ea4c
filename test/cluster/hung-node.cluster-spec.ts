import { describe, it, expect, afterEach } from 'vitest';
import { ChaosRun } from '../chaos/support/chaos.harness.js';
import { hardCriteria, PASSING, recordVerdict, scenarioPause } from '../chaos/support/verdicts.js';
import { waitFor } from '../e2e/support/wait-for.js';
import { connectedPorts } from './support/failover.js';
import { freezeNodeOf, leaderPort } from './support/scenarios.js';

const QUEUE = 'ledger.transactions';

/**
 * Issue 23: a broker node that hangs instead of dying. Instances on a 3-node RabbitMQ cluster of
 * the test's own (quorum queues) with heartbeats of 2 s; a node one of them is connected to, not
 * the work queue's leader, is stopped with SIGSTOP under load: its sockets stay open, so only
 * heartbeats can tell. The instance must be on another node within the heartbeat bound and ready
 * there, and work must go on, while the node is still stopped; once it is resumed (SIGCONT),
 * what it held for the dead connection is delivered again and absorbed.
 */
describe('a hung broker node', () => {
  let chaos: ChaosRun | undefined;
  const HEARTBEAT_S = 2;

  afterEach(async () => {
    await chaos?.stop();
    chaos = undefined;
  });

  it('SIGSTOP the node an instance is on: heartbeats move it to another node, ready and working before SIGCONT: once in effect', async () => {
    chaos = await ChaosRun.start({
      cluster: true,
      instances: 2,
      env: { LOCK_TTL_MS: '3000', LOCK_WAIT_MS: '2000', AMQP_HEARTBEAT_S: String(HEARTBEAT_S) },
    });
    const run = chaos;
    // an instance on a node that does not lead the work queue (each starts at a random node)
    const leader = await leaderPort(run, QUEUE);
    const onFollower = (): number =>
      run.services.findIndex((s) => connectedPorts(s).at(-1) !== leader);
    while (onFollower() < 0 && run.services.length < 8) await run.addInstance({});
    const index = onFollower();
    expect(index).toBeGreaterThanOrEqual(0);
    const port = connectedPorts(run.services[index]).at(-1) ?? 0;
    await run.movePublisherOff(port);
    const load = run.publishWhile(250);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    const freeze = await freezeNodeOf(run, index, HEARTBEAT_S);
    // the resumed node is a member still; what it held for the dead connection goes back
    await run.cluster?.awaitMembers(3);
    await scenarioPause(3_000);
    await load.stop();
    await run.settle(120_000);
    const verdict = await run.classify();
    recordVerdict(
      `SIGSTOP the node of an instance (not the queue's leader) for ${(freeze.frozenMs / 1_000).toFixed(1)} s, heartbeat ${HEARTBEAT_S} s (detected: connected to another node; the moved instance taking messages ${(freeze.workOnMs / 1_000).toFixed(1)} s after the stop), then SIGCONT`,
      verdict,
      {
        reconnectMs: freeze.reconnectMs,
        detectMs: Math.max(...freeze.reconnectMs),
        recoverMs: Math.max(...freeze.readyMs),
      },
      'cluster-results.jsonl',
    );
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
    // the instance said why it left the node
    expect(run.services[index].stdout).toContain('AMQP_DISCONNECTED');
  }, 240_000);
});
