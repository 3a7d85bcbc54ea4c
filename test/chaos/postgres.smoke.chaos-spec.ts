import { describe, it, expect, afterEach } from 'vitest';
import { join } from 'node:path';
import { waitFor } from '../e2e/support/wait-for.js';
import {
  PG_PASSING,
  type PgChaosRun as Run,
  PgChaosRun,
  pgHardCriteria,
} from './support/postgres-chaos.harness.js';
import { recordPgVerdict, scenarioPause } from './support/verdicts.js';

const RATE = 300;
const CONTROL = join(import.meta.dirname, 'support', 'pg-marker-after.child.js');

describe('reliability: the ledger on PostgreSQL (smoke)', () => {
  let chaos: Run | undefined;

  afterEach(async () => {
    await chaos?.stop();
    chaos = undefined;
  });

  it('kill -9 a worker with commits in flight, restarted 3 s later: each redelivery absorbed, every event published', async () => {
    chaos = await PgChaosRun.start();
    const run = chaos;
    // every COMMIT takes 100 ms more: a kill lands in commits whose ack was never sent
    await run.slowCommits(100);
    const load = run.publishWhile(RATE);
    await waitFor('work under way', async () => (await run.applied()) >= 300, 30_000);
    const victim = run.services[0];
    await waitFor(
      'deliveries in flight at the victim',
      async () => (await run.inFlight(victim)) > 5,
      30_000,
      5,
    );
    victim.kill('SIGKILL');
    await victim.exitCode(10_000);
    await scenarioPause(3_000);
    await run.restart(0);
    await scenarioPause(2_000);
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    recordPgVerdict(
      'PostgreSQL ledger: kill -9 a worker with commits in flight, restart after 3 s',
      verdict,
    );
    expect(pgHardCriteria(verdict)).toEqual(PG_PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
    // what the kill must have caused: its deliveries came back, and committed ones were absorbed
    expect(verdict.deliveredAgain).toBeGreaterThan(0);
    expect(verdict.rerunsAbsorbed).toBeGreaterThan(0);
  }, 120_000);

  it('negative control: the marker written after the commit, killed between them, doubles an effect', async () => {
    chaos = await PgChaosRun.start({
      instances: 0,
      records: {
        journal: 'SELECT message_id FROM control_journal',
        markers: 'SELECT message_id FROM control_marker',
        events: false,
      },
    });
    const run = chaos;
    const first = run.startProcess(CONTROL);
    await waitFor('the control consuming', () => first.stdout.includes('CONSUMING'), 30_000);
    await run.publish(200);
    // killed inside the window: its effect committed, its marker not written
    await waitFor('a commit not yet marked', () => first.stdout.includes('WINDOW'), 30_000, 5);
    first.kill('SIGKILL');
    await first.exitCode(10_000);
    const second = run.startProcess(CONTROL, { WINDOW_MS: '0' });
    await waitFor(
      'the second control consuming',
      () => second.stdout.includes('CONSUMING'),
      30_000,
    );
    await run.settle();
    const verdict = await run.classify();
    recordPgVerdict('negative control (PostgreSQL): marker after commit, kill between', verdict);
    expect(verdict.duplicateEffects).toBeGreaterThan(0);
    expect(verdict.balanceErrors).toBeGreaterThan(0);
    expect(verdict.lost).toBe(0);
  }, 120_000);
});
