/**
 * The ledger on PostgreSQL (issue: effects in PostgreSQL): the service (`LEDGER_STORE=postgres`:
 * lock, inbox row, fence, balance, outbox row, one transaction; the event relayed with confirms)
 * against a hand-written consumer doing the same `UPDATE … +=` in autocommit and acking (unsafe:
 * a redelivery applies it twice, and it publishes no event). Same queue, same database, same
 * pool size, alternated; then the outbox relay's lag at a quarter of the service's throughput.
 *
 *   npm run bench:postgres [-- --messages 10000 --warmup 2000 --reps 3 --queue-type quorum --prefetch 100 --pool 10]
 *   npm run bench:postgres -- --quick     (CI: 1,000 messages after 200, one repetition)
 *   npm run bench:postgres -- --lag-rate 640   (only the relay lag runs, at 640 msg/s; prints only)
 *   npm run bench:postgres -- --lag-runs 5     (relay lag runs, default 3; the median p99 is the figure)
 *
 * Output: a table on stdout, JSON in bench/results/<date>-postgres.json and the section
 * `postgres` of docs/benchmarks.md; `--quick` only prints.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import amqplib, { type ConfirmChannel } from 'amqplib';
import { TestDatabase } from '../test/e2e/support/postgres.database.js';
import { TestVhost } from '../test/e2e/support/rabbitmq.vhost.js';
import { PRODUCTION_NODE_ARGS, ServiceProcess } from '../test/e2e/support/service.process.js';
import { waitFor } from '../test/e2e/support/wait-for.js';
import {
  benchArgs,
  machineDescription,
  median,
  profileArgs,
  type Progress,
  ROOT,
  runMain,
  scrapeProgress,
  steadyState,
  writeDocSection,
} from './bench.support.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const QUEUE = 'ledger.transactions';
const ACCOUNTS = 10_000;

const { quick, option, count, verdict } = benchArgs();
const messages = count('messages', quick ? 1_000 : 10_000);
const warmup = count('warmup', quick ? 200 : 2_000, 0);
const reps = count('reps', quick ? 1 : 3);
const prefetch = count('prefetch', 100);
/** Connections of each consumer's pool (the service's DATABASE_POOL_MAX, the same for both). */
const POOL = count('pool', 10);
const queueType = option('queue-type', 'quorum');
/** `--lag-rate N`: only the relay lag runs, at N msg/s (diagnosis; prints, records nothing). */
const lagRate = count('lag-rate', 0, 0);
/** Relay lag runs, one after the other on the same database; the median p99 is the figure. */
const lagRuns = count('lag-runs', quick ? 1 : 3, 1);
if (queueType !== 'quorum' && queueType !== 'classic')
  throw new Error('--queue-type must be quorum or classic');
const runId = `p${Date.now().toString(36)}`;

interface Measurement {
  readonly variant: 'naive' | 'service' | 'interactive';
  readonly rep: number;
  readonly msgPerSec: number;
  readonly cpuUsPerMsg: number;
}

