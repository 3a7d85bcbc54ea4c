/**
 * What safety costs (issue 8): the service's full pipeline on the ledger against hand-written
 * amqplib consumers and against itself with parts off, all on the same queue in one run,
 * alternated (A B C D E F, A B C D E F, ...).
 *
 *   npm run bench [-- --messages 60000 --warmup 20000 --reps 5 --queue-type quorum|classic --prefetch 100]
 *   npm run bench -- --quick     (CI: 2,000 messages after 500 of warm-up, one repetition)
 *
 * Each variant consumes W + N pre-published ledger transactions (300-byte bodies, 10,000
 * accounts) from `ledger.transactions` in a process of its own. The first W warm it up (JIT
 * compilation, connections) and are not measured; throughput and CPU are taken over the steady
 * state of the N after them (from 10 % to 90 % of them acked), so process start, warm-up and the
 * drained tail do not count. Then: contention (3 instances, 10 hot accounts against 10,000), confirmed
 * publishing (first publish to last confirm) and latency (publish → effect, at half and at an
 * eighth of the measured throughput). Output: a table on stdout, JSON in bench/results/<date>.json, the section of
 * docs/benchmarks.md between its markers, and a chart; `--quick` only prints.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import amqplib, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { Redis } from 'ioredis';
import { TestRabbitCluster } from '../test/cluster/support/rabbitmq.cluster.js';
import { TestVhost } from '../test/e2e/support/rabbitmq.vhost.js';
import { TestRedisServer } from '../test/e2e/support/redis.server.js';
import {
  OBSERVED_SERVICE,
  PRODUCTION_NODE_ARGS,
  ServiceProcess,
} from '../test/e2e/support/service.process.js';
import { waitFor } from '../test/e2e/support/wait-for.js';
import {
  benchArgs,
  cpuJiffies,
  machineDescription,
  quietMachine,
  median,
  percentile,
  profileArgs,
  type Progress,
  ROOT,
  rounded,
  runMain,
  scrapeProgress,
  steadyState,
  writeDocSection,
} from './bench.support.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const QUEUE = 'ledger.transactions';

const { quick, option, count, verdict } = benchArgs();
/**
 * Measured messages per run: the service's progress is its /metrics, scraped every 250 ms, so the
 * 10–90 % window must span several samples (60,000 at 35,000 msg/s: about 1.4 s, 5 or 6).
 */
const messages = count('messages', quick ? 2_000 : 60_000);
/** Messages each throughput run consumes before the measured ones (V8 compiles hot code first). */
const warmup = count('warmup', quick ? 500 : 20_000, 0);
const reps = count('reps', quick ? 1 : 5);
const prefetch = count('prefetch', 100);
const queueType = option('queue-type', 'quorum');
if (queueType !== 'quorum' && queueType !== 'classic') {
  throw new Error('--queue-type must be quorum or classic');
}
/**
 * `--only b,d`: those throughput variants only, no other section, nothing recorded (for
 * profiling); `g` is the publishers' section.
 */
const only = option('only', '')
  .split(',')
  .filter((k) => k !== '');
/** `--latency-max <msg/s>`: the latency runs only, at shares of that rate; nothing recorded. */
const latencyMax = count('latency-max', 0, 0);
/**
 * Repetitions of each latency run: five, since a single pair's p99 ratio ranged from 0.9 to 1.8
 * on one day, and the paired median must not rest on one stalled repetition.
 */
const latencyReps = count('latency-reps', quick ? 1 : 5);
/** Seconds at the paced rate before each latency run is measured (see latency()). */
const latencySettleSeconds = quick ? 0.2 : 3;
/**
 * `--latency-warmup <n>`: messages each latency run's consumer takes at full speed before the
 * paced ones are measured, as the throughput runs do: a consumer started cold is still having
 * its hot code compiled by V8 (on the same two cores) for the first seconds.
 */
const latencyWarmup = count('latency-warmup', quick ? 500 : 10_000, 0);
/**
 * `--latency-records <dir>`: each latency run's records (messageId; publish, handler start and
 * effect end, wall-clock ms) as a JSON array in `<dir>/<variant>-1of<n>-rep<r>.json`.
 */
const latencyRecords = option('latency-records', '');
/** `--latency-shares 4,8`: the rates of the latency runs, as shares (1/n) of the naive maximum. */
const LATENCY_FRACTIONS = option('latency-shares', '4,8')
  .split(',')
  .map((n) => 1 / Number(n))
  .filter((f) => f > 0 && f <= 1);
/**
 * `--cluster`: on a 3-node RabbitMQ cluster of the bench's own (quorum queues, replicated on the
 * three), every consumer on the first node: (b), (c) and (d) only unless `--only` says otherwise,
 * recorded in a section of its own.
 */
const onCluster = process.argv.includes('--cluster');
if (onCluster && queueType !== 'quorum') throw new Error('--cluster runs quorum queues');
const ACCOUNTS = 10_000;
const runId = `b${Date.now().toString(36)}`;

interface Variant {
  readonly key: string;
  readonly label: string;
  /** Starts the consumer; resolves with its progress samples once it acked `total`. */
  run(amqpUrl: string, total: number, env?: Record<string, string>): Promise<Progress[]>;
}

