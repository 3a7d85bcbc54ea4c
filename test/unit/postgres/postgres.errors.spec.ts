import { describe, it, expect } from 'vitest';
import { DependencyUnavailableError } from '../../../src/messaging/index.js';
import {
  asPostgresFailure,
  isPostgresOutage,
  loggablePostgresError,
} from '../../../src/postgres/postgres.errors.js';

const withCode = (message: string, code: string): Error =>
  Object.assign(new Error(message), { code });

describe('PostgreSQL errors', () => {
  it('tells an outage (connection lost, server stopping, refused) from a failed statement', () => {
    for (const outage of [
      withCode('terminating connection due to administrator command', '57P01'),
      withCode('the database system is starting up', '57P03'),
      withCode('connection failure', '08006'),
      withCode('sorry, too many clients already', '53300'),
      new Error('Connection terminated unexpectedly'),
      new Error('connect ECONNREFUSED 127.0.0.1:5432'),
      new Error('timeout expired'),
    ]) {
      expect(isPostgresOutage(outage), outage.message).toBe(true);
    }
    for (const failure of [
      withCode('duplicate key value violates unique constraint', '23505'),
      withCode('could not serialize access', '40001'),
      withCode('relation "x" does not exist', '42P01'),
      new Error('business rule'),
      'not an error',
    ]) {
      expect(isPostgresOutage(failure), String(failure)).toBe(false);
    }
  });

  it('makes an outage "not now" and leaves any other failure as it was', () => {
    const outage = asPostgresFailure(withCode('terminating connection', '57P01'));
    expect(outage).toBeInstanceOf(DependencyUnavailableError);
    expect((outage as Error).message).toBe('postgres unavailable: terminating connection');
    const failure = withCode('duplicate key', '23505');
    expect(asPostgresFailure(failure)).toBe(failure);
  });

  it('logs an error without the client the pool attaches to it (and its password)', () => {
    const pooled = Object.assign(withCode('Connection terminated', '08006'), {
      client: { connectionParameters: { password: 'hunter2' } },
    });
    const loggable = loggablePostgresError(pooled);
    expect(JSON.stringify({ ...loggable, message: loggable.message })).not.toContain('hunter2');
    expect(loggable).toMatchObject({ message: 'Connection terminated', code: '08006' });
    expect(Object.keys(loggable).sort()).toEqual(['code', 'name']);
    const cause = (asPostgresFailure(pooled) as Error).cause;
    expect(Object.keys(cause as object).sort()).toEqual(['code', 'name']);
  });
});
