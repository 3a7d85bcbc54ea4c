import { LockLostError, LockTimeoutError } from '../lock/lock.errors.js';
import {
  DependencyUnavailableError,
  HandlerConfigurationError,
} from '../messaging/messaging.errors.js';
import { SessionEndedIdleError, sqlState } from './postgres.errors.js';
import { sqlLiteral } from './sql-literals.js';
import type { PostgresConnection } from './postgres.connection.js';
import {
  OUTBOX_CHANNEL,
  PostgresTransaction,
  type TransactionOrigin,
} from './postgres-transaction.js';

/** How the inbox path locks a key. */
export interface PostgresLockOptions {
  /** How long a transaction waits for its key's lock before the message is handed back (`LOCK_WAIT_MS`). */
  readonly waitMs: number;
  /**
   * How long a transaction holding a lock may sit idle (the handler working outside the
   * database) before the server ends it (`LOCK_TTL_MS`): the lock's lease.
   */
  readonly ttlMs: number;
}

/** The inbox entry of a message, and the key its transaction locks. */
export interface InboxEntry {
  readonly queue: string;
  readonly messageId: string;
  /** The handler's lock key; undefined: no lock (the inbox row alone orders its deliveries). */
  readonly lockKey: string | undefined;
}

/** What {@link PostgresTransactions.runInbox} did. */
export type InboxOutcome<T> =
  | { readonly status: 'done'; readonly value: T }
  /** The inbox row existed: an earlier delivery committed this message. Nothing ran. */
  | { readonly status: 'duplicate' };

/** What `runCommit` settled: committed, or refused by the inbox row of an earlier delivery. */
type CommitStatus = 'done' | 'duplicate';

/** A `postgres-commit` transaction waiting for its group. */
interface QueuedCommit {
  readonly entry: InboxEntry;
  readonly tx: PostgresTransaction;
  readonly resolve: (status: CommitStatus) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * The most transactions committed as one. Measured on the ledger (docs/benchmarks.md): 5 per
 * commit already gives most of the gain; more only lengthens the rollback of a group that fails.
 */
export const MAX_COMMIT_GROUP = 32;

/**
 * The seed of the lock keys' hash: keeps the service's advisory locks apart from the
 * application's own (which take plain integers or `hashtext`).
 */
const LOCK_SEED = 0x6d70; // 'mp'

/** SQLSTATE of a lock wait that ran past `lock_timeout`. */
const LOCK_NOT_AVAILABLE = '55P03';
/** SQLSTATE of a duplicate key, and the inbox's key: the marker of a processed message. */
const UNIQUE_VIOLATION = '23505';
const INBOX_KEY = 'mp_inbox_pkey';

function constraintOf(error: unknown): string | undefined {
  const constraint = (error as { constraint?: unknown } | undefined)?.constraint;
  return typeof constraint === 'string' ? constraint : undefined;
}

/**
 * Transactions on the service's PostgreSQL (`DATABASE_URL`): the inbox path of
 * `postgres-transaction` handlers, and {@link run} for code outside a handler (an HTTP request
 * that writes rows and publishes through the outbox). Injectable anywhere; without
 * `DATABASE_URL` every call fails with a configuration error.
 */
export class PostgresTransactions {
  /** The relay of this process, woken after each commit with outbox rows (no NOTIFY then). */
  private relay: { readonly running: boolean; committed(): void } | undefined;
  /** `postgres-commit` transactions waiting for a connection, committed in groups. */
  private readonly queuedCommits: QueuedCommit[] = [];
  private committingGroups = 0;

  constructor(
    readonly connection: PostgresConnection | undefined,
    private readonly lock: PostgresLockOptions = { waitMs: 5_000, ttlMs: 30_000 },
  ) {}

  /**
   * Wakes `relay` after each commit that wrote outbox rows, while it runs: this process's rows go
   * out without a NOTIFY (whose commit-time lock serializes the committing transactions of the
   * whole server). Without a running relay here, the COMMIT carries a NOTIFY for the relays of
   * the other replicas.
   */
  useRelay(relay: { readonly running: boolean; committed(): void }): void {
    this.relay = relay;
  }

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
  async run<T>(work: (tx: PostgresTransaction) => Promise<T>): Promise<T> {
    let tx: PostgresTransaction | undefined;
    const value = await this.require().transaction(
      (client) => work((tx = new PostgresTransaction(client, undefined))),
      undefined,
      () => this.commitOf(tx),
    );
    this.afterCommit(tx);
    return value;
  }