/** A hand-written consumer (bench/naive-consumer.ts) in a process of its own. */
function naive(key: string, label: string, mode: string): Variant {
  return {
    key,
    label,
    async run(amqpUrl, total, env = {}) {
      const child = spawn(
        process.execPath,
        // the service's production Node options for every consumer: equal treatment (the naive
        // ones allocate little and run the same without them)
        [
          ...PRODUCTION_NODE_ARGS,
          ...profileArgs(),
          '--import',
          'tsx',
          join(import.meta.dirname, 'naive-consumer.ts'),
        ],
        {
          env: {
            PATH: process.env.PATH ?? '',
            MODE: mode,
            TOTAL: String(total),
            AMQP_URL: amqpUrl,
            REDIS_URL,
            PREFETCH: String(prefetch),
            ...env,
          },
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      const samples: Progress[] = [];
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => samples.push(JSON.parse(line) as Progress));
      const [code] = (await once(child, 'exit')) as [number | null];
      if (code !== 0) throw new Error(`${label} exited ${code}`);
      return samples;
    },
  };
}

/**
 * The service itself (`node dist/main.js`), or with VARIANT set, the service with a part of the
 * ledger pipeline off (bench/service-variant.child.js).
 */
function service(key: string, label: string, env: Record<string, string>): Variant {
  const script = env.VARIANT ? join(import.meta.dirname, 'service-variant.child.js') : undefined;
  return { key, label, run: (amqpUrl, total) => runServices(amqpUrl, total, env, script, 1) };
}

/**
 * Runs `instances` service processes until together they settled `total` messages; progress is
 * the sum of their `/metrics` (messages settled, process CPU).
 */
async function runServices(
  amqpUrl: string,
  total: number,
  env: Record<string, string>,
  script: string | undefined,
  instances: number,
  /** Between scrapes of /metrics (progress and CPU); latency runs scrape rarely. */
  scrapeEveryMs = 250,
  /** Given the last scrape of each instance (its event-loop and GC figures). */
  lastScrape?: (text: string) => void,
): Promise<Progress[]> {
  const services = Array.from({ length: instances }, () =>
    ServiceProcess.start(
      {
        AMQP_URL: amqpUrl,
        REDIS_URL,
        HTTP_PORT: '0',
        LOG_LEVEL: 'info',
        AMQP_PREFETCH: String(prefetch),
        AMQP_QUEUE_TYPE: queueType,
        ...env,
      },
      script,
      profileArgs(),
    ),
  );
  try {
    const samples: Progress[] = [];
    await waitFor(
      'services ready (topology declared, consumers attached)',
      async () => {
        for (const svc of services) {
          if (svc.httpPort === undefined) return false;
          const res = await fetch(`http://127.0.0.1:${svc.httpPort}/health/ready`);
          if (res.status !== 200) return false;
        }
        return true;
      },
      30_000,
    );
    for (;;) {
      let acked = 0;
      let cpuUs = 0;
      const texts: string[] = [];
      for (const svc of services) {
        if (!svc.alive) throw new Error(`service exited:\n${svc.stderr}`);
        const text = await (await fetch(`http://127.0.0.1:${svc.httpPort}/metrics`)).text();
        texts.push(text);
        const sample = scrapeProgress(text);
        acked += sample.acked;
        cpuUs += sample.cpuUs;
      }
      samples.push({ acked, ms: performance.now(), cpuUs });
      if (acked >= total) {
        if (lastScrape) texts.forEach(lastScrape);
        break;
      }
      // a scrape costs the service CPU too: 4 a second, interpolated between
      await new Promise((resolve) => setTimeout(resolve, scrapeEveryMs));
    }
    for (const svc of services) svc.kill('SIGTERM');
    await Promise.all(services.map((svc) => svc.exitCode(30_000)));
    return samples;
  } finally {
    for (const svc of services) svc.kill('SIGKILL');
  }
}

/** What the OTLP sink of the traced variant received, per run. */
const exported: { rep: number; requests: number; bytes: number }[] = [];

/**
 * The service with tracing on, every trace sampled (`OTEL_TRACES_SAMPLER=always_on`), its spans
 * exported over OTLP/HTTP (protobuf, the default) to a sink in this process that counts them.
 */
function traced(key: string, label: string): Variant {
  let run = 0;
  return {
    key,
    label,
    run: async (amqpUrl, total) => {
      const sink = createServer();
      const received = { rep: ++run, requests: 0, bytes: 0 };
      sink.on('request', (req, res) => {
        req.on('data', (chunk: Buffer) => (received.bytes += chunk.length));
        req.on('end', () => {
          received.requests++;
          res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
        });
      });
      sink.listen(0, '127.0.0.1');
      await once(sink, 'listening');
      const address = sink.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      try {
        return await runServices(
          amqpUrl,
          total,
          {
            OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
            OTEL_TRACES_SAMPLER: 'always_on',
            OTEL_SERVICE_NAME: 'bench',
          },
          undefined,
          1,
        );
      } finally {
        exported.push(received);
        sink.close();
        sink.closeAllConnections();
      }
    },
  };
}

/** The lock servers of the Redlock variant, started on its first run, stopped at the end. */
let lockServers: TestRedisServer[] | undefined;
/**
 * What the lock servers spent per message of each Redlock run, the three together, warm-up
 * included: CPU (their `INFO cpu`) and commands (`INFO commandstats`, a script's own included).
 */
const lockServerCost: {
  variant: string;
  rep: number;
  cpuUsPerMsg: number;
  callsPerMsg: number;
  scriptsPerMsg: number;
}[] = [];

/** CPU time (µs) a Redis server spent so far, the commands it served, and the scripts among them. */
async function redisCost(url: string): Promise<{ cpuUs: number; calls: number; scripts: number }> {
  const client = new Redis(url);
  try {
    const info = await client.info('cpu');
    const field = (name: string): number =>
      Number(new RegExp(`^${name}:(\\S+)`, 'm').exec(info)?.[1] ?? 0);
    return {
      cpuUs: (field('used_cpu_user') + field('used_cpu_sys')) * 1e6,
      ...commandCounts(await client.info('commandstats')),
    };
  } finally {
    client.disconnect();
  }
}

/**
 * (r) The service with its locks on a Redlock quorum (`REDIS_LOCK_URLS`): three redis-server
 * processes of the bench's own on free loopback ports, the same broker and main Redis.
 */
function redlock(key: string, label: string, env: Record<string, string> = {}): Variant {
  const script = env.VARIANT ? join(import.meta.dirname, 'service-variant.child.js') : undefined;
  let run = 0;
  return {
    key,
    label,
    run: async (amqpUrl, total) => {
      const rep = ++run;
      lockServers ??= await Promise.all([0, 1, 2].map(() => TestRedisServer.start()));
      const urls = lockServers.map((server) => server.url);
      const costOf = async (): Promise<{ cpuUs: number; calls: number; scripts: number }> =>
        (await Promise.all(urls.map(redisCost))).reduce((a, b) => ({
          cpuUs: a.cpuUs + b.cpuUs,
          calls: a.calls + b.calls,
          scripts: a.scripts + b.scripts,
        }));
      const before = await costOf();
      const samples = await runServices(
        amqpUrl,
        total,
        { ...env, REDIS_LOCK_URLS: urls.join(',') },
        script,
        1,
      );
      // the commits recorded each fencing token on the main Redis (mp:fence:<lock key>): left
      // there, they would make the other variants' commits mint tokens for those accounts
      const main = new Redis(REDIS_URL);
      await deleteMatching(main, `mp:fence:*${runId}-*`).finally(() => main.disconnect());
      const after = await costOf();
      lockServerCost.push({
        variant: key,
        rep,
        cpuUsPerMsg: (after.cpuUs - before.cpuUs) / total,
        callsPerMsg: (after.calls - before.calls) / total,
        scriptsPerMsg: (after.scripts - before.scripts) / total,
      });
      return samples;
    },
  };
}

const ALL_VARIANTS: Variant[] = [
  naive('a', '(a) raw amqplib: parse + ack', 'raw'),
  naive('b', '(b) raw + naive effect (INCRBY, unsafe)', 'naive'),
  naive('c', '(c) seed design, same guarantees', 'seed'),
  service('d', '(d) the service, full pipeline', {}),
  service('e', '(e) the service, lock off', { VARIANT: 'no-lock' }),
  service('f', '(f) the service, deduplication off', { VARIANT: 'no-dedup' }),
  traced('h', '(h) the service, traced: every message sampled, OTLP export'),
  redlock('r', '(r) the service, locks on a Redlock quorum of 3 local Redis'),
  service('l', '(l) the service, lock held before the commit (`ctx.lock.hold()`)', {
    VARIANT: 'held',
  }),
  redlock('q', '(q) (l) with its locks on a Redlock quorum of 3 local Redis', { VARIANT: 'held' }),
];
const unknown = only.filter((k) => k !== 'g' && !ALL_VARIANTS.some((v) => v.key === k));
if (unknown.length > 0) throw new Error(`--only: no variant ${unknown.join(', ')} (a-h, l, q, r)`);
const VARIANTS =
  only.length > 0
    ? ALL_VARIANTS.filter((v) => only.includes(v.key))
    : onCluster
      ? ALL_VARIANTS.filter((v) => ['b', 'c', 'd'].includes(v.key))
      : ALL_VARIANTS;

interface Measurement {
  readonly variant: string;
  readonly rep: number;
  readonly msgPerSec: number;
  readonly cpuUsPerMsg: number;
}

function measure(variant: Variant, rep: number, samples: readonly Progress[]): Measurement {
  return { variant: variant.key, rep, ...steadyState(samples, messages, warmup) };
}

interface Latency {
  readonly variant: string;
  /** Share of the naive consumer's median throughput the publisher ran at (both consumers). */
  readonly fraction: number;
  readonly rep: number;
  readonly ratePerSec: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  /**
   * p99 of the two stages: publish → the consumer has the message (the naive one on delivery,
   * the service just before its commit: delivery, parsing, validation and the marker check
   * included), and from there to the effect committed.
   */
  readonly p99ToHandler: number;
  readonly p99Commit: number;
  /** Both cores' busy share over the run (from /proc/stat): under 100 % is not saturated. */
  readonly machineCpuPercent: number;
  /**
   * The consumer process's CPU per message at this rate, between its first progress sample after
   * the warm-up and its last (start-up left out): at a low rate each message wakes the process
   * alone, and costs several times what it costs in a throughput run.
   */
  readonly consumerCpuUsPerMsg: number;
}

const LATENCY_LIST = 'bench:latency';
const wallClock = (): number => performance.timeOrigin + performance.now();

/**
 * Publish → effect committed (the ack follows at once) at a steady `rate`, for (b) and (d):
 * the naive consumer and the reliability suite's oracle (the ledger's observer, in the observed
 * service) record each effect's wall-clock end, the publisher each message's publish time. Both
 * consumers keep their records and write them to a Redis list every 100 ms: an RPUSH per
 * message before its ack cost each of them about 45 µs of CPU per message at an eighth (95
 * against 141 µs for the naive consumer, 172 against 220 for the service), a load the
 * measured tail then carried.
 */
async function latency(
  amqpUrl: string,
  channel: ConfirmChannel,
  redis: Redis,
  variant: 'b' | 'd',
  fraction: number,
  rate: number,
  rep: number,
): Promise<Latency> {
  const seconds = quick ? 2 : 10;
  const total = Math.max(1, Math.round(rate * seconds));
  // three seconds of the paced rate before the measured messages: the move from the warm-up's
  // full speed to the paced rate is a transient, not the steady state the figures are about
  // (and the warm-up falls in the service's first seconds, while V8 still grows its young
  // generation). With one second, stalls of 0.3-0.6 s in that move still reached into the
  // measured window, of the naive consumer and of the service alike (docs/benchmarks.md)
  const settle = Math.round(rate * latencySettleSeconds);
  const list = variant === 'b' ? LATENCY_LIST : 'oracle:effects';
  await redis.del(list);
  // messageIds of this run alone: a messageId the service saw in an earlier run is a duplicate
  // to it (its marker lives a day), and a duplicate takes the commit's shorter path
  const share = Math.round(1 / fraction);
  const tag = `lat${variant}${share}r${rep}`;
  // the warm-up first, queued before the consumer starts; its effects are recorded too
  await prePublish(channel, latencyWarmup, `${tag}w`);
  const consumed = latencyWarmup + settle + total;
  const consumer =
    variant === 'b'
      ? naive('b', 'latency', 'naive').run(amqpUrl, consumed, {
          LATENCY_LIST,
          LATENCY_BUFFERED: '1',
        })
      : // scraped as Prometheus would (rarely): a scrape renders every metric on the event loop
        runServices(
          amqpUrl,
          consumed,
          { LEDGER_ORACLE_URL: REDIS_URL, LEDGER_ORACLE_BUFFERED: '1' },
          OBSERVED_SERVICE,
          1,
          5_000,
          (text) => {
            const value = (name: string): string =>
              (Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1]) * 1_000).toFixed(1);
            process.stdout.write(
              `    service event loop: p99 ${value('nodejs_eventloop_lag_p99_seconds')} ms, max ${value('nodejs_eventloop_lag_max_seconds')} ms; GC ${value('nodejs_gc_duration_seconds_sum{kind="minor"}')} ms in ${Number(value('nodejs_gc_duration_seconds_count{kind="minor"}')) / 1_000} minor, ${value('nodejs_gc_duration_seconds_sum{kind="major"}')} ms in ${Number(value('nodejs_gc_duration_seconds_count{kind="major"}')) / 1_000} major\n`,
            );
          },
        );
  // ready once the warm-up's effects are all recorded (and a consumer is on the queue)
  await waitFor(
    'the warm-up consumed',
    async () =>
      (await channel.checkQueue(QUEUE)).consumerCount > 0 &&
      (await redis.llen(list)) >= latencyWarmup,
    120_000,
  );
  const sentAt = new Map<string, number>();
  let cpuBefore = cpuJiffies();
  const started = performance.now();
  for (let i = 0; i < settle + total; i++) {
    const due = started + (i * 1_000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    if (i === settle) cpuBefore = cpuJiffies();
    const messageId = i < settle ? `${runId}-${tag}s-${i}` : `${runId}-${tag}-${i - settle}`;
    if (i >= settle) sentAt.set(messageId, wallClock());
    channel.publish('ledger', 'transaction.created', body(i, ACCOUNTS), {
      persistent: true,
      contentType: 'application/json',
      messageId,
    });
  }
  await channel.waitForConfirms();
  const cpuAfter = cpuJiffies();
  const samples = (await consumer).filter((p) => p.acked > latencyWarmup + settle);
  const [first, last] = [samples[0], samples[samples.length - 1]];
  const consumerCpuUsPerMsg =
    first && last && last.acked > first.acked
      ? Math.round((last.cpuUs - first.cpuUs) / (last.acked - first.acked))
      : Number.NaN;
  const records = (await redis.lrange(list, 0, -1)).map(
    (line) =>
      JSON.parse(line) as { messageId: string; start: number; end: number; result?: string },
  );
  await redis.del(list);
  const ofRun = records.filter((r) => sentAt.has(r.messageId));
  if (latencyRecords !== '') {
    // each effect's publish, handler start (just before its commit) and end: where the slow ones
    // bunch up in time, and at which stage
    mkdirSync(latencyRecords, { recursive: true });
    writeFileSync(
      join(latencyRecords, `${variant}-1of${share}-rep${rep}.json`),
      JSON.stringify(ofRun.map((r) => ({ ...r, sent: sentAt.get(r.messageId) }))),
    );
  }
  const sorted = (f: (r: (typeof ofRun)[number], sent: number) => number): number[] =>
    ofRun.map((r) => f(r, sentAt.get(r.messageId) ?? r.end)).sort((a, b) => a - b);
  const ms = sorted((r, sent) => r.end - sent);
  const toHandler = sorted((r, sent) => r.start - sent);
  const commit = sorted((r) => r.end - r.start);
  if (ms.length < total)
    throw new Error(`latency (${variant}): ${ms.length} of ${total} effects recorded`);
  // the service's oracle says what each commit did: every measured one must have applied
  const notApplied = ofRun.filter((r) => r.result !== undefined && r.result !== 'applied');
  if (notApplied.length > 0) {
    throw new Error(
      `latency (${variant}): ${notApplied.length} of ${total} commits did not apply (${notApplied[0].result})`,
    );
  }
  const round = (n: number): number => Number(n.toFixed(2));
  const result: Latency = {
    variant,
    fraction,
    rep,
    ratePerSec: Math.round(rate),
    p50: round(percentile(ms, 50)),
    p95: round(percentile(ms, 95)),
    p99: round(percentile(ms, 99)),
    p999: round(percentile(ms, 99.9)),
    max: round(ms[ms.length - 1]),
    p99ToHandler: round(percentile(toHandler, 99)),
    p99Commit: round(percentile(commit, 99)),
    machineCpuPercent: Math.round(
      (100 * (cpuAfter.busy - cpuBefore.busy)) / (cpuAfter.total - cpuBefore.total || 1),
    ),
    consumerCpuUsPerMsg,
  };
  process.stdout.write(
    `  latency (${variant}) at ${result.ratePerSec} msg/s: p50 ${result.p50} ms, p95 ${result.p95} ms, p99 ${result.p99} ms, p99.9 ${result.p999} ms, max ${result.max} ms (p99 to the handler ${result.p99ToHandler} ms, of the commit ${result.p99Commit} ms); machine CPU ${result.machineCpuPercent} %, consumer ${result.consumerCpuUsPerMsg} µs CPU/msg\n`,
  );
  return result;
}

