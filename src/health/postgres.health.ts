import { Injectable } from '@nestjs/common';
import { type HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { PostgresTransactions } from '../postgres/postgres-transactions.js';

/**
 * PostgreSQL, when `DATABASE_URL` is set: up while the pool reaches it and its schema is
 * migrated. Read from the connection's state (a failed query marks it down, a probe brings it
 * back), not from a query per probe request.
 */
@Injectable()
export class PostgresHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly postgres: PostgresTransactions,
  ) {}

  get configured(): boolean {
    return this.postgres.configured;
  }

  check(key = 'postgres'): HealthIndicatorResult {
    const indicator = this.health.check(key);
    return this.postgres.isReady()
      ? indicator.up()
      : indicator.down({ message: 'PostgreSQL is unreachable or its schema is not migrated yet' });
  }
}
