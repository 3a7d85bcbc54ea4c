import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { once } from 'node:events';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { ServiceProcess } from './support/service.process.js';
import { TestBroker } from './support/test-app.js';
import { waitFor } from './support/wait-for.js';

const REDIS_URL = 'redis://127.0.0.1:6379';
const INSTANCES = 3;
const PREFETCH = '20';
const PROBE_CHILD = join(import.meta.dirname, 'support', 'lock-probe.child.js');

/** Environment shared by every instance: quiet JSON logs, a short drain on SIGTERM. */
function serviceEnv(vhost: TestVhost): Record<string, string> {
  return {
    AMQP_URL: vhost.url(),
    REDIS_URL,
    HTTP_PORT: '0',
    LOG_LEVEL: 'warn',
    LOG_FORMAT: 'json',
    AMQP_PREFETCH: PREFETCH,
    SHUTDOWN_TIMEOUT_MS: '5000',
  };
}

/** A child process that stops on SIGTERM (or is killed when it does not) and keeps its output. */
interface Instance {
  readonly stdout: string;
  readonly stderr: string;
  readonly child: ChildProcess;
  kill(signal?: NodeJS.Signals): void;
  exitCode(timeoutMs?: number): Promise<number | null>;
}

/** The probe service (AppModule + the `probe:<key>` locked handler), as a child process. */
class ProbeProcess implements Instance {
  stdout = '';
  stderr = '';
  readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;

  constructor(env: Record<string, string>) {
    this.child = spawn(process.execPath, [PROBE_CHILD], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (chunk: Buffer) => (this.stdout += chunk.toString()));
    this.child.stderr?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = once(this.child, 'exit').then(([code]) => code as number | null);
  }

