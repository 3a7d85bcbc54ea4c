import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The machine's PostgreSQL (trust auth), where each test file makes a database of its own. */
export const POSTGRES_ADMIN_URL =
  process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A throw-away database on the local PostgreSQL, dropped (connections and all) afterwards. */
export class TestDatabase {
  readonly pool: pg.Pool;

  private constructor(readonly name: string) {
    this.pool = new pg.Pool({ connectionString: this.url(), max: 4 });
    this.pool.on('error', () => undefined);
  }

  static async create(label: string): Promise<TestDatabase> {
    const name = `mp_test_${label}_${randomBytes(4).toString('hex')}`;
    await admin((c) => c.query(`CREATE DATABASE ${name}`));
    return new TestDatabase(name);
  }

  /** URL of this database; `password` shows it stays out of every output (trust auth ignores it). */
  url(password?: string): string {
    const admin = new URL(POSTGRES_ADMIN_URL);
    if (password !== undefined) admin.password = password;
    admin.pathname = `/${this.name}`;
    return admin.toString();
  }

  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
  ): Promise<R[]> {
    return (await this.pool.query<R>(text, values)).rows;
  }

  /** Ends every session of this database but the test's own pool: `pg_terminate_backend`. */
  async terminateOthers(): Promise<number> {
    return admin(async (c) => {
      const { rowCount } = await c.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = $1 AND pid <> pg_backend_pid()
            AND application_name LIKE 'message-processor%'`,
        [this.name],
      );
      return rowCount ?? 0;
    });
  }

  async drop(): Promise<void> {
    await this.pool.end();
    await admin((c) => c.query(`DROP DATABASE IF EXISTS ${this.name} WITH (FORCE)`));
  }
}
