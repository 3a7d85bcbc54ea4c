/**
 * Scale-out benchmark (issue 7): throughput of 1, 2 and 3 service instances on a 3-node RabbitMQ
 * cluster of its own (quorum queues, AMQP_URL listing the nodes) with Redlock over 3 Redis, and
 * an I/O-bound handler: each ledger message waits 5 ms under its lock (LEDGER_ORACLE_DELAY_MS,
 * the reliability suite's test-only switch), as a handler calling a slow service would.
 *
 * For each count (alternated, `--reps` times): N messages are published with confirms while no
 * instance runs, then the instances start, and throughput is measured from the moment the last
 * of them is ready until 90 % of the batch is applied (so neither process start nor the drained
 * tail counts). At the end every message is classified by the suite's oracle: a benchmark run
 * that lost or doubled anything fails.
 *
 *   npm run bench:scale [-- --messages 10000 --reps 3 --prefetch 50 --delay-ms 5]
 *
 * BENCH_CPU_PROF_DIR=<dir> writes a V8 CPU profile of every instance there.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChaosRun } from '../test/chaos/support/chaos.harness.js';
import { hardCriteria, PASSING } from '../test/chaos/support/verdicts.js';
import { waitFor } from '../test/e2e/support/wait-for.js';
import { machineDescription, median, ROOT, runMain, writeDocSection } from './bench.support.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}

const messages = option('messages', 10_000);
const reps = option('reps', 3);
const prefetch = option('prefetch', 50);
const delayMs = option('delay-ms', 5);
const COUNTS = [1, 2, 3];

/** Wall-clock ms, as the oracle records effects (comparable across processes on one host). */
const clock = (): number => performance.timeOrigin + performance.now();

interface Sample {
  readonly instances: number;
  readonly rep: number;
  readonly msgPerSec: number;
  /** Share of the machine's CPU time that was busy while the batch was consumed. */
  readonly machineBusy: number;
  /** CPU time per message of the service instances and of the broker nodes, in µs. */
  readonly serviceCpuUs: number;
  readonly brokerCpuUs: number;
}

/** Busy and total CPU time of the whole machine so far, in clock ticks (/proc/stat). */
function machineCpu(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1);
  const ticks = fields.map(Number);
  const idle = ticks[3] + ticks[4];
  const total = ticks.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** CPU time (user + system) a process has used so far, in clock ticks (/proc/<pid>/stat). */
