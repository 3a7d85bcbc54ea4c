import { describe, it, expect, afterEach } from 'vitest';
import { waitFor } from '../e2e/support/wait-for.js';
import { ChaosRun } from './support/chaos.harness.js';
import { hardCriteria, PASSING, recordVerdict, scenarioPause } from './support/verdicts.js';

// Locks of a killed worker expire after LOCK_TTL_MS: short, so the run settles in seconds.
const ENV = { LOCK_TTL_MS: '3000', LOCK_WAIT_MS: '2000' };
const RATE = 300;
/** After each commit, the ledger of the victim waits this long before its ack (the fault's window). */
const HOLD = { LEDGER_ORACLE_HOLD_MS: '300' };

describe('reliability: worker faults (smoke)', () => {
  let chaos: ChaosRun | undefined;

  afterEach(async () => {
    await chaos?.stop();
    chaos = undefined;
  });

  it('kill -9 a worker holding applied, unacked effects, restarted 5 s later: each redelivery absorbed', async () => {
    chaos = await ChaosRun.start({ env: ENV });
    const run = chaos;
    const victim = await run.addInstance(HOLD);
    const load = run.publishWhile(RATE);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    const killedAt = performance.now();
    await run.killWithEffectsInFlight(victim);
    await scenarioPause(5_000);
    await run.restart(run.services.indexOf(victim));
    const recoverMs = performance.now() - killedAt;
    await scenarioPause(3_000);
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    recordVerdict('kill -9 a worker with applied, unacked effects; restart after 5 s', verdict, {
      recoverMs,
    });
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
    // what the kill must have caused: effects applied and not acked came back, and were absorbed
    expect(verdict.deliveredAgain).toBeGreaterThan(0);
    expect(verdict.rerunsAbsorbed).toBeGreaterThan(0);
  }, 120_000);

  it('SIGTERM a worker with deliveries in flight: it drains and exits 0, once in effect', async () => {
    chaos = await ChaosRun.start({ env: ENV });
    const run = chaos;
    const load = run.publishWhile(RATE);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    const victim = run.services[1];
    await waitFor(
      'deliveries in flight at the victim',
      async () => (await run.inFlight(victim)) > 0,
      30_000,
      5,
    );
    victim.kill('SIGTERM');
    expect(await victim.exitCode(15_000)).toBe(0);
    await run.restart(1);
    await scenarioPause(2_000);
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    recordVerdict('SIGTERM one of 3 with deliveries in flight', verdict);
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
  }, 120_000);

  it('rabbitmqctl close_all_connections three times, with effects applied and not acked: every worker reconnects, once in effect', async () => {
    chaos = await ChaosRun.start({ env: { ...ENV, LEDGER_ORACLE_HOLD_MS: '100' } });
    const run = chaos;
    const load = run.publishWhile(RATE);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    const detect: number[] = [];
    for (let i = 0; i < 3; i++) {
      await waitFor(
        'effects applied and not acked',
        async () => (await run.appliedNotAcked(run.services[i])) > 0,
        30_000,
        5,
      );
      const closedAt = performance.now();
      await run.closeServiceConnections();
      await run.waitReady(run.services);
      detect.push(performance.now() - closedAt);
      await scenarioPause(2_000);
    }
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    const counted = await run.processedByOutcome();
    recordVerdict('close_all_connections x3, effects in flight', verdict, {
      recoverMs: Math.max(...detect),
      duplicatesAbsorbed: counted.duplicate ?? 0,
    });
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
    expect(verdict.deliveredAgain).toBeGreaterThan(0);
    expect(verdict.rerunsAbsorbed).toBeGreaterThan(0);
    // no instance died: its metrics must agree with the journal, one ack per message
    expect(counted.ack).toBe(verdict.published);
    expect(counted.dead_letter ?? 0).toBe(0);
  }, 120_000);
});