interface PublisherSample {
  readonly mode: string;
  readonly rep: number;
  readonly msgPerSec: number;
  readonly cpuUsPerMsg: number;
}

const PUBLISHERS = [
  { mode: 'raw-each', label: 'amqplib, awaiting each confirm' },
  { mode: 'raw-window', label: 'amqplib, 1,000 confirms outstanding' },
  { mode: 'service', label: "the service's MessagePublisher, 1,000 in flight" },
];

/**
 * The service's publisher over amqplib with the same window, per repetition: its rate's share and
 * its CPU per message over amqplib's, median (range).
 */
function pairedPublisherRatios(samples: readonly PublisherSample[]): {
  median: number;
  text: string;
  cpuText: string;
} {
  const ratios: number[] = [];
  const extraCpu: number[] = [];
  for (const sample of samples) {
    if (sample.mode !== 'service') continue;
    const raw = samples.find((s) => s.mode === 'raw-window' && s.rep === sample.rep);
    if (!raw) continue;
    ratios.push(sample.msgPerSec / raw.msgPerSec);
    extraCpu.push(sample.cpuUsPerMsg - raw.cpuUsPerMsg);
  }
  const mid = median(ratios);
  const signed = (us: number): string => `${us >= 0 ? '+' : '−'}${Math.abs(us).toFixed(1)}`;
  return {
    median: mid,
    text: `${mid.toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
    cpuText: `${signed(median(extraCpu))} (${signed(Math.min(...extraCpu))} to ${signed(Math.max(...extraCpu))})`,
  };
}

/**
 * (g) Confirmed publishing, each mode in a process of its own (bench/publisher.child.js), to an
 * exchange with one queue bound, emptied after each run. Awaiting each confirm is slow, so that
 * mode publishes at most 2,000. The two paired modes swap places every repetition, and each run
 * starts on a quiet machine: the broker goes on deleting a purged quorum queue's 60,000 messages
 * after the purge returns, and with a fixed order the run after a large one ran against it
 * (amqplib against itself in second place: 0.945× median, 0.84–1.03).
 */
async function publishers(amqpUrl: string, connection: ChannelModel): Promise<PublisherSample[]> {
  const channel = await connection.createChannel();
  await channel.assertExchange('bench.publish', 'topic', { durable: true });
  await channel.assertQueue('bench.sink', {
    durable: true,
    arguments: { 'x-queue-type': queueType },
  });
  await channel.bindQueue('bench.sink', 'bench.publish', '#');
  const samples: PublisherSample[] = [];
  for (let rep = 1; rep <= reps; rep++) {
    const [each, ...paired] = PUBLISHERS;
    for (const { mode, label } of [each, ...(rep % 2 === 1 ? paired : paired.reverse())]) {
      await quietMachine();
      const total = mode === 'raw-each' ? Math.min(messages, 2_000) : messages;
      const child = spawn(
        process.execPath,
        [...PRODUCTION_NODE_ARGS, join(import.meta.dirname, 'publisher.child.js')],
        {
          env: {
            PATH: process.env.PATH ?? '',
            MODE: mode,
            TOTAL: String(total),
            EXCHANGE: 'bench.publish',
            AMQP_URL: amqpUrl,
            REDIS_URL,
            AMQP_QUEUE_TYPE: queueType,
            HTTP_PORT: '0',
          },
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const [code] = (await once(child, 'exit')) as [number | null];
      if (code !== 0) throw new Error(`publisher ${mode} exited ${code}`);
      const result = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as {
        published: number;
        ms: number;
        cpuUs: number;
      };
      const sample = {
        mode,
        rep,
        msgPerSec: result.published / (result.ms / 1_000),
        cpuUsPerMsg: result.cpuUs / result.published,
      };
      samples.push(sample);
      process.stdout.write(
        `  rep ${rep} publisher, ${label}: ${Math.round(sample.msgPerSec)} msg/s, ${Math.round(sample.cpuUsPerMsg)} µs CPU/msg\n`,
      );
      await channel.purgeQueue('bench.sink');
    }
  }
  await channel.close();
  return samples;
}

interface Contention {
  readonly accounts: number;
  readonly msgPerSec: number;
  readonly cpuUsPerMsg: number;
  readonly redisCommandsPerMsg: number;
}

/** Redis commands served so far (`INFO commandstats`, INFO itself left out). */
async function redisCommands(redis: Redis): Promise<number> {
  return commandCounts(await redis.info('commandstats')).calls;
}

/** From `INFO commandstats`: the commands served (INFO left out), and the scripts among them. */
function commandCounts(info: string): { calls: number; scripts: number } {
  let calls = 0;
  let scripts = 0;
  for (const m of info.matchAll(/^cmdstat_(\S+?):calls=(\d+)/gm)) {
    if (m[1] === 'info') continue;
    calls += Number(m[2]);
    if (m[1] === 'evalsha' || m[1] === 'eval') scripts += Number(m[2]);
  }
  return { calls, scripts };
}

/**
 * Contention: 3 service processes on the same batch, its transactions spread over 10 hot
 * accounts, then over 10,000: throughput, CPU (the three together) and Redis commands per
 * message (from `INFO commandstats`, process start included).
 */
async function contention(
  amqpUrl: string,
  channel: ConfirmChannel,
  redis: Redis,
): Promise<Contention[]> {
  const rows: Contention[] = [];
  for (const accounts of [10, ACCOUNTS]) {
    await prePublish(channel, messages, `k${accounts}`, accounts);
    const before = await redisCommands(redis);
    const samples = await runServices(amqpUrl, messages, {}, undefined, 3);
    const commands = (await redisCommands(redis)) - before;
    const row = {
      accounts,
      ...steadyState(samples, messages),
      redisCommandsPerMsg: commands / messages,
    };
    rows.push(row);
    process.stdout.write(
      `  contention, 3 instances, ${accounts} accounts: ${rounded(row.msgPerSec)} msg/s, ${row.redisCommandsPerMsg.toFixed(2)} Redis commands/msg\n`,
    );
  }
  return rows;
}

/** Publishes `n` ledger transactions with many confirms outstanding (windows of 1,000). */
async function prePublish(
  channel: ConfirmChannel,
  n: number,
  tag: string,
  accounts = ACCOUNTS,
): Promise<void> {
  for (let i = 0; i < n; i++) {
    channel.publish('ledger', 'transaction.created', body(i, accounts), {
      persistent: true,
      contentType: 'application/json',
      messageId: `${runId}-${tag}-${i}`,
    });
    if (i % 1_000 === 999) await channel.waitForConfirms();
  }
  await channel.waitForConfirms();
}

/** A ledger transaction padded to 300 bytes (the memo is not part of the schema: stripped). */
function body(i: number, accounts: number): Buffer {
  const tx = { accountId: `${runId}-a${i % accounts}`, amountCents: (i % 1_000) - 100, memo: '' };
  const base = Buffer.byteLength(JSON.stringify(tx));
  tx.memo = 'x'.repeat(Math.max(0, 300 - base));
  return Buffer.from(JSON.stringify(tx));
}

async function main(): Promise<void> {
  process.stdout.write(
    `bench: ${messages} messages (after ${warmup} of warm-up) × ${reps} reps, ${queueType} queue, prefetch ${prefetch}${quick ? ' (quick)' : ''}\n`,
  );
  // a cluster's nodes listen on ports of their own: the default vhost is the bench's alone
  const cluster = onCluster ? await TestRabbitCluster.start(3) : undefined;
  const vhost = cluster ? undefined : await TestVhost.create('bench');
  // on a cluster, every consumer on the first node, where the queues' leaders are (they are
  // declared from there): the service picks a node at random from a list, which would pair a
  // consumer on a follower (its deliveries relayed) with one on the leader
  const amqpUrl = cluster ? cluster.urls()[0] : (vhost?.url() ?? '');
  const redis = new Redis(REDIS_URL);
  const connection = await amqplib.connect(amqpUrl);
  const measurements: Measurement[] = [];
  let contended: Contention[] = [];
  let published: PublisherSample[] = [];
  const latencies: Latency[] = [];
  try {
    // the service declares the topology (quorum or classic), then the queue is shared by all
    await service('topology', 'topology', {}).run(amqpUrl, 0);
    const channel = await connection.createConfirmChannel();
    for (let rep = 1; rep <= (latencyMax > 0 ? 0 : reps); rep++) {
      for (const variant of VARIANTS) {
        await prePublish(channel, warmup + messages, `${variant.key}${rep}`);
        const m = measure(variant, rep, await variant.run(amqpUrl, warmup + messages));
        measurements.push(m);
        process.stdout.write(
          `  rep ${rep} ${variant.label}: ${Math.round(m.msgPerSec)} msg/s, ${Math.round(m.cpuUsPerMsg)} µs CPU/msg\n`,
        );
        const left = await channel.checkQueue(QUEUE);
        if (left.messageCount !== 0) {
          throw new Error(`${left.messageCount} messages left after ${variant.label}`);
        }
      }
    }
    const everySection = only.length === 0 && !onCluster;
    if (everySection && latencyMax === 0) {
      contended = await contention(amqpUrl, channel, redis);
    }
    if ((everySection && latencyMax === 0) || only.includes('g')) {
      published = await publishers(amqpUrl, connection);
    }
    if (everySection) {
      // Both consumers at the same rate, a quarter and an eighth of the naive one's maximum,
      // alternated b d b d …: publishing on the same two cores, half of the consume-only
      // maximum is more than the machine sustains (the latency is then the queue growing).
      const naiveMax =
        latencyMax || median(measurements.filter((m) => m.variant === 'b').map((m) => m.msgPerSec));
      for (const fraction of LATENCY_FRACTIONS) {
        for (let rep = 1; rep <= latencyReps; rep++) {
          for (const key of ['b', 'd'] as const) {
            latencies.push(
              await latency(amqpUrl, channel, redis, key, fraction, naiveMax * fraction, rep),
            );
          }
        }
      }
    }
  } finally {
    await Promise.all((lockServers ?? []).map((server) => server.stop()));
    await connection.close().catch(() => undefined);
    await vhost?.delete();
    await cluster?.stop();
    await deleteRunKeys(redis);
    redis.disconnect();
  }
  await report(measurements, contended, published, latencies);
}

/** Deletes the keys matching any of `patterns` (SCAN, then DEL per page). */
async function deleteMatching(redis: Redis, ...patterns: string[]): Promise<void> {
  for (const pattern of patterns) {
    for await (const keys of redis.scanStream({ match: pattern, count: 1_000 }) as AsyncIterable<
      string[]
    >) {
      if (keys.length > 0) await redis.del(...keys);
    }
  }
}

async function deleteRunKeys(redis: Redis): Promise<void> {
  await deleteMatching(
    redis,
    `ledger:*:${runId}-*`,
    `*:${QUEUE}:${runId}-*`,
    `*:account:${runId}-*`,
  );
}

interface Row {
  readonly variant: string;
  readonly label: string;
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly cpuUsPerMsg: number;
}

async function report(
  measurements: readonly Measurement[],
  contended: readonly Contention[],
  published: readonly PublisherSample[],
  latencies: readonly Latency[],
): Promise<void> {
  const rows: Row[] = VARIANTS.map((v) => {
    const of = measurements.filter((m) => m.variant === v.key);
    const rates = of.map((m) => m.msgPerSec);
    return {
      variant: v.key,
      label: v.label,
      median: Math.round(median(rates)),
      min: Math.round(Math.min(...rates)),
      max: Math.round(Math.max(...rates)),
      cpuUsPerMsg: Math.round(median(of.map((m) => m.cpuUsPerMsg))),
    };
  });
  // paired ratios: the service against each baseline in the same repetition
  const ratio = (a: string, b: string): number => {
    const per = Array.from({ length: reps }, (_, i) => {
      const x = measurements.find((m) => m.variant === a && m.rep === i + 1);
      const y = measurements.find((m) => m.variant === b && m.rep === i + 1);
      return x && y ? x.msgPerSec / y.msgPerSec : Number.NaN;
    });
    return Number(median(per).toFixed(2));
  };
  const cpu = (k: string): number => rows.find((r) => r.variant === k)?.cpuUsPerMsg ?? Number.NaN;
  const targets = [
    { target: 'service ≥ 0.90× naive (d/b)', value: ratio('d', 'b'), met: ratio('d', 'b') >= 0.9 },
    { target: 'service ≥ 1.5× seed (d/c)', value: ratio('d', 'c'), met: ratio('d', 'c') >= 1.5 },
    {
      target: 'service CPU ≤ naive + 25 µs/msg',
      value: cpu('d') - cpu('b'),
      met: cpu('d') - cpu('b') <= 25,
    },
  ];
  if (latencyMax > 0) {
    process.stdout.write(`\n${latencyRows(latencies).join('\n')}\n`);
    return;
  }
  const date = new Date().toISOString().slice(0, 10);
  const machine = machineDescription();
  const command = `npm run bench -- --messages ${messages} --warmup ${warmup} --reps ${reps} --queue-type ${queueType} --prefetch ${prefetch}${onCluster ? ' --cluster' : ''}${quick ? ' --quick' : ''}`;
  const table = [
    '| variant | msg/s (median) | min | max | consumer CPU µs/msg |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.label} | ${r.median} | ${r.min} | ${r.max} | ${r.cpuUsPerMsg} |`),
  ];
  const targetTable = [
    '| target | measured | met |',
    '|---|---|---|',
    ...targets.map((t) => `| ${t.target} | ${t.value} | ${verdict(t.met)} |`),
  ];
  if (onCluster) {
    await reportCluster(date, machine, command, measurements, table, targetTable);
    return;
  }
  const contentionTable = [
    '| 3 instances, accounts | msg/s | CPU µs/msg (3 processes) | Redis commands/msg |',
    '|---|---|---|---|',
    ...contended.map(
      (c) =>
        `| ${c.accounts} | ${rounded(c.msgPerSec)} | ${rounded(c.cpuUsPerMsg)} | ${c.redisCommandsPerMsg.toFixed(2)} |`,
    ),
  ];
  const publisherTable = [
    '| publisher | confirmed msg/s (median) | min | max | CPU µs/msg |',
    '|---|---|---|---|---|',
    ...PUBLISHERS.map(({ mode, label }) => {
      const of = published.filter((p) => p.mode === mode);
      const rates = of.map((p) => p.msgPerSec);
      return `| ${label} | ${Math.round(median(rates))} | ${Math.round(Math.min(...rates))} | ${Math.round(Math.max(...rates))} | ${Math.round(median(of.map((p) => p.cpuUsPerMsg)))} |`;
    }),
  ];
  const publisherRatios = pairedPublisherRatios(published);
  const publisherTarget = [
    '| publisher target, paired per repetition | measured: median (range) | met |',
    '|---|---|---|',
    `| the service's MessagePublisher ≥ 0.95× amqplib, 1,000 outstanding | ${publisherRatios.text} | ${verdict(publisherRatios.median >= 0.95)} |`,
    `| its CPU over amqplib's, µs/msg | ${publisherRatios.cpuText} | reported |`,
  ];
  const latencyTable = latencyRows(latencies);
  const lockServers = (variant: string): string => {
    const of = lockServerCost.filter((c) => c.variant === variant);
    return `${Math.round(median(of.map((c) => c.cpuUsPerMsg)))} µs CPU, ${median(of.map((c) => c.scriptsPerMsg)).toFixed(2)} script calls, ${median(of.map((c) => c.callsPerMsg)).toFixed(2)} commands (the scripts' own included)`;
  };
  const redlockTable = [
    '| Redlock against one Redis, paired | measured | met |',
    '|---|---|---|',
    `| the ledger: throughput r/d ≥ 0.70 | ${ratio('r', 'd')} | ${verdict(ratio('r', 'd') >= 0.7)} |`,
    `| the ledger: service CPU, r − d | ${cpu('r') - cpu('d')} µs/msg | |`,
    `| the ledger: the 3 lock servers together, per message (\`INFO\`, warm-up included) | ${lockServers('r')} | |`,
    ...(rows.some((r) => r.variant === 'q') && rows.some((r) => r.variant === 'l')
      ? [
          `| lock held before the commit: throughput q/l | ${ratio('q', 'l')} | |`,
          `| lock held before the commit: service CPU, q − l | ${cpu('q') - cpu('l')} µs/msg | |`,
          `| lock held before the commit: the 3 lock servers together, per message | ${lockServers('q')} | |`,
        ]
      : []),
  ];
  const tracingTable = [
    '| tracing (h) against none (d), paired | measured |',
    '|---|---|',
    `| throughput h/d | ${ratio('h', 'd')} |`,
    `| service CPU, h − d | ${cpu('h') - cpu('d')} µs/msg |`,
    `| exported per run (median) | ${Math.round(median(exported.map((e) => e.requests)))} requests, ${Math.round(median(exported.map((e) => e.bytes)) / 1024)} KiB |`,
  ];
  // with --only, the sections that did not run are left out
  const measured = [
    table,
    targetTable,
    ...(rows.some((r) => r.variant === 'h') && rows.some((r) => r.variant === 'd')
      ? [tracingTable]
      : []),
    ...(rows.some((r) => r.variant === 'r') && rows.some((r) => r.variant === 'd')
      ? [redlockTable]
      : []),
    latencyTable,
    contentionTable,
    publisherTable,
    ...(published.length > 0 ? [publisherTarget] : []),
  ].filter((t) => {
    if (only.length === 0) return true;
    if (t === publisherTable || t === publisherTarget) return only.includes('g');
    if (t === table || t === targetTable) return measurements.length > 0;
    return t.length > 2;
  });
  process.stdout.write(`\n${measured.map((t) => t.join('\n')).join('\n\n')}\n`);
  const results = join(ROOT, 'bench', 'results');
  mkdirSync(results, { recursive: true });
  // CI proves the bench runs, --only is for profiling: only full runs are recorded
  if (quick || only.length > 0) return;
  writeFileSync(
    join(results, `${date}.json`),
    `${JSON.stringify({ date, machine, command, measurements, rows, targets, latencies, contended, published }, null, 2)}\n`,
  );
  writeFileSync(join(ROOT, 'docs', 'benchmarks-throughput.svg'), chart(rows));
  await writeDocSection(
    'throughput',
    '## What safety costs: the service against hand-written consumers',
    [
      `Measured ${date} on ${machine}, the broker and Redis on the same two cores.`,
      `${messages} messages per measurement (300-byte bodies, ${ACCOUNTS.toLocaleString('en')} accounts), each consumer warmed up`,
      `by ${warmup} unmeasured ones first, ${queueType} queue, prefetch ${prefetch}, the variants alternated ${reps}`,
      'times; throughput and CPU over 10–90 % of each measured batch.',
      '',
      ...commandAndTables(command, table, targetTable),
      '',
      'The cost of tracing: (h) is (d) with `OTEL_EXPORTER_OTLP_ENDPOINT` set and every trace',
      'sampled (two spans per message: the delivery and the handler), exported over OTLP/HTTP',
      '(protobuf, batches of 512) to a sink in the benchmark process; (d) runs with no `OTEL_*`',
      'variable, as every other row:',
      '',
      ...tracingTable,
      '',
      'Redlock: (r) is (d) with `REDIS_LOCK_URLS` naming three redis-server processes of the',
      "benchmark's own on this machine (the effects, markers and fences stay on `REDIS_URL`, where",
      "every lock is recorded too: the ledger's commit takes its lock there, asking the quorum",
      'nothing while no other worker holds the account). (l) is (d) with the lock held before the',
      'commit (`ctx.lock.hold()`), and (q) is (l) on the quorum: the path of a handler that holds',
      'its lock while it runs, which asks the three servers and the home to take and release it:',
      '',
      ...redlockTable,
      '',
      '![throughput by variant](benchmarks-throughput.svg)',
      '',
      'Latency, publish → effect committed (the ack follows at once), publishing for 10 s at a',
      "quarter and at an eighth of the naive consumer's median throughput, the same rate for both,",
      `alternated ${latencyReps} times, each consumer warmed up by ${latencyWarmup} messages at full speed and`,
      `${latencySettleSeconds} seconds at the paced rate, both unmeasured; every run has messageIds of its own (each commit of the`,
      'service applies) and both consumers write their records every 100 ms, not before each ack',
      '(percentiles are medians over the repetitions; machine CPU is both cores busy over the run,',
      'publisher and broker included: under 100 % is not saturated; consumer CPU is its own process',
      'per message at that rate, after the warm-up). The service is scraped every 5 s there, as',
      'Prometheus would (every 15 s).',
      '',
      ...latencyTable,
      '',
      'Contention: 3 service processes on one batch, spread over 10 hot accounts or over 10,000',
      '(Redis commands per message from `INFO commandstats`: the commands Lua scripts run count too,',
      'and process start is included):',
      '',
      ...contentionTable,
      '',
      '(g) Confirmed publishing (each in a process of its own, 300-byte JSON bodies serialized per',
      'message, with the properties the service sets — persistent, mandatory, messageId,',
      'correlationId, timestamp, contentType — to a queue of the same type; CPU is the publishing',
      'process; each run starts once the machine is under 15 % busy, the two paired modes swap',
      'places every repetition):',
      '',
      ...publisherTable,
      '',
      ...publisherTarget,
    ].join('\n'),
  );
}

