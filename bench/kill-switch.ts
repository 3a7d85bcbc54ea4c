/**
 * The kill switch's timing (issue 21): how long a failing downstream runs before the switch trips,
 * how many attempts fail meanwhile, and how long the consumer takes to resume once the downstream
 * heals. The module (as built in dist/) consumes a steady stream of messages with a handler whose
 * downstream the script breaks and heals.
 *
 *   npm run bench:kill-switch [-- --rate 100 --healthy-s 60 --outage-s 45 --threshold 50
 *           --min-attempts 20 --window-ms 60000 --restart-ms 30000 --trickle 5 --heals 2]
 *
 * Defaults are the KILL_SWITCH_* defaults with a threshold of 50 %. Each of `--heals` cycles
 * publishes at `--rate` for `--healthy-s` healthy, breaks the downstream for `--outage-s`, heals it and
 * waits until the switch is closed and the backlog applied. Prints a table and the JSON; figures
 * go to docs/benchmarks.md by hand (timings depend on where in its restart delay the heal falls).
 */
import { randomBytes } from 'node:crypto';
import { Injectable, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Registry } from 'prom-client';
import type * as Library from '../src/index.js';
import type * as ConsumerServiceModule from '../src/messaging/message-consumer.service.js';
import { TestVhost } from '../test/e2e/support/rabbitmq.vhost.js';
import { TestBroker } from '../test/e2e/support/test-app.js';
import { waitFor } from '../test/e2e/support/wait-for.js';
import { benchArgs, machineDescription, runMain } from './bench.support.js';

// the module as built (tsc emits the decorator metadata Nest's injection needs; tsx does not),
// typed by its sources (dist/ does not exist before the build, when the lint runs)
const DIST = '../dist/';
const { MessageHandler, MessageProcessorModule } = (await import(
  `${DIST}index.js`
)) as typeof Library;
const { MessageConsumerService } = (await import(
  `${DIST}messaging/message-consumer.service.js`
)) as typeof ConsumerServiceModule;
type MessageContext = Library.MessageContext;

const { count } = benchArgs();
const rate = count('rate', 100);
const outageMs = count('outage-s', 45) * 1_000;
const healthyMs = count('healthy-s', 60) * 1_000;
const heals = count('heals', 2);
const policy = {
  thresholdPercent: count('threshold', 50),
  minAttempts: count('min-attempts', 20),
  windowMs: count('window-ms', 60_000),
  restartMs: count('restart-ms', 30_000),
  trickle: count('trickle', 5),
};
const tag = randomBytes(3).toString('hex');
const EXCHANGE = `ks-bench-${tag}`;
const QUEUE = `ks-bench-${tag}`;

/** The handler; its downstream fails every call while `broken`. */
@Injectable()
class Downstream {
  broken = false;
  failures = 0;
  readonly applied = new Map<string, number>();

  @MessageHandler({
    exchange: EXCHANGE,
    routingKey: 'work',
    queue: QUEUE,
    prefetch: 20,
    retry: { maxAttempts: 5, initialDelayMs: 1_000, maxDelayMs: 10_000 },
    killSwitch: policy,
  })
  handle(_payload: unknown, ctx: MessageContext): void {
    if (this.broken) {
      this.failures++;
      throw new Error('downstream: 503 Service Unavailable');
    }
    const id = ctx.messageId ?? '';
    this.applied.set(id, (this.applied.get(id) ?? 0) + 1);
  }
}

@Module({ providers: [Downstream] })
class BenchHandlers {}

interface Cycle {
  /** Break → trip (the consumer detached). */
  tripMs: number;
  /** Failed attempts between the break and the trip. */
  failedBeforeTrip: number;
  /** Trips during the outage (re-trips after each restart delay included). */
  trips: number;
  /** Failed attempts over the whole outage. */
  failedInOutage: number;
  /** Messages published during the outage (they waited in the queue). */
  publishedInOutage: number;
  /** Heal → the switch closed and the consumer attached at full prefetch. */
  resumeMs: number;
  /** Heal → every message published so far applied (or dead-lettered). */
  drainedMs: number;
  /** Dead-lettered so far (spent their retries before the switch tripped). */
  deadLettered: number;
}

