import { describe, it, expect, afterEach } from 'vitest';
import { waitFor } from '../e2e/support/wait-for.js';
import { BAD_INPUTS } from './support/chaos.harness.js';
import {
  PG_PASSING,
  type PgChaosRun as Run,
  PgChaosRun,
  pgHardCriteria,
} from './support/postgres-chaos.harness.js';
import { recordPgVerdict, scenarioPause } from './support/verdicts.js';

const RATE = 300;

describe('reliability: the ledger on PostgreSQL under faults', () => {
  let chaos: Run | undefined;

  afterEach(async () => {
    await chaos?.stop();
    chaos = undefined;
  });

  it('SIGTERM one of 3 with deliveries in flight: it drains and exits 0, once in effect', async () => {
    chaos = await PgChaosRun.start();
    const run = chaos;
    const load = run.publishWhile(RATE);
    await waitFor('work under way', async () => (await run.applied()) >= 300, 30_000);
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
    recordPgVerdict('PostgreSQL ledger: SIGTERM one of 3 with deliveries in flight', verdict);
    expect(pgHardCriteria(verdict)).toEqual(PG_PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
  }, 120_000);

  it("pg_terminate_backend of the service's sessions, 3 times under load: not now, once in effect", async () => {
    chaos = await PgChaosRun.start();
    const run = chaos;
    const load = run.publishWhile(RATE);
    await waitFor('work under way', async () => (await run.applied()) >= 300, 30_000);
    let terminated = 0;
    for (let i = 0; i < 3; i++) {
      terminated += await run.terminateServiceSessions();
      await scenarioPause(1_500);
    }
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    recordPgVerdict(
      "PostgreSQL ledger: pg_terminate_backend of the service's sessions x3",
      verdict,
      {
        detectMs: undefined,
      },
    );
    expect(terminated).toBeGreaterThan(0);
    // what the fault caused: the instances lost sessions, checked the server, and went on
    expect(run.services.some((s) => s.stdout.includes('POSTGRES_CONNECTION_LOST'))).toBe(true);
    expect(pgHardCriteria(verdict)).toEqual(PG_PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
    for (const service of run.services) {
      if (!service.alive)
        process.stderr.write(`DEAD:\n${service.stderr}\n${service.stdout.slice(-3000)}\n`);
      expect(await run.readiness(service)).toBe(200);
    }
  }, 120_000);

  it('PostgreSQL stopped for 5 s and started again: consumers pause, readiness dips and returns, nothing dead-lettered', async () => {
    chaos = await PgChaosRun.start({ ownPostgres: true });
    const run = chaos;
    const server = run.server;
    if (!server) throw new Error('the run has no PostgreSQL of its own');
    const load = run.publishWhile(RATE);
    await waitFor('work under way', async () => (await run.applied()) >= 300, 30_000);
    await server.stop('fast');
    const stoppedAt = performance.now();
    await waitFor(
      'every instance not ready',
      async () => {
        for (const s of run.services) if ((await run.readiness(s)) === 200) return false;
        return true;
      },
      15_000,
    );
    const detectMs = performance.now() - stoppedAt;
    await scenarioPause(Math.max(0, 5_000 - detectMs));
    await server.start();
    const startedAt = performance.now();
    await run.waitReady(run.services);
    const recoverMs = performance.now() - startedAt;
    await scenarioPause(2_000);
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    recordPgVerdict('PostgreSQL ledger: server stopped 5 s, started (own server)', verdict, {
      detectMs,
      recoverMs,
    });
    expect(run.services.every((s) => s.stdout.includes('CONSUMER_PAUSED'))).toBe(true);
    expect(pgHardCriteria(verdict)).toEqual(PG_PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
  }, 180_000);

  it("the broker closes the service's connections while the relay sends: every event still published", async () => {
    chaos = await PgChaosRun.start();
    const run = chaos;
    const load = run.publishWhile(RATE);
    await waitFor('work under way', async () => (await run.applied()) >= 300, 30_000);
    let closed = 0;
    for (let i = 0; i < 3; i++) {
      closed += await run.closeServiceConnections();
      await scenarioPause(2_000);
    }
    await load.stop();
    await run.settle();
    const verdict = await run.classify();
    recordPgVerdict('PostgreSQL ledger: close_connection x3 while the relay sends', verdict);
    expect(closed).toBeGreaterThan(0);
    expect(pgHardCriteria(verdict)).toEqual(PG_PASSING);
    expect(verdict.exactlyOnce).toBe(verdict.published);
  }, 120_000);

  it('10 % bad input of 10 kinds: each dead-lettered with its reason, nothing applied', async () => {
    // the oversize kind is 5 kB
    chaos = await PgChaosRun.start({ env: { MESSAGE_MAX_BYTES: '4096' } });
    const run = chaos;
    const kinds = Object.keys(BAD_INPUTS);
    for (let round = 0; round < 10; round++) {
      await run.publish(90);
      await run.publishBad(kinds);
    }
    await run.settle();
    const verdict = await run.classify();
    recordPgVerdict('PostgreSQL ledger: 10 % bad input, 10 kinds', verdict);
    expect(pgHardCriteria(verdict)).toEqual(PG_PASSING);
    expect(Object.values(verdict.deadLettered).reduce((a, b) => a + b, 0)).toBe(100);
    expect(verdict.exactlyOnce).toBe(900);
  }, 120_000);
});
