import { HandlerConfigurationError } from '../messaging/messaging.errors.js';
import type { PostgresConnection } from './postgres.connection.js';
import { StaleFencingTokenError } from './postgres.errors.js';
import { PostgresTransaction, type TransactionOrigin } from './postgres-transaction.js';

/** The inbox entry of a message, and the fence its transaction must pass. */
export interface InboxEntry {
  readonly queue: string;
  readonly messageId: string;
  /** The message's lock and its fencing token; none when the lock is the messageId itself. */
  readonly fence: { readonly lockKey: string; readonly token: number } | undefined;
}

/** What {@link PostgresTransactions.runInbox} did. */
export type InboxOutcome<T> =
  | { readonly status: 'done'; readonly value: T }
  /** The inbox row existed: an earlier delivery committed this message. Nothing ran. */
  | { readonly status: 'duplicate' };

/**
 * Transactions on the service's PostgreSQL (`DATABASE_URL`): the inbox path of
 * `postgres-transaction` handlers, and {@link run} for code outside a handler (an HTTP request
 * that writes rows and publishes through the outbox). Injectable anywhere; without
 * `DATABASE_URL` every call fails with a configuration error.
 */
export class PostgresTransactions {
  constructor(readonly connection: PostgresConnection | undefined) {}

  /** Whether `DATABASE_URL` is set. */
  get configured(): boolean {
    return this.connection !== undefined;
  }

  /** Whether PostgreSQL is reachable and migrated (always false when not configured). */
  isReady(): boolean {
    return this.connection?.isReady() ?? false;
  }

  /**
   * Runs `work` in a transaction and commits it when `work` resolves (rolls back when it
   * throws). What `work` publishes with `tx.publish()` is sent by the outbox relay after the
   * commit. Rejects with `DependencyUnavailableError` when PostgreSQL is unreachable.
   */
  run<T>(work: (tx: PostgresTransaction) => Promise<T>): Promise<T> {
    return this.require().transaction((client) => work(new PostgresTransaction(client, undefined)));
  }

  /**
   * The inbox: in one transaction, the message's processed marker (its `mp_inbox` row: a row
   * already there means `duplicate`, and nothing runs), the fence (a token lower than one
   * already applied to the key is refused with {@link StaleFencingTokenError}; the fence row
   * stays locked to the commit, so transactions of one key follow each other), then `work`,
   * then COMMIT. Effect and marker commit together or not at all.
   */
  runInbox<T>(
    entry: InboxEntry,
    origin: TransactionOrigin,
    work: (tx: PostgresTransaction) => Promise<T>,
  ): Promise<InboxOutcome<T>> {
    return this.require().transaction(async (client) => {
      const marked = await client.query(
        'INSERT INTO mp_inbox (queue, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING',
        [entry.queue, entry.messageId],
      );
      if (marked.rowCount === 0) return { status: 'duplicate' };
      if (entry.fence) {
        const fenced = await client.query(
          `INSERT INTO mp_fences AS f (lock_key, fencing_token) VALUES ($1, $2)
           ON CONFLICT (lock_key) DO UPDATE SET fencing_token = EXCLUDED.fencing_token, updated_at = now()
           WHERE f.fencing_token <= EXCLUDED.fencing_token`,
          [entry.fence.lockKey, entry.fence.token],
        );
        if (fenced.rowCount === 0) {
          throw new StaleFencingTokenError(entry.fence.lockKey, entry.fence.token);
        }
      }
      const value = await work(new PostgresTransaction(client, origin));
      return { status: 'done', value };
    });
  }

  private require(): PostgresConnection {
    if (!this.connection) {
      throw new HandlerConfigurationError(
        'PostgreSQL is not configured: set DATABASE_URL to use postgres-transaction effects and the outbox',
      );
    }
    return this.connection;
  }
}
