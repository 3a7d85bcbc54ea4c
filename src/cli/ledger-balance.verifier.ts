import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { BalanceStore } from './cli-args.js';
import { messageOf } from './cli-error.formatter.js';
import { compareBalances, type BalanceMismatch } from './ledger-balance.comparison.js';
import { balanceKey, LEDGER_BALANCES_TABLE } from '../ledger/ledger.constants.js';
import { isClusterClient, type RedisClient, redisFromUrl } from '../redis/redis.connection.js';

/** Keys per MGET, so thousands of accounts do not make one huge command. */
const MGET_BATCH = 500;
const REDIS_CONNECT_TIMEOUT_MS = 5000;

export interface VerifyOptions {
  /** Give up after this long. */
  readonly timeoutMs: number;
  /** Wait this long between two reads of every balance. */
  readonly pollIntervalMs: number;
  /** Called after each read with how many accounts already match. */
  readonly onPoll?: (matching: number) => void;
}

export interface VerifyResult {
  readonly matched: boolean;
  /** False when Redis could not be read at all before the timeout. */
  readonly balancesRead: boolean;
  /** Empty when matched; otherwise the mismatches of the last successful read. */
  readonly mismatches: readonly BalanceMismatch[];
  readonly elapsedMs: number;
  /** The last Redis error, when the last read failed. */
  readonly lastError: string | undefined;
}

/** Where balances are read from, and the last connection error it saw. */
interface BalanceSource {
  read(accountIds: readonly string[]): Promise<Map<string, string | null>>;
  connectionError(): string | undefined;
  close(): Promise<void>;
}

/**
 * Reads every balance of `expected` from the ledger's store (Redis `ledger:balance:<accountId>`,
 * or PostgreSQL's `ledger_balances`) until all equal their expected value (missing = 0) or the
 * timeout passes. The store being unreachable or restarting is waited out like a lagging
 * service, up to the same timeout.
 */
export async function verifyLedgerBalances(
  store: BalanceStore,
  expected: ReadonlyMap<string, number>,
  options: VerifyOptions,
): Promise<VerifyResult> {
  const source =
    store.kind === 'redis' ? redisSource(store.url, options) : postgresSource(store.url);
  try {
    return await poll(source, expected, options);
  } finally {
    await source.close();
  }
}

function redisSource(url: string, options: VerifyOptions): BalanceSource {
  let connectionError: string | undefined;
  const redis = redisFromUrl(url, {
    protocol: 2, // as the service's clients (redisClientOptions)
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    // Fail a read fast while Redis is away; the poll loop retries it.
    maxRetriesPerRequest: 1,
    retryStrategy: () => options.pollIntervalMs,
  });
  redis.on('error', (err: Error) => {
    connectionError = err.message;
  });
  redis.on('ready', () => {
    connectionError = undefined;
  });
  return {
    read: (ids) => readRedisBalances(redis, ids),
    connectionError: () => connectionError,
    close: () => Promise.resolve(redis.disconnect()),
  };
}

function postgresSource(url: string): BalanceSource {
  const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 5_000 });
  // an idle client dropped by a restarting server: the next read reports it
  pool.on('error', () => undefined);
  return {
    read: async (ids) => {
      const { rows } = await pool.query<{ account_id: string; balance_cents: string }>(
        `SELECT account_id, balance_cents::text FROM ${LEDGER_BALANCES_TABLE} WHERE account_id = ANY($1)`,
        [ids],
      );
      const values = new Map<string, string | null>(ids.map((id) => [id, null]));
      for (const row of rows) values.set(row.account_id, row.balance_cents);
      return values;
    },
    connectionError: () => undefined,
    close: () => pool.end(),
  };
}

async function poll(
  source: BalanceSource,
  expected: ReadonlyMap<string, number>,
  options: VerifyOptions,
): Promise<VerifyResult> {
  const started = performance.now();
  const deadline = started + options.timeoutMs;
  let mismatches: readonly BalanceMismatch[] = [];
  let lastError: string | undefined;
  let balancesRead = false;
  for (;;) {
    try {
      mismatches = compareBalances(expected, await source.read([...expected.keys()]));
      balancesRead = true;
      lastError = undefined;
      options.onPoll?.(expected.size - mismatches.length);
      if (mismatches.length === 0) {
        return {
          matched: true,
          balancesRead,
          mismatches,
          elapsedMs: performance.now() - started,
          lastError,
        };
      }
    } catch (err) {
      // The connection's own error says more than "max retries per request reached".
      lastError = source.connectionError() ?? messageOf(err);
    }
    const remaining = deadline - performance.now();
    if (remaining <= 0) break;
    await sleep(Math.min(options.pollIntervalMs, remaining));
  }
  return {
    matched: false,
    balancesRead,
    mismatches,
    elapsedMs: performance.now() - started,
    lastError,
  };
}

async function readRedisBalances(
  redis: RedisClient,
  accountIds: readonly string[],
): Promise<Map<string, string | null>> {
  const values = new Map<string, string | null>();
  for (let i = 0; i < accountIds.length; i += MGET_BATCH) {
    const batch = accountIds.slice(i, i + MGET_BATCH);
    // a Redis Cluster answers MGET only for keys of one slot: there, one GET per key, at once
    const raw = isClusterClient(redis)
      ? await Promise.all(batch.map((id) => redis.get(balanceKey(id))))
      : await redis.mget(...batch.map(balanceKey));
    batch.forEach((id, j) => values.set(id, raw[j] ?? null));
  }
  return values;
}
