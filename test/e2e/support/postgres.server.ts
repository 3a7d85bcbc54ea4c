import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './redis.server.js';

const run = promisify(execFile);

/** The newest installed PostgreSQL's binaries (Debian's layout), or the PATH's. */
function bin(name: string): string {
  const root = '/usr/lib/postgresql';
  try {
    const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(root, versions[0], 'bin', name);
  } catch {
    // not Debian's layout
  }
  return name;
}

/** Runs a PostgreSQL binary as the `postgres` user when the tests run as root (initdb refuses root). */
async function asPostgres(command: string, args: readonly string[]): Promise<string> {
  const asRoot = process.getuid?.() === 0;
  const [file, argv] = asRoot
    ? ['runuser', ['-u', 'postgres', '--', command, ...args]]
    : [command, args];
  const { stdout } = await run(file, argv, { timeout: 60_000 });
  return stdout;
}

/**
 * A PostgreSQL server of the test's own (initdb + pg_ctl, trust auth, on a free port and its own
 * socket directory), which the test may stop and start: never the machine's server.
 */
export class TestPostgresServer {
  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  static async start(): Promise<TestPostgresServer> {
    const dir = mkdtempSync(join(tmpdir(), 'mp-pg-'));
    chmodSync(dir, 0o777);
    const server = new TestPostgresServer(await freePort(), dir);
    await asPostgres(bin('initdb'), [
      '-D',
      server.dataDir,
      '-A',
      'trust',
      '-U',
      'postgres',
      '--no-sync',
    ]);
    await server.start();
    return server;
  }

  private get dataDir(): string {
    return join(this.dir, 'data');
  }

  /** URL of `database` on this server as user postgres (the password, if given, is ignored: trust). */
  url(database = 'postgres', password?: string): string {
    const auth = password === undefined ? 'postgres' : `postgres:${encodeURIComponent(password)}`;
    return `postgres://${auth}@127.0.0.1:${this.port}/${database}`;
  }

  async start(): Promise<void> {
    await asPostgres(bin('pg_ctl'), [
      '-D',
      this.dataDir,
      '-o',
      `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
      '-l',
      join(this.dir, 'server.log'),
      '-w',
      'start',
    ]);
  }

  /** Stops the server: `fast` ends sessions cleanly, `immediate` as a crash would. */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await asPostgres(bin('pg_ctl'), ['-D', this.dataDir, '-m', mode, '-w', 'stop']);
  }

  /** Stops the server if it runs and deletes its files. */
  async destroy(): Promise<void> {
    await this.stop('immediate').catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
