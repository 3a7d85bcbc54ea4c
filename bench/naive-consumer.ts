/**
 * The hand-written consumers the service is measured against (`npm run bench`), one per process
 * so that its CPU is its own. MODE:
 *   raw   — parse + ack, no effect: the ceiling;
 *   naive — parse + INCRBY of the balance + ack: what users write today (no deduplication, no
 *           lock; unsafe under redelivery);
 *   seed  — the design of the notes the project started from, with the same guarantees as the
 *           service: SET NX PX lock, processed-marker check, INCRBY, marker, Lua release, ack;
 *   pg    — parse + the balance's `UPDATE … +=` in PostgreSQL in autocommit (DATABASE_URL, a pool
 *           of DATABASE_POOL_MAX) + ack: the hand-written PostgreSQL consumer (unsafe under
 *           redelivery, no event published).
 * Prints one JSON line of progress (acked, ms, cpuUs) every 50 ms and when it has acked TOTAL.
 */
import { randomBytes } from 'node:crypto';
import amqplib, { type ConsumeMessage } from 'amqplib';
import { Redis } from 'ioredis';
import pg from 'pg';

const MODE = process.env.MODE ?? 'raw';
const TOTAL = Number(process.env.TOTAL);
const QUEUE = process.env.QUEUE ?? 'ledger.transactions';
const PREFETCH = Number(process.env.PREFETCH ?? 100);
const MARKER_TTL_S = 86_400;
const LOCK_TTL_MS = 30_000;
/**
 * With LATENCY_LIST: each effect's messageId and wall-clock delivery (`start`) and end, as the
 * ledger's oracle records them (its `start` is just before the commit).
 */
const LATENCY_LIST = process.env.LATENCY_LIST;
/**
 * With LATENCY_BUFFERED=1: the records are kept and written every 100 ms in one RPUSH, not one
 * round trip per message before its ack (the observed service's oracle does the same): the
 * instrument then costs each consumer a few µs per message, not about 45.
 */
const LATENCY_BUFFERED = process.env.LATENCY_BUFFERED === '1';
const latencyRecords: string[] = [];
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

interface Tx {
  accountId: string;
  amountCents: number;
}

let acked = 0;
const progress = (): void => {
  const cpu = process.cpuUsage();
  process.stdout.write(
    `${JSON.stringify({ acked, ms: performance.now(), cpuUs: cpu.user + cpu.system })}\n`,
  );
};

async function main(): Promise<void> {
  const connection = await amqplib.connect(process.env.AMQP_URL ?? 'amqp://127.0.0.1');
  const channel = await connection.createChannel();
  await channel.prefetch(PREFETCH);
  const redis =
    MODE === 'raw' || MODE === 'pg' ? undefined : new Redis(process.env.REDIS_URL ?? '');
  const database =
    MODE === 'pg'
      ? new pg.Pool({
          connectionString: process.env.DATABASE_URL,
          max: Number(process.env.DATABASE_POOL_MAX ?? 10),
        })
      : undefined;
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  async function seed(tx: Tx, messageId: string): Promise<void> {
    if (!redis) return;
    const lockKey = `seed:lock:account:${tx.accountId}`;
    const token = randomBytes(16).toString('hex');
    while ((await redis.set(lockKey, token, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') await sleep(5);
    try {
      const marker = `seed:processed:${QUEUE}:${messageId}`;
      if ((await redis.exists(marker)) === 1) return;
      await redis.incrby(`ledger:balance:${tx.accountId}`, tx.amountCents);
      await redis.set(marker, '1', 'EX', MARKER_TTL_S);
    } finally {
      await redis.eval(RELEASE, 1, lockKey, token);
    }
  }

  const flushLatency = async (): Promise<void> => {
    if (latencyRecords.length === 0 || !LATENCY_LIST) return;
    await redis?.rpush(LATENCY_LIST, ...latencyRecords.splice(0));
  };
  const flusher = LATENCY_BUFFERED ? setInterval(() => void flushLatency(), 100) : undefined;
  const timer = setInterval(progress, 50);
  const done = (): void => {
    clearInterval(timer);
    clearInterval(flusher);
    progress();
    // cancel after the last ack: on a quorum queue the cancel is a command of the queue's log,
    // ordered after this channel's acks, so none of them can come back when the channel goes
    void flushLatency()
      .then(() => channel.cancel(consumerTag))
      .then(() => connection.close())
      .finally(() => process.exit(0));
  };
  let consumerTag = '';
  ({ consumerTag } = await channel.consume(QUEUE, (message: ConsumeMessage | null) => {
    if (!message) return;
    const start = performance.timeOrigin + performance.now();
    void (async () => {
      const tx = JSON.parse(message.content.toString('utf8')) as Tx;
      if (MODE === 'naive') await redis?.incrby(`ledger:balance:${tx.accountId}`, tx.amountCents);
      else if (MODE === 'seed') await seed(tx, String(message.properties.messageId));
      else if (MODE === 'pg') {
        await database?.query(
          `INSERT INTO ledger_balances (account_id, balance_cents) VALUES ($1, $2)
           ON CONFLICT (account_id) DO UPDATE SET balance_cents = ledger_balances.balance_cents + EXCLUDED.balance_cents`,
          [tx.accountId, tx.amountCents],
        );
      }
      if (LATENCY_LIST) {
        const end = performance.timeOrigin + performance.now();
        const messageId = String(message.properties.messageId);
        const record = JSON.stringify({ messageId, start, end });
        if (LATENCY_BUFFERED) latencyRecords.push(record);
        else await redis?.rpush(LATENCY_LIST, record);
      }
      channel.ack(message);
      if (++acked === TOTAL) done();
    })();
  }));
  progress();
}

main().catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`);
  process.exit(1);
});
