import { describe, it, expect, afterEach } from 'vitest';
import { ChaosRun } from '../chaos/support/chaos.harness.js';
import { hardCriteria, PASSING, recordVerdict, scenarioPause } from '../chaos/support/verdicts.js';
import { waitFor } from '../e2e/support/wait-for.js';
import { killNodeOf, lockQuorumOutage, type NodeKill } from './support/scenarios.js';

/**
 * Issue 7: 2 instances on a 3-node RabbitMQ cluster of the test's own (quorum queues, AMQP_URL
 * listing the three nodes) with Redlock over 3 Redis of its own, under steady load; the
 * reliability suite's oracle classifies every message.
 */
describe('scale-out on a cluster', () => {
  let chaos: ChaosRun | undefined;
  const ENV = { LOCK_TTL_MS: '3000', LOCK_WAIT_MS: '2000' };

  afterEach(async () => {
    await chaos?.stop();
    chaos = undefined;
  });

  it('kill -9 the node each instance is connected to, in turn, 4 times: each reconnects to another node within 5 s, once in effect', async () => {
    chaos = await ChaosRun.start({ cluster: true, instances: 2, env: ENV });
    const run = chaos;
    const load = run.publishWhile(250);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    const kills: NodeKill[] = [];
    for (let round = 0; round < 4; round++) {
      kills.push(await killNodeOf(run, round % 2));
      await scenarioPause(3_000);
    }
    await load.stop();
    await run.settle(120_000);
    const verdict = await run.classify();
    const reconnectMs = kills.flatMap((k) => k.reconnectMs);
    recordVerdict(
      `kill -9 the node of each instance, 4 rounds (${reconnectMs.length} reconnects)`,
      verdict,
      { reconnectMs, recoverMs: Math.max(...kills.flatMap((k) => k.readyMs)) },
      'cluster-results.jsonl',
    );
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
  }, 300_000);

  it('Redlock over 3 Redis: one down, locks go on; two down, intake stops cleanly; one back, work resumes: once in effect', async () => {
    chaos = await ChaosRun.start({ cluster: true, instances: 2, env: ENV });
    const run = chaos;
    const load = run.publishWhile(250);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    const outage = await lockQuorumOutage(run);
    await scenarioPause(2_000);
    await load.stop();
    await run.settle(120_000);
    const verdict = await run.classify();
    recordVerdict(
      `lock servers: 1 of 3 down, 2 of 3 down (not ready after ${Math.round(outage.pausedMs)} ms), 1 back`,
      verdict,
      { recoverMs: outage.resumeMs },
      'cluster-results.jsonl',
    );
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
    expect(outage.appliedWithoutQuorum).toBe(0);
    // the messages that waited out the outage were handed back or never taken, not spent
    expect(verdict.deadLettered).toEqual({});
    for (const service of run.services) expect(service.stdout).toContain('CONSUMER_PAUSED');
  }, 240_000);
});
