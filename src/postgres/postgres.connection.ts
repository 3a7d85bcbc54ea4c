import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { PoolClient, QueryResult } from 'pg';
import { redactUrl } from '../config/secret-redaction.js';
import { isFailureWorthLogging } from '../logging/failure-log.throttle.js';
import { coalesceWrites } from '../net/write-coalescing.js';
import {
  asPostgresFailure,
  IDLE_IN_TRANSACTION_TIMEOUT,
  isPostgresOutage,
  loggablePostgresError,
  SessionEndedIdleError,
  sqlState,
} from './postgres.errors.js';
import { type Migration, migrate, SERVICE_MIGRATIONS } from './postgres.schema.js';

/** Where the connection logs (the service's `PinoLogger`). */
export interface PostgresLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/** What the connection reports about itself (the service's `OutboxMetrics`). */
export interface PostgresConnectionMetrics {
  setPostgresConnected(up: boolean): void;
}

export interface PostgresConnectionOptions {
  readonly url: string;
  readonly poolMax: number;
}

type PostgresEvents = { ready: []; down: [] };

/** A connection attempt gives up after this long (the pool's `connectionTimeoutMillis`). */
export const POSTGRES_CONNECT_TIMEOUT_MS = 5_000;
const PROBE_MIN_MS = 250;
const PROBE_MAX_MS = 5_000;

/**
 * The PostgreSQL pool of the process (node-postgres) and its state. Ready once the schema is
 * migrated; down from the first failure that says the server is unreachable until a probe
 * (`SELECT 1`, capped jittered backoff) answers again. `ready`/`down` let consumers of
 * `postgres-transaction` handlers pause intake, as they do for Redis.
 */
