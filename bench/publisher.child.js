// Confirmed publishing, for `npm run bench` (g). MODE=
//   raw-each    — amqplib confirm channel, awaiting each confirm before the next publish;
//   raw-window  — amqplib confirm channel, up to WINDOW confirms outstanding;
//   service     — the service's MessagePublisher (AppModule from dist/), WINDOW publishes in flight.
// Publishes TOTAL 300-byte messages to EXCHANGE (a queue is bound to it), then prints one JSON
// line: { published, ms, cpuUs } measured from the first publish to the last confirm.
import 'reflect-metadata';
import amqplib from 'amqplib';

const MODE = process.env.MODE;
const TOTAL = Number(process.env.TOTAL);
const WINDOW = Number(process.env.WINDOW ?? 1000);
const EXCHANGE = process.env.EXCHANGE;
// what a caller publishes: an object, serialized per message (as the service's publish() does)
const payload = (i) => ({ accountId: `bench-${i % 1000}`, amountCents: i, memo: 'x'.repeat(240) });

const cpu = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

async function raw(each) {
  const connection = await amqplib.connect(process.env.AMQP_URL);
  const channel = await connection.createConfirmChannel();
  const started = { ms: performance.now(), cpuUs: cpu() };
  for (let i = 0; i < TOTAL; i++) {
    const confirmed = new Promise((resolve, reject) =>
      channel.publish(
        EXCHANGE,
        'bench',
        Buffer.from(JSON.stringify(payload(i))),
        // the properties the service's publish() sets: the same frames on the wire
        {
          persistent: true,
          contentType: 'application/json',
          timestamp: Math.floor(Date.now() / 1000),
          messageId: `p${i}`,
          correlationId: `p${i}`,
          mandatory: true,
        },
        (err) => (err ? reject(err) : resolve()),
      ),
    );
    if (each) await confirmed;
    else if (i % WINDOW === WINDOW - 1) await channel.waitForConfirms();
  }
  await channel.waitForConfirms();
  const done = { ms: performance.now(), cpuUs: cpu() };
  await connection.close();
  return { started, done };
}

async function service() {
  const { NestFactory } = await import('@nestjs/core');
  const { AppModule } = await import('../dist/app.module.js');
  const { MessagePublisher } = await import('../dist/messaging/message.publisher.js');
  const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  const publisher = app.get(MessagePublisher);
  // the first publish waits for the connection; not part of the measurement
  await publisher.publish(EXCHANGE, 'bench', payload(0), { messageId: 'warm-up' });
  const started = { ms: performance.now(), cpuUs: cpu() };
  for (let sent = 0; sent < TOTAL; sent += WINDOW) {
    const batch = [];
    for (let i = sent; i < Math.min(TOTAL, sent + WINDOW); i++) {
      batch.push(publisher.publish(EXCHANGE, 'bench', payload(i), { messageId: `p${i}` }));
    }
    await Promise.all(batch);
  }
  const done = { ms: performance.now(), cpuUs: cpu() };
  await app.close();
  return { started, done };
}

(MODE === 'service' ? service() : raw(MODE === 'raw-each'))
  .then(({ started, done }) => {
    process.stdout.write(
      `${JSON.stringify({ published: TOTAL, ms: done.ms - started.ms, cpuUs: done.cpuUs - started.cpuUs })}\n`,
    );
    process.exit(0);
  })
  .catch((error) => {
    process.stderr.write(`${error?.stack ?? error}\n`);
    process.exit(1);
  });
