import type { Client, ClientBase } from 'pg';
import { isFailureWorthLogging } from '../logging/failure-log.throttle.js';
import type { AmqpConnection } from '../messaging/amqp.connection.js';
import type { MessagePublisher } from '../messaging/message.publisher.js';
import type { OutboxMetrics } from '../metrics/outbox.metrics.js';
import type { PostgresConnection, PostgresLogger } from './postgres.connection.js';
import { loggablePostgresError } from './postgres.errors.js';
import { OUTBOX_CHANNEL } from './postgres-transaction.js';
import { sqlLiteral } from './sql-literals.js';
import { extractContext, withContext } from '../tracing/message-tracing.js';

export interface OutboxRelayOptions {
  /** How often to look for unsent rows besides the NOTIFY of each commit (`OUTBOX_POLL_MS`). */
  readonly outboxPollMs: number;
  /** Sent rows older than this are deleted (`OUTBOX_RETENTION_S`). */
  readonly outboxRetentionSeconds: number;
  /** Inbox rows older than this are deleted (`IDEMPOTENCY_TTL_S`). */
  readonly inboxRetentionSeconds: number;
}

/** Rows claimed per transaction; a full batch is followed by the next at once. */
export const RELAY_BATCH = 200;
/** Batches one relay runs at once, each on its own pooled connection. */
const RELAY_BATCHES_IN_FLIGHT = 2;
/** Rows deleted per statement by the cleanup. */
const CLEANUP_BATCH = 10_000;
const CLEANUP_EVERY_MS = 60_000;
const LISTEN_RETRY_MS = 2_000;
/** A row the broker refused waits 2^attempts seconds, at most this long, before the next try. */
const MAX_BACKOFF_S = 60;

/**
 * Up to {@link RELAY_BATCH} unsent rows, locked for this transaction; rows others hold are skipped.
 * Run with bitmap scans off: the partial index keeps an entry for every row marked sent until
 * VACUUM reaches it, and a bitmap scan visits them all on every claim (2.5–6 ms a claim with
 * 50,000 behind it; the relay lag's median grew 2 ms per 10,000 rows sent), while a plain index
 * scan marks them dead as it passes, so the next claims skip them (0.15 ms).
 */
const CLAIM = `SELECT id, exchange, routing_key, message_id, correlation_id, content_type, body, headers,
       mandatory, extract(epoch FROM created_at)::float8 AS created_s,
       extract(epoch FROM clock_timestamp() - created_at)::float8 AS age_s
  FROM mp_outbox
 WHERE sent_at IS NULL AND available_at <= now()
 ORDER BY id
 LIMIT ${RELAY_BATCH}
   FOR UPDATE SKIP LOCKED`;

/** What a batch did with its rows. */
interface Marks {
  readonly claimed: number;
  readonly sent: string[];
  readonly failed: string[];
  /** Why the first refused row was refused. */
  reason: string;
}

interface OutboxRow {
  readonly id: string;
  readonly exchange: string;
  readonly routing_key: string;
  readonly message_id: string;
  readonly correlation_id: string | null;
  readonly content_type: string;
  readonly body: Buffer;
  readonly headers: Record<string, unknown>;
  readonly mandatory: boolean;
  readonly created_s: number;
  readonly age_s: number;
}

/**
 * Sends committed outbox rows to the broker. Each batch is one transaction: claim up to
 * {@link RELAY_BATCH} unsent rows `FOR UPDATE SKIP LOCKED` (replicas relaying at once take
 * different rows), publish them with confirms, mark the confirmed ones sent, commit. A crash
 * before the commit leaves the rows unsent and unlocked: they are sent again (at least once,
 * under the same messageId). A new row is sent within milliseconds of its commit: a commit of
 * this process wakes it directly ({@link committed}), one of a process without a relay by
 * NOTIFY, which it LISTENs for; the poll (`OUTBOX_POLL_MS`) is the fallback while the listening
 * connection is down. A row the broker refuses waits with exponential backoff; while the broker is
 * unreachable nothing is claimed.
 */
export class OutboxRelay {
  private listener: Client | undefined;
  private listenRetry: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private lastCleanup = 0;
  /** Batches in progress (at most {@link RELAY_BATCHES_IN_FLIGHT}). */
  private readonly drains = new Set<Promise<void>>();
  private again = false;
  private stopped = true;
  private failures = 0;
  private readonly kick = (): void => this.wake();

  constructor(
    private readonly postgres: PostgresConnection,
    private readonly publisher: MessagePublisher,
    private readonly amqp: AmqpConnection,
    private readonly metrics: OutboxMetrics,
    private readonly options: OutboxRelayOptions,
    private readonly logger: Pick<PostgresLogger, 'warn'>,
  ) {}