export class PostgresConnection extends EventEmitter<PostgresEvents> {
  readonly pool: pg.Pool;
  private readonly migrations = new Map<string, readonly Migration[]>([
    ['message-processor', SERVICE_MIGRATIONS],
  ]);
  private ready = false;
  private migrated = false;
  private failures = 0;
  private probing: Promise<void> | undefined;
  private closing = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly options: PostgresConnectionOptions,
    private readonly metrics: PostgresConnectionMetrics,
    private readonly logger: PostgresLogger,
  ) {
    super();
    this.pool = new pg.Pool({
      ...this.clientConfig('message-processor'),
      max: options.poolMax,
      idleTimeoutMillis: 30_000,
    });
    // an idle client whose server went away (restart, pg_terminate_backend): not a crash
    this.pool.on('error', (error) => this.failed(error));
    // node-postgres writes each protocol message of a query (parse, bind, describe, execute,
    // sync) with a write of its own: one writev per event-loop pass instead (TLS included: the
    // stream is the TLS socket once connected)
    this.pool.on('connect', (client) => {
      coalesceWrites((client as pg.Client).connection.stream);
      // A pooled client always has an 'error' listener. pg-pool removes its own when it hands a
      // client out, and a release inside the socket's read (`pool.query`'s callback, for one)
      // hands the client straight to a waiting `connect()`, whose caller listens only a
      // microtask later: a FATAL in the same read (pg_terminate_backend) was an uncaught
      // exception. Whoever holds the client still hears the error and reports it
      // (transaction(), the pool when idle); this listener only keeps the process up between.
      client.on('error', () => undefined);
    });
    this.metrics.setPostgresConnected(false);
  }

  /** A client of its own (not pooled), e.g. for LISTEN. */
  newClient(applicationName: string): pg.Client {
    return new pg.Client(this.clientConfig(`message-processor:${applicationName}`));
  }

  private clientConfig(applicationName: string): pg.ClientConfig {
    return {
      connectionString: this.options.url,
      connectionTimeoutMillis: POSTGRES_CONNECT_TIMEOUT_MS,
      keepAlive: true,
      application_name: applicationName,
    };
  }

  /** How many connections the pool opens at most. */
  get poolMax(): number {
    return this.options.poolMax;
  }

  /** The URL without its password, for logs and health bodies. */
  describeUrl(): string {
    return redactUrl(this.options.url);
  }

  /**
   * Tables of another owner (the ledger's, a team's), migrated with the service's own at start.
   * Call before the application bootstraps.
   */
  addMigrations(owner: string, migrations: readonly Migration[]): void {
    this.migrations.set(owner, migrations);
  }

  /** Connects and migrates in the background, retrying until it succeeds or the app closes. */
  start(): void {
    this.probe();
  }

  isReady(): boolean {
    return this.ready && !this.closing;
  }

  /**
   * Runs `work` in a transaction on a pooled client: `open` (BEGIN), `work`, `close` (COMMIT),
   * or ROLLBACK when it throws. `open` and `close` may carry more statements after BEGIN and
   * before COMMIT (one round trip for them all, in the simple query protocol: values in them
   * must be literals escaped by the client); `work` gets the results of `open`'s statements
   * after BEGIN. `close` may return undefined when `open` ended the transaction itself (a whole
   * transaction in one round trip). A failure that says the server is unreachable rejects with
   * `DependencyUnavailableError` (and marks the connection down until a probe succeeds); whether
   * a COMMIT that failed so took effect is then unknown, which is what the inbox row settles.
   */
  async transaction<T>(
    work: (client: PoolClient, opened: readonly QueryResult[]) => Promise<T>,
    open: () => string = () => 'BEGIN',
    close: (value: T) => string | undefined = () => 'COMMIT',
  ): Promise<T> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      this.failed(error);
      throw asPostgresFailure(error);
    }
    let broken: unknown;
    // the pool listens for errors of idle clients only: one checked out (a handler awaiting
    // something else, the relay awaiting confirms) whose session is terminated must not crash
    // the process; the next query on it fails and says so
    const onError = (error: Error): void => {
      broken ??= error;
      this.failed(error);
    };
    client.on('error', onError);
    try {
      const opened = (await client.query(open())) as QueryResult | QueryResult[];
      const result = await work(client, Array.isArray(opened) ? opened.slice(1) : []);
      const closing = close(result);
      if (closing !== undefined) await client.query(closing);
      return result;
    } catch (error) {
      if (isPostgresOutage(error)) broken ??= error;
      else if (broken === undefined) {
        await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      }
      // the server ended this session for sitting idle in its transaction past its lease: the
      // work took too long (a failed attempt), not an outage
      if (sqlState(broken) === IDLE_IN_TRANSACTION_TIMEOUT) throw new SessionEndedIdleError();
      if (broken !== undefined) this.failed(broken);
      throw asPostgresFailure(error);
    } finally {
      client.off('error', onError);
      // a client whose link failed is destroyed, not returned to the pool
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  /**
   * Reports a failure seen by a user of the pool. An outage starts a probe: the connection is
   * down (consumers pause) only if the probe cannot reach the server either, so one session
   * ended by an administrator does not pause anything.
   */
  failed(error: unknown): void {
    if (this.closing || !isPostgresOutage(error)) return;
    if (isFailureWorthLogging(++this.failures)) {
      this.logger.warn(
        {
          url: this.describeUrl(),
          err: loggablePostgresError(error),
          code: 'POSTGRES_CONNECTION_LOST',
        },
        'PostgreSQL connection lost; checking the server',
      );
    }
    this.probe();
  }

  private probe(): void {
    if (this.probing || this.closing) return;
    this.probing = this.probeLoop().finally(() => (this.probing = undefined));
  }

  private async probeLoop(): Promise<void> {
    let delay = PROBE_MIN_MS;
    while (!this.closing) {
      try {
        const client = await this.pool.connect();
        const onError = (): void => undefined; // the query in progress fails and says so
        client.on('error', onError);
        try {
          if (!this.migrated) {
            for (const [owner, list] of this.migrations) {
              const applied = await migrate(client, owner, list);
              if (applied.length > 0) {
                this.logger.info({ owner, versions: applied }, 'PostgreSQL schema migrated');
              }
            }
            this.migrated = true;
          }
          await client.query('SELECT 1');
        } finally {
          client.off('error', onError);
          client.release();
        }
        this.failures = 0;
        if (this.ready) return;
        this.ready = true;
        this.metrics.setPostgresConnected(true);
        this.logger.info({ url: this.describeUrl() }, 'PostgreSQL ready');
        this.emit('ready');
        return;
      } catch (error) {
        if (this.ready && isPostgresOutage(error)) {
          this.ready = false;
          this.metrics.setPostgresConnected(false);
          this.logger.warn(
            {
              url: this.describeUrl(),
              err: loggablePostgresError(error),
              code: 'POSTGRES_UNAVAILABLE',
            },
            'PostgreSQL unavailable; consumers of postgres-transaction handlers pause until it is back',
          );
          this.emit('down');
        }
        if (!isPostgresOutage(error)) {
          // not an outage (a permission, a migration that cannot apply): say so, keep trying
          this.logger.error(
            {
              url: this.describeUrl(),
              err: loggablePostgresError(error),
              code: 'POSTGRES_START_FAILED',
            },
            'PostgreSQL connection or schema migration failed; retrying',
          );
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay * (0.5 + Math.random() / 2));
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
        delay = Math.min(delay * 2, PROBE_MAX_MS);
      }
    }
  }

  /** Stops probing and closes the pool (waits for checked-out clients to be released). */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.wake?.();
    await this.probing;
    this.ready = false;
    this.metrics.setPostgresConnected(false);
    await this.pool.end();
  }
}
