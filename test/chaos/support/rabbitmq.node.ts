import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../e2e/support/redis.server.js';
import { waitFor } from '../../e2e/support/wait-for.js';

const run = promisify(execFile);
const SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';

/** Runs a command as the `rabbitmq` user when we are root (the broker refuses to run as root). */
async function asBrokerUser(command: string, env: Record<string, string>): Promise<void> {
  const assignments = Object.entries(env)
    .map(([k, v]) => `${k}='${v}'`)
    .join(' ');
  if (process.getuid?.() === 0) {
    await run('su', ['rabbitmq', '-s', '/bin/sh', '-c', `${assignments} ${command}`], {
      timeout: 60_000,
    });
  } else {
    await run('/bin/sh', ['-c', `${assignments} ${command}`], { timeout: 60_000 });
  }
}

/**
 * A RabbitMQ node of the suite's own (own node name, ports, data and log folders under a
 * temporary directory, no plugins), that a test may stop and restart without touching the
 * shared broker. Stops exactly what it started.
 */
export class TestRabbitNode {
  private constructor(
    readonly name: string,
    readonly port: number,
    private readonly dir: string,
    private readonly env: Record<string, string>,
  ) {}

  /** The VM's pid while {@link freeze} has it stopped. */
  private frozenPid: number | undefined;

  /** Starts a node named `<label>-<random>@localhost`. */
  static async start(label = 'chaos'): Promise<TestRabbitNode> {
    const id = randomBytes(3).toString('hex');
    const port = await freePort();
    const distPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), `${label}-rabbit-${id}-`));
    for (const sub of ['mnesia', 'log']) mkdirSync(join(dir, sub));
    writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
    writeFileSync(join(dir, 'rabbitmq.conf'), `listeners.tcp.local = 127.0.0.1:${port}\n`);
    writeFileSync(join(dir, 'rabbitmq-env.conf'), '');
    if (process.getuid?.() === 0) await run('chown', ['-R', 'rabbitmq:rabbitmq', dir]);
    const name = `${label}-${id}@localhost`;
    const env = {
      RABBITMQ_NODENAME: name,
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
      RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      RABBITMQ_PID_FILE: join(dir, 'pid'),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      HOME: '/var/lib/rabbitmq',
    };
    const node = new TestRabbitNode(name, port, dir, env);
    try {
      await node.launch();
    } catch (error) {
      await node.stop();
      throw error;
    }
    return node;
  }

  /** Starts the node's Erlang VM (again, after a kill: same name, ports and data). */
  async launch(): Promise<void> {
    await asBrokerUser(`${SERVER} -detached`, this.env);
    await this.awaitStarted();
  }

  /** The OS pid of the node's Erlang VM. */
  async osPid(): Promise<number> {
    const pid = Number(/\d+/.exec(await this.ctl('eval', 'os:getpid().'))?.[0]);
    if (!pid) throw new Error(`no OS pid for ${this.name}`);
    return pid;
  }

  /**
   * kill -9 of the node's VM, as a crashed machine would; resolves once the process is gone,
   * with the moment (`performance.now()`) the signal was sent.
   */
  async kill(): Promise<number> {
    const pid = await this.osPid();
    process.kill(pid, 'SIGKILL');
    const killedAt = performance.now();
    await this.awaitGone(pid);
    return killedAt;
  }

  /**
   * `rabbitmqctl stop` (a clean shutdown, as an operator's rolling restart does), then the VM
   * started again with the same name, ports and data; resolves once it is up again.
   */
  async restart(): Promise<void> {
    const pid = await this.osPid();
    await this.ctl('stop');
    await this.awaitGone(pid, 60_000);
    await this.launch();
  }

  /**
   * SIGSTOP of the node's VM, as a hung machine would: its sockets stay open and accept
   * connections, nothing answers. Resolves with the moment (`performance.now()`) of the signal.
   * {@link thaw} (or {@link stop}) sends SIGCONT.
   */
  async freeze(): Promise<number> {
    const pid = await this.osPid();
    process.kill(pid, 'SIGSTOP');
    this.frozenPid = pid;
    return performance.now();
  }

  /** SIGCONT of a node {@link freeze} stopped. */
  thaw(): void {
    if (this.frozenPid === undefined) return;
    try {
      process.kill(this.frozenPid, 'SIGCONT');
    } catch {
      // gone
    }
    this.frozenPid = undefined;
  }

  /** AMQP URL of the node's default vhost. */
  url(auth = 'guest:guest'): string {
    return `amqp://${auth}@127.0.0.1:${this.port}`;
  }

  /** `rabbitmqctl -n <node> ...args`. */
  async ctl(...args: string[]): Promise<string> {
    const { stdout } = await run('rabbitmqctl', ['-q', '-n', this.name, ...args], {
      timeout: 60_000,
    });
    return stdout;
  }

  async stopApp(): Promise<void> {
    await this.ctl('stop_app');
  }

  async startApp(): Promise<void> {
    await this.ctl('start_app');
    await this.awaitStarted();
  }

  /** Stops the node and removes its folders. */
  async stop(): Promise<void> {
    // a frozen node answers nothing, not even `stop`
    this.thaw();
    try {
      await this.ctl('stop');
    } catch {
      // already stopped
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Resolves once the process `pid` has exited. */
  private async awaitGone(pid: number, timeoutMs = 15_000): Promise<void> {
    await waitFor(
      `${this.name} (pid ${pid}) gone`,
      () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      },
      timeoutMs,
    );
  }

  private async awaitStarted(): Promise<void> {
    await waitFor(
      `RabbitMQ node ${this.name}`,
      async () => {
        await this.ctl('await_startup');
        return true;
      },
      60_000,
      250,
    );
  }
}