  /**
   * The inbox: in one transaction, the lock of the message's key (a transaction-level advisory
   * lock, held until COMMIT: another transaction on the key waits up to `LOCK_WAIT_MS`, then
   * `LockTimeoutError`), the message's processed marker (its `mp_inbox` row: a row already there
   * means `duplicate`, and nothing runs), then `work`, then the outbox rows and COMMIT. Effect,
   * marker and outbox rows commit together or not at all. The first statements go in one round
   * trip, and so do the last.
   */
  async runInbox<T>(
    entry: InboxEntry,
    origin: TransactionOrigin,
    work: (tx: PostgresTransaction) => Promise<T>,
  ): Promise<InboxOutcome<T>> {
    let tx: PostgresTransaction | undefined;
    const { lockKey } = entry;
    try {
      const outcome = await this.require().transaction<InboxOutcome<T>>(
        async (client, opened) => {
          const marked = opened[opened.length - 1];
          if (marked.rowCount === 0) return { status: 'duplicate' };
          tx = new PostgresTransaction(client, origin);
          return { status: 'done', value: await work(tx) };
        },
        () =>
          [
            ...this.opening(lockKey, 'interactive'),
            `INSERT INTO mp_inbox (queue, message_id) VALUES (${sqlLiteral(entry.queue)}, ${sqlLiteral(entry.messageId)}) ON CONFLICT DO NOTHING`,
          ].join(';\n'),
        () => this.commitOf(tx),
      );
      this.afterCommit(tx);
      return outcome;
    } catch (error) {
      if (lockKey !== undefined && tx === undefined && sqlState(error) === LOCK_NOT_AVAILABLE) {
        throw new LockTimeoutError(lockKey, this.lock.waitMs);
      }
      // the lease ran out: the server ended the session, so nothing was written and the key's
      // next transaction may already have run; retried (an attempt), never acked
      if (error instanceof SessionEndedIdleError && lockKey !== undefined) {
        throw new LockLostError(lockKey, 'expired');
      }
      throw error;
    }
  }

  /**
   * A whole transaction in one round trip (`postgres-commit`): `work` runs first, with no
   * connection, queueing statements (`execute`) and outbox rows; then BEGIN, the key's lock, the
   * message's inbox row, the statements, the outbox rows and COMMIT go in one simple query. An
   * inbox row already there fails the insert and rolls everything back: `duplicate`. `work`
   * runs again for a redelivery, and its queued writes are then refused with the marker.
   *
   * Group commit: while every connection of the pool is busy committing, the transactions that
   * arrive wait and then commit together, up to {@link MAX_COMMIT_GROUP} in one (one BEGIN, one
   * insert of their inbox rows, one COMMIT). Nothing waits for a group to fill: an idle pool
   * commits a transaction alone at once.
   */
  async runCommit<T>(
    entry: InboxEntry,
    origin: TransactionOrigin,
    work: (tx: PostgresTransaction) => Promise<T>,
  ): Promise<InboxOutcome<T>> {
    const tx = new PostgresTransaction(undefined, origin);
    const value = await work(tx);
    const status = await this.commitGrouped(entry, tx);
    return status === 'duplicate' ? { status } : { status, value };
  }

  private commitGrouped(entry: InboxEntry, tx: PostgresTransaction): Promise<CommitStatus> {
    this.require();
    return new Promise<CommitStatus>((resolve, reject) => {
      this.queuedCommits.push({ entry, tx, resolve, reject });
      this.pumpCommits();
    });
  }

  /**
   * Starts groups while fewer than the pool's size are committing. Each takes its share of what
   * waits (the waiting split over the free connections), so a burst spreads over the pool and a
   * busy pool's backlog goes in few transactions.
   */
  private pumpCommits(): void {
    const limit = this.require().poolMax;
    while (this.queuedCommits.length > 0 && this.committingGroups < limit) {
      const share = Math.ceil(this.queuedCommits.length / (limit - this.committingGroups));
      const group = this.queuedCommits.splice(0, Math.min(MAX_COMMIT_GROUP, share));
      this.committingGroups += 1;
      void this.commitGroup(group).finally(() => {
        this.committingGroups -= 1;
        this.pumpCommits();
      });
    }
  }

  /**
   * Commits `group` in one transaction. When a statement fails the whole group rolls back, and
   * each is committed again on its own to tell whose it was (a duplicate, a lock waited on past
   * `LOCK_WAIT_MS`, a handler's statement that fails): only that one fails. An outage fails
   * them all as "not now" (whether the COMMIT took effect is what their inbox rows settle on
   * redelivery).
   */
  private async commitGroup(group: readonly QueuedCommit[]): Promise<void> {
    if (group.length === 1) {
      const [alone] = group;
      await this.commitAlone(alone.entry, alone.tx).then(alone.resolve, alone.reject);
      return;
    }
    try {
      await this.require().transaction(
        () => Promise.resolve(),
        () => this.groupStatements(group),
        () => undefined,
      );
    } catch (error) {
      if (error instanceof DependencyUnavailableError) {
        for (const queued of group) queued.reject(error);
        return;
      }
      await Promise.all(
        group.map((queued) =>
          this.commitAlone(queued.entry, queued.tx).then(queued.resolve, queued.reject),
        ),
      );
      return;
    }
    if (group.some((queued) => queued.tx.hasOutboxRows) && this.relay?.running) {
      this.relay.committed();
    }
    for (const queued of group) queued.resolve('done');
  }

