import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await run('rabbitmqctl', ['-q', ...args], { timeout: 30_000 });
  return stdout;
}

/**
 * A throw-away vhost on the local broker, so each test file gets the real topology names
 * (`ledger`, `ledger.transactions`, ...) without touching anyone else's queues.
 */
export class TestVhost {
  private constructor(readonly name: string) {}

  static async create(label: string): Promise<TestVhost> {
    const name = `test-${label}-${randomBytes(4).toString('hex')}`;
    await rabbitmqctl('add_vhost', name);
    await rabbitmqctl('set_permissions', '-p', name, 'guest', '.*', '.*', '.*');
    return new TestVhost(name);
  }

  /** AMQP URL for this vhost (the vhost in the path is URL-encoded, as amqplib expects). */
  url(port = 5672): string {
    return `amqp://guest:guest@127.0.0.1:${port}/${encodeURIComponent(this.name)}`;
  }

  /** Closes every client connection to this vhost, as an operator or a network fault would. */
  async closeAllConnections(): Promise<void> {
    await rabbitmqctl('close_all_connections', '-p', this.name, 'e2e: forced close');
  }

  async delete(): Promise<void> {
    await rabbitmqctl('delete_vhost', this.name);
  }
}