async function runNaive(amqpUrl: string, databaseUrl: string, total: number): Promise<Progress[]> {
  const child = spawn(
    process.execPath,
    [...PRODUCTION_NODE_ARGS, '--import', 'tsx', join(import.meta.dirname, 'naive-consumer.ts')],
    {
      env: {
        PATH: process.env.PATH ?? '',
        MODE: 'pg',
        TOTAL: String(total),
        AMQP_URL: amqpUrl,
        DATABASE_URL: databaseUrl,
        DATABASE_POOL_MAX: String(POOL),
        PREFETCH: String(prefetch),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const samples: Progress[] = [];
  createInterface({ input: child.stdout }).on('line', (line) =>
    samples.push(JSON.parse(line) as Progress),
  );
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`the hand-written consumer exited ${code}`);
  return samples;
}

/** The ledger as an interactive transaction (`postgres-transaction`): bench/postgres-interactive.child.js. */
const INTERACTIVE = join(import.meta.dirname, 'postgres-interactive.child.js');

function startService(amqpUrl: string, databaseUrl: string, script?: string): ServiceProcess {
  return ServiceProcess.start(
    {
      AMQP_URL: amqpUrl,
      REDIS_URL,
      DATABASE_URL: databaseUrl,
      DATABASE_POOL_MAX: String(POOL),
      LEDGER_STORE: 'postgres',
      HTTP_PORT: '0',
      LOG_LEVEL: 'info',
      AMQP_PREFETCH: String(prefetch),
      AMQP_QUEUE_TYPE: queueType,
    },
    script,
    profileArgs(),
  );
}

async function ready(service: ServiceProcess): Promise<void> {
  await waitFor(
    'the service ready',
    async () => {
      if (!service.alive) throw new Error(`service exited:\n${service.stderr}`);
      if (service.httpPort === undefined) return false;
      return (await fetch(`http://127.0.0.1:${service.httpPort}/health/ready`)).status === 200;
    },
    30_000,
  );
}

async function metricsOf(service: ServiceProcess): Promise<string> {
  return (await fetch(`http://127.0.0.1:${service.httpPort}/metrics`)).text();
}

async function runService(
  amqpUrl: string,
  databaseUrl: string,
  total: number,
  script?: string,
): Promise<Progress[]> {
  const service = startService(amqpUrl, databaseUrl, script);
  try {
    await ready(service);
    const samples: Progress[] = [];
    for (;;) {
      const sample = scrapeProgress(await metricsOf(service));
      samples.push(sample);
      if (sample.acked >= total) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    service.kill('SIGTERM');
    await service.exitCode(30_000);
    return samples;
  } finally {
    service.kill('SIGKILL');
  }
}

function body(i: number): Buffer {
  const tx = { accountId: `${runId}-a${i % ACCOUNTS}`, amountCents: (i % 1_000) - 100, memo: '' };
  tx.memo = 'x'.repeat(Math.max(0, 300 - Buffer.byteLength(JSON.stringify(tx))));
  return Buffer.from(JSON.stringify(tx));
}

async function prePublish(channel: ConfirmChannel, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    channel.publish('ledger', 'transaction.created', body(i), {
      persistent: true,
      contentType: 'application/json',
      messageId: `${runId}-${tag}-${i}`,
    });
    if (i % 1_000 === 999) await channel.waitForConfirms();
  }
  await channel.waitForConfirms();
}

interface RelayLag {
  readonly ratePerSec: number;
  readonly events: number;
  /** Row written → marked sent after its confirm, from the database's own clock (ms). */
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
  /** The service's `outbox_relay_lag_seconds`: share of rows confirmed within 50 ms. */
  readonly within50msShare: number;
}

/** The service at `rate` msg/s for a while: the outbox rows' lag from written to sent. */
async function relayLag(
  amqpUrl: string,
  db: TestDatabase,
  channel: ConfirmChannel,
  rate: number,
  tag: string,
): Promise<RelayLag> {
  const seconds = quick ? 2 : 10;
  const total = Math.max(1, Math.round(rate * seconds));
  const service = startService(amqpUrl, db.url());
  try {
    await ready(service);
    const started = performance.now();
    for (let i = 0; i < total; i++) {
      const wait = started + (i * 1_000) / rate - performance.now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
      channel.publish('ledger', 'transaction.created', body(i), {
        persistent: true,
        contentType: 'application/json',
        messageId: `${runId}-lag${tag}-${i}`,
      });
    }
    await channel.waitForConfirms();
    await waitFor(
      'every event of the lag run sent',
      async () => {
        const [row] = await db.query<{ sent: number }>(
          `SELECT count(*)::int AS sent FROM mp_outbox WHERE message_id LIKE $1 AND sent_at IS NOT NULL`,
          [`${runId}-lag${tag}-%`],
        );
        return row.sent === total;
      },
      60_000,
    );
    const [lag] = await db.query<{ p50: number; p95: number; p99: number; max: number }>(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
              percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95,
              percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, max(ms) AS max
         FROM (SELECT extract(epoch FROM sent_at - created_at) * 1000 AS ms FROM mp_outbox
                WHERE message_id LIKE $1) lags`,
      [`${runId}-lag${tag}-%`],
    );
    const text = await metricsOf(service);
    const bucket = (le: string): number => {
      const prefix = `outbox_relay_lag_seconds_bucket{le="${le}"} `;
      const line = text.split('\n').find((l) => l.startsWith(prefix));
      return Number(line?.slice(prefix.length) ?? 0);
    };
    return {
      ratePerSec: Math.round(rate),
      events: total,
      p50: Number(lag.p50.toFixed(2)),
      p95: Number(lag.p95.toFixed(2)),
      p99: Number(lag.p99.toFixed(2)),
      max: Number(Number(lag.max).toFixed(2)),
      within50msShare: Number((bucket('0.05') / (bucket('+Inf') || 1)).toFixed(4)),
    };
  } finally {
    service.kill('SIGTERM');
    await service.exitCode(30_000).catch(() => service.kill('SIGKILL'));
  }
}

async function main(): Promise<void> {
  process.stdout.write(
    `bench:postgres: ${messages} messages (after ${warmup} of warm-up) × ${reps} reps, ${queueType} queue, prefetch ${prefetch}, pool ${POOL}${quick ? ' (quick)' : ''}\n`,
  );
  const vhost = await TestVhost.create('pgbench');
  const db = await TestDatabase.create('bench');
  const amqpUrl = vhost.url();
  const connection = await amqplib.connect(amqpUrl);
  const measurements: Measurement[] = [];
  const lags: RelayLag[] = [];
  try {
    const channel = await connection.createConfirmChannel();
    // the events' subscriber, emptied after each run
    await channel.assertExchange('ledger.events', 'topic', { durable: true });
    await channel.assertQueue('bench.events', {
      durable: true,
      arguments: { 'x-queue-type': queueType },
    });
    await channel.bindQueue('bench.events', 'ledger.events', '#');
    // the service declares the topology and creates the tables
    const first = startService(amqpUrl, db.url());
    await ready(first);
    first.kill('SIGTERM');
    await first.exitCode(30_000);
    for (let rep = 1; rep <= (lagRate > 0 ? 0 : reps); rep++) {
      for (const variant of ['naive', 'service', 'interactive'] as const) {
        await prePublish(channel, warmup + messages, `${variant}${rep}`);
        const samples =
          variant === 'naive'
            ? await runNaive(amqpUrl, db.url(), warmup + messages)
            : await runService(
                amqpUrl,
                db.url(),
                warmup + messages,
                variant === 'interactive' ? INTERACTIVE : undefined,
              );
        const m = { variant, rep, ...steadyState(samples, messages, warmup) };
        measurements.push(m);
        process.stdout.write(
          `  rep ${rep} ${variant}: ${Math.round(m.msgPerSec)} msg/s, ${Math.round(m.cpuUsPerMsg)} µs CPU/msg\n`,
        );
        const left = await channel.checkQueue(QUEUE);
        if (left.messageCount !== 0)
          throw new Error(`${left.messageCount} messages left after ${variant}`);
        await channel.purgeQueue('bench.events');
      }
    }
    const serviceMax = median(
      measurements.filter((m) => m.variant === 'service').map((m) => m.msgPerSec),
    );
    // several runs on the same database (its history grows, as in production); the median p99
    const rate = lagRate > 0 ? lagRate : serviceMax / 4;
    for (let run = 1; run <= lagRuns; run++) {
      const one = await relayLag(amqpUrl, db, channel, rate, `r${run}`);
      lags.push(one);
      process.stdout.write(
        `  relay lag run ${run} at ${one.ratePerSec} msg/s: p50 ${one.p50} ms, p95 ${one.p95} ms, p99 ${one.p99} ms, max ${one.max} ms\n`,
      );
    }
  } finally {
    await connection.close().catch(() => undefined);
    await db.drop();
    await vhost.delete();
  }
  if (lags.length === 0) throw new Error('the relay lag runs did not finish');
  if (lagRate > 0) return;
  await report(measurements, lags);
}

async function report(
  measurements: readonly Measurement[],
  lags: readonly RelayLag[],
): Promise<void> {
  // the run with the median p99 stands for all of them; every run's p99 is shown
  const lag = [...lags].sort((a, b) => a.p99 - b.p99)[Math.floor((lags.length - 1) / 2)];
  const p99s = lags.map((l) => l.p99).join(', ');
  const row = (variant: Measurement['variant']) => {
    const of = measurements.filter((m) => m.variant === variant);
    const rates = of.map((m) => m.msgPerSec);
    return {
      median: Math.round(median(rates)),
      min: Math.round(Math.min(...rates)),
      max: Math.round(Math.max(...rates)),
      cpuUsPerMsg: Math.round(median(of.map((m) => m.cpuUsPerMsg))),
    };
  };
  const naive = row('naive');
  const service = row('service');
  const interactive = row('interactive');
  const pairedRatio = (variant: Measurement['variant']): number =>
    Number(
      median(
        Array.from({ length: reps }, (_, i) => {
          const s = measurements.find((m) => m.variant === variant && m.rep === i + 1);
          const n = measurements.find((m) => m.variant === 'naive' && m.rep === i + 1);
          return s && n ? s.msgPerSec / n.msgPerSec : Number.NaN;
        }),
      ).toFixed(2),
    );
  const ratio = pairedRatio('service');
  const interactiveRatio = pairedRatio('interactive');
  const date = new Date().toISOString().slice(0, 10);
  const machine = machineDescription();
  const command = `npm run bench:postgres -- --messages ${messages} --warmup ${warmup} --reps ${reps} --queue-type ${queueType} --prefetch ${prefetch} --pool ${POOL}${quick ? ' --quick' : ''}`;
  const table = [
    '| consumer | msg/s (median) | min | max | consumer CPU µs/msg |',
    '|---|---|---|---|---|',
    `| hand-written: \`UPDATE … +=\` in autocommit, then ack (unsafe, no event) | ${naive.median} | ${naive.min} | ${naive.max} | ${naive.cpuUsPerMsg} |`,
    `| the service, \`LEDGER_STORE=postgres\`: \`postgres-commit\`, one round trip per group of commits (advisory locks, inbox rows, balances, outbox rows; events relayed) | ${service.median} | ${service.min} | ${service.max} | ${service.cpuUsPerMsg} |`,
    `| the service, the same ledger as \`postgres-transaction\` (three round trips: open, upsert, commit) | ${interactive.median} | ${interactive.min} | ${interactive.max} | ${interactive.cpuUsPerMsg} |`,
  ];
  const targets = [
    '| target | measured | met |',
    '|---|---|---|',
    `| service ≥ 0.70× the hand-written consumer (paired median) | ${ratio} (\`postgres-transaction\`: ${interactiveRatio}) | ${verdict(ratio >= 0.7)} |`,
    `| outbox relay lag p99 ≤ 50 ms at a quarter of the service's rate (${lag.ratePerSec} msg/s, ${lags.length} runs of ${lag.events} events) | ${lag.p99} ms, the median run (p99 of each run: ${p99s} ms; the median run's p50 ${lag.p50}, p95 ${lag.p95}, max ${lag.max}; ${(lag.within50msShare * 100).toFixed(2)} % within 50 ms by \`outbox_relay_lag_seconds\`) | ${verdict(lag.p99 <= 50)} |`,
  ];
  process.stdout.write(`\n${table.join('\n')}\n\n${targets.join('\n')}\n`);
  if (quick) return;
  const results = join(ROOT, 'bench', 'results');
  mkdirSync(results, { recursive: true });
  writeFileSync(
    join(results, `${date}-postgres.json`),
    `${JSON.stringify({ date, machine, command, measurements, naive, service, interactive, ratio, interactiveRatio, lag, lags }, null, 2)}\n`,
  );
  await writeDocSection(
    'postgres',
    '## The ledger on PostgreSQL: the inbox and outbox against a hand-written consumer',
    [
      `Measured ${date} on ${machine}; RabbitMQ, Redis (the service's locks) and PostgreSQL on the same two cores.`,
      `${messages} messages per measurement after ${warmup} of warm-up, 10,000 accounts, ${queueType} queue, prefetch ${prefetch},`,
      `a pool of ${POOL} connections for each, the three alternated ${reps} times; throughput and CPU over 10–90 % of each batch.`,
      'The relay lag is each outbox row from written (in its transaction) to marked sent after its confirm, on the',
      "database's clock, while the service consumes at a quarter of its median throughput, in",
      `${lagRuns} runs of 10 s one after the other on the same database (its outbox history grows from run to run).`,
      '',
      `Command: \`${command}\``,
      '',
      ...table,
      '',
      ...targets,
    ].join('\n'),
  );
}

runMain(main);
