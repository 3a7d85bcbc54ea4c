/** Matches the ledger handler's `transaction.*` binding. */
export const DEFAULT_ROUTING_KEY = 'transaction.created';

export const DEFAULT_VERIFY_TIMEOUT_S = 120;
export const VERIFY_POLL_INTERVAL_MS = 500;

/** Publishes awaiting a broker confirm before the publisher waits for one to settle. */
export const DEFAULT_MAX_IN_FLIGHT = 1000;

/** Below this many messages, a command lists each one; above, it prints a summary. */
export const LIST_LIMIT = 50;

/** A bound on what a plan keeps in memory (every body is built up front). */
export const MAX_COUNT = 1_000_000;
export const MAX_ACCOUNTS = 100_000;
export const MAX_MALFORMED = 100_000;

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** 128 + SIGINT, what a shell reports for a run stopped with Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

/** Shown as `connection_name` in the RabbitMQ management UI. */
export const CONNECTION_NAME_PREFIX = 'message-processor';
