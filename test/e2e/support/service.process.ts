import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';

const MAIN = join(import.meta.dirname, '..', '..', '..', 'dist', 'main.js');

/**
 * The service with the ledger's observer filled by the reliability suite's oracle (the same
 * bootstrap and modules as dist/main.js); see observed-service.child.js for its variables.
 */
export const OBSERVED_SERVICE = join(import.meta.dirname, 'observed-service.child.js');

/**
 * Node's options of the production start (`npm start`, the Dockerfile's CMD): a young generation
 * of up to 64 MB per semi-space (see docs/benchmarks.md). A unit test keeps the three alike.
 */
export const PRODUCTION_NODE_ARGS: readonly string[] = ['--max-semi-space-size=64'];

/**
 * The service started as in production (`node --max-semi-space-size=64 dist/main.js`), with its
 * output captured.
 */
export class ServiceProcess {
  stdout = '';
  stderr = '';
  private readonly exited: Promise<number | null>;

  private constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (chunk: Buffer) => (this.stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = once(child, 'exit').then(([code]) => code as number | null);
  }

  /**
   * Starts `node dist/main.js` with the production Node options, or another entry script (a
   * child with extra handlers), with extra Node options (`--cpu-prof`) if given.
   */
  static start(
    env: Record<string, string>,
    script: string = MAIN,
    nodeArgs: readonly string[] = [],
  ): ServiceProcess {
    const child = spawn(process.execPath, [...PRODUCTION_NODE_ARGS, ...nodeArgs, script], {
      env: { PATH: process.env.PATH ?? '', LOG_FORMAT: 'json', LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new ServiceProcess(child);
  }

  /** Resolves with the exit code, or rejects if the process is still running after `timeoutMs`. */
  async exitCode(timeoutMs = 30_000): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`process still running after ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The HTTP port the service bound, from its `HTTP on port N` log line, once it has. */
  get httpPort(): number | undefined {
    const match = /HTTP on port (\d+)/.exec(this.stdout);
    return match ? Number(match[1]) : undefined;
  }

  /** Still running: neither exited nor killed by a signal (which leaves `exitCode` null). */
  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null) this.child.kill(signal);
  }
}
