import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { LockTimeoutError } from '../../src/lock/index.js';
import { PostgresConnection } from '../../src/postgres/postgres.connection.js';
import {
  MAX_COMMIT_GROUP,
  PostgresTransactions,
  type InboxOutcome,
} from '../../src/postgres/postgres-transactions.js';
import { TestDatabase } from './support/postgres.database.js';
import { waitFor } from './support/wait-for.js';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const origin = { correlationId: undefined, headers: {} };

/**
 * Group commit of `postgres-commit` transactions, against the real PostgreSQL: what waits for a
 * connection commits together, and one message's failure stays its own.
 */
describe('postgres-commit group commit (real PostgreSQL)', () => {
  let db: TestDatabase;
  const connections: PostgresConnection[] = [];
  const run = randomBytes(4).toString('hex');

  /** Transactions on a pool of `poolMax` connections of their own, migrated. */
  const transactions = async (poolMax: number, waitMs = 5_000): Promise<PostgresTransactions> => {
    const connection = new PostgresConnection(
      { url: db.url(), poolMax },
      { setPostgresConnected: () => undefined },
      quiet,
    );
    connections.push(connection);
    connection.start();
    await waitFor('the pool ready', () => connection.isReady());
    return new PostgresTransactions(connection, { waitMs, ttlMs: 30_000 });
  };

  /** A transaction that adds 1 to `key`'s counter (and, with `fail`, a statement that fails). */
  const add = (
    tx: PostgresTransactions,
    messageId: string,
    key: string | undefined,
    fail = false,
  ): Promise<InboxOutcome<string>> =>
    tx.runCommit({ queue: 'group', messageId, lockKey: key }, origin, (t) => {
      t.execute(
        `INSERT INTO counters (key, n) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET n = counters.n + 1`,
        [key ?? messageId],
      );
      if (fail) t.execute('SELECT 1 / 0');
      return Promise.resolve(messageId);
    });

  const counter = async (key: string): Promise<number | undefined> => {
    const [row] = await db.query<{ n: number }>('SELECT n FROM counters WHERE key = $1', [key]);
    return row?.n;
  };

  /** How many transactions wrote the inbox rows of these messages (rows of one share its xmin). */
  const transactionsOf = async (messageIds: readonly string[]): Promise<number> => {
    const [row] = await db.query<{ n: number }>(
      `SELECT count(DISTINCT xmin::text)::int AS n FROM mp_inbox WHERE message_id = ANY($1)`,
      [messageIds],
    );
    return row.n;
  };

  beforeAll(async () => {
    db = await TestDatabase.create('group');
    await db.query('CREATE TABLE counters (key text PRIMARY KEY, n int NOT NULL)');
  });

  afterAll(async () => {
    for (const connection of connections) await connection.close();
    await db?.drop();
  });

  it('commits the transactions that wait for a connection in one, each applied once', async () => {
    const tx = await transactions(1);
    const ids = Array.from({ length: 20 }, (_, i) => `together-${run}-${i}`);
    const outcomes = await Promise.all(ids.map((id) => add(tx, id, `k-${id}`)));
    expect(outcomes.map((o) => o.status)).toEqual(ids.map(() => 'done'));
    expect(outcomes.map((o) => (o.status === 'done' ? o.value : undefined))).toEqual(ids);
    // the first found the pool idle and went alone; the 19 that waited for it went as one
    expect(await transactionsOf(ids)).toBe(2);
    for (const id of ids) expect(await counter(`k-${id}`)).toBe(1);
  });

  it(`commits at most ${MAX_COMMIT_GROUP} in one`, async () => {
    const tx = await transactions(1);
    const ids = Array.from({ length: 1 + MAX_COMMIT_GROUP + 5 }, (_, i) => `cap-${run}-${i}`);
    await Promise.all(ids.map((id) => add(tx, id, undefined)));
    expect(await transactionsOf(ids)).toBe(3);
  });

  it('refuses a duplicate in a group alone; the others of its group commit once', async () => {
    const tx = await transactions(1);
    const seen = `dup-${run}-seen`;
    expect((await add(tx, seen, `dup-${run}`)).status).toBe('done');
    const [, ...group] = await Promise.all([
      add(tx, `dup-${run}-first`, `dup-${run}-first`),
      add(tx, `dup-${run}-a`, `dup-${run}`),
      add(tx, seen, `dup-${run}`),
      add(tx, `dup-${run}-b`, `dup-${run}`),
    ]);
    expect(group.map((o) => o.status)).toEqual(['done', 'duplicate', 'done']);
    // `seen` once, then a and b: the duplicate's write was refused with its marker
    expect(await counter(`dup-${run}`)).toBe(3);
  });

  it("fails a statement's own message only; the others of its group commit", async () => {
    const tx = await transactions(1);
    const results = await Promise.allSettled([
      add(tx, `fail-${run}-first`, `fail-${run}-first`),
      add(tx, `fail-${run}-a`, `fail-${run}-a`),
      add(tx, `fail-${run}-bad`, `fail-${run}-bad`, true),
      add(tx, `fail-${run}-c`, `fail-${run}-c`),
    ]);
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
    ]);
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ code: '22012' });
    expect(await counter(`fail-${run}-a`)).toBe(1);
    expect(await counter(`fail-${run}-c`)).toBe(1);
    expect(await counter(`fail-${run}-bad`)).toBeUndefined();
    expect(await transactionsOf([`fail-${run}-bad`])).toBe(0);
  });

  it('hands back only the message whose key is held past LOCK_WAIT_MS', async () => {
    const tx = await transactions(1, 200);
    const holder = await transactions(1);
    const held = `held-${run}`;
    let release!: () => void;
    let holding = false;
    const holds = holder.runInbox(
      { queue: 'holder', messageId: `holder-${run}`, lockKey: held },
      origin,
      async () => {
        holding = true;
        await new Promise<void>((resolve) => (release = resolve));
      },
    );
    await waitFor('the other transaction holding the key', () => holding);
    const results = await Promise.allSettled([
      add(tx, `held-${run}-first`, `held-${run}-first`),
      add(tx, `held-${run}-x`, held),
      add(tx, `held-${run}-y`, `held-${run}-y`),
    ]);
    release();
    await holds;
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(LockTimeoutError);
    expect(await counter(held)).toBeUndefined();
    expect(await counter(`held-${run}-y`)).toBe(1);
  });

  it('takes the keys of concurrent groups in one order: no deadlock, every count exact', async () => {
    const tx = await transactions(4);
    const deadlocks = async (): Promise<number> => {
      const [row] = await db.query<{ n: number }>(
        'SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()',
      );
      return row.n;
    };
    const before = await deadlocks();
    const keys = Array.from({ length: 6 }, (_, i) => `order-${run}-${i}`);
    const expected = new Map<string, number>();
    const calls: Promise<InboxOutcome<string>>[] = [];
    for (let i = 0; i < 600; i++) {
      // keys in a different order in every group
      const key = keys[(i * 5 + Math.floor(i / keys.length)) % keys.length];
      expected.set(key, (expected.get(key) ?? 0) + 1);
      calls.push(add(tx, `order-${run}-${i}`, key));
    }
    const outcomes = await Promise.all(calls);
    expect(outcomes.every((o) => o.status === 'done')).toBe(true);
    for (const [key, n] of expected) expect(await counter(key)).toBe(n);
    expect(
      await transactionsOf(Array.from({ length: 600 }, (_, i) => `order-${run}-${i}`)),
    ).toBeLessThan(600);
    expect(await deadlocks()).toBe(before);
  });
});