  /**
   * The group's transaction: its keys' locks taken in one order (sorted, so two groups never
   * wait on each other in a cycle; a key twice is taken once, the lock being re-entrant in its
   * transaction), the inbox rows in one insert, then each message's statements and outbox rows
   * in delivery order, so an event's body read back at commit sees its own message's writes and
   * not a later one's.
   */
  private groupStatements(group: readonly QueuedCommit[]): string {
    const keys = [
      ...new Set(group.map((queued) => queued.entry.lockKey).filter((key) => key !== undefined)),
    ].sort();
    const statements = ['BEGIN'];
    if (keys.length > 0) {
      statements.push(
        `SET LOCAL lock_timeout = ${this.lockTimeoutMs()}`,
        // a function scan yields the array's elements in order: the locks are taken in it
        `SELECT pg_advisory_xact_lock(hashtextextended(key, ${LOCK_SEED})) FROM unnest(ARRAY[${keys.map(sqlLiteral).join(', ')}]::text[]) AS key`,
      );
    }
    statements.push(
      `INSERT INTO mp_inbox (queue, message_id) VALUES ${group
        .map(({ entry }) => `(${sqlLiteral(entry.queue)}, ${sqlLiteral(entry.messageId)})`)
        .join(', ')}`,
    );
    for (const queued of group) {
      const atCommit = queued.tx.atCommit();
      if (atCommit !== undefined) statements.push(atCommit);
    }
    if (!this.relay?.running && group.some((queued) => queued.tx.hasOutboxRows)) {
      statements.push(`SELECT pg_notify('${OUTBOX_CHANNEL}', '')`);
    }
    statements.push('COMMIT');
    return statements.join(';\n');
  }

  /** One message's transaction in one round trip. */
  private async commitAlone(entry: InboxEntry, tx: PostgresTransaction): Promise<CommitStatus> {
    const { lockKey } = entry;
    try {
      await this.require().transaction(
        () => Promise.resolve(),
        () =>
          [
            ...this.opening(lockKey, 'at-commit'),
            // no ON CONFLICT: a second delivery fails here, before any of its writes
            `INSERT INTO mp_inbox (queue, message_id) VALUES (${sqlLiteral(entry.queue)}, ${sqlLiteral(entry.messageId)})`,
            tx.atCommit(),
            this.notifyFor(tx),
            'COMMIT',
          ]
            .filter((x) => x !== undefined)
            .join(';\n'),
        () => undefined,
      );
    } catch (error) {
      if (sqlState(error) === UNIQUE_VIOLATION && constraintOf(error) === INBOX_KEY) {
        return 'duplicate';
      }
      if (lockKey !== undefined && sqlState(error) === LOCK_NOT_AVAILABLE) {
        throw new LockTimeoutError(lockKey, this.lock.waitMs);
      }
      throw error;
    }
    this.afterCommit(tx);
    return 'done';
  }

  /** The transaction's outbox rows, a NOTIFY when no relay runs here, COMMIT: one round trip. */
  private commitOf(tx: PostgresTransaction | undefined): string {
    const statements = [tx?.atCommit(), this.notifyFor(tx), 'COMMIT'];
    return statements.filter((x) => x !== undefined).join(';\n');
  }

  /** A NOTIFY for the relays of other processes, when the transaction wrote outbox rows and no relay runs here. */
  private notifyFor(tx: PostgresTransaction | undefined): string | undefined {
    return tx?.hasOutboxRows && !this.relay?.running
      ? `SELECT pg_notify('${OUTBOX_CHANNEL}', '')`
      : undefined;
  }

  /**
   * BEGIN and the key's lock (waiting up to LOCK_WAIT_MS): the start of an inbox transaction.
   * `interactive`: also its lease (the handler works between statements) and `lock_timeout` back
   * to the default for the handler's own statements; `at-commit`: the statements queued with it
   * follow at once, so they keep LOCK_WAIT_MS as their lock timeout too.
   */
  private opening(lockKey: string | undefined, mode: 'interactive' | 'at-commit'): string[] {
    const statements = ['BEGIN'];
    if (mode === 'interactive') {
      // a transaction left idle this long (its handler stuck outside the database) is ended by
      // the server, and its locks with it: the lease of the lock below
      statements.push(
        `SET LOCAL idle_in_transaction_session_timeout = ${Math.ceil(this.lock.ttlMs)}`,
      );
    }
    if (lockKey !== undefined) {
      // a transaction-level advisory lock on the key's 64-bit hash: nothing written, held to
      // COMMIT or ROLLBACK, released by the server when the session ends
      statements.push(
        `SET LOCAL lock_timeout = ${this.lockTimeoutMs()}`,
        `SELECT pg_advisory_xact_lock(hashtextextended(${sqlLiteral(lockKey)}, ${LOCK_SEED}))`,
      );
      if (mode === 'interactive') statements.push('SET LOCAL lock_timeout = DEFAULT');
    }
    return statements;
  }

  private lockTimeoutMs(): number {
    return Math.max(1, Math.ceil(this.lock.waitMs));
  }

  private afterCommit(tx: PostgresTransaction | undefined): void {
    if (tx?.hasOutboxRows && this.relay?.running) this.relay.committed();
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
