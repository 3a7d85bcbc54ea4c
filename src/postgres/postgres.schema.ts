import type { ClientBase } from 'pg';

/** One step of a schema: applied once, in order, recorded in `mp_schema_migrations`. */
export interface Migration {
  readonly version: number;
  readonly statements: readonly string[];
}

/**
 * The service's own tables (`mp_*`):
 * - `mp_inbox`: one row per processed message of a `postgres-transaction` handler, written in the
 *   handler's transaction; its primary key makes a second delivery a `duplicate`.
 * - `mp_outbox`: messages to publish, written in the transaction that decided them, sent by the
 *   relay after commit and marked `sent_at`.
 */
export const SERVICE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    statements: [
      `CREATE TABLE IF NOT EXISTS mp_inbox (
         queue text NOT NULL,
         message_id text NOT NULL,
         processed_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (queue, message_id)
       )`,
      `CREATE INDEX IF NOT EXISTS mp_inbox_processed_at ON mp_inbox (processed_at)`,
      `CREATE TABLE IF NOT EXISTS mp_outbox (
         id bigserial PRIMARY KEY,
         exchange text NOT NULL,
         routing_key text NOT NULL,
         message_id text NOT NULL,
         correlation_id text,
         content_type text NOT NULL,
         body bytea NOT NULL,
         headers jsonb NOT NULL DEFAULT '{}',
         mandatory boolean NOT NULL DEFAULT false,
         created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
         attempts integer NOT NULL DEFAULT 0,
         available_at timestamptz NOT NULL DEFAULT '-infinity',
         last_error text,
         sent_at timestamptz
       )`,
      `CREATE INDEX IF NOT EXISTS mp_outbox_unsent ON mp_outbox (id) WHERE sent_at IS NULL`,
      `CREATE INDEX IF NOT EXISTS mp_outbox_sent_at ON mp_outbox (sent_at) WHERE sent_at IS NOT NULL`,
    ],
  },
];

/**
 * Brings `owner`'s tables to the newest of `migrations`, in one transaction under an advisory
 * lock: replicas starting at once wait for each other (the first applies, the others find it
 * done), and a failed step leaves nothing half-made. Returns the versions it applied.
 */
export async function migrate(
  client: ClientBase,
  owner: string,
  migrations: readonly Migration[],
): Promise<number[]> {
  const applied: number[] = [];
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['mp_schema_migrations']);
    await client.query(
      `CREATE TABLE IF NOT EXISTS mp_schema_migrations (
         owner text NOT NULL,
         version integer NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (owner, version)
       )`,
    );
    const { rows } = await client.query<{ version: number }>(
      'SELECT version FROM mp_schema_migrations WHERE owner = $1',
      [owner],
    );
    const done = new Set(rows.map((r) => r.version));
    for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(migration.version)) continue;
      for (const statement of migration.statements) await client.query(statement);
      await client.query('INSERT INTO mp_schema_migrations (owner, version) VALUES ($1, $2)', [
        owner,
        migration.version,
      ]);
      applied.push(migration.version);
    }
    await client.query('COMMIT');
    return applied;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}
