import { describe, it, expect, afterEach } from 'vitest';
import { ChaosRun } from '../chaos/support/chaos.harness.js';
import { hardCriteria, PASSING, recordVerdict, scenarioPause } from '../chaos/support/verdicts.js';
import { waitFor } from '../e2e/support/wait-for.js';
import { killNodeOf, lockQuorumOutage } from './support/scenarios.js';

/**
 * Issue 7 (smoke, in `npm test`): 2 instances on a 3-node RabbitMQ cluster of the test's own
 * (quorum queues, AMQP_URL listing the three nodes) with Redlock over 3 Redis of its own. A node
 * killed under load, then the lock quorum lost and regained: nothing lost, nothing doubled.
 */
describe('scale-out on a cluster (smoke)', () => {
  let chaos: ChaosRun | undefined;

  afterEach(async () => {
    await chaos?.stop();
    chaos = undefined;
  });

  it('kill -9 a node under load, then lose and regain the lock quorum: once in effect', async () => {
    chaos = await ChaosRun.start({
      cluster: true,
      instances: 2,
      env: { LOCK_TTL_MS: '3000', LOCK_WAIT_MS: '2000' },
    });
    const run = chaos;
    const load = run.publishWhile(200);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    const kill = await killNodeOf(run, 0);
    const outage = await lockQuorumOutage(run);
    await scenarioPause(2_000);
    await load.stop();
    await run.settle(120_000);
    const verdict = await run.classify();
    recordVerdict(
      'cluster smoke: node kill, lock quorum lost and regained',
      verdict,
      { reconnectMs: kill.reconnectMs, recoverMs: Math.max(...kill.readyMs) },
      'cluster-results.jsonl',
    );
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
    expect(outage.appliedWithoutQuorum).toBe(0);
    // each instance said why it stopped taking messages
    for (const service of run.services) expect(service.stdout).toContain('CONSUMER_PAUSED');
  }, 170_000);
});
