import { Injectable, Module } from '@nestjs/common';
import { drizzle } from 'drizzle-orm/node-postgres';
import { pgTable, text } from 'drizzle-orm/pg-core';
import { type MessageContext, MessageHandler } from '../../../src/messaging/index.js';

/** What a test message asks the probe to do. */
export interface PgProbeJob {
  readonly note: string;
  /** Fail this many attempts after writing the row and publishing the event. */
  readonly failTimes?: number;
}

export const PG_PROBE_EXCHANGE = 'pg-probe';
export const PG_PROBE_QUEUE = 'pg-probe.jobs';
export const PG_PROBE_EVENTS = 'pg-probe.events';

/** The probe's table, written through Drizzle on the transaction the service hands over. */
export const probeRows = pgTable('pg_probe_rows', {
  messageId: text('message_id').primaryKey(),
  note: text('note').notNull(),
});

export const PG_PROBE_TABLE_SQL =
  'CREATE TABLE IF NOT EXISTS pg_probe_rows (message_id text PRIMARY KEY, note text NOT NULL)';

/**
 * A `postgres-transaction` handler written with an ORM (Drizzle over the transaction's client):
 * writes a row, publishes an event through the outbox, then fails `failTimes` attempts.
 */
@Injectable()
export class PgProbe {
  /** Attempts per messageId, as the handler saw them. */
  readonly attempts = new Map<string, number>();

  @MessageHandler({
    exchange: PG_PROBE_EXCHANGE,
    routingKey: 'job.*',
    queue: PG_PROBE_QUEUE,
    effect: { kind: 'postgres-transaction' },
    retry: { maxAttempts: 4, initialDelayMs: 100, maxDelayMs: 100 },
  })
  async handle(job: PgProbeJob, ctx: MessageContext): Promise<void> {
    const id = ctx.messageId as string;
    this.attempts.set(id, (this.attempts.get(id) ?? 0) + 1);
    const tx = ctx.transaction;
    if (!tx) throw new Error('a postgres-transaction handler gets ctx.transaction');
    const db = drizzle({ client: tx.client });
    await db.insert(probeRows).values({ messageId: id, note: job.note });
    await tx.publish(PG_PROBE_EVENTS, 'job.done', { note: job.note }, { messageId: id });
    if (ctx.attempt <= (job.failTimes ?? 0)) throw new Error(`probe fails attempt ${ctx.attempt}`);
  }
}

@Module({ providers: [PgProbe] })
export class PgProbeModule {}

export const PG_COMMIT_QUEUE = 'pg-probe.commits';

/**
 * A `postgres-commit` handler: its writes and its event are queued and sent with the COMMIT in
 * one round trip; it counts how often its code ran (again for a redelivery).
 */
@Injectable()
export class PgCommitProbe {
  readonly runs = new Map<string, number>();
  readError: unknown;

  @MessageHandler({
    exchange: PG_PROBE_EXCHANGE,
    routingKey: 'commit.*',
    queue: PG_COMMIT_QUEUE,
    effect: { kind: 'postgres-commit' },
    retry: { maxAttempts: 2, initialDelayMs: 100, maxDelayMs: 100 },
  })
  async handle(job: PgProbeJob, ctx: MessageContext): Promise<void> {
    const id = ctx.messageId as string;
    this.runs.set(id, (this.runs.get(id) ?? 0) + 1);
    const tx = ctx.transaction;
    if (!tx) throw new Error('a postgres-commit handler gets ctx.transaction');
    // nothing can be read: the transaction runs as a whole at commit
    this.readError = await tx.query('SELECT 1').then(
      () => undefined,
      (error: unknown) => error,
    );
    tx.execute('INSERT INTO pg_probe_rows (message_id, note) VALUES ($1, $2)', [id, job.note]);
    tx.publishQuery(
      PG_PROBE_EVENTS,
      'commit.done',
      "SELECT json_build_object('note', note) FROM pg_probe_rows WHERE message_id = $1",
      [id],
      { messageId: id },
    );
  }
}

@Module({ providers: [PgCommitProbe] })
export class PgCommitProbeModule {}
