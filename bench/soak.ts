/**
 * Soak (issue 22): the service as production runs it, under a steady stream for half an hour with
 * a fault every slice, reporting per slice what drifts when something leaks: resident memory,
 * heap, event-loop lag, handles and publish → effect latency; and at the end, the oracle's verdict
 * on every message.
 *
 *   npm run soak [-- --minutes 30 --slice-s 300 --instances 2 --rate <msg/s> --pause-ms 3000
 *                 --warmup-s 120 --sample-s 10 --accounts 1000 --backlog 40000]
 *   npm run soak -- --quick      (2 min: four slices of 30 s, each fault once; proves the soak works,
 *                                 judges nothing)
 *
 * The setup: a vhost of its own on the local broker, a main Redis of its own (the Redis pause is
 * `CLIENT PAUSE` on it), an oracle Redis of its own, `--instances` observed services (the
 * production bootstrap with the ledger's observer recording every commit, as in the reliability
 * suite). Before the stream, the maximum rate of this setup is measured by draining a backlog of
 * `--backlog` messages; the stream then runs at a quarter of it (or at `--rate`).
 *
 * Faults, one at the start of every slice after the first, in turn: every service connection
 * closed by the broker; the last instance stopped with SIGTERM and started again; the main Redis
 * paused for `--pause-ms`. Instance 1 is never restarted: its memory is the one judged.
 *
 * Judged (a full run): instance 1's resident memory in the last slice grows ≤ 10 % over the first
 * slice in which V8's young generation has reached the size it keeps (growth before that is V8
 * sizing its nursery for the allocation rate, not a leak; the growth from the first slice after
 * the warm-up is reported as well, and old space used beside it); the last slice's p99 ≤ 1.5× the
 * first's; every message applied
 * exactly once (none lost, doubled, dead-lettered or stuck; every balance exact). A full run
 * (30 minutes, the default slices) writes its table into docs/benchmarks.md and its JSON into
 * bench/results/soak-<date>.json. Exit code 1 when the oracle finds a message not applied once.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import amqplib, { type ConfirmChannel } from 'amqplib';
import { Redis } from 'ioredis';
import { waitAllReady } from '../test/chaos/support/instances.js';
import { TestVhost } from '../test/e2e/support/rabbitmq.vhost.js';
import { TestRedisServer } from '../test/e2e/support/redis.server.js';
import { OBSERVED_SERVICE, ServiceProcess } from '../test/e2e/support/service.process.js';
import { waitFor } from '../test/e2e/support/wait-for.js';
import {
  benchArgs,
  cpuJiffies,
  machineDescription,
  median,
  percentile,
  ROOT,
  runMain,
  writeDocSection,
} from './bench.support.js';

const run = promisify(execFile);
const { quick, count, option, verdict } = benchArgs();
const minutes = Number(option('minutes', quick ? '2' : '30'));
if (!(minutes > 0)) throw new Error('--minutes must be a positive number');
const sliceMs = count('slice-s', quick ? 30 : 300) * 1_000;
const instances = count('instances', 2, 2);
const fixedRate = count('rate', 0, 0);
const pauseMs = count('pause-ms', 3_000);
const warmupMs = count('warmup-s', quick ? 10 : 120, 0) * 1_000;
const sampleMs = count('sample-s', quick ? 5 : 10) * 1_000;
const accounts = count('accounts', 1_000);
const backlog = count('backlog', quick ? 5_000 : 40_000);
const durationMs = Math.round(minutes * 60_000);
const slices = Math.max(1, Math.ceil(durationMs / sliceMs));
/** A run recorded in the docs: the issue's half hour in its five-minute slices. */
const full = !quick && durationMs >= 30 * 60_000 && sliceMs === 300_000;

const tag = randomBytes(3).toString('hex');
const EXCHANGE = 'ledger';
const ROUTING_KEY = 'transaction.created';
const QUEUE = 'ledger.transactions';
const EFFECTS_KEY = 'oracle:effects';
/** Messages published within this long after a fault's recovery count as the fault's. */
const AFTERMATH_MS = 10_000;

