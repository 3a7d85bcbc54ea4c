// The designs the service replaces, for the suite's negative controls: if the harness cannot see
// what goes wrong with them, it is blind. Plain JavaScript, run as a child process.
//
//   MODE=autoack          consume ledger.transactions with noAck and apply the effect naively:
//                         a kill -9 loses every message the broker had already pushed
//   MODE=lease-no-watchdog a 300 ms SET NX PX lease around 700 ms of work, never extended:
//                         two workers end up inside one account's critical section (needs
//                         ORACLE_URL, where it counts its effects for the test's progress)
//   MODE=requeue-on-error nack(requeue) whatever fails to parse, on a classic queue of its own
//                         bound to the ledger exchange: a poison message loops forever
//
// Each applies its effect as the service's journal records one (balance, marker and journal
// entry in one script), so the suite classifies it exactly as it classifies the service: what
// goes wrong is its design, not its bookkeeping.
//
// Env: AMQP_URL, REDIS_URL, QUEUE (default ledger.transactions). Prints `CONSUMING` once
// attached, then `DELIVERIES <n> APPLIED <n>` every 100 ms.
import { hostname } from 'node:os';
import amqplib from 'amqplib';
import { Redis } from 'ioredis';

const mode = process.env.MODE;
const queue = process.env.QUEUE ?? 'ledger.transactions';
const worker = `${hostname()}:${process.pid}`;

/**
 * KEYS: balance, marker, journal, lock ('' = none). ARGV: amount, messageId, worker, the lock
 * token. The journal entry says whether another worker's token held the lock at that moment.
 */
const APPLY = `
local other = ''
if KEYS[4] ~= '' then
  local holder = redis.call('GET', KEYS[4])
  other = (holder and holder ~= ARGV[4]) and '1' or '0'
end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1')
local t = redis.call('TIME')
redis.call('XADD', KEYS[3], '*', 'messageId', ARGV[2], 'fencingToken', '', 'otherHolder', other,
  'worker', ARGV[3], 'timeUs', t[1] .. string.format('%06d', tonumber(t[2])))
return 1
`;

/** Applies a transaction (see APPLY), under `lock` when there is one. */
function apply(redis, message, tx, lock = '', token = '') {
  return redis.eval(
    APPLY,
    4,
    `ledger:balance:${tx.accountId}`,
    `mp:processed:${queue}:${message.properties.messageId}`,
    `mp:journal:account:${tx.accountId}`,
    lock,
    tx.amountCents,
    message.properties.messageId,
    worker,
    token,
  );
}

async function main() {
  const connection = await amqplib.connect(process.env.AMQP_URL);
  const channel = await connection.createChannel();
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  let deliveries = 0;
  let applied = 0;
  setInterval(() => process.stdout.write(`DELIVERIES ${deliveries} APPLIED ${applied}\n`), 100);
  if (mode === 'autoack') {
    // one message at a time, as a simple handler runs: the broker's pushes pile up in this
    // process (auto-ack: already gone from the queue) while it works through them
    let chain = Promise.resolve();
    await channel.consume(
      queue,
      (message) => {
        deliveries++;
        chain = chain.then(async () => {
          const tx = JSON.parse(message.content.toString());
          await new Promise((resolve) => setTimeout(resolve, 5));
          await apply(redis, message, tx);
          applied++;
        });
      },
      { noAck: true },
    );
  } else if (mode === 'requeue-on-error') {
    // its own classic queue, as such consumers declare them: no delivery limit to save it. Durable:
    // RabbitMQ 4.3 refuses a transient queue that is not exclusive (the vhost goes with the test)
    const own = 'naive.requeue-on-error';
    await channel.assertQueue(own, { durable: true });
    await channel.bindQueue(own, 'ledger', 'transaction.*');
    await channel.prefetch(1);
    await channel.consume(own, (message) => {
      deliveries++;
      try {
        JSON.parse(message.content.toString());
        channel.ack(message);
      } catch {
        channel.nack(message, false, true);
      }
    });
  } else if (mode === 'lease-no-watchdog') {
    // the seed design without its watchdog: SET NX PX lease shorter than the work, no extension
    const oracle = new Redis(process.env.ORACLE_URL);
    await channel.prefetch(20);
    let tokens = 0;
    await channel.consume(queue, async (message) => {
      deliveries++;
      const tx = JSON.parse(message.content.toString());
      const lock = `naive:lock:${tx.accountId}`;
      const token = `${worker}:${tokens++}`;
      while (!(await redis.set(lock, token, 'PX', 300, 'NX'))) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await new Promise((resolve) => setTimeout(resolve, 700));
      await apply(redis, message, tx, lock, token);
      applied++;
      await oracle.rpush(
        'oracle:effects',
        JSON.stringify({ messageId: message.properties.messageId, result: 'applied' }),
      );
      // its own lock only, if it still is
      if ((await redis.get(lock)) === token) await redis.del(lock);
      channel.ack(message);
    });
  } else throw new Error(`unknown MODE ${mode}`);
  process.stdout.write('CONSUMING\n');
}

main().catch((error) => {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
});