function processCpu(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/** Linux's USER_HZ: /proc times are in hundredths of a second. */
const TICK_US = 10_000;

async function measure(
  run: ChaosRun,
  brokerPids: readonly number[],
  instances: number,
  rep: number,
): Promise<Sample> {
  const from = await run.effects();
  await run.publish(messages, 500);
  await Promise.all(Array.from({ length: instances }, () => run.addInstance({})));
  const allReady = clock();
  const servicePids = run.services.map((s) => s.child.pid);
  const sumCpu = (pids: readonly (number | undefined)[]): number =>
    pids.reduce<number>((sum, pid) => sum + processCpu(pid), 0);
  const before = {
    machine: machineCpu(),
    service: sumCpu(servicePids),
    broker: sumCpu(brokerPids),
  };
  const appliedBefore = await run.effects();
  await waitFor(
    `${messages} messages applied by ${instances} instance(s)`,
    async () => (await run.effects()) >= from + messages,
    600_000,
    100,
  );
  const machine = machineCpu();
  const consumed = from + messages - appliedBefore;
  const perMessageUs = (ticks: number): number => Math.round((ticks * TICK_US) / consumed);
  const serviceCpuUs = perMessageUs(sumCpu(servicePids) - before.service);
  const brokerCpuUs = perMessageUs(sumCpu(brokerPids) - before.broker);
  const machineBusy = (machine.busy - before.machine.busy) / (machine.total - before.machine.total);
  const ends = (await run.effectTimes(from)).map((e) => e.end).sort((a, b) => a - b);
  const until = ends[Math.floor(ends.length * 0.9) - 1];
  const applied = ends.filter((end) => end > allReady && end <= until).length;
  await run.stopInstances();
  const msgPerSec = until > allReady ? applied / ((until - allReady) / 1_000) : 0;
  process.stdout.write(
    `  ${instances} instance(s), rep ${rep}: ${Math.round(msgPerSec)} msg/s, machine ${Math.round(machineBusy * 100)} % busy, CPU per message: service ${serviceCpuUs} µs, broker ${brokerCpuUs} µs\n`,
  );
  return { instances, rep, msgPerSec, machineBusy, serviceCpuUs, brokerCpuUs };
}

async function main(): Promise<void> {
  process.stdout.write(
    `scale-out: ${messages} messages × ${reps} reps, prefetch ${prefetch}, ${delayMs} ms handler\n`,
  );
  const run = await ChaosRun.start({
    cluster: true,
    instances: 1,
    accounts: 10_000,
    env: {
      AMQP_PREFETCH: String(prefetch),
      LEDGER_ORACLE_DELAY_MS: String(delayMs),
      LOG_LEVEL: 'info',
      // BENCH_CPU_PROF_DIR=<dir>: each instance writes a V8 CPU profile there when it stops
      ...(process.env.BENCH_CPU_PROF_DIR
        ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}` }
        : {}),
    },
  });
  const samples: Sample[] = [];
  try {
    // the first instance declared the topology; the measured ones start on a full queue
    await run.stopInstances();
    const brokerPids = await Promise.all((run.cluster?.nodes ?? []).map((n) => n.osPid()));
    for (let rep = 1; rep <= reps; rep++) {
      for (const n of COUNTS) samples.push(await measure(run, brokerPids, n, rep));
    }
    await run.addInstance({});
    await run.settle(120_000);
    const verdict = await run.classify();
    if (JSON.stringify(hardCriteria(verdict)) !== JSON.stringify(PASSING)) {
      throw new Error(`the benchmark run lost or doubled work: ${JSON.stringify(verdict)}`);
    }
    process.stdout.write(`oracle: ${verdict.exactlyOnce} of ${verdict.published} exactly once\n`);
  } finally {
    await run.stop();
  }
  await report(samples);
}

async function report(samples: readonly Sample[]): Promise<void> {
  const base = median(samples.filter((s) => s.instances === 1).map((s) => s.msgPerSec));
  const rows = COUNTS.map((n) => {
    const of = samples.filter((s) => s.instances === n);
    const rates = of.map((s) => s.msgPerSec);
    return {
      instances: n,
      machineBusy: Math.round(median(of.map((s) => s.machineBusy)) * 100),
      serviceCpuUs: Math.round(median(of.map((s) => s.serviceCpuUs))),
      brokerCpuUs: Math.round(median(of.map((s) => s.brokerCpuUs))),
      median: Math.round(median(rates)),
      min: Math.round(Math.min(...rates)),
      max: Math.round(Math.max(...rates)),
      speedup: Number((median(rates) / base).toFixed(2)),
    };
  });
  const date = new Date().toISOString().slice(0, 10);
  const machine = machineDescription();
  const command = `npm run bench:scale -- --messages ${messages} --reps ${reps} --prefetch ${prefetch} --delay-ms ${delayMs}`;
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(
    join(ROOT, 'bench', 'results', `scale-out-prefetch-${prefetch}-${date}.json`),
    `${JSON.stringify({ date, machine, command, samples, rows }, null, 2)}\n`,
  );
  const table = [
    '| instances | msg/s (median) | min | max | vs 1 instance | machine CPU busy | service CPU µs/msg | broker CPU µs/msg |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.instances} | ${r.median} | ${r.min} | ${r.max} | ${r.speedup}× | ${r.machineBusy} % | ${r.serviceCpuUs} | ${r.brokerCpuUs} |`,
    ),
  ];
  process.stdout.write(`\n${table.join('\n')}\n`);
  await writeDocSection(
    `scale-out-prefetch-${prefetch}`,
    `### Prefetch ${prefetch}`,
    [
      `Measured ${date} on ${machine}: a 3-node RabbitMQ cluster (quorum queues), 3 Redis for`,
      'Redlock, the main Redis and the service instances all on this one machine. Each message',
      `waits ${delayMs} ms under its account lock (simulated I/O), prefetch ${prefetch}, 10,000 accounts.`,
      `${messages} messages per measurement, the instance counts alternated ${reps} times.`,
      '',
      `Command: \`${command}\``,
      '',
      ...table,
    ].join('\n'),
  );
}

runMain(main);