  /** The HTTP port the child printed once listening. */
  get port(): number | undefined {
    const match = /^STARTED (\d+)$/m.exec(this.stdout);
    return match ? Number(match[1]) : undefined;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  async exitCode(timeoutMs = 30_000): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`still running after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** SIGTERM, wait for the drain; SIGKILL whatever is still running after 15 s. */
async function stopAll(instances: readonly Instance[]): Promise<void> {
  await Promise.all(
    instances.map(async (instance) => {
      if (instance.child.exitCode !== null || instance.child.signalCode !== null) return;
      instance.kill('SIGTERM');
      try {
        await instance.exitCode(15_000);
      } catch {
        instance.kill('SIGKILL');
        await instance.exitCode(5_000).catch(() => undefined);
      }
    }),
  );
}

/** Fails with the output of any instance that exited on its own (a crash, a bad config). */
function assertAlive(instances: readonly Instance[]): void {
  for (const instance of instances) {
    const { exitCode, signalCode } = instance.child;
    if (exitCode !== null || signalCode !== null) {
      throw new Error(
        `instance ${instance.child.pid} exited (${exitCode ?? signalCode}):\n${instance.stderr.slice(-2000)}\n${instance.stdout.slice(-2000)}`,
      );
    }
  }
}

/** Messages (ready + unacknowledged) in every queue of the vhost: work queue, delay tiers, DLQ. */
async function queueContents(vhost: TestVhost): Promise<Record<string, number>> {
  const { stdout } = await promisify(execFile)(
    'rabbitmqctl',
    ['-q', 'list_queues', '-p', vhost.name, '--no-table-headers', 'name', 'messages'],
    { timeout: 30_000 },
  );
  const contents: Record<string, number> = {};
  for (const line of stdout.split('\n')) {
    const [name, messages] = line.trim().split(/\s+/);
    if (name) contents[name] = Number(messages);
  }
  return contents;
}

async function waitForEmptyQueues(vhost: TestVhost, timeoutMs: number): Promise<void> {
  await waitFor(
    'every queue of the vhost to be empty (nothing ready, unacked, parked or dead-lettered)',
    async () => {
      const contents = await queueContents(vhost);
      if (Object.values(contents).every((n) => n === 0)) return true;
      throw new Error(JSON.stringify(contents));
    },
    timeoutMs,
    200,
  );
}

async function deleteExact(redis: Redis, keys: readonly string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

describe('lock contention: 3 service processes on one queue', () => {
  const run = randomBytes(4).toString('hex');
  let vhost: TestVhost;
  let broker: TestBroker;
  let redis: Redis;

  beforeAll(async () => {
    vhost = await TestVhost.create('lock');
    redis = new Redis(REDIS_URL);
    broker = await TestBroker.connect(vhost.url());
  }, 30_000);

  afterAll(async () => {
    await broker?.close();
    redis?.disconnect();
    await vhost?.delete();
  }, 30_000);

  describe('ledger on hot accounts', () => {
    const QUEUE = 'ledger.transactions';
    const ACCOUNTS = 10;
    const TRANSACTIONS = 600;
    const DUPLICATES = 30;
    const accounts = Array.from({ length: ACCOUNTS }, (_, i) => `lc-${run}-${i}`);
    const transactions = Array.from({ length: TRANSACTIONS }, (_, i) => ({
      messageId: `lc-${run}-tx-${i}`,
      accountId: accounts[i % ACCOUNTS],
      // never 0: a doubled or missing effect always moves a balance
      amountCents: randomInt(1, 1001) * (i % 3 === 0 ? -1 : 1),
    }));
    const services: ServiceProcess[] = [];

    beforeAll(async () => {
      for (let i = 0; i < INSTANCES; i++) services.push(ServiceProcess.start(serviceEnv(vhost)));
      await waitFor(
        `${INSTANCES} ledger consumers`,
        async () => {
          assertAlive(services);
          return (await broker.consumerCount(QUEUE)) === INSTANCES;
        },
        30_000,
        100,
      );
    }, 45_000);

    afterAll(async () => {
      await stopAll(services);
      await deleteExact(redis, [
        ...accounts.flatMap((a) => [
          `ledger:balance:${a}`,
          `mp:lock:account:${a}`,
          `mp:fence:account:${a}`,
        ]),
        ...transactions.map((tx) => `mp:processed:${QUEUE}:${tx.messageId}`),
      ]);
    }, 30_000);

    it('applies every distinct transaction exactly once, duplicates and contention included', async () => {
      const duplicates = shuffle([...transactions]).slice(0, DUPLICATES);
      for (const tx of shuffle([...transactions, ...duplicates])) {
        broker.channel.publish(
          'ledger',
          'transaction.created',
          Buffer.from(JSON.stringify({ accountId: tx.accountId, amountCents: tx.amountCents })),
          { persistent: true, contentType: 'application/json', messageId: tx.messageId },
        );
      }
      await broker.channel.waitForConfirms();

      const expected = accounts.map((a) =>
        transactions.filter((tx) => tx.accountId === a).reduce((s, tx) => s + tx.amountCents, 0),
      );
      const balances = async (): Promise<number[]> =>
        (await redis.mget(accounts.map((a) => `ledger:balance:${a}`))).map((v) => Number(v ?? 0));
      await waitFor(
        'every balance to equal the sum of its transactions',
        async () => {
          assertAlive(services);
          const actual = await balances();
          if (actual.every((b, i) => b === expected[i])) return true;
          throw new Error(`balances ${actual.join(',')} expected ${expected.join(',')}`);
        },
        60_000,
        100,
      );
      // every copy, duplicates included, settled: nothing in flight could still change a balance
      await waitForEmptyQueues(vhost, 30_000);
      assertAlive(services);

      expect(await balances()).toEqual(expected);
      const markers = transactions.map((tx) => `mp:processed:${QUEUE}:${tx.messageId}`);
      expect(await redis.exists(...markers)).toBe(TRANSACTIONS);
      // every lock taken for a commit, at commit or held through it, was given back
      expect(await redis.exists(...accounts.map((a) => `mp:lock:account:${a}`))).toBe(0);
    }, 120_000);
  });

  describe('a probe handler on 3 processes', () => {
    const QUEUE = 'lock-probe.jobs';
    const KEYS = 10;
    const MESSAGES = 300;
    const list = `lock-contention:${run}:records`;
    const keys = Array.from({ length: KEYS }, (_, i) => `${run}-k${i}`);
    const messages = Array.from({ length: MESSAGES }, (_, i) => ({
      messageId: `lc-${run}-probe-${i}`,
      key: keys[i % KEYS],
    }));
    const probes: ProbeProcess[] = [];

    beforeAll(async () => {
      for (let i = 0; i < INSTANCES; i++) {
        probes.push(new ProbeProcess({ ...serviceEnv(vhost), PROBE_LIST: list }));
      }
      await waitFor(
        `${INSTANCES} probe instances ready and consuming`,
        async () => {
          assertAlive(probes);
          for (const probe of probes) {
            if (probe.port === undefined) return false;
            const ready = await fetch(`http://127.0.0.1:${probe.port}/health/ready`);
            if (ready.status !== 200) return false;
          }
          return (await broker.consumerCount(QUEUE)) === INSTANCES;
        },
        30_000,
        100,
      );
    }, 45_000);

    afterAll(async () => {
      await stopAll(probes);
      await deleteExact(redis, [
        list,
        ...keys.flatMap((k) => [
          `mp:lock:probe:${k}`,
          `mp:fence:probe:${k}`,
          `${list}:active:${k}`,
          `${list}:seq:${k}`,
        ]),
        ...messages.map((m) => `mp:processed:${QUEUE}:${m.messageId}`),
      ]);
    }, 30_000);

    it('never runs two handlers on one key at once, and fencing tokens increase', async () => {
      for (const m of shuffle([...messages])) {
        broker.channel.publish('lock-probe', 'probe.run', Buffer.from(JSON.stringify(m)), {
          persistent: true,
          contentType: 'application/json',
          messageId: m.messageId,
        });
      }
      await broker.channel.waitForConfirms();

      await waitFor(
        `${MESSAGES} records`,
        async () => {
          assertAlive(probes);
          const length = await redis.llen(list);
          if (length >= MESSAGES) return true;
          throw new Error(`${length} records`);
        },
        60_000,
        100,
      );
      await waitForEmptyQueues(vhost, 30_000);
      assertAlive(probes);

      interface ProbeRecord {
        key: string;
        messageId: string;
        lockKey: string;
        fencingToken: number;
        /** Runs on the key inside the handler when this one entered, itself included. */
        concurrent: number;
        /** The order this run entered the handler in, per key (1, 2, ...). */
        seq: number;
        pid: number;
      }
      const records = (await redis.lrange(list, 0, -1)).map((r) => JSON.parse(r) as ProbeRecord);
      // each message ran once: no lost lock made one run again
      expect(records).toHaveLength(MESSAGES);
      expect(new Set(records.map((r) => r.messageId))).toEqual(
        new Set(messages.map((m) => m.messageId)),
      );
      const pids = new Set(records.map((r) => r.pid));
      expect(pids.size).toBeGreaterThan(1);
      for (const pid of pids) expect(probes.map((p) => p.child.pid)).toContain(pid);

      for (const key of keys) {
        const runs = records.filter((r) => r.key === key).sort((a, b) => a.seq - b.seq);
        expect(runs).toHaveLength(MESSAGES / KEYS);
        // every entry into the handler on this key is one of the records: none entered and failed
        expect(runs.map((r) => r.seq)).toEqual(runs.map((_, i) => i + 1));
        for (const [i, r] of runs.entries()) {
          expect(r.lockKey).toBe(`probe:${key}`);
          expect(Number.isSafeInteger(r.fencingToken)).toBe(true);
          if (i === 0) {
            expect(r.concurrent).toBe(1);
            continue;
          }
          const previous = runs[i - 1];
          if (r.concurrent !== 1 || r.fencingToken <= previous.fencingToken) {
            throw new Error(
              `key ${key}: run ${JSON.stringify(r)} overlaps or follows ${JSON.stringify(previous)}`,
            );
          }
        }
      }
    }, 120_000);
  });
});
