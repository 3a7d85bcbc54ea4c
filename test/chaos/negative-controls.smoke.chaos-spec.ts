import { describe, it, expect, afterEach } from 'vitest';
import { join } from 'node:path';
import { waitFor } from '../e2e/support/wait-for.js';
import { ServiceProcess } from '../e2e/support/service.process.js';
import { ChaosRun } from './support/chaos.harness.js';
import { recordVerdict, scenarioPause } from './support/verdicts.js';

const NAIVE = join(import.meta.dirname, 'support', 'naive-consumer.child.js');

const appliedOf = (child: ServiceProcess): number =>
  Number([...child.stdout.matchAll(/APPLIED (\d+)/g)].at(-1)?.[1] ?? 0);

/**
 * Negative controls, one per hard criterion: a design without the protection the criterion is
 * about, classified exactly as the service is. Each must fail its criterion, or the harness is
 * blind to what it claims to check. The service's controls are the real service with one check
 * taken out of its commit (LEDGER_ORACLE_CONTROL, test/e2e/support/observed-service.child.js).
 */
describe('reliability: negative controls (smoke)', () => {
  let chaos: ChaosRun | undefined;
  const naive: ServiceProcess[] = [];

  afterEach(async () => {
    for (const child of naive.splice(0)) {
      child.kill('SIGKILL');
      await child.exitCode(10_000).catch(() => undefined);
    }
    await chaos?.stop();
    chaos = undefined;
  });

  /** Hands the queue to hand-written consumers: the service declared the topology, then stops. */
  async function handOver(run: ChaosRun, mode: string, count = 1): Promise<void> {
    await run.stopInstances();
    for (let i = 0; i < count; i++) {
      const child = ServiceProcess.start({ ...run.naiveEnv(), MODE: mode }, NAIVE);
      naive.push(child);
      await waitFor('the naive consumer', () => child.stdout.includes('CONSUMING'), 15_000);
    }
  }

  it('lost: an auto-ack consumer killed with -9 loses messages', async () => {
    chaos = await ChaosRun.start({ instances: 1 });
    const run = chaos;
    await handOver(run, 'autoack');
    await run.publish(2_000);
    const [child] = naive;
    await waitFor('100 applied', () => appliedOf(child) >= 100);
    child.kill('SIGKILL');
    await child.exitCode(10_000);
    await run.restart(0);
    await run.settle();
    const verdict = await run.classify();
    recordVerdict('negative control (lost): auto-ack consumer + kill -9', verdict);
    expect(verdict.lost).toBeGreaterThan(0);
  }, 120_000);

  it('duplicate effects: deduplication off, a worker killed between effect and ack', async () => {
    chaos = await ChaosRun.start({
      env: { LOCK_TTL_MS: '3000', LOCK_WAIT_MS: '2000', LEDGER_ORACLE_CONTROL: 'no-dedup' },
    });
    const run = chaos;
    const victim = await run.addInstance({ LEDGER_ORACLE_HOLD_MS: '300' });
    const load = run.publishWhile(300);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    await run.killWithEffectsInFlight(victim);
    await scenarioPause(2_000);
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    recordVerdict('negative control (duplicates): no dedup, kill between effect and ack', verdict);
    // seen twice over: by the journal, and by the balances on their own
    expect(verdict.duplicateEffects).toBeGreaterThan(0);
    expect(verdict.balanceErrors).toBeGreaterThan(0);
  }, 120_000);

  it('lock overlaps: a commit that takes the lock without checking whether another worker holds it', async () => {
    // few accounts, and one worker holding each lock 300 ms before its commit: the others' commits
    // meet held keys all the time
    chaos = await ChaosRun.start({
      instances: 2,
      accounts: 3,
      env: { LOCK_TTL_MS: '3000', LOCK_WAIT_MS: '5000', LEDGER_ORACLE_CONTROL: 'no-lock-check' },
    });
    const run = chaos;
    await run.addInstance({ LEDGER_ORACLE_DELAY_MS: '300' });
    await run.publish(300);
    await run.settle();
    const verdict = await run.classify();
    recordVerdict('negative control (overlaps): commit without its lock check', verdict);
    expect(verdict.lockOverlaps).toBeGreaterThan(0);
  }, 120_000);

  it('token order: no fencing, a worker stopped (SIGSTOP) past its lease', async () => {
    chaos = await ChaosRun.start({
      accounts: 3,
      env: {
        LOCK_TTL_MS: '1000',
        LOCK_WAIT_MS: '5000',
        LEDGER_ORACLE_DELAY_MS: '300',
        LEDGER_ORACLE_CONTROL: 'no-fencing',
      },
    });
    const run = chaos;
    // about what 3 accounts worked 300 ms each under their locks can take: little backlog to drain
    const load = run.publishWhile(8);
    await waitFor('work under way', async () => (await run.effects()) >= 10, 30_000);
    await run.stopWhileHoldingLock(run.services[0], 4_000);
    await scenarioPause(2_000);
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    recordVerdict('negative control (token order): no fencing, SIGSTOP past the lease', verdict);
    expect(verdict.tokenOrderViolations).toBeGreaterThan(0);
  }, 120_000);

  it('lock overlaps: a lease shorter than the work and no watchdog lets handlers overlap', async () => {
    chaos = await ChaosRun.start({ instances: 1, accounts: 5 });
    const run = chaos;
    await handOver(run, 'lease-no-watchdog', 3);
    await run.publish(60);
    await waitFor('60 effects', async () => (await run.effects()) >= 60, 60_000);
    const verdict = await run.classify();
    recordVerdict('negative control (overlaps): 300 ms lease, 700 ms work, no watchdog', verdict);
    expect(verdict.lockOverlaps).toBeGreaterThan(0);
  }, 120_000);

  it('requeue-on-error delivers one poison message hundreds of times, as the broker counts', async () => {
    chaos = await ChaosRun.start({ instances: 1 });
    const run = chaos;
    await handOver(run, 'requeue-on-error');
    await run.traceQueue('naive.requeue-on-error');
    const poison = await run.publishRaw('not json');
    await waitFor(
      'hundreds of deliveries of one message',
      () => run.deliveriesOf(poison) >= 300,
      20_000,
    );
  }, 60_000);
});
