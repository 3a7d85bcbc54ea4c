// What the benchmark scripts share: the repository root, the machine line, medians, the
// docs/benchmarks.md sections they own, and how a script ends on an error.
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