  /** Sends what a transaction of this process just committed (an in-process NOTIFY). */
  committed(): void {
    this.wake();
  }

  /** Whether the relay is running: the transactions of this process then need no NOTIFY. */
  get running(): boolean {
    return !this.stopped;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.lastCleanup = Date.now() - CLEANUP_EVERY_MS * Math.random();
    this.amqp.on('connected', this.kick);
    this.postgres.on('ready', this.onPostgresReady);
    if (this.postgres.isReady()) this.onPostgresReady();
    this.schedulePoll();
  }

  /** Stops relaying; resolves when the batch in progress (if any) has committed or rolled back. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.amqp.off('connected', this.kick);
    this.postgres.off('ready', this.onPostgresReady);
    clearTimeout(this.pollTimer);
    clearTimeout(this.listenRetry);
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => undefined);
    await Promise.all(this.drains);
  }

  /** Sends what is unsent now (and what commits while it runs); resolves when caught up. */
  async flush(): Promise<void> {
    this.wake();
    while (this.drains.size > 0) await Promise.all(this.drains);
  }

  /**
   * Deletes sent outbox rows past `OUTBOX_RETENTION_S` and inbox rows past
   * `IDEMPOTENCY_TTL_S`, in batches; one replica at a time (an advisory lock). Runs every minute.
   */
  async cleanup(): Promise<{ outbox: number; inbox: number }> {
    const deleted = { outbox: 0, inbox: 0 };
    await this.postgres.transaction(async (client) => {
      const { rows } = await client.query<{ locked: boolean }>(
        'SELECT pg_try_advisory_xact_lock(hashtext($1)) AS locked',
        ['mp_cleanup'],
      );
      if (!rows[0]?.locked) return;
      const { outboxRetentionSeconds: outboxS, inboxRetentionSeconds: inboxS } = this.options;
      deleted.outbox = await deleteBatch(
        client,
        `DELETE FROM mp_outbox WHERE id = ANY(ARRAY(SELECT id FROM mp_outbox
           WHERE sent_at < now() - make_interval(secs => $1) LIMIT ${CLEANUP_BATCH}))`,
        outboxS,
      );
      deleted.inbox = await deleteBatch(
        client,
        `DELETE FROM mp_inbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM mp_inbox
           WHERE processed_at < now() - make_interval(secs => $1) LIMIT ${CLEANUP_BATCH}))`,
        inboxS,
      );
    });
    return deleted;
  }

  private readonly onPostgresReady = (): void => {
    void this.listen();
    this.wake();
  };

  /**
   * Starts a batch unless {@link RELAY_BATCHES_IN_FLIGHT} are running already (then one more runs
   * when one ends). Rows committed while a batch awaits its confirms do not wait for it: the next
   * batch claims them at once (SKIP LOCKED leaves it the rows the first one holds).
   */
  private wake(): void {
    if (this.stopped) return;
    if (this.drains.size >= RELAY_BATCHES_IN_FLIGHT) {
      this.again = true;
      return;
    }
    const drain: Promise<void> = this.drain().finally(() => {
      this.drains.delete(drain);
      if (this.again) {
        this.again = false;
        this.wake();
      }
    });
    this.drains.add(drain);
  }

  private async drain(): Promise<void> {
    try {
      while (!this.stopped && (await this.sendBatch()) === RELAY_BATCH) {
        // a full batch: there may be more
      }
      this.failures = 0;
    } catch (error) {
      this.postgres.failed(error);
      if (isFailureWorthLogging(++this.failures)) {
        this.logger.warn(
          { err: loggablePostgresError(error), code: 'OUTBOX_RELAY_FAILED' },
          'Outbox relay could not send; the rows stay and are sent later',
        );
      }
    }
  }

