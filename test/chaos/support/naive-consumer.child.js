// The designs the service replaces, for the suite's negative controls: if the harness cannot see
// what goes wrong with them, it is blind. Plain JavaScript, run as a child process.
//
//   MODE=autoack          consume ledger.transactions with noAck and apply the effect naively:
//                         a kill -9 loses every message the broker had already pushed
//   MODE=lease-no-watchdog a 300 ms SET NX PX lease around 700 ms of work, never extended:
//                         two workers end up inside one account's critical section (needs
//                         ORACLE_URL, where it records its effects as the ledger does)
//   MODE=requeue-on-error nack(requeue) whatever fails to parse, on a classic queue of its own
//                         bound to the ledger exchange: a poison message loops forever
//
// Env: AMQP_URL, REDIS_URL, QUEUE (default ledger.transactions). Prints `CONSUMING` once
// attached, then `DELIVERIES <n> APPLIED <n>` every 100 ms.
'use strict';
const amqplib = require('amqplib');
const Redis = require('ioredis');

const mode = process.env.MODE;
const queue = process.env.QUEUE ?? 'ledger.transactions';

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
          await redis
            .multi()
            .incrby(`ledger:balance:${tx.accountId}`, tx.amountCents)
            .set(`mp:processed:${queue}:${message.properties.messageId}`, '1')
            .exec();
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
    const clock = () => performance.timeOrigin + performance.now();
    await channel.prefetch(20);
    await channel.consume(queue, async (message) => {
      deliveries++;
      const tx = JSON.parse(message.content.toString());
      const lock = `naive:lock:${tx.accountId}`;
      while (!(await redis.set(lock, String(process.pid), 'PX', 300, 'NX'))) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const start = clock();
      await new Promise((resolve) => setTimeout(resolve, 700));
      await redis.incrby(`ledger:balance:${tx.accountId}`, tx.amountCents);
      await redis.set(`mp:processed:${queue}:${message.properties.messageId}`, '1');
      await oracle.rpush(
        'oracle:effects',
        JSON.stringify({
          messageId: message.properties.messageId,
          accountId: tx.accountId,
          fencingToken: undefined,
          result: 'applied',
          start,
          end: clock(),
          pid: process.pid,
        }),
      );
      await redis.del(lock);
      channel.ack(message);
    });
  } else throw new Error(`unknown MODE ${mode}`);
  process.stdout.write('CONSUMING\n');
}

main().catch((error) => {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
});