const wallClock = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const FAULTS = ['connections closed', 'instance SIGTERM + restart', 'Redis paused'] as const;
type FaultName = (typeof FAULTS)[number];

/** What the soak knows of every message, indexed by its sequence number. */
class Messages {
  sentAt = new Float64Array(0);
  amount = new Int32Array(0);
  confirmed = new Uint8Array(0);
  applied = new Uint8Array(0);
  /** Sent so far (sequence numbers 0 … published − 1). */
  published = 0;
  nacked = 0;

  reserve(capacity: number): void {
    if (capacity <= this.sentAt.length) return;
    const grow = <T extends Float64Array | Int32Array | Uint8Array>(old: T, next: T): T => {
      next.set(old);
      return next;
    };
    this.sentAt = grow(this.sentAt, new Float64Array(capacity));
    this.amount = grow(this.amount, new Int32Array(capacity));
    this.confirmed = grow(this.confirmed, new Uint8Array(capacity));
    this.applied = grow(this.applied, new Uint8Array(capacity));
  }
}

/** One /metrics sample of one instance. */
interface Sample {
  readonly at: number;
  readonly slot: number;
  readonly rssMb: number;
  readonly heapUsedMb: number;
  /** V8's young generation as committed (it grows up to 3 × the semi-space limit) and old space used. */
  readonly newSpaceMb: number;
  readonly oldUsedMb: number;
  readonly lagP99Ms: number;
  readonly handles: number;
}

interface FaultRecord {
  readonly slice: number;
  readonly fault: FaultName;
  /** When it began (a close: when the broker had closed the connections). */
  at: number;
  /** Fault → every instance answering ready again (a restart: SIGTERM → the new one ready). */
  recoveredMs: number;
}

interface SliceStats {
  readonly slice: number;
  readonly fault: FaultName | '';
  readonly published: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  /** p99 of the slice's messages published outside the fault and its aftermath. */
  readonly p99Calm: number;
  /** Instance 1 (never restarted): median resident memory and heap used, in MB. */
  readonly rssMb: number;
  readonly heapUsedMb: number;
  readonly newSpaceMb: number;
  readonly oldUsedMb: number;
  /** Every instance: median and worst 10-s event-loop lag p99, most active handles. */
  readonly lagP99Ms: number;
  readonly lagP99WorstMs: number;
  readonly handles: number;
  /** The restarted slot's median resident memory (MB). */
  readonly otherRssMb: number;
  readonly machineCpuPercent: number;
}

function body(seq: number, amountCents: number): Buffer {
  return Buffer.from(
    JSON.stringify({ accountId: `soak${tag}-a${seq % accounts}`, amountCents, memo: '' }),
  );
}

/** A metric's value in a Prometheus text exposition (summed over its label sets). */
function metric(text: string, name: string, labels = ''): number {
  let sum = 0;
  const filter = labels ? `\\{[^}]*${labels}[^}]*\\}` : '(?:\\{[^}]*\\})?';
  for (const m of text.matchAll(new RegExp(`^${name}${filter} (\\S+)`, 'gm'))) {
    sum += Number(m[1]);
  }
  return sum;
}

async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await run('rabbitmqctl', ['-q', ...args], { timeout: 30_000 });
  return stdout;
}

