import { describe, it, expect, afterEach } from 'vitest';
import { randomInt } from 'node:crypto';
import { waitFor } from '../e2e/support/wait-for.js';
import { ChaosRun } from './support/chaos.harness.js';
import { hardCriteria, PASSING, recordVerdict, scenarioPause } from './support/verdicts.js';

describe('reliability: random kills', () => {
  let chaos: ChaosRun | undefined;

  afterEach(async () => {
    await chaos?.stop();
    chaos = undefined;
  });

  it('kill -9 a random worker every 8 s for 60 s, each with applied, unacked effects (restarted at once): once in effect', async () => {
    chaos = await ChaosRun.start({
      env: { LOCK_TTL_MS: '3000', LOCK_WAIT_MS: '2000', LEDGER_ORACLE_HOLD_MS: '50' },
    });
    const run = chaos;
    const load = run.publishWhile(250);
    await waitFor('work under way', async () => (await run.effects()) >= 200, 30_000);
    const started = performance.now();
    let kills = 0;
    while (performance.now() - started < 60_000) {
      await scenarioPause(8_000);
      const index = randomInt(run.services.length);
      await run.killWithEffectsInFlight(run.services[index]);
      kills++;
      await run.restart(index);
    }
    await load.stop();
    await run.settle(120_000);
    const verdict = await run.classify();
    recordVerdict(`kill -9 a random worker every 8 s for 60 s (${kills} kills)`, verdict);
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
    expect(verdict.deliveredAgain).toBeGreaterThan(0);
    expect(verdict.rerunsAbsorbed).toBeGreaterThan(0);
  }, 200_000);
});
