// What the benchmark scripts share: their options, progress samples and the steady state
// measured from them, the repository root, the machine line, medians, the docs/benchmarks.md
// sections they own, and how a script ends on an error.
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { format } from 'prettier';

export const ROOT = join(import.meta.dirname, '..');

/** The machine a run was measured on, for the docs and the JSON results. */
export function machineDescription(): string {
  return `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Replaces the section `id` of docs/benchmarks.md (between its `<!-- id:start/end -->` markers)
 * with `body`, or adds it at the end under `heading`; formatted as the Prettier check expects.
 */
export async function writeDocSection(id: string, heading: string, body: string): Promise<void> {
  const file = join(ROOT, 'docs', 'benchmarks.md');
  const start = `<!-- ${id}:start -->`;
  const end = `<!-- ${id}:end -->`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    text = '# Benchmarks\n\n';
  }
  const section = `${start}\n\n${body}\n\n${end}`;
  const at = text.indexOf(start);
  text =
    at >= 0
      ? `${text.slice(0, at)}${section}${text.slice(text.indexOf(end) + end.length)}`
      : `${text.trimEnd()}\n\n${heading}\n\n${section}\n`;
  writeFileSync(file, await format(text, { parser: 'markdown', proseWrap: 'preserve' }));
}

/** Runs a benchmark's main; an error is printed and the exit code is 1. */
export function runMain(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    process.stderr.write(
      `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  });
}

/** The command line of a benchmark: `--quick`, `--name value` options. */
export interface BenchArgs {
  readonly quick: boolean;
  readonly option: (name: string, fallback: string) => string;
  /** An integer option, at least `min`; throws naming the option otherwise. */
  readonly count: (name: string, fallback: number, min?: number) => number;
  /**
   * A target's "met" column: `--quick` runs one small repetition that proves the benchmark works,
   * too short to judge a target, so it says so instead of a yes or no.
   */
  readonly verdict: (met: boolean) => string;
}

export function benchArgs(args: readonly string[] = process.argv.slice(2)): BenchArgs {
  const option = (name: string, fallback: string): string => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
  };
  const quick = args.includes('--quick');
  return {
    quick,
    option,
    verdict: (met) => (quick ? 'not judged (--quick)' : met ? 'yes' : 'no'),
    count: (name, fallback, min = 1) => {
      const value = Number(option(name, String(fallback)));
      if (!Number.isSafeInteger(value) || value < min) {
        throw new Error(`--${name} must be an integer ≥ ${min}`);
      }
      return value;
    },
  };
}

/** One progress sample of a consumer: messages acked, its clock (ms) and its CPU time (µs). */
export interface Progress {
  readonly acked: number;
  readonly ms: number;
  readonly cpuUs: number;
}

/** Value of a monotonic series at `acked` (linear between samples). */
function at(samples: readonly Progress[], acked: number, field: 'ms' | 'cpuUs'): number {
  const i = samples.findIndex((s) => s.acked >= acked);
  if (i <= 0) return samples[Math.max(i, 0)][field];
  const [a, b] = [samples[i - 1], samples[i]];
  return a[field] + ((b[field] - a[field]) * (acked - a.acked)) / (b.acked - a.acked || 1);
}

/**
 * Throughput and CPU per message over the steady state: 10 % to 90 % of the batch of `messages`
 * that follows `after` unmeasured ones.
 */
export function steadyState(
  samples: readonly Progress[],
  messages: number,
  after = 0,
): { msgPerSec: number; cpuUsPerMsg: number } {
  const from = after + Math.floor(messages * 0.1);
  const to = after + Math.floor(messages * 0.9);
  const seconds = (at(samples, to, 'ms') - at(samples, from, 'ms')) / 1_000;
  const cpu = at(samples, to, 'cpuUs') - at(samples, from, 'cpuUs');
  // a run shorter than the progress interval (--quick, three instances) has no steady state
  if (!(seconds > 0)) return { msgPerSec: Number.NaN, cpuUsPerMsg: Number.NaN };
  return { msgPerSec: (to - from) / seconds, cpuUsPerMsg: cpu / (to - from) };
}

/** A measured figure rounded, or what it is when the run was too short to give one. */
export function rounded(value: number): string {
  return Number.isFinite(value) ? String(Math.round(value)) : 'too short to measure';
}

/** Messages settled and CPU time from the service's /metrics (prom-client's process CPU). */
export function scrapeProgress(text: string): Progress {
  let acked = 0;
  for (const m of text.matchAll(/^messages_processed_total\{[^}]*\} (\d+)/gm)) {
    acked += Number(m[1]);
  }
  const cpu = /^process_cpu_seconds_total (\S+)/m.exec(text);
  return { acked, ms: performance.now(), cpuUs: Number(cpu?.[1] ?? 0) * 1e6 };
}

/**
 * BENCH_CPU_PROF_DIR=<dir>: each consumer process writes a V8 CPU profile there on exit;
 * BENCH_NODE_ARGS="--flag …": Node options for every consumer after the production ones (an
 * experiment: a later V8 flag wins).
 */
export function profileArgs(): string[] {
  const dir = process.env.BENCH_CPU_PROF_DIR;
  const extra = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
  return [...(dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : []), ...extra];
}

/** Busy and total jiffies of all CPUs (Linux /proc/stat). */
export function cpuJiffies(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  // idle and iowait
  return { busy: total - fields[3] - (fields[4] ?? 0), total };
}

/**
 * Waits until the machine's CPUs were under `busyShare` busy over one `windowMs`, or `deadlineMs`
 * passed: a broker still deleting what a purge dropped (a quorum queue's segments) costs the next
 * run its share of the two cores. Returns the last window's busy share.
 */
export async function quietMachine(
  busyShare = 0.15,
  windowMs = 250,
  deadlineMs = 15_000,
): Promise<number> {
  const until = performance.now() + deadlineMs;
  for (;;) {
    const before = cpuJiffies();
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    const after = cpuJiffies();
    const share = (after.busy - before.busy) / Math.max(1, after.total - before.total);
    if (share < busyShare || performance.now() >= until) return share;
  }
}

/** The `p`th percentile of ascending `sorted` (nearest rank). */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}
