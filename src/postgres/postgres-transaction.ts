import { randomUUID } from 'node:crypto';
import type { MessagePropertyHeaders } from 'amqplib';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import { HandlerConfigurationError } from '../messaging/messaging.errors.js';
import { activeContext, injectContext } from '../tracing/message-tracing.js';
import { bindLiterals, sqlLiteral } from './sql-literals.js';

/** The NOTIFY channel on which a committed outbox row wakes the relays. */
export const OUTBOX_CHANNEL = 'mp_outbox';

/** Headers of the message being handled that travel on to what its handler publishes. */
export const PROPAGATED_HEADERS = ['traceparent', 'tracestate', 'baggage'] as const;

/** Options of {@link PostgresTransaction.publish}. */
export interface OutboxPublishOptions {
  /** The AMQP messageId; default a new UUID. Give a stable one to let consumers deduplicate. */
  readonly messageId?: string;
  /** Default: the correlationId of the message being handled (outside a handler: the messageId). */
  readonly correlationId?: string;
  /** Application headers (trace context of the message being handled is added unless given). */
  readonly headers?: Readonly<Record<string, string | number | boolean>>;
  /**
   * Fail (and retry with backoff) when no queue is bound for the routing key; default false:
   * an event nobody subscribes to yet is not an error.
   */
  readonly mandatory?: boolean;
}

/** What the transaction knows of the message it handles (none outside a handler). */
export interface TransactionOrigin {
  readonly correlationId: string | undefined;
  readonly headers: Readonly<MessagePropertyHeaders>;
}

/**
 * A PostgreSQL transaction in progress: what a `postgres-transaction` or `postgres-commit`
 * handler gets as `ctx.transaction` (and `PostgresTransactions.run` gives outside a handler).
 *
 * - {@link query} (and {@link client}, for a query builder or ORM: `drizzle({ client })`) run a
 *   statement now and return its rows: `postgres-transaction` only.
 * - {@link execute} queues a statement that runs with the COMMIT, in the same round trip, and
 *   returns nothing; {@link publish} and {@link publishQuery} queue outbox rows the same way.
 *
 * The service commits when the handler returns, together with the message's processed marker.
 * Do not COMMIT or ROLLBACK yourself; throw to roll back.
 */
export class PostgresTransaction {
  private readonly statements: string[] = [];
  private readonly outboxRows: string[] = [];

  constructor(
    /** The pooled client the transaction runs on; none when it all runs at commit. */
    private readonly pooled: PoolClient | undefined,
    private readonly origin: TransactionOrigin | undefined,
  ) {}

  /** The pooled client the transaction runs on, for a query builder or ORM. */
  get client(): PoolClient {
    if (!this.pooled) throw deferredOnly();
    return this.pooled;
  }

  /** A statement run now, in the transaction. */
  query<R extends QueryResultRow = QueryResultRow>(
    text: string,
    values?: readonly unknown[],
  ): Promise<QueryResult<R>> {
    if (!this.pooled) return Promise.reject(deferredOnly());
    return this.pooled.query<R>(text, values as unknown[] | undefined);
  }

  /**
   * Queues a statement to run with the COMMIT (in the same round trip, in the order queued,
   * before the outbox rows). Placeholders `$1` … `$n` take `values` as escaped literals.
   */
  execute(text: string, values?: readonly unknown[]): void {
    this.statements.push(bindLiterals(text, values));
  }

  /**
   * Publishes through the outbox: the message becomes a row of this transaction (written with
   * its COMMIT, in the same round trip), sent by the relay once it commits (with publisher
   * confirms, at least once, under this messageId), and never sent if it rolls back. JSON,
   * persistent. Resolves with the messageId.
   */
  publish(
    exchange: string,
    routingKey: string,
    payload: unknown,
    options: OutboxPublishOptions = {},
  ): Promise<{ messageId: string }> {
    const body = Buffer.from(JSON.stringify(payload) ?? 'null');
    return Promise.resolve(this.outboxRow(exchange, routingKey, sqlLiteral(body), options));
  }

  /**
   * Like {@link publish}, with the body computed by the database at commit: `query` returns one
   * JSON value (`SELECT json_build_object(…) FROM …`), evaluated after the statements queued by
   * {@link execute}, so it sees what they wrote. No row, or a NULL, fails the commit.
   */
  publishQuery(
    exchange: string,
    routingKey: string,
    query: string,
    values: readonly unknown[] = [],
    options: OutboxPublishOptions = {},
  ): { messageId: string } {
    return this.outboxRow(
      exchange,
      routingKey,
      `convert_to((${bindLiterals(query, values)})::text, 'UTF8')`,
      options,
    );
  }

  private outboxRow(
    exchange: string,
    routingKey: string,
    bodySql: string,
    options: OutboxPublishOptions,
  ): { messageId: string } {
    const messageId = options.messageId ?? randomUUID();
    const correlationId = options.correlationId ?? this.origin?.correlationId ?? messageId;
    const headers: Record<string, unknown> = {};
    for (const name of PROPAGATED_HEADERS) {
      const value = this.origin?.headers[name] as unknown;
      if (typeof value === 'string') headers[name] = value;
      else if (Buffer.isBuffer(value)) headers[name] = value.toString('utf8');
    }
    // with tracing on, the row carries the context it is written in (the handler's span)
    injectContext(activeContext(), headers);
    Object.assign(headers, options.headers);
    const literal = (value: string): string => sqlLiteral(value);
    this.outboxRows.push(
      `(${literal(exchange)}, ${literal(routingKey)}, ${literal(messageId)}, ${literal(correlationId)}, ` +
        `'application/json', ${bodySql}, ${literal(JSON.stringify(headers))}::jsonb, ` +
        `${options.mandatory === true ? 'TRUE' : 'FALSE'}, clock_timestamp())`,
    );
    return { messageId };
  }

  /** Whether anything was published in this transaction. */
  get hasOutboxRows(): boolean {
    return this.outboxRows.length > 0;
  }

  /**
   * What runs with the COMMIT: the queued statements, then the INSERT of the outbox rows (in
   * one simple query); undefined when there is nothing.
   */
  atCommit(): string | undefined {
    const statements = [...this.statements];
    if (this.outboxRows.length > 0) {
      statements.push(
        `INSERT INTO mp_outbox (exchange, routing_key, message_id, correlation_id, content_type, body, headers, mandatory, created_at) VALUES ${this.outboxRows.join(', ')}`,
      );
    }
    return statements.length > 0 ? statements.join(';\n') : undefined;
  }
}

function deferredOnly(): HandlerConfigurationError {
  return new HandlerConfigurationError(
    "a 'postgres-commit' transaction runs as a whole at commit: queue statements with execute(), or declare the handler 'postgres-transaction' to query",
  );
}