/** The lines every throughput section ends with: the command, the table, the paired ratios. */
function commandAndTables(
  command: string,
  table: readonly string[],
  targetTable: readonly string[],
): string[] {
  return [
    `Command: \`${command}\``,
    '',
    ...table,
    '',
    'Paired ratios (median of the per-repetition ratios):',
    '',
    ...targetTable,
  ];
}

/** A `--cluster` run: its tables, and on a full run its JSON and section of docs/benchmarks.md. */
async function reportCluster(
  date: string,
  machine: string,
  command: string,
  measurements: readonly Measurement[],
  table: readonly string[],
  targetTable: readonly string[],
): Promise<void> {
  process.stdout.write(`\n${table.join('\n')}\n\n${targetTable.join('\n')}\n`);
  if (quick || only.length > 0) return;
  const results = join(ROOT, 'bench', 'results');
  mkdirSync(results, { recursive: true });
  writeFileSync(
    join(results, `cluster-${date}.json`),
    `${JSON.stringify({ date, machine, command, measurements }, null, 2)}\n`,
  );
  await writeDocSection(
    'cluster-throughput',
    '## On a 3-node cluster: the service against hand-written consumers',
    [
      `Measured ${date} on ${machine}: three RabbitMQ nodes of the benchmark's own (one`,
      'cluster), Redis, the consumers and the publisher on the same two cores; quorum queues',
      '(leader on the first node, replicas on the other two). Every consumer, the service',
      "included, is given the first node's URL: a consumer on a follower has its deliveries",
      `relayed through the leader, which a pairing must not mix. ${messages} messages per`,
      `measurement after ${warmup} of warm-up, prefetch ${prefetch}, the variants alternated ${reps}`,
      'times; throughput and CPU over 10–90 %',
      'of each measured batch, CPU of the consumer process only (the brokers are not counted).',
      '',
      ...commandAndTables(command, table, targetTable),
    ].join('\n'),
  );
}

