// The negative control of the ledger on PostgreSQL: the processed marker written after the
// effect's transaction commits, in a transaction of its own, as most hand-written consumers do.
// A kill between the commit and the marker leaves an applied effect without its marker: the
// redelivery applies it again. Plain JavaScript, run as a child process.
//
// It records each effect in `control_journal` inside the effect's own transaction (as the
// service's outbox row is), so the suite classifies it as it classifies the service.
//
// Env: AMQP_URL, DATABASE_URL, WINDOW_MS (the pause between commit and marker, default 200).
// Prints `CONSUMING` once attached and `WINDOW <messageId>` when a commit is not marked yet.
import amqplib from 'amqplib';
import pg from 'pg';

const queue = 'ledger.transactions';
const windowMs = Number(process.env.WINDOW_MS ?? 200);
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
pool.on('error', () => undefined);

await pool.query(`CREATE TABLE IF NOT EXISTS ledger_balances (
  account_id text PRIMARY KEY, balance_cents bigint NOT NULL)`);
await pool.query('CREATE TABLE IF NOT EXISTS control_journal (message_id text NOT NULL)');
await pool.query('CREATE TABLE IF NOT EXISTS control_marker (message_id text PRIMARY KEY)');

const connection = await amqplib.connect(process.env.AMQP_URL);
const channel = await connection.createChannel();
await channel.assertExchange('ledger', 'topic', { durable: true });
await channel.assertQueue(queue, { durable: true });
await channel.assertQueue(`${queue}.dlq`, { durable: true });
await channel.bindQueue(queue, 'ledger', 'transaction.*');
await channel.prefetch(1);
await channel.consume(queue, async (message) => {
  if (!message) return;
  const id = message.properties.messageId;
  const marked = await pool.query('SELECT 1 FROM control_marker WHERE message_id = $1', [id]);
  if (marked.rowCount === 0) {
    const tx = JSON.parse(message.content.toString());
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO ledger_balances (account_id, balance_cents) VALUES ($1, $2)
         ON CONFLICT (account_id) DO UPDATE SET balance_cents = ledger_balances.balance_cents + EXCLUDED.balance_cents`,
        [tx.accountId, tx.amountCents],
      );
      await client.query('INSERT INTO control_journal (message_id) VALUES ($1)', [id]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    process.stdout.write(`WINDOW ${id}\n`);
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    await pool.query('INSERT INTO control_marker (message_id) VALUES ($1) ON CONFLICT DO NOTHING', [
      id,
    ]);
  }
  channel.ack(message);
});
process.stdout.write('CONSUMING\n');
