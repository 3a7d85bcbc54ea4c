import { DependencyUnavailableError } from '../messaging/messaging.errors.js';

/**
 * SQLSTATEs that say the server or the link is gone, not that the statement was wrong: class 08
 * (connection exception), 57P01–57P03 (administrator shutdown, crash shutdown, cannot connect
 * now: starting up or shutting down) and 53300 (too many connections).
 */
const OUTAGE_CODES = /^(08...|57P0[123]|53300)$/;

/** What node-postgres and Node say when the socket is gone or never opened. */
const OUTAGE_MESSAGE =
  /^(Connection terminated|Client has encountered a connection error|Client was closed|timeout expired|Query read timeout|Cannot use a pool after calling end)|\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN)\b/;

/** The SQLSTATE of a PostgreSQL error (`code`), if it has one. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Whether a PostgreSQL error means "the database is unreachable" rather than "this failed". */
export function isPostgresOutage(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = sqlState(error);
  if (code !== undefined && OUTAGE_CODES.test(code)) return true;
  return OUTAGE_MESSAGE.test(error.message);
}

/**
 * A PostgreSQL error as it may be logged or kept as a cause: name, message, stack and SQLSTATE
 * only. node-postgres' pool attaches the failed client to the errors it emits (`err.client`),
 * and a client holds its connection parameters, the password among them.
 */
export function loggablePostgresError(error: unknown): Error {
  if (!(error instanceof Error)) return new Error(String(error));
  const copy = new Error(error.message);
  copy.name = error.name;
  copy.stack = error.stack;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') Object.assign(copy, { code });
  return copy;
}

/**
 * The error to report for a PostgreSQL failure: an outage becomes "not now"
 * ({@link DependencyUnavailableError}, the message is handed back, no attempt spent), anything
 * else stays what it was (a failed attempt, retried with backoff).
 */
export function asPostgresFailure(error: unknown): unknown {
  if (error instanceof DependencyUnavailableError || !isPostgresOutage(error)) return error;
  return new DependencyUnavailableError('postgres', (error as Error).message, {
    cause: loggablePostgresError(error),
  });
}

/** SQLSTATE of a session the server ended for sitting idle in a transaction past its timeout. */
export const IDLE_IN_TRANSACTION_TIMEOUT = '25P03';

/**
 * The server ended the transaction's session: it sat idle (its code working outside the
 * database) longer than `idle_in_transaction_session_timeout`, the lease of its lock. Nothing it
 * wrote committed. A failed attempt, retried like any other.
 */
export class SessionEndedIdleError extends Error {
  override readonly name = 'SessionEndedIdleError';
  readonly code = IDLE_IN_TRANSACTION_TIMEOUT;

  constructor() {
    super(
      'the transaction sat idle past its lease (LOCK_TTL_MS): the server ended it, nothing committed',
    );
  }
}