  /**
   * One claim-publish-mark transaction; returns how many rows it claimed. Two round trips to
   * PostgreSQL: BEGIN with the claim, then the marks with COMMIT.
   */
  private async sendBatch(): Promise<number> {
    if (!this.postgres.isReady() || !this.amqp.isConnected()) return 0;
    const marked = await this.postgres.transaction<Marks>(
      async (_client, [, claimed]) => this.publishClaimed(claimed.rows as OutboxRow[]),
      () => `BEGIN; SET LOCAL enable_bitmapscan = off; ${CLAIM}`,
      (marks) => {
        const statements: string[] = [];
        if (marks.sent.length > 0) {
          statements.push(
            `UPDATE mp_outbox SET sent_at = clock_timestamp() WHERE id IN (${marks.sent.join(', ')})`,
          );
        }
        if (marks.failed.length > 0) {
          statements.push(
            `UPDATE mp_outbox
                SET attempts = attempts + 1, last_error = ${sqlLiteral(marks.reason.slice(0, 1_000))},
                    available_at = now() + make_interval(secs => least(${MAX_BACKOFF_S}, power(2, attempts)))
              WHERE id IN (${marks.failed.join(', ')})`,
          );
        }
        statements.push('COMMIT');
        return statements.join(';\n');
      },
    );
    if (marked.failed.length > 0 && isFailureWorthLogging(++this.failures)) {
      this.logger.warn(
        { rows: marked.failed.length, reason: marked.reason, code: 'OUTBOX_PUBLISH_REFUSED' },
        'The broker refused outbox rows; they are retried with backoff',
      );
    }
    return marked.claimed;
  }

  /** Publishes claimed rows with confirms; says which to mark sent and which to back off. */
  private async publishClaimed(rows: readonly OutboxRow[]): Promise<Marks> {
    const marks: Marks = { claimed: rows.length, sent: [], failed: [], reason: '' };
    if (rows.length === 0) return marks;
    const claimedAt = performance.now();
    const results = await Promise.allSettled(
      rows.map(async (row) => {
        // published in the context the row was written in: its trace goes on through the relay
        await withContext(extractContext(row.headers), () =>
          this.publisher.publishRaw(row.exchange, row.routing_key, row.body, {
            messageId: row.message_id,
            correlationId: row.correlation_id ?? undefined,
            contentType: row.content_type,
            headers: row.headers,
            timestamp: Math.floor(row.created_s),
            persistent: true,
            mandatory: row.mandatory,
          }),
        );
        return row.age_s + (performance.now() - claimedAt) / 1000;
      }),
    );
    // the broker went away mid-batch: those rows wait for it unchanged, no attempt counted
    const brokerUp = this.amqp.isConnected();
    results.forEach((result, i) => {
      const row = rows[i];
      // ids are bigint text from the server: digits only
      if (!/^\d+$/.test(row.id)) throw new Error(`unexpected outbox id ${row.id}`);
      if (result.status === 'fulfilled') {
        marks.sent.push(row.id);
        this.metrics.relayed(row.exchange, 'confirmed', result.value);
      } else {
        this.metrics.relayed(row.exchange, 'failed');
        if (!brokerUp) return;
        marks.failed.push(row.id);
        marks.reason ||=
          result.reason instanceof Error ? result.reason.message : String(result.reason);
      }
    });
    return marks;
  }

  private schedulePoll(): void {
    if (this.stopped) return;
    this.pollTimer = setTimeout(() => {
      void this.tick().finally(() => this.schedulePoll());
    }, this.options.outboxPollMs);
    this.pollTimer.unref();
  }

  private async tick(): Promise<void> {
    this.wake();
    if (!this.postgres.isReady()) return;
    try {
      const { rows } = await this.postgres.pool.query<{ pending: number }>(
        'SELECT count(*)::int AS pending FROM mp_outbox WHERE sent_at IS NULL',
      );
      this.metrics.setPending(rows[0]?.pending ?? 0);
      if (Date.now() - this.lastCleanup >= CLEANUP_EVERY_MS) {
        this.lastCleanup = Date.now();
        await this.cleanup();
      }
    } catch (error) {
      this.postgres.failed(error);
    }
  }

  /** A connection of its own that LISTENs for commits; re-made when it breaks. */
  private async listen(): Promise<void> {
    if (this.stopped || this.listener) return;
    const client = this.postgres.newClient('outbox-relay');
    this.listener = client;
    const retry = (): void => {
      if (this.listener !== client) return;
      this.listener = undefined;
      void client.end().catch(() => undefined);
      if (this.stopped) return;
      this.listenRetry = setTimeout(() => void this.listen(), LISTEN_RETRY_MS);
      this.listenRetry.unref();
    };
    client.on('error', retry);
    client.on('end', retry);
    client.on('notification', this.kick);
    try {
      await client.connect();
      await client.query(`LISTEN ${OUTBOX_CHANNEL}`);
      // rows committed while nobody listened
      this.wake();
    } catch {
      retry();
    }
  }
}

async function deleteBatch(client: ClientBase, sql: string, seconds: number): Promise<number> {
  let total = 0;
  for (;;) {
    const { rowCount } = await client.query(sql, [seconds]);
    total += rowCount ?? 0;
    if ((rowCount ?? 0) < CLEANUP_BATCH) return total;
  }
}