async function main(): Promise<void> {
  const vhost = await TestVhost.create('ksbench');
  const broker = await TestBroker.connect(vhost.url());
  const registry = new Registry();
  const moduleRef = await Test.createTestingModule({
    imports: [
      MessageProcessorModule.forRoot({
        amqp: { urls: vhost.url() },
        redis: { url: 'redis://127.0.0.1:6379' },
        metrics: { registry },
        logLevel: 'silent',
      }),
      BenchHandlers,
    ],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  const downstream = app.get(Downstream);
  const status = () =>
    app
      .get(MessageConsumerService)
      .status()
      .find((c) => c.queue === QUEUE);
  const trips = async (): Promise<number> =>
    ((await registry.getSingleMetric('kill_switch_trips_total')?.get())?.values ?? []).reduce(
      (sum, v) => sum + v.value,
      0,
    );
  await waitFor('the consumer attached', () => status()?.attached === true, 30_000);

  // a steady stream: `rate` messages a second, each confirmed
  let published = 0;
  let publishing = true;
  const stream = (async () => {
    const started = performance.now();
    while (publishing) {
      const due = Math.floor(((performance.now() - started) / 1_000) * rate);
      while (published < due) {
        await broker.publish(EXCHANGE, 'work', '{}', {
          messageId: `${tag}-${published}`,
          contentType: 'application/json',
        });
        published++;
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();

  const cycles: Cycle[] = [];
  try {
    for (let i = 0; i < heals; i++) {
      // a window's worth of successes first
      await new Promise((resolve) => setTimeout(resolve, healthyMs));
      const tripsBefore = await trips();
      const failuresBefore = downstream.failures;
      const publishedBefore = published;
      downstream.broken = true;
      const brokeAt = performance.now();
      await waitFor('the trip', () => status()?.killSwitch?.state === 'open', outageMs + 60_000);
      const tripMs = performance.now() - brokeAt;
      const failedBeforeTrip = downstream.failures - failuresBefore;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, outageMs - tripMs)));
      downstream.broken = false;
      const healedAt = performance.now();
      const cycle = {
        tripMs,
        failedBeforeTrip,
        trips: (await trips()) - tripsBefore,
        failedInOutage: downstream.failures - failuresBefore,
        publishedInOutage: published - publishedBefore,
      };
      await waitFor(
        'the switch closed',
        () => status()?.killSwitch === undefined && status()?.attached === true,
        policy.restartMs + 120_000,
      );
      const resumeMs = performance.now() - healedAt;
      const target = published;
      // every message so far applied, or dead-lettered (what the switch is there to prevent)
      await waitFor(
        'the backlog applied or dead-lettered',
        async () => downstream.applied.size + (await broker.depth(`${QUEUE}.dlq`)) >= target,
        300_000,
      );
      cycles.push({
        ...cycle,
        resumeMs,
        drainedMs: performance.now() - healedAt,
        deadLettered: await broker.depth(`${QUEUE}.dlq`),
      });
      process.stdout.write(`cycle ${i + 1}: ${JSON.stringify(cycles[i])}\n`);
    }
  } finally {
    publishing = false;
    await stream;
  }
  await waitFor(
    'every message applied or dead-lettered',
    async () => downstream.applied.size + (await broker.depth(`${QUEUE}.dlq`)) >= published,
    120_000,
  );
  const twice = [...downstream.applied.values()].filter((n) => n > 1).length;
  const deadLettered = await broker.depth(`${QUEUE}.dlq`);
  await app.close();
  await broker.close();
  await vhost.delete();

  const s = (ms: number) => (ms / 1_000).toFixed(2);
  const rows = cycles.map(
    (c, i) =>
      `| ${i + 1} | ${s(c.tripMs)} | ${c.failedBeforeTrip} | ${c.trips} | ${c.failedInOutage} | ${c.publishedInOutage} | ${s(c.resumeMs)} | ${s(c.drainedMs)} | ${c.deadLettered} |`,
  );
  process.stdout.write(
    [
      '',
      `Kill switch at ${rate} msg/s, outage ${outageMs / 1_000} s, policy ${JSON.stringify(policy)}; ${machineDescription()}`,
      '',
      '| cycle | break → trip (s) | failed before trip | trips in outage | failed attempts in outage | published in outage | heal → resumed (s) | heal → backlog settled (s) | dead-lettered so far |',
      '| ----- | ---------------- | ------------------ | --------------- | ------------------------- | ------------------- | ------------------ | -------------------------- | -------------------- |',
      ...rows,
      '',
      `${published} messages published, ${downstream.applied.size} applied; applied twice: ${twice}; dead-lettered: ${deadLettered}`,
      '',
    ].join('\n'),
  );
  if (twice > 0 || deadLettered > 0) process.exitCode = 1;
}

runMain(main);
