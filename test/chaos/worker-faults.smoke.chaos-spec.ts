import { waitFor } from '../e2e/support/wait-for';
import { ChaosRun } from './support/chaos.harness';
import { hardCriteria, PASSING, recordVerdict, scenarioPause } from './support/verdicts';

// Locks of a killed worker expire after LOCK_TTL_MS: short, so the run settles in seconds.
const ENV = { LOCK_TTL_MS: '3000', LOCK_WAIT_MS: '2000' };
const RATE = 300;

describe('reliability: worker faults (smoke)', () => {
  let chaos: ChaosRun | undefined;

  afterEach(async () => {
    await chaos?.stop();
    chaos = undefined;
  });

  it('kill -9 one of 3 workers mid-batch, restarted 5 s later: once in effect', async () => {
    chaos = await ChaosRun.start({ env: ENV });
    const run = chaos;
    const load = run.publishWhile(RATE);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    const victim = run.services[0];
    const killedAt = performance.now();
    victim.kill('SIGKILL');
    await victim.exitCode(10_000);
    await scenarioPause(5_000);
    await run.restart(0);
    const recoverMs = performance.now() - killedAt;
    await scenarioPause(3_000);
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    recordVerdict('kill -9 one of 3 mid-batch, restart after 5 s', verdict, { recoverMs });
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
  }, 120_000);

  it('SIGTERM one of 3 workers during processing: it drains and exits 0, once in effect', async () => {
    chaos = await ChaosRun.start({ env: ENV });
    const run = chaos;
    const load = run.publishWhile(RATE);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    const victim = run.services[1];
    victim.kill('SIGTERM');
    expect(await victim.exitCode(15_000)).toBe(0);
    await run.restart(1);
    await scenarioPause(2_000);
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    recordVerdict('SIGTERM one of 3 during processing', verdict);
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
  }, 120_000);

  it('rabbitmqctl close_all_connections three times: every worker reconnects, once in effect', async () => {
    chaos = await ChaosRun.start({ env: ENV });
    const run = chaos;
    const load = run.publishWhile(RATE);
    await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
    const detect: number[] = [];
    for (let i = 0; i < 3; i++) {
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
    recordVerdict('close_all_connections x3', verdict, {
      recoverMs: Math.max(...detect),
      duplicatesAbsorbed: counted.duplicate ?? 0,
    });
    expect(hardCriteria(verdict)).toEqual(PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
    // no instance died: its metrics must agree with the oracle, one ack per message
    expect(counted.ack).toBe(verdict.published);
    expect(counted.dead_letter ?? 0).toBe(0);
  }, 120_000);
});
