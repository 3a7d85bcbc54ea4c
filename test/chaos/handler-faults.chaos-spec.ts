import { describe, it, expect, afterEach } from 'vitest';
import { waitFor } from '../e2e/support/wait-for.js';
import { ChaosRun } from './support/chaos.harness.js';
import {
  hardCriteria,
  RECONCILED_PASSING,
  reconciledCriteria,
  PASSING,
  recordVerdict,
  scenarioPause,
} from './support/verdicts.js';

const ENV = { LOCK_TTL_MS: '3000', LOCK_WAIT_MS: '2000' };

describe('reliability: handler faults', () => {
  let chaos: ChaosRun | undefined;

  afterEach(async () => {
    await chaos?.stop();
    chaos = undefined;
  });

  it('a worker whose handlers hang past the shutdown deadline gets SIGTERM: exits at the deadline, its messages are processed once elsewhere', async () => {
    chaos = await ChaosRun.start({ instances: 2, env: ENV });
    const run = chaos;
    const slow = await run.addInstance({
      LEDGER_ORACLE_DELAY_MS: '600000',
      SHUTDOWN_TIMEOUT_MS: '2000',
    });
    const load = run.publishWhile(200);
    await waitFor('work under way', async () => (await run.effects()) >= 200, 30_000);
    await waitFor(
      'hung handlers at the victim',
      async () => (await run.inFlight(slow)) > 0,
      30_000,
    );
    const signalled = performance.now();
    slow.kill('SIGTERM');
    const code = await slow.exitCode(10_000);
    const exitMs = performance.now() - signalled;
    expect(code).toBe(1);
    expect(exitMs).toBeLessThan(3_000);
    await scenarioPause(2_000);
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    recordVerdict('handlers hung past the shutdown deadline, SIGTERM', verdict, {
      recoverMs: exitMs,
    });
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
  }, 150_000);

  it('a handler blocks the event loop for 15 s: its lease runs out, its stale write is refused', async () => {
    // few accounts: the others surely take the key the blocked worker held
    chaos = await ChaosRun.start({ instances: 2, accounts: 20, env: ENV });
    const run = chaos;
    const load = run.publishWhile(200);
    await waitFor('work under way', async () => (await run.effects()) >= 200, 30_000);
    await run.addInstance({ LEDGER_ORACLE_BLOCK_MS: '15000' });
    await scenarioPause(17_000);
    await load.stop();
    await run.settle(120_000);
    const verdict = await run.classify();
    recordVerdict('a handler blocks the event loop 15 s', verdict);
    expect(reconciledCriteria(verdict)).toEqual(RECONCILED_PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
    // what the fault must have caused: the blocked worker's write came after a newer holder's
    expect(verdict.staleRefused).toBeGreaterThan(0);
  }, 150_000);

  it('locks deleted under running handlers: they notice, retry, nothing is lost or doubled', async () => {
    chaos = await ChaosRun.start({
      env: { LOCK_TTL_MS: '600', LOCK_WAIT_MS: '2000', LEDGER_ORACLE_DELAY_MS: '200' },
    });
    const run = chaos;
    const load = run.publishWhile(200);
    await waitFor('work under way', async () => (await run.effects()) >= 100, 30_000);
    let stolen = 0;
    for (let i = 0; i < 6; i++) {
      stolen += await run.deleteLocks();
      await scenarioPause(1_000);
    }
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    const lost = (
      await Promise.all(run.services.map((s) => run.counterOf(s, 'lock_lost_total')))
    ).reduce((a, b) => a + b, 0);
    recordVerdict(`locks deleted mid-handler (${stolen} locks, 6 sweeps)`, verdict, {
      locksLost: lost,
    });
    expect(stolen).toBeGreaterThan(0);
    // what the fault must have caused: holders found their lock gone, or their writes refused
    expect(lost + verdict.staleRefused).toBeGreaterThan(0);
    expect(reconciledCriteria(verdict)).toEqual(RECONCILED_PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
  }, 150_000);
});