async function main(): Promise<void> {
  process.stdout.write(
    `soak: ${minutes} min in ${slices} slice(s) of ${sliceMs / 1_000} s, ${instances} instances${quick ? ' (quick)' : ''}; ${machineDescription()}\n`,
  );
  const vhost = await TestVhost.create('soak');
  const mainRedis = await TestRedisServer.start();
  const oracleRedis = await TestRedisServer.start();
  const admin = new Redis(mainRedis.url);
  const oracle = new Redis(oracleRedis.url);
  const connection = await amqplib.connect(vhost.url());
  const channel: ConfirmChannel = await connection.createConfirmChannel();
  const services: ServiceProcess[] = [];
  const env = {
    AMQP_URL: vhost.url(),
    REDIS_URL: mainRedis.url,
    LEDGER_ORACLE_URL: oracleRedis.url,
    HTTP_PORT: '0',
    LOG_LEVEL: 'info',
  };
  const spawn = (): ServiceProcess => ServiceProcess.start(env, OBSERVED_SERVICE);
  const messages = new Messages();
  const samples: Sample[] = [];
  const faults: FaultRecord[] = [];
  const latencies: number[][] = Array.from({ length: slices }, () => []);
  const calm: number[][] = Array.from({ length: slices }, () => []);
  const publishedIn = new Array<number>(slices).fill(0);
  const cpuAt: { busy: number; total: number }[] = [];
  let streamStart = Number.POSITIVE_INFINITY;
  let duplicatesAbsorbed = 0;
  let otherResults = 0;
  let foreign = 0;
  let effectsSeen = 0;
  /** When each effect of the backlog (the maximum-rate measurement) ended. */
  const backlogEnds: number[] = [];
  let exitCode = 0;

  /** Moves the oracle's records into `messages` and the slices' latencies. */
  async function drainOracle(): Promise<void> {
    for (;;) {
      const batch = await oracle.lpop(EFFECTS_KEY, 10_000);
      if (!batch || batch.length === 0) return;
      for (const line of batch) {
        const r = JSON.parse(line) as { messageId: string; result: string; end: number };
        const seq = Number(r.messageId.slice(tag.length + 1));
        if (!r.messageId.startsWith(`${tag}-`) || !(seq < messages.published)) {
          foreign++;
          continue;
        }
        effectsSeen++;
        if (streamStart === Number.POSITIVE_INFINITY) backlogEnds.push(r.end);
        if (r.result === 'duplicate') {
          duplicatesAbsorbed++;
          continue;
        }
        if (r.result !== 'applied') {
          otherResults++;
          continue;
        }
        messages.applied[seq] = Math.min(255, messages.applied[seq] + 1);
        const sent = messages.sentAt[seq];
        if (sent < streamStart) continue;
        const slice = Math.min(slices - 1, Math.floor((sent - streamStart) / sliceMs));
        const ms = r.end - sent;
        latencies[slice].push(ms);
        const fault = faults.find((f) => f.slice === slice);
        const faultEnd = fault ? fault.at + (fault.recoveredMs || sliceMs) + AFTERMATH_MS : 0;
        if (!fault || sent > faultEnd) calm[slice].push(ms);
      }
    }
  }

  function publish(seq: number): boolean {
    const amountCents = (seq % 997) + 1;
    messages.amount[seq] = amountCents;
    messages.sentAt[seq] = wallClock();
    messages.published = seq + 1;
    return channel.publish(
      EXCHANGE,
      ROUTING_KEY,
      body(seq, amountCents),
      {
        persistent: true,
        contentType: 'application/json',
        messageId: `${tag}-${seq}`,
      },
      (error: unknown) => {
        if (error) messages.nacked++;
        else messages.confirmed[seq] = 1;
      },
    );
  }

  async function sample(): Promise<void> {
    const at = wallClock();
    await Promise.all(
      services.map(async (service, slot) => {
        if (!service.alive || service.httpPort === undefined) return;
        const text = await fetch(`http://127.0.0.1:${service.httpPort}/metrics`)
          .then((res) => res.text())
          .catch(() => '');
        if (!text) return;
        samples.push({
          at,
          slot,
          rssMb: metric(text, 'process_resident_memory_bytes') / 2 ** 20,
          heapUsedMb: metric(text, 'nodejs_heap_size_used_bytes') / 2 ** 20,
          newSpaceMb: metric(text, 'nodejs_heap_space_size_total_bytes', 'space="new"') / 2 ** 20,
          oldUsedMb: metric(text, 'nodejs_heap_space_size_used_bytes', 'space="old"') / 2 ** 20,
          lagP99Ms: metric(text, 'nodejs_eventloop_lag_p99_seconds') * 1_000,
          handles: metric(text, 'nodejs_active_handles_total'),
        });
      }),
    );
  }

  async function inject(slice: number): Promise<void> {
    const fault = FAULTS[(slice - 1) % FAULTS.length];
    const record: FaultRecord = { slice, fault, at: wallClock(), recoveredMs: 0 };
    faults.push(record);
    if (fault === 'connections closed') {
      const listed = await rabbitmqctl(
        'list_connections',
        '-p',
        vhost.name,
        '--no-table-headers',
        'pid',
        'client_properties',
      );
      const pids = listed
        .split('\n')
        .filter((line) => line.includes('message-processor@'))
        .map((line) => line.split('\t')[0]);
      // timed from the closes (rabbitmqctl's own start-up takes a second or more)
      record.at = wallClock();
      await Promise.all(
        pids.map((pid) => rabbitmqctl('close_connection', pid, 'soak: forced close')),
      );
    } else if (fault === 'instance SIGTERM + restart') {
      const last = services.length - 1;
      services[last].kill('SIGTERM');
      const code = await services[last].exitCode(60_000);
      if (code !== 0) throw new Error(`instance ${last + 1} exited ${String(code)} on SIGTERM`);
      services[last] = spawn();
    } else {
      await admin.call('CLIENT', 'PAUSE', String(pauseMs));
      await sleep(pauseMs);
    }
    await waitAllReady(services);
    record.recoveredMs = wallClock() - record.at;
    process.stdout.write(
      `  slice ${slice + 1}: ${fault}, all ready after ${(record.recoveredMs / 1_000).toFixed(2)} s\n`,
    );
  }

  try {
    for (let i = 0; i < instances; i++) services.push(spawn());
    await waitAllReady(services);

    // the maximum rate of this setup: a backlog published while no instance consumes, drained
    let rate = fixedRate;
    messages.reserve(backlog);
    if (rate === 0) {
      await Promise.all(
        services.map(async (service) => {
          service.kill('SIGTERM');
          await service.exitCode(60_000);
        }),
      );
      for (let seq = 0; seq < backlog; seq++) {
        if (!publish(seq)) await new Promise((resolve) => channel.once('drain', resolve));
      }
      await channel.waitForConfirms();
      for (let i = 0; i < instances; i++) services[i] = spawn();
      await waitFor(
        'the backlog drained',
        async () => {
          await drainOracle();
          return effectsSeen >= backlog;
        },
        600_000,
        200,
      );
      await waitAllReady(services);
      // the middle 80 % of the drain: neither the instances' start nor the last stragglers
      const ends = backlogEnds.sort((a, b) => a - b);
      const maxRate = (0.8 * ends.length) / ((percentile(ends, 90) - percentile(ends, 10)) / 1_000);
      rate = Math.max(1, Math.round(maxRate / 4));
      process.stdout.write(
        `  maximum rate: ${Math.round(maxRate)} msg/s (the middle 80 % of a backlog of ${backlog} drained); the stream runs at a quarter: ${rate} msg/s\n`,
      );
    }
    messages.reserve(messages.published + Math.ceil((rate * durationMs) / 1_000) + 10_000);

    // the stream, faults at each slice's start (but the first's), samples and the oracle's drain
    streamStart = wallClock();
    const startedAt = performance.now();
    const first = messages.published;
    let faulting: Promise<void> = Promise.resolve();
    let nextSample = 0;
    let nextDrain = 0;
    let draining: Promise<void> | undefined;
    let drainError: Error | undefined;
    let slice = 0;
    cpuAt.push(cpuJiffies());
    while (performance.now() - startedAt < durationMs) {
      if (drainError !== undefined) throw drainError;
      const elapsed = performance.now() - startedAt;
      const nowSlice = Math.floor(elapsed / sliceMs);
      if (nowSlice > slice) {
        slice = nowSlice;
        cpuAt.push(cpuJiffies());
        process.stdout.write(`  slice ${slice} done: ${messages.published - first} published\n`);
        await faulting;
        faulting = inject(slice);
        faulting.catch(() => undefined);
      }
      const due = first + Math.floor((elapsed / 1_000) * rate);
      while (messages.published < due) {
        const seq = messages.published;
        publishedIn[slice]++;
        if (!publish(seq)) await new Promise((resolve) => channel.once('drain', resolve));
      }
      if (elapsed >= nextSample) {
        nextSample = elapsed + sampleMs;
        void sample();
      }
      if (elapsed >= nextDrain && !draining) {
        // not awaited: the stream keeps its pace while the records are read
        nextDrain = elapsed + 1_000;
        draining = drainOracle()
          // a failed read ends the soak at the loop's next turn
          .catch((error: unknown) => {
            drainError = error instanceof Error ? error : new Error(String(error));
          })
          .finally(() => (draining = undefined));
      }
      await sleep(2);
    }
    cpuAt.push(cpuJiffies());
    await faulting;
    await draining;
    await drainOracle();
    await channel.waitForConfirms();
    process.stdout.write(`  stream stopped: ${messages.published} published; settling\n`);

    // settled: every confirmed message applied, nothing left in the work or retry queues
    const depths = async (): Promise<Map<string, number>> => {
      const listed = await rabbitmqctl(
        'list_queues',
        '-p',
        vhost.name,
        '--no-table-headers',
        'name',
        'messages',
      );
      return new Map(
        listed
          .split('\n')
          .filter((line) => line.trim() !== '')
          .map((line) => {
            const [name, n] = line.split('\t');
            return [name, Number(n)] as const;
          }),
      );
    };
    const unapplied = (): number => {
      let n = 0;
      for (let seq = 0; seq < messages.published; seq++) {
        if (messages.confirmed[seq] === 1 && messages.applied[seq] === 0) n++;
      }
      return n;
    };
    await waitFor(
      'every confirmed message applied',
      async () => {
        await drainOracle();
        return unapplied() === 0;
      },
      180_000,
      500,
    ).catch(() => undefined);
    // Redeliveries of applied messages (a retry scheduled while Redis was paused, say) may still
    // wait in a delay tier: they come back, are absorbed as duplicates and acked. A message still
    // in the work or retry queues after two minutes is stuck (the DLQ is counted on its own).
    const waiting = (queues: Map<string, number>): [string, number][] =>
      [...queues].filter(([name, n]) => name !== `${QUEUE}.dlq` && n > 0);
    await waitFor(
      'the work and retry queues empty',
      async () => waiting(await depths()).length === 0,
      120_000,
      500,
    ).catch(() => undefined);
    await drainOracle();
    const queues = await depths();
    const dlq = queues.get(`${QUEUE}.dlq`) ?? 0;
    const stuckIn = waiting(queues);
    const stuck = stuckIn.reduce((s, [, n]) => s + n, 0);
    if (stuck > 0) {
      process.stdout.write(
        `  stuck: ${stuckIn.map(([name, n]) => `${n} in ${name}`).join(', ')}\n`,
      );
    }

    // the oracle: each message once, and the balances it implies
    let lost = 0;
    let doubled = 0;
    let unconfirmedApplied = 0;
    const expected = new Map<string, number>();
    for (let seq = 0; seq < messages.published; seq++) {
      const applied = messages.applied[seq];
      if (applied === 0 && messages.confirmed[seq] === 1) lost++;
      if (applied > 1) doubled++;
      if (applied > 0 && messages.confirmed[seq] === 0) unconfirmedApplied++;
      if (applied > 0) {
        const account = `soak${tag}-a${seq % accounts}`;
        expected.set(account, (expected.get(account) ?? 0) + messages.amount[seq]);
      }
    }
    const names = Array.from({ length: accounts }, (_, i) => `soak${tag}-a${i}`);
    const balances = await admin.mget(names.map((a) => `ledger:balance:${a}`));
    const balanceErrors = names.filter(
      (a, i) => Number(balances[i] ?? 0) !== (expected.get(a) ?? 0),
    ).length;
    const exactlyOnce =
      lost === 0 && doubled === 0 && dlq === 0 && stuck === 0 && balanceErrors === 0;
    if (!exactlyOnce) exitCode = 1;

    // per slice
    const stats: SliceStats[] = [];
    for (let s = 0; s < slices; s++) {
      const from = streamStart + s * sliceMs;
      const to = from + sliceMs;
      const inSlice = samples.filter((x) => x.at >= from && x.at < to);
      const judged = s === 0 ? inSlice.filter((x) => x.at >= streamStart + warmupMs) : inSlice;
      const of = (
        slot: number,
        field: 'rssMb' | 'heapUsedMb' | 'newSpaceMb' | 'oldUsedMb',
      ): number => median(judged.filter((x) => x.slot === slot).map((x) => x[field]));
      const sorted = latencies[s].sort((a, b) => a - b);
      const calmSorted = calm[s].sort((a, b) => a - b);
      const cpuFrom = cpuAt[s];
      const cpuTo = cpuAt[s + 1] ?? cpuAt[cpuAt.length - 1];
      const round = (n: number, digits = 1): number => Number(n.toFixed(digits));
      stats.push({
        slice: s + 1,
        fault: faults.find((f) => f.slice === s)?.fault ?? '',
        published: publishedIn[s],
        p50: round(percentile(sorted, 50), 2),
        p99: round(percentile(sorted, 99), 2),
        p999: round(percentile(sorted, 99.9), 2),
        max: round(sorted[sorted.length - 1] ?? Number.NaN),
        p99Calm: round(percentile(calmSorted, 99), 2),
        rssMb: round(of(0, 'rssMb')),
        heapUsedMb: round(of(0, 'heapUsedMb')),
        newSpaceMb: round(of(0, 'newSpaceMb')),
        oldUsedMb: round(of(0, 'oldUsedMb')),
        lagP99Ms: round(median(inSlice.map((x) => x.lagP99Ms)), 2),
        lagP99WorstMs: round(Math.max(...inSlice.map((x) => x.lagP99Ms)), 2),
        handles: Math.max(...inSlice.map((x) => x.handles)),
        otherRssMb: round(of(instances - 1, 'rssMb')),
        machineCpuPercent: Math.round(
          (100 * (cpuTo.busy - cpuFrom.busy)) / (cpuTo.total - cpuFrom.total || 1),
        ),
      });
    }
    const firstSlice = stats[0];
    const lastSlice = stats[stats.length - 1];
    // V8 grows the young generation as survivors demand, up to its limit, and keeps it while the
    // allocation rate stays high: minutes of growth that is sizing, not a leak. Memory is judged
    // from the first slice with the young generation at (95 % of) the size it reached, and only
    // when at least two slices follow it; old space used is reported over the same slices.
    const youngMax = Math.max(...stats.map((x) => x.newSpaceMb));
    // -1 only if a slice had no sample (NaN): judged from the first slice then, and not judged
    const grownAt = stats.findIndex((x) => x.newSpaceMb >= 0.95 * youngMax);
    const baseSlice = stats[Math.max(grownAt, 0)];
    const memoryJudged = grownAt >= 0 && grownAt <= stats.length - 3;
    const memoryGrowth = lastSlice.rssMb / baseSlice.rssMb - 1;
    const oldGrowth = lastSlice.oldUsedMb / baseSlice.oldUsedMb - 1;
    const rawGrowth = lastSlice.rssMb / firstSlice.rssMb - 1;
    const heapGrowth = lastSlice.heapUsedMb / firstSlice.heapUsedMb - 1;
    const p99Ratio = lastSlice.p99 / firstSlice.p99;
    const pct = (n: number): string => `${(n * 100).toFixed(1)} %`;
    const table = [
      '| slice | fault at its start | published | p50 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | p99 outside the fault (ms) | instance 1 RSS (MB) | instance 1 heap used (MB) | its young generation, committed (MB) | its old space used (MB) | event-loop delay p99, median / worst 10 s (ms; 10 of them the sampling interval) | handles (most) | restarted instance RSS (MB) | machine CPU |',
      '| ----- | ------------------ | --------- | -------- | -------- | ---------- | -------- | -------------------------- | ------------------- | ------------------------- | ---- | ---- | -------------------------------------------- | -------------- | --------------------------- | ----------- |',
      ...stats.map(
        (x) =>
          `| ${x.slice} | ${x.fault || '— (warm-up first)'} | ${x.published} | ${x.p50} | ${x.p99} | ${x.p999} | ${x.max} | ${x.p99Calm} | ${x.rssMb} | ${x.heapUsedMb} | ${x.newSpaceMb} | ${x.oldUsedMb} | ${x.lagP99Ms} / ${x.lagP99WorstMs} | ${x.handles} | ${x.otherRssMb} | ${x.machineCpuPercent} % |`,
      ),
    ];
    const faultLines = faults.map(
      (f) =>
        `- slice ${f.slice + 1}: ${f.fault}, every instance ready again after ${(f.recoveredMs / 1_000).toFixed(2)} s`,
    );
    const targets = [
      '| target | measured | met |',
      '| ------ | -------- | --- |',
      `| instance 1's resident memory, last slice against the first with V8's young generation grown (slice ${baseSlice.slice}, ${baseSlice.newSpaceMb} MB): ≤ +10 % | ${pct(memoryGrowth)} (${baseSlice.rssMb} → ${lastSlice.rssMb} MB; old space used ${pct(oldGrowth)}, ${baseSlice.oldUsedMb} → ${lastSlice.oldUsedMb} MB) | ${memoryJudged ? '' : '(not judged: the young generation grew until the last slices) '}${verdict(memoryJudged && memoryGrowth <= 0.1)} |`,
      `| (for the record) resident memory, last slice against the first after the ${warmupMs / 1_000} s warm-up | ${pct(rawGrowth)} (${firstSlice.rssMb} → ${lastSlice.rssMb} MB; heap used ${pct(heapGrowth)}) | — |`,
      `| p99 of the last slice ≤ 1.5× the first's | ${p99Ratio.toFixed(2)}× (${firstSlice.p99} → ${lastSlice.p99} ms) | ${verdict(p99Ratio <= 1.5)} |`,
      `| every message applied exactly once | ${messages.published} published, ${lost} lost, ${doubled} applied twice, ${dlq} dead-lettered, ${stuck} stuck, ${balanceErrors} balances wrong | ${exactlyOnce ? 'yes' : 'no'} |`,
    ];
    const summary = [
      `${machineDescription()}; ${instances} instances of the observed service (the production bootstrap, the ledger's observer recording each commit), ${accounts} accounts, a stream of ${rate} msg/s for ${minutes} min in slices of ${sliceMs / 1_000} s; Redis paused ${pauseMs} ms.`,
      `Redeliveries of applied messages absorbed (commit answered \`duplicate\`): ${duplicatesAbsorbed}; other commit results: ${otherResults}; nacked publishes: ${messages.nacked}; applied but never confirmed: ${unconfirmedApplied}; records of other runs ignored: ${foreign}.`,
    ];
    const text = [...summary, '', ...table, '', ...faultLines, '', ...targets].join('\n');
    process.stdout.write(`\n${text}\n`);
    if (full) {
      const date = new Date().toISOString().slice(0, 10);
      mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
      writeFileSync(
        join(ROOT, 'bench', 'results', `soak-${date}.json`),
        `${JSON.stringify({ date, machine: machineDescription(), instances, rate, minutes, sliceMs, pauseMs, accounts, stats, faults, lost, doubled, dlq, stuck, balanceErrors, duplicatesAbsorbed, memoryBaseSlice: baseSlice.slice, memoryGrowth, oldGrowth, rawGrowth, heapGrowth, p99Ratio }, null, 2)}\n`,
      );
      await writeDocSection(
        'soak',
        '## Soak: half an hour with a fault every five minutes',
        [`Recorded ${date} by \`npm run soak\`.`, '', text].join('\n'),
      );
    }
  } finally {
    await Promise.all(
      services.map(async (s) => {
        s.kill('SIGTERM');
        await s.exitCode(60_000).catch(() => s.kill('SIGKILL'));
      }),
    );
    await connection.close().catch(() => undefined);
    admin.disconnect();
    oracle.disconnect();
    await mainRedis.stop();
    await oracleRedis.stop();
    await vhost.delete();
  }
  process.exitCode = exitCode;
}

runMain(main);
