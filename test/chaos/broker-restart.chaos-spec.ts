import { describe, it, expect, afterEach } from 'vitest';
import { waitFor } from '../e2e/support/wait-for.js';
import { ChaosRun } from './support/chaos.harness.js';
import { hardCriteria, PASSING, recordVerdict, scenarioPause } from './support/verdicts.js';

describe('reliability: broker restart', () => {
  let chaos: ChaosRun | undefined;

  afterEach(async () => {
    await chaos?.stop();
    chaos = undefined;
  });

  it('rabbitmqctl stop_app / start_app mid-processing: confirmed messages survive, once in effect', async () => {
    // a broker node of the run's own: the shared one is never stopped
    chaos = await ChaosRun.start({
      ownBroker: true,
      env: { LOCK_TTL_MS: '3000', LOCK_WAIT_MS: '2000', LEDGER_ORACLE_HOLD_MS: '50' },
    });
    const run = chaos;
    const broker = run.broker;
    if (!broker) throw new Error('no broker of its own');
    await run.publish(3_000);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    await waitFor(
      'effects applied and not acked',
      async () => (await run.appliedNotAcked(run.services[0])) > 0,
      30_000,
      5,
    );
    const stoppedAt = performance.now();
    await broker.stopApp();
    await scenarioPause(5_000);
    await broker.startApp();
    // the test's own connection went down too (everything it sent was confirmed): reopened
    // before the instances are back, so the firehose traces their deliveries again
    await run.connectPublisher();
    await run.waitReady(run.services);
    const recoverMs = performance.now() - stoppedAt;
    await run.publish(500);
    await run.settle(120_000);
    const verdict = await run.classify();
    recordVerdict('broker stop_app 5 s, start_app (own node)', verdict, { recoverMs });
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
    expect(verdict.rerunsAbsorbed).toBeGreaterThan(0);
  }, 180_000);
});
