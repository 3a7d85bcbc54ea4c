import { randomUUID } from 'node:crypto';
import type { MessagePropertyHeaders } from 'amqplib';
import pg from 'pg';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';

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
 * A PostgreSQL transaction in progress: what a `postgres-transaction` handler gets as
 * `ctx.transaction` (and `PostgresTransactions.run` gives outside a handler). Write through
 * {@link query}, or hand {@link client} to a query builder or ORM (e.g. `drizzle({ client })`):
 * every statement on it is part of the transaction, which the service commits when the handler
 * returns, together with the message's processed marker. Do not COMMIT or ROLLBACK yourself;
 * throw to roll back.
 */
export class PostgresTransaction {
  private readonly outboxRows: string[] = [];

  constructor(
    /** The pooled client the transaction runs on. */
    readonly client: PoolClient,
    private readonly origin: TransactionOrigin | undefined,
  ) {}

  /** A statement in the transaction. */
  query<R extends QueryResultRow = QueryResultRow>(
    text: string,
    values?: readonly unknown[],
  ): Promise<QueryResult<R>> {
    return this.client.query<R>(text, values as unknown[] | undefined);
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
    const messageId = options.messageId ?? randomUUID();
    const correlationId = options.correlationId ?? this.origin?.correlationId ?? messageId;
    const headers: Record<string, unknown> = {};
    for (const name of PROPAGATED_HEADERS) {
      const value = this.origin?.headers[name] as unknown;
      if (typeof value === 'string') headers[name] = value;
      else if (Buffer.isBuffer(value)) headers[name] = value.toString('utf8');
    }
    Object.assign(headers, options.headers);
    const body = Buffer.from(JSON.stringify(payload) ?? 'null');
    const literal = (value: string): string => pg.escapeLiteral(value);
    this.outboxRows.push(
      `(${literal(exchange)}, ${literal(routingKey)}, ${literal(messageId)}, ${literal(correlationId)}, ` +
        `'application/json', decode('${body.toString('hex')}', 'hex'), ${literal(JSON.stringify(headers))}::jsonb, ` +
        `${options.mandatory === true ? 'true' : 'false'}, clock_timestamp())`,
    );
    return Promise.resolve({ messageId });
  }

  /** Whether anything was published in this transaction. */
  get hasOutboxRows(): boolean {
    return this.outboxRows.length > 0;
  }

  /** The INSERT of the outbox rows published so far, or undefined when there are none. */
  outboxInsert(): string | undefined {
    if (this.outboxRows.length === 0) return undefined;
    return `INSERT INTO mp_outbox (exchange, routing_key, message_id, correlation_id, content_type, body, headers, mandatory, created_at) VALUES ${this.outboxRows.join(', ')}`;
  }
}