/**
 * The latency table: per rate, each consumer's percentiles (medians over the repetitions) and
 * the service's p99 over the naive one's, paired per repetition (median, and the range).
 */
function latencyRows(latencies: readonly Latency[]): string[] {
  const rows = [
    '| rate (share of naive max) | consumer | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | p99 to the handler | p99 of the commit | machine CPU | consumer CPU µs/msg | p99 d/b paired: median (range) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const fraction of [...new Set(latencies.map((l) => l.fraction))]) {
    const at = latencies.filter((l) => l.fraction === fraction);
    const ratios = [...new Set(at.map((l) => l.rep))].flatMap((rep) => {
      const b = at.find((l) => l.variant === 'b' && l.rep === rep);
      const d = at.find((l) => l.variant === 'd' && l.rep === rep);
      return b && d ? [d.p99 / b.p99] : [];
    });
    for (const variant of ['b', 'd']) {
      const of = at.filter((l) => l.variant === variant);
      if (of.length === 0) continue;
      const m = (f: (l: Latency) => number): string => median(of.map(f)).toFixed(2);
      const ratio =
        variant === 'd' && ratios.length > 0
          ? `${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`
          : '';
      rows.push(
        `| ${of[0].ratePerSec} msg/s (1/${Math.round(1 / fraction)}) | ${variant === 'b' ? 'naive (b)' : 'service (d)'} | ${m((l) => l.p50)} | ${m((l) => l.p95)} | ${m((l) => l.p99)} | ${m((l) => l.p999)} | ${m((l) => l.max)} | ${m((l) => l.p99ToHandler)} | ${m((l) => l.p99Commit)} | ${m((l) => l.machineCpuPercent)} % | ${m((l) => l.consumerCpuUsPerMsg)} | ${ratio} |`,
      );
    }
  }
  return rows;
}

/** A bar chart of median throughput with min–max whiskers, as SVG. */
function chart(rows: readonly Row[]): string {
  const width = 720;
  const barHeight = 28;
  const left = 300;
  const scale = (width - left - 80) / Math.max(...rows.map((r) => r.max));
  const bars = rows.map((r, i) => {
    const y = 20 + i * (barHeight + 12);
    const mid = y + barHeight / 2;
    return [
      `<text x="${left - 8}" y="${mid + 4}" text-anchor="end" font-size="12">${r.label.replace(/&/g, '&amp;')}</text>`,
      `<rect x="${left}" y="${y}" width="${r.median * scale}" height="${barHeight}" fill="#4c78a8"/>`,
      `<line x1="${left + r.min * scale}" x2="${left + r.max * scale}" y1="${mid}" y2="${mid}" stroke="#222"/>`,
      `<text x="${left + r.max * scale + 6}" y="${mid + 4}" font-size="12">${r.median} msg/s</text>`,
    ].join('');
  });
  const height = 20 + rows.length * (barHeight + 12) + 10;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">${bars.join('')}</svg>\n`;
}

runMain(main);
