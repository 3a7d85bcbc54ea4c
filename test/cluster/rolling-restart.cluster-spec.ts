import { describe, it, expect, afterEach } from 'vitest';
import { ChaosRun } from '../chaos/support/chaos.harness.js';
import { hardCriteria, PASSING, recordVerdict, scenarioPause } from '../chaos/support/verdicts.js';
import { waitFor } from '../e2e/support/wait-for.js';
import {
  rollingBrokerRestart,
  rollingInstanceRestart,
  type RollingRestart,
} from './support/scenarios.js';

const RATE = 250;

/** The throughput dip, for the report. */
function dip(r: RollingRestart): string {
  const share = r.baselineRate > 0 ? Math.round((100 * r.lowestRate) / r.baselineRate) : 0;
  return `effects per 2 s down to ${Math.round(r.lowestRate)} msg/s (${share} % of ${Math.round(r.baselineRate)}), under half for about ${r.underHalfS.toFixed(1)} s in all`;
}

/**
 * Issue 23: rolling restarts under steady load on a 3-node RabbitMQ cluster of the test's own
 * (quorum queues) with 2 instances and Redlock over 3 Redis: the three broker nodes restarted one
 * after another, and the instances restarted one after another (SIGTERM, start, ready). Nothing
 * lost, no effect doubled; the throughput dip is recorded with the verdict.
 */
describe('rolling restarts', () => {
  let chaos: ChaosRun | undefined;
  const ENV = { LOCK_TTL_MS: '3000', LOCK_WAIT_MS: '2000' };

  afterEach(async () => {
    await chaos?.stop();
    chaos = undefined;
  });

  /**
   * Under steady load: `restart` (one node or instance after another), then the oracle's verdict
   * with the throughput dip; `count` restarts expected.
   */
  async function rollingUnderLoad(
    what: string,
    restart: (run: ChaosRun) => Promise<RollingRestart>,
    count: number,
  ): Promise<void> {
    chaos = await ChaosRun.start({ cluster: true, instances: 2, env: ENV });
    const run = chaos;
    const load = run.publishWhile(RATE);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    const rolling = await restart(run);
    await scenarioPause(2_000);
    await load.stop();
    await run.settle(120_000);
    const verdict = await run.classify();
    recordVerdict(
      `rolling restart of ${what} at ${RATE} msg/s: ${dip(rolling)}`,
      verdict,
      { recoverMs: Math.max(...rolling.readyMs) },
      'cluster-results.jsonl',
    );
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
    expect(rolling.readyMs).toHaveLength(count);
  }

  it('the three broker nodes restarted one after another under load: once in effect', async () => {
    await rollingUnderLoad(
      'the 3 broker nodes (rabbitmqctl stop, start, rejoin)',
      rollingBrokerRestart,
      3,
    );
  }, 300_000);

  it('the instances restarted one after another under load (SIGTERM, start, ready): once in effect', async () => {
    await rollingUnderLoad(
      'the 2 instances (SIGTERM, exit 0, start, ready)',
      rollingInstanceRestart,
      2,
    );
  }, 240_000);
});
