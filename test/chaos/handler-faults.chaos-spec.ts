import { join } from 'node:path';
import { waitFor } from '../e2e/support/wait-for';
import { ServiceProcess } from '../e2e/support/service.process';
import { ChaosRun } from './support/chaos.harness';
import {
  hardCriteria,
  LEASE_BROKEN_PASSING,
  leaseBrokenCriteria,
  PASSING,
  recordVerdict,
  scenarioPause,
} from './support/verdicts';

const ENV = { LOCK_TTL_MS: '3000', LOCK_WAIT_MS: '2000' };
const NAIVE = join(__dirname, 'support', 'naive-consumer.child.js');

describe('reliability: handler faults', () => {
  let chaos: ChaosRun | undefined;
  let naive: ServiceProcess[] = [];

  afterEach(async () => {
    for (const n of naive) n.kill('SIGKILL');
    await Promise.all(naive.map((n) => n.exitCode(10_000).catch(() => undefined)));
    naive = [];
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

  it('a handler blocks the event loop for 15 s: its lease runs out, nothing is lost or doubled', async () => {
    chaos = await ChaosRun.start({ instances: 2, env: ENV });
    const run = chaos;
    const load = run.publishWhile(200);
    await waitFor('work under way', async () => (await run.effects()) >= 200, 30_000);
    await run.addInstance({ LEDGER_ORACLE_BLOCK_MS: '15000' });
    await scenarioPause(17_000);
    await load.stop();
    await run.settle(120_000);
    const verdict = await run.classify();
    recordVerdict('a handler blocks the event loop 15 s', verdict);
    expect(leaseBrokenCriteria(verdict)).toEqual(LEASE_BROKEN_PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
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
    recordVerdict(`locks deleted mid-handler (${stolen} locks, 6 sweeps)`, verdict);
    expect(stolen).toBeGreaterThan(0);
    expect(leaseBrokenCriteria(verdict)).toEqual(LEASE_BROKEN_PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
  }, 150_000);

  it('negative control: a lease shorter than the work and no watchdog lets handlers overlap', async () => {
    chaos = await ChaosRun.start({ instances: 1, accounts: 5 });
    const run = chaos;
    run.services[0].kill('SIGTERM');
    expect(await run.services[0].exitCode(15_000)).toBe(0);
    for (let i = 0; i < 3; i++) {
      const child = ServiceProcess.start({ ...run.naiveEnv(), MODE: 'lease-no-watchdog' }, NAIVE);
      naive.push(child);
      await waitFor('a naive consumer', () => child.stdout.includes('CONSUMING'), 15_000);
    }
    await run.publish(60);
    await waitFor('60 effects', async () => (await run.effects()) >= 60, 60_000);
    const verdict = await run.classify();
    recordVerdict('negative control: 300 ms lease, 700 ms work, no watchdog', verdict);
    expect(verdict.lockOverlaps).toBeGreaterThan(0);
  }, 120_000);
});
