import { join } from 'node:path';
import { waitFor } from '../e2e/support/wait-for';
import { ServiceProcess } from '../e2e/support/service.process';
import { ChaosRun } from './support/chaos.harness';
import { recordVerdict } from './support/verdicts';

const NAIVE = join(__dirname, 'support', 'naive-consumer.child.js');

const deliveriesOf = (child: ServiceProcess): number =>
  Number([...child.stdout.matchAll(/DELIVERIES (\d+)/g)].at(-1)?.[1] ?? 0);
const appliedOf = (child: ServiceProcess): number =>
  Number([...child.stdout.matchAll(/APPLIED (\d+)/g)].at(-1)?.[1] ?? 0);

/**
 * Negative controls: the designs the service replaces must fail the same checks, or the
 * harness is blind to what it claims to check.
 */
describe('reliability: negative controls (smoke)', () => {
  let chaos: ChaosRun | undefined;
  let naive: ServiceProcess | undefined;

  afterEach(async () => {
    naive?.kill('SIGKILL');
    await naive?.exitCode(10_000).catch(() => undefined);
    naive = undefined;
    await chaos?.stop();
    chaos = undefined;
  });

  it('an auto-ack consumer killed with -9 loses messages, and the oracle counts them', async () => {
    chaos = await ChaosRun.start({ instances: 1 });
    const run = chaos;
    // the service declared the topology; now the naive consumer takes over the queue
    run.services[0].kill('SIGTERM');
    expect(await run.services[0].exitCode(15_000)).toBe(0);
    naive = ServiceProcess.start({ ...run.naiveEnv(), MODE: 'autoack' }, NAIVE);
    await waitFor('the naive consumer', () => naive?.stdout.includes('CONSUMING'), 15_000);
    await run.publish(2_000);
    await waitFor('100 applied', () => naive !== undefined && appliedOf(naive) >= 100);
    naive.kill('SIGKILL');
    await naive.exitCode(10_000);
    await run.restart(0);
    await run.settle();
    const verdict = await run.classify();
    recordVerdict('negative control: auto-ack consumer + kill -9', verdict);
    expect(verdict.lost).toBeGreaterThan(0);
  }, 120_000);

  it('requeue-on-error with one poison message delivers it hundreds of times', async () => {
    chaos = await ChaosRun.start({ instances: 1 });
    const run = chaos;
    run.services[0].kill('SIGTERM');
    expect(await run.services[0].exitCode(15_000)).toBe(0);
    naive = ServiceProcess.start({ ...run.naiveEnv(), MODE: 'requeue-on-error' }, NAIVE);
    await waitFor('the naive consumer', () => naive?.stdout.includes('CONSUMING'), 15_000);
    await run.publishRaw('not json');
    await waitFor(
      'hundreds of deliveries of one message',
      () => naive !== undefined && deliveriesOf(naive) >= 300,
      10_000,
    );
  }, 60_000);
});
