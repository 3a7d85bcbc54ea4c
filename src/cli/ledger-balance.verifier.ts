import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { messageOf } from './cli-error.formatter.js';
import { compareBalances, type BalanceMismatch } from './ledger-balance.comparison.js';
import { balanceKey } from '../ledger/ledger.constants.js';

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

/**
 * Reads every `ledger:balance:<accountId>` from the Redis at `redisUrl` until all equal their
 * expected value (missing = 0) or the timeout passes. Redis being unreachable or restarting is
 * waited out like a lagging service, up to the same timeout.
 */
export async function verifyLedgerBalances(
  redisUrl: string,
  expected: ReadonlyMap<string, number>,
  options: VerifyOptions,
): Promise<VerifyResult> {
  let connectionError: string | undefined;
  const redis = new Redis(redisUrl, {
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
  try {
    return await poll(redis, expected, options, () => connectionError);
  } finally {
    redis.disconnect();
  }
}

async function poll(
  redis: Redis,
  expected: ReadonlyMap<string, number>,
  options: VerifyOptions,
  connectionError: () => string | undefined,
): Promise<VerifyResult> {
  const started = performance.now();
  const deadline = started + options.timeoutMs;
  let mismatches: readonly BalanceMismatch[] = [];
  let lastError: string | undefined;
  let balancesRead = false;
  for (;;) {
    try {
      mismatches = compareBalances(expected, await readBalances(redis, [...expected.keys()]));
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
      lastError = connectionError() ?? messageOf(err);
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

async function readBalances(
  redis: Redis,
  accountIds: readonly string[],
): Promise<Map<string, string | null>> {
  const values = new Map<string, string | null>();
  for (let i = 0; i < accountIds.length; i += MGET_BATCH) {
    const batch = accountIds.slice(i, i + MGET_BATCH);
    const raw = await redis.mget(...batch.map(balanceKey));
    batch.forEach((id, j) => values.set(id, raw[j] ?? null));
  }
  return values;
}
