import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import amqplib, { type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { Redis } from 'ioredis';
import { TestRedisServer } from '../../e2e/support/redis.server.js';
import { TestVhost } from '../../e2e/support/rabbitmq.vhost.js';
import { enc, sentinel } from '../../e2e/support/secret-sweep.js';
import { TestRabbitCluster } from '../../cluster/support/rabbitmq.cluster.js';
import { TestSentinelGroup } from '../../cluster/support/redis.sentinel.js';
import { TestRedisCluster } from '../../cluster/support/redis.cluster.js';
import { slotTagOf } from '../../../src/redis/key-slot.js';
import {
  isClusterClient,
  type RedisClient,
  redisFromUrl,
} from '../../../src/redis/redis.connection.js';
import { TestRabbitNode } from './rabbitmq.node.js';
import { OBSERVED_SERVICE, ServiceProcess } from '../../e2e/support/service.process.js';
import { waitFor } from '../../e2e/support/wait-for.js';
import {
  drainDeadLetters,
  inFlight,
  outcomesOf,
  outcomesOfLive,
  queueDepths,
  sweepOutputs,
  terminateAll,
  waitAllReady,
} from './instances.js';
import { scenarioPause } from './verdicts.js';

const run = promisify(execFile);
const MAIN_REDIS = 'redis://127.0.0.1:6379';
export const QUEUE = 'ledger.transactions';
const DLQ = `${QUEUE}.dlq`;

/** Ten kinds of bad input and the reason (x-exception-type) each must be dead-lettered with. */
export const BAD_INPUTS: Record<
  string,
  { body: Buffer; reason: string; contentType?: string; noMessageId?: boolean }
> = {
  'invalid JSON': {
    body: Buffer.from('{"accountId": "a", amountCents: }'),
    reason: 'MessageDecodeError',
  },
  'truncated JSON': {
    body: Buffer.from('{"accountId":"a","amountCen'),
    reason: 'MessageDecodeError',
  },
  'schema-invalid': {
    body: Buffer.from('{"accountId":"bad id!","amountCents":1.5}'),
    reason: 'MessageValidationError',
  },
  'wrong content type': {
    body: Buffer.from('{"accountId":"a","amountCents":1}'),
    contentType: 'text/plain',
    reason: 'MessageDecodeError',
  },
  'missing messageId': {
    body: Buffer.from('{"accountId":"a","amountCents":1}'),
    noMessageId: true,
    reason: 'MissingMessageIdError',
  },
  'non-UTF-8': {
    body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
    reason: 'MessageDecodeError',
  },
  'deep nesting': {
    body: Buffer.from('['.repeat(200) + ']'.repeat(200)),
    reason: 'MessageDecodeError',
  },
  '__proto__ key': {
    body: Buffer.from('{"accountId":"a","amountCents":1,"__proto__":{"admin":true}}'),
    reason: 'MessageDecodeError',
  },
  empty: { body: Buffer.alloc(0), reason: 'MessageDecodeError' },
  oversize: {
    body: Buffer.from(JSON.stringify({ accountId: 'a', amountCents: 1, pad: 'x'.repeat(5_000) })),
    reason: 'MessageDecodeError',
  },
};

/** What the oracle knows of one published transaction. */
interface Published {
  readonly accountId: string;
  readonly amountCents: number;
}

/**
 * A commit the ledger's observer saw answer (test/e2e/support/observed-service.child.js): what it
 * answered, not what it applied (the journal says that, atomically with the effect).
 */
interface CommitRecord {
  messageId: string;
  result: 'applied' | 'duplicate' | 'stale';
  pid: number;
  /** Wall-clock ms around the commit (for the scale-out benchmark's throughput curve). */
  start: number;
  end: number;
}

/** One entry of an account's effect journal (`mp:journal:account:<id>`), in the server's order. */
interface JournalEntry {
  readonly messageId: string;
  /** '' when the commit took a key nobody had held within the fence's hour. */
  readonly fencingToken: string;
  /** '1': another worker's token held the key's lock when the effect was applied. */
  readonly otherHolder: string;
  readonly worker: string;
}

/** The verdict of a run: every published messageId in exactly one class. */
export interface Verdict {
  readonly published: number;
  /** A marker, exactly one journal entry, not in the DLQ. */
  readonly exactlyOnce: number;
  /** No marker, no journal entry, not dead-lettered, and nothing left in the queues. */
  readonly lost: number;
  /** Messages still in the queues (but the DLQ) when the run settled. */
  readonly stuck: number;
  /** Messages with more than one entry in the journal: applied more than once. */
  readonly duplicateEffects: number;
  /**
   * Accounts whose balance differs from the sum of the amounts the journal says were applied
   * (amounts are never 0, so a doubled or missed effect shows).
   */
  readonly balanceErrors: number;
  /** Valid messages with a marker and no journal entry, or a journal entry and no marker. */
  readonly markerJournalMismatches: number;
  readonly deadLettered: Record<string, number>;
  readonly unexpected: number;
  /**
   * Journal entries applied while another worker's token held the key's lock (the server's view,
   * at the moment of the effect): what the lock and fencing checks exist to prevent.
   */
  readonly lockOverlaps: number;
  /** Places where an account's fencing tokens, in journal order, did not increase. */
  readonly tokenOrderViolations: number;
  /** Commits that answered `duplicate`: a redelivery of an applied message, absorbed. */
  readonly rerunsAbsorbed: number;
  /** Commits refused because a newer lock holder's token had been issued (fencing at work). */
  readonly staleRefused: number;
  /**
   * Messages whose commit answered `applied` (the oracle recorded it) but of which the store now
   * holds nothing (no journal entry): effects acknowledged and then lost by the store itself, as
   * a failover to a replica that had not received them (asynchronous replication) loses them.
   * Each is also counted in `lost`.
   */
  readonly appliedThenMissing: number;
  /** Deliveries of the work queue, as the broker's firehose reported them. */
  readonly brokerDeliveries: number;
  /** Messages the broker delivered more than once, and the most deliveries of one message. */
  readonly deliveredAgain: number;
  readonly maxDeliveries: number;
  /** Live instances whose /metrics `ack` count was compared with their journal entries. */
  readonly metricsCompared: number;
  /** Of those, instances whose count differed from the journal's. */
  readonly metricsMismatches: number;
  /**
   * What the live instances' /metrics cannot account for: `ack`s beyond their journal entries,
   * plus their journal entries without an `ack` beyond the redeliveries they acked as
   * `duplicate`. An instance that applied an effect without learning it did (the reply of its
   * commit timed out) or learnt afterwards its lease was lost hands the message back; its
   * redelivery is then acked as `duplicate`. 0 whenever the metrics tell the truth.
   */
  readonly metricsUnreconciled: number;
  /** Sentinel passwords (or an encoding of one) found in any output of the run. */
  readonly secretsFound: number;
}

export interface ChaosOptions {
  readonly instances?: number;
  readonly env?: Record<string, string>;
  readonly accounts?: number;
  /**
   * Run the service on a Redis of the run's own (AOF, fsync on every write) that the test may
   * pause or restart, instead of the shared one.
   */
  readonly ownRedis?: boolean;
  /** Run on a RabbitMQ node of the run's own that the test may stop and restart. */
  readonly ownBroker?: boolean;
  /**
   * Scale-out: a 3-node RabbitMQ cluster of the run's own (`AMQP_URL` lists the three nodes,
   * quorum queues) and locks on a Redlock quorum of three Redis servers of its own
   * (`REDIS_LOCK_URLS`). Balances and markers stay on the main Redis.
   */
  readonly cluster?: boolean;
  /**
   * The main Redis managed by Redis Sentinel: a primary, two replicas and three sentinels of the
   * run's own (`REDIS_URL` is their `redis+sentinel://` URL), which the test may fail over.
   */
  readonly sentinel?: boolean;
  /**
   * The main Redis is a Redis Cluster of the run's own: three masters with a replica each
   * (`REDIS_URL` is its `redis+cluster://` URL), which the test may fail over.
   */
  readonly redisCluster?: boolean;
}

/**
 * One reliability run: a throw-away vhost, an oracle Redis of its own that no fault touches,
 * N service instances started like production (the production bootstrap and Node options, with
 * the ledger's observer seam filled by the oracle: test/e2e/support/observed-service.child.js),
 * a confirming publisher, and the classification of every messageId.
 */
export class ChaosRun {
  readonly id = randomBytes(3).toString('hex');
  readonly services: ServiceProcess[] = [];
  private readonly published = new Map<string, Published>();
  /** Bad inputs published: tracking id (correlationId) → the reason expected in the DLQ. */
  private readonly bad = new Map<
    string,
    { kind: string; reason: string; accountId: string | undefined }
  >();
  private readonly accounts: string[];
  private connection!: ChannelModel;
  private channel!: ConfirmChannel;
  private oracle!: Redis;
  private main!: RedisClient;
  private oracleServer!: TestRedisServer;
  /** The run's own main Redis, with `ownRedis`. */
  mainServer: TestRedisServer | undefined;
  /** The run's Sentinel-managed main Redis, with `sentinel`. */
  sentinelGroup: TestSentinelGroup | undefined;
  /** The run's Redis Cluster as the main Redis, with `redisCluster`. */
  redisClusterGroup: TestRedisCluster | undefined;
  private mainUrl = MAIN_REDIS;
  private mainDir: string | undefined;
  private vhost: TestVhost | undefined;
  /** The run's own broker node, with `ownBroker`. */
  broker: TestRabbitNode | undefined;
  /** The run's own RabbitMQ cluster and Redlock servers, with `cluster`. */
  cluster: TestRabbitCluster | undefined;
  readonly lockServers: TestRedisServer[] = [];
  /** Which URL of `AMQP_URL` the test's own connection tries first next time. */
  private publisherTurn = 0;
  /** The broker port the test's own connection (publisher and firehose) is on. */
  publisherPort = 0;
  private amqpUrl = '';
  private vhostName = '/';
  private seq = 0;
  /** Every instance ever started, killed ones included: the secret sweep reads all their output. */
  private readonly everyService: ServiceProcess[] = [];
  /** The service's AMQP user and the run's passwords, which no output may contain. */
  private readonly amqpUser: string;
  private readonly amqpPassword = sentinel(true);
  private readonly redisPassword = sentinel(true);
  /** Deliveries of the work queue per tracking id, from the broker's firehose (`trace_on`). */
  private readonly deliveries = new Map<string, number>();
  private tracer: Channel | undefined;
  /** Queues besides the work queue whose deliveries the firehose counts. */
  private readonly tracedQueues: string[] = [];
  private stopLoad: () => Promise<void> = () => Promise.resolve();

  private constructor(private readonly options: ChaosOptions) {
    this.accounts = Array.from({ length: options.accounts ?? 500 }, (_, i) => `c${this.id}-a${i}`);
    this.amqpUser = `chaos-${this.id}`;
  }

  static async start(options: ChaosOptions = {}): Promise<ChaosRun> {
    const chaos = new ChaosRun(options);
    try {
      await chaos.boot();
    } catch (error) {
      // the test never gets the run: nothing it started may outlive it
      await chaos.stop().catch(() => undefined);
      throw error;
    }
    return chaos;
  }

  private async boot(): Promise<void> {
    const options = this.options;
    if (options.cluster) {
      this.cluster = await TestRabbitCluster.start(3);
      for (let i = 0; i < 3; i++) {
        this.lockServers.push(await TestRedisServer.start(['--requirepass', this.redisPassword]));
      }
    } else if (options.ownBroker) {
      this.broker = await TestRabbitNode.start();
    } else {
      this.vhost = await TestVhost.create('chaos');
      this.vhostName = this.vhost.name;
    }
    // the instances log in as a user of the run's own, whose password the sweep looks for
    await this.rabbitmqctl('add_user', this.amqpUser, this.amqpPassword);
    await this.rabbitmqctl(
      'set_permissions',
      '-p',
      this.vhostName,
      this.amqpUser,
      '.*',
      '.*',
      '.*',
    );
    const auth = `${this.amqpUser}:${enc(this.amqpPassword)}`;
    const path = `/${enc(this.vhostName)}`;
    this.amqpUrl = this.cluster
      ? this.cluster.urls(auth, path).join(',')
      : `amqp://${auth}@127.0.0.1:${this.broker?.port ?? 5672}${path}`;
    this.oracleServer = await TestRedisServer.start();
    this.oracle = new Redis(this.oracleServer.url);
    if (options.ownRedis) {
      const dir = mkdtempSync(join(tmpdir(), 'chaos-redis-'));
      this.mainDir = dir;
      this.mainServer = await TestRedisServer.start([
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--dir',
        dir,
        '--requirepass',
        this.redisPassword,
      ]);
      this.mainUrl = `redis://:${enc(this.redisPassword)}@127.0.0.1:${this.mainServer.port}`;
    }
    if (options.sentinel) {
      this.sentinelGroup = await TestSentinelGroup.start(this.redisPassword);
      this.mainUrl = this.sentinelGroup.url;
    }
    if (options.redisCluster) {
      this.redisClusterGroup = await TestRedisCluster.start(this.redisPassword);
      this.mainUrl = this.redisClusterGroup.url;
    }
    // as the service reaches it: after a failover, the promoted replica is read
    this.main = redisFromUrl(this.mainUrl, { protocol: 2 });
    this.main.on('error', () => undefined);
    await this.connectPublisher();
    const count = options.instances ?? 3;
    for (let i = 0; i < count; i++) this.services.push(this.spawn());
    await this.waitReady(this.services);
  }

  /** URL of the main Redis (with its password, for `ownRedis`), for a test's admin client. */
  get mainRedisUrl(): string {
    return this.mainUrl;
  }

  /**
   * (Re)opens the test's own connection (after a broker restart closed it): the publisher, and
   * the firehose consumer that counts deliveries. Trace records not yet consumed when a broker
   * stops are lost with it, so across a broker restart the counts are a lower bound.
   */
  async connectPublisher(): Promise<void> {
    // on a cluster: the next node that answers, as a client with several URLs would
    const urls = this.amqpUrl.split(',');
    let connection: ChannelModel | undefined;
    const errors: string[] = [];
    for (let i = 0; i < urls.length && !connection; i++) {
      const url = urls[this.publisherTurn++ % urls.length];
      connection = await amqplib.connect(url).catch((error: Error) => {
        errors.push(error.message);
        return undefined;
      });
      if (connection) this.publisherPort = Number(new URL(url).port || 5672);
    }
    if (!connection) throw new Error(`no broker node answered: ${errors.join('; ')}`);
    this.connection = connection;
    this.connection.on('error', () => undefined);
    this.channel = await this.connection.createConfirmChannel();
    this.channel.on('error', () => undefined);
    await this.traceOn();
    const tracer = await this.connection.createChannel();
    tracer.on('error', () => undefined);
    // durable, and not the connection's: it goes on collecting while this connection is down
    // (a broker restart), and goes away with the run's vhost or node
    const queue = `chaos.trace.${this.id}`;
    await tracer.assertQueue(
      queue,
      // on a cluster, replicated: it outlives the node it was declared on
      this.cluster ? { durable: true, arguments: { 'x-queue-type': 'quorum' } } : { durable: true },
    );
    for (const traced of [QUEUE, ...this.tracedQueues]) {
      await tracer.bindQueue(queue, 'amq.rabbitmq.trace', `deliver.${traced}`);
    }
    await tracer.consume(
      queue,
      (message) => {
        const props = message?.properties.headers?.properties as
          { correlation_id?: unknown; message_id?: unknown } | undefined;
        const tracked = props?.correlation_id ?? props?.message_id;
        const id = typeof tracked === 'string' ? tracked : '';
        if (id) this.deliveries.set(id, (this.deliveries.get(id) ?? 0) + 1);
      },
      { noAck: true },
    );
    this.tracer = tracer;
  }

  /**
   * Moves the test's own connection to another node of the cluster when it is on the node
   * listening on `port` (before that node is made to fail, and before load starts: the old
   * connection is closed once the new one is up).
   */
  async movePublisherOff(port: number): Promise<void> {
    while (this.publisherPort === port) {
      const old = this.connection;
      await this.connectPublisher();
      await old.close().catch(() => undefined);
    }
  }

  /**
   * The broker reports every delivery to amq.rabbitmq.trace: delivery counts per message.
   * Tracing is a setting of each node (lost when a node restarts): on every running one.
   */
  async traceOn(): Promise<void> {
    if (!this.cluster) {
      await this.rabbitmqctl('trace_on', '-p', this.vhostName);
      return;
    }
    const nodes = this.cluster.nodes;
    const results = await Promise.allSettled(nodes.map((n) => n.ctl('trace_on', '-p', '/')));
    if (results.every((r) => r.status === 'rejected')) throw new Error('no node to trace on');
  }

  /** `rabbitmqctl` against the run's broker (the shared one, its own node, or its cluster). */
  private async rabbitmqctl(...args: string[]): Promise<string> {
    if (this.cluster) return this.cluster.ctl(...args);
    if (this.broker) return this.broker.ctl(...args);
    const { stdout } = await run('rabbitmqctl', ['-q', ...args], { timeout: 30_000 });
    return stdout;
  }

  /** Environment of every instance. */
  private env(): Record<string, string> {
    return {
      AMQP_URL: this.amqpUrl,
      REDIS_URL: this.mainUrl,
      LEDGER_ORACLE_URL: this.oracleServer.url,
      HTTP_PORT: '0',
      // info: the bound HTTP port is logged at info
      LOG_LEVEL: 'info',
      AMQP_PREFETCH: '20',
      SHUTDOWN_TIMEOUT_MS: '5000',
      // the effect journal, from which every effect of the run is classified: nothing trimmed
      EFFECT_JOURNAL_MAXLEN: '1000000',
      EFFECT_JOURNAL_TTL_S: '3600',
      ...(this.lockServers.length > 0
        ? {
            REDIS_LOCK_URLS: this.lockServers
              .map((r) => `redis://:${enc(this.redisPassword)}@127.0.0.1:${r.port}`)
              .join(','),
          }
        : {}),
      ...this.options.env,
    };
  }

  private spawn(extraEnv: Record<string, string> = {}): ServiceProcess {
    const service = ServiceProcess.start({ ...this.env(), ...extraEnv }, OBSERVED_SERVICE);
    this.everyService.push(service);
    return service;
  }

  /** Starts one more instance with its own extra environment; resolves once it is ready. */
  async addInstance(extraEnv: Record<string, string>): Promise<ServiceProcess> {
    const service = this.spawn(extraEnv);
    this.services.push(service);
    await this.waitReady([service]);
    return service;
  }

  /** The run's accounts (`c<run>-a<n>`). */
  get accountIds(): readonly string[] {
    return this.accounts;
  }

  /** The password of the run's own main Redis (its server, Sentinel group or cluster nodes). */
  get mainRedisPassword(): string {
    return this.redisPassword;
  }

  /** Deletes every lock key of the run's accounts held right now (a lock stolen mid-handler). */
  async deleteLocks(): Promise<number> {
    if (isClusterClient(this.main)) throw new Error('deleteLocks reads one server: not a cluster');
    const keys = await this.main.keys(`mp:lock:account:c${this.id}-*`);
    return keys.length > 0 ? this.main.del(...keys) : 0;
  }

  async waitReady(services: readonly ServiceProcess[]): Promise<void> {
    await waitAllReady(services);
  }

  /** Replaces instance `index` by a new one (after a kill) and waits until it is ready. */
  async restart(index: number): Promise<void> {
    const fresh = this.spawn();
    this.services[index] = fresh;
    await this.waitReady([fresh]);
  }

  /** Environment for a consumer of the run's vhost that is not the service (negative controls). */
  naiveEnv(): Record<string, string> {
    return {
      AMQP_URL: this.amqpUrl,
      REDIS_URL: this.mainUrl,
      ORACLE_URL: this.oracleServer.url,
    };
  }

  /**
   * Counts the deliveries of another queue of the vhost too (a negative control's own queue),
   * from now on.
   */
  async traceQueue(queue: string): Promise<void> {
    this.tracedQueues.push(queue);
    await this.tracer?.bindQueue(
      `chaos.trace.${this.id}`,
      'amq.rabbitmq.trace',
      `deliver.${queue}`,
    );
  }

  /** Publishes one message with the given body (bad input); resolves with its messageId. */
  async publishRaw(body: string): Promise<string> {
    const messageId = `c${this.id}-raw${this.seq++}`;
    this.channel.publish('ledger', 'transaction.created', Buffer.from(body), {
      persistent: true,
      contentType: 'application/json',
      messageId,
    });
    await this.channel.waitForConfirms();
    return messageId;
  }

  /** Publishes one bad input of `kind` (see {@link BAD_INPUTS}), tracked by its correlationId. */
  publishBad(kind: string): void {
    const input = BAD_INPUTS[kind];
    if (!input) throw new Error(`unknown bad input ${kind}`);
    const id = `c${this.id}-bad${this.seq++}`;
    this.channel.publish('ledger', 'transaction.created', input.body, {
      persistent: true,
      mandatory: true,
      contentType: input.contentType ?? 'application/json',
      correlationId: id,
      ...(input.noMessageId ? {} : { messageId: id }),
    });
    this.bad.set(id, { kind, reason: input.reason, accountId: accountOf(input.body) });
  }

  /** Waits for the confirms of everything published so far. */
  async confirmed(): Promise<void> {
    await this.channel.waitForConfirms();
  }

  /**
   * Publishes `count` transactions with confirms, `mandatory`, persistent, unique messageIds.
   * A batch whose confirms did not all arrive (its node died) is published again, with the same
   * messageIds, on the next node, as a careful publisher does: a copy that did arrive as well is
   * a duplicate delivery for the service to absorb, never a second effect.
   */
  async publish(count: number, batch = 200): Promise<void> {
    for (let sent = 0; sent < count; sent += batch) {
      const txs = Array.from({ length: Math.min(batch, count - sent) }, () => {
        const messageId = `c${this.id}-m${this.seq++}`;
        const tx = {
          accountId: this.accounts[randomInt(this.accounts.length)],
          // never 0: a doubled or missing effect always moves a balance
          amountCents: randomInt(1, 10_001) * (randomInt(10) === 0 ? -1 : 1),
        };
        this.published.set(messageId, tx);
        return { messageId, tx };
      });
      for (let attempt = 1; ; attempt++) {
        try {
          for (const { messageId, tx } of txs) {
            this.channel.publish('ledger', 'transaction.created', Buffer.from(JSON.stringify(tx)), {
              persistent: true,
              mandatory: true,
              contentType: 'application/json',
              messageId,
              correlationId: messageId,
            });
          }
          await this.channel.waitForConfirms();
          break;
        } catch (error) {
          if (!this.cluster || attempt >= 5) throw error;
          this.republished += txs.length;
          await this.connectPublisher();
        }
      }
    }
  }

  /** Messages the publisher sent again because their node died before confirming them. */
  republished = 0;

  /** Publishes in the background until `stop()` is called; resolves when it stopped. */
  publishWhile(ratePerSecond: number): { stop(): Promise<void> } {
    let running = true;
    this.stopLoad = async () => {
      running = false;
      await loop.catch(() => undefined);
    };
    const loop = (async () => {
      const perTick = Math.max(1, Math.round(ratePerSecond / 10));
      while (running) {
        const started = performance.now();
        await this.publish(perTick, perTick);
        const wait = 100 - (performance.now() - started);
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      }
    })();
    return {
      stop: async () => {
        running = false;
        await loop;
      },
    };
  }

  /**
   * `messages_processed_total` by outcome, summed over the live instances' `/metrics` (an
   * instance killed with -9 takes its counts with it).
   */
  async processedByOutcome(): Promise<Record<string, number>> {
    return outcomesOfLive(this.services);
  }

  /** Effects the oracle has recorded so far. */
  effects(): Promise<number> {
    return this.oracle.llen('oracle:effects');
  }

  /** Start and end (wall-clock ms) of the commits recorded from index `from` on. */
  async effectTimes(from: number): Promise<{ start: number; end: number }[]> {
    const lines = await this.oracle.lrange('oracle:effects', from, -1);
    return lines.map((line) => {
      const { start, end } = JSON.parse(line) as CommitRecord;
      return { start, end };
    });
  }

  /**
   * How many commits of `service` are applied and not yet acked right now (it runs with
   * `LEDGER_ORACLE_HOLD_MS`): a kill now redelivers effects already applied.
   */
  async appliedNotAcked(service: ServiceProcess): Promise<number> {
    return Number((await this.oracle.get(`oracle:unacked:${service.child.pid}`)) ?? 0);
  }

  /** Kills `service` (SIGKILL) once it has applied effects it has not acked yet. */
  async killWithEffectsInFlight(service: ServiceProcess): Promise<void> {
    await waitFor(
      'effects applied and not yet acked',
      async () => (await this.appliedNotAcked(service)) > 0,
      30_000,
      5,
    );
    service.kill('SIGKILL');
    await service.exitCode(10_000);
  }

  /**
   * Stops `service` (SIGSTOP) for `ms` while it holds a lock inside a run's simulated work
   * (`LEDGER_ORACLE_DELAY_MS`), then resumes it: a holder that outlives its lease mid-work, whose
   * commit comes after another worker's.
   */
  async stopWhileHoldingLock(service: ServiceProcess, ms: number): Promise<void> {
    const working = `oracle:working:${service.child.pid}`;
    await waitFor(
      'a lock held by the victim, mid-work',
      async () => Number((await this.oracle.get(working)) ?? 0) > 0,
      30_000,
      2,
    );
    service.kill('SIGSTOP');
    await scenarioPause(ms);
    service.kill('SIGCONT');
  }

  /** `messages_in_flight` of `service` (received, not settled), from its /metrics. */
  async inFlight(service: ServiceProcess): Promise<number> {
    return inFlight(service);
  }

  /** A counter of `service`'s /metrics summed over its labels (0 when absent). */
  async counterOf(service: ServiceProcess, name: string): Promise<number> {
    if (!service.alive || service.httpPort === undefined) return 0;
    const text = await (await fetch(`http://127.0.0.1:${service.httpPort}/metrics`)).text();
    let total = 0;
    for (const match of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'gm'))) {
      total += Number(match[1]);
    }
    return total;
  }

  /** SIGTERM to every instance; resolves once all have drained and exited. */
  async stopInstances(): Promise<void> {
    await terminateAll(this.services);
  }

  /**
   * `rabbitmqctl close_connection` on every connection of the service instances (not the test's
   * own publisher), as an operator or a network fault would.
   */
  async closeServiceConnections(): Promise<void> {
    const stdout = await this.rabbitmqctl(
      'list_connections',
      '-p',
      this.vhostName,
      '--no-table-headers',
      'pid',
      'client_properties',
    );
    const pids = stdout
      .split('\n')
      .filter((line) => line.includes('message-processor@'))
      .map((line) => line.split('\t')[0]);
    if (pids.length === 0) throw new Error(`no service connection in:\n${stdout}`);
    for (const pid of pids) {
      await this.rabbitmqctl('close_connection', pid, 'chaos: forced close');
    }
  }

  /** Messages in the vhost's queues (ready + unacked): work queue, delay tiers, DLQ. */
  async queueDepths(): Promise<Record<string, number>> {
    return queueDepths((...args) => this.rabbitmqctl(...args), this.vhostName);
  }

  /**
   * Waits (bounded) until every queue but the DLQ is empty and the oracle has seen no new
   * effect for `quietMs`: whatever was going to happen has happened.
   */
  async settle(timeoutMs = 90_000, quietMs = 3_000): Promise<void> {
    let lastCount = -1;
    let quietSince = performance.now();
    await waitFor(
      'queues empty and no effect for 3 s',
      async () => {
        const depths = await this.queueDepths();
        const busy = Object.entries(depths).filter(([q, n]) => q !== DLQ && n > 0);
        const count = await this.oracle.llen('oracle:effects');
        if (count !== lastCount) {
          lastCount = count;
          quietSince = performance.now();
        }
        if (busy.length > 0) throw new Error(`queues: ${JSON.stringify(Object.fromEntries(busy))}`);
        return performance.now() - quietSince >= quietMs;
      },
      timeoutMs,
      250,
    );
  }

  /** Every committed effect of the run's accounts, per account, in the server's order. */
  async journals(): Promise<Map<string, JournalEntry[]>> {
    const journals = new Map<string, JournalEntry[]>();
    for (let i = 0; i < this.accounts.length; i += 500) {
      const accounts = this.accounts.slice(i, i + 500);
      const replies = await this.readEach(
        accounts.map((a) => this.journalKey(a)),
        (main, key) => main.xrange(key, '-', '+'),
      );
      replies.forEach((value, j) => {
        const entries = value.map(([, fields]) => {
          const entry: Record<string, string> = {};
          for (let k = 0; k < fields.length; k += 2) entry[fields[k]] = fields[k + 1];
          return entry as unknown as JournalEntry;
        });
        journals.set(accounts[j], entries);
      });
    }
    return journals;
  }

  /**
   * Classifies every published messageId from the effect journal (written atomically with each
   * effect), the markers, the balances and the DLQ, and checks each hard criterion separately.
   */
  async classify(): Promise<Verdict> {
    const ids = [...this.published.keys()];
    const markers = await this.pipelineExists(
      ids.map((id) => this.markerKey(id, this.published.get(id)?.accountId)),
    );
    const { dead, described } = await this.drainDlq();
    const depths = await this.queueDepths();
    const waiting = Object.entries(depths)
      .filter(([q]) => q !== DLQ && !q.startsWith('chaos.trace.'))
      .reduce((sum, [, n]) => sum + n, 0);
    const journals = await this.journals();
    const applied = new Map<string, number>();
    let lockOverlaps = 0;
    let tokenOrderViolations = 0;
    for (const entries of journals.values()) {
      let last = 0;
      for (const entry of entries) {
        applied.set(entry.messageId, (applied.get(entry.messageId) ?? 0) + 1);
        if (entry.otherHolder === '1') lockOverlaps++;
        if (entry.fencingToken === '') continue;
        const token = Number(entry.fencingToken);
        if (token <= last) tokenOrderViolations++;
        last = Math.max(last, token);
      }
    }
    const deadById = new Map<string, string[]>();
    for (const { id, reason } of dead) deadById.set(id, [...(deadById.get(id) ?? []), reason]);
    let exactlyOnce = 0;
    let lost = 0;
    let unexpected = 0;
    let duplicateEffects = 0;
    let markerJournalMismatches = 0;
    ids.forEach((id, i) => {
      const effects = applied.get(id) ?? 0;
      if (effects > 1) duplicateEffects++;
      if (markers[i] !== effects > 0) markerJournalMismatches++;
      // a valid transaction has no business in the DLQ
      if (deadById.has(id)) unexpected++;
      else if (markers[i] && effects === 1) exactlyOnce++;
      else if (!markers[i] && effects === 0) lost++;
    });
    // each bad input: dead-lettered exactly once, with its reason, and never applied
    const deadLettered: Record<string, number> = {};
    const badMarkers = await this.pipelineExists(
      [...this.bad.entries()].map(([id, { accountId }]) => this.markerKey(id, accountId)),
    );
    [...this.bad.entries()].forEach(([id, { reason }], i) => {
      const reasons = deadById.get(id) ?? [];
      if (reasons.length === 1 && reasons[0] === reason && !badMarkers[i] && !applied.has(id)) {
        deadLettered[reason] = (deadLettered[reason] ?? 0) + 1;
      } else if (reasons.length === 0) lost++;
      else unexpected++;
    });
    for (const id of deadById.keys()) {
      if (!this.published.has(id) && !this.bad.has(id)) unexpected++;
    }
    // balances: the sum of the amounts the journal says were applied, each message once
    const expected = new Map<string, number>();
    for (const [id, count] of applied) {
      const tx = this.published.get(id);
      if (tx && count > 0) {
        expected.set(tx.accountId, (expected.get(tx.accountId) ?? 0) + tx.amountCents);
      }
    }
    const balances = await this.readEach(
      this.accounts.map((a) => `ledger:balance:${a}`),
      (main, key) => main.get(key),
    );
    const balanceErrors = this.accounts.filter(
      (a, i) => Number(balances[i] ?? 0) !== (expected.get(a) ?? 0),
    ).length;
    const commits = (await this.oracle.lrange('oracle:effects', 0, -1)).map(
      (line) => JSON.parse(line) as CommitRecord,
    );
    const delivered = [...this.published.keys(), ...this.bad.keys()].map(
      (id) => this.deliveries.get(id) ?? 0,
    );
    const metrics = await this.metricsAgainstJournal(journals);
    return {
      published: ids.length + this.bad.size,
      exactlyOnce,
      lost: Math.max(0, lost - waiting),
      stuck: waiting,
      duplicateEffects,
      balanceErrors,
      markerJournalMismatches,
      deadLettered,
      unexpected,
      lockOverlaps,
      tokenOrderViolations,
      rerunsAbsorbed: commits.filter((c) => c.result === 'duplicate').length,
      staleRefused: commits.filter((c) => c.result === 'stale').length,
      appliedThenMissing: new Set(
        commits
          .filter((c) => c.result === 'applied' && this.published.has(c.messageId))
          .map((c) => c.messageId)
          .filter((id) => !applied.has(id)),
      ).size,
      brokerDeliveries: delivered.reduce((sum, n) => sum + n, 0),
      deliveredAgain: delivered.filter((n) => n > 1).length,
      maxDeliveries: Math.max(0, ...delivered),
      metricsCompared: metrics.compared,
      metricsMismatches: metrics.mismatches.length,
      metricsUnreconciled: metrics.unreconciled,
      secretsFound: (await this.secretSweep(described)).length,
    };
  }

  /** Deliveries of one published message, as the broker's firehose counted them. */
  deliveriesOf(id: string): number {
    return this.deliveries.get(id) ?? 0;
  }

  /**
   * Each live instance's `messages_processed_total{outcome="ack"}` against the journal entries it
   * wrote (by worker: host and pid). An instance killed with -9 takes its counts with it; its
   * replacement starts from 0 under a new pid, so the comparison holds in every run.
   */
  private async metricsAgainstJournal(
    journals: ReadonlyMap<string, readonly JournalEntry[]>,
  ): Promise<{
    compared: number;
    mismatches: { pid: number; ack: number; applied: number }[];
    unreconciled: number;
  }> {
    const byPid = new Map<number, number>();
    for (const entries of journals.values()) {
      for (const { worker } of entries) {
        const pid = Number(worker.slice(worker.lastIndexOf(':') + 1));
        byPid.set(pid, (byPid.get(pid) ?? 0) + 1);
      }
    }
    const mismatches: { pid: number; ack: number; applied: number }[] = [];
    let compared = 0;
    let overReported = 0;
    let unacked = 0;
    let duplicates = 0;
    for (const service of this.services) {
      const pid = service.child.pid;
      if (!service.alive || service.httpPort === undefined || !pid) continue;
      const counts = await this.countersOf(service);
      const ack = counts.ack ?? 0;
      const applied = byPid.get(pid) ?? 0;
      compared++;
      if (ack !== applied) mismatches.push({ pid, ack, applied });
      overReported += Math.max(0, ack - applied);
      unacked += Math.max(0, applied - ack);
      duplicates += counts.duplicate ?? 0;
    }
    if (mismatches.length > 0)
      process.stderr.write(`metrics ≠ journal: ${JSON.stringify(mismatches)}\n`);
    return { compared, mismatches, unreconciled: overReported + Math.max(0, unacked - duplicates) };
  }

  /**
   * The run's passwords (AMQP user, own Redis), in every form, in every output: the stdout and
   * stderr of every instance ever started, /metrics and health of the live ones, the DLQ.
   */
  private async secretSweep(deadLettered: string): Promise<string[]> {
    const passwords =
      this.options.ownRedis || this.options.cluster
        ? [this.amqpPassword, this.redisPassword]
        : [this.amqpPassword];
    return sweepOutputs(this.everyService, deadLettered, passwords, [this.amqpUser]);
  }

  private async countersOf(service: ServiceProcess): Promise<Record<string, number>> {
    return outcomesOf(service);
  }

  private async pipelineExists(keys: readonly string[]): Promise<boolean[]> {
    const replies = await this.readEach(keys, (main, key) => main.exists(key));
    return replies.map((value) => value === 1);
  }

  /**
   * `read` of every key, a thousand at a time: sent together, each to the node of its slot on a
   * Redis Cluster (where one pipeline must stay on one node). Rejects with the first error.
   */
  private async readEach<T>(
    keys: readonly string[],
    read: (main: RedisClient, key: string) => Promise<T>,
  ): Promise<T[]> {
    const out: T[] = [];
    for (let i = 0; i < keys.length; i += 1_000) {
      out.push(...(await Promise.all(keys.slice(i, i + 1_000).map((key) => read(this.main, key)))));
    }
    return out;
  }

  /**
   * The processed marker of `messageId`, as the service names it: on a Redis Cluster, in the
   * slot of its account's balance (the ledger's `effect.slotKey`), from the raw payload's
   * accountId (`undefined` when it had none, as the service reads it).
   */
  private markerKey(messageId: string, accountId: string | undefined): string {
    if (!this.options.redisCluster) return `mp:processed:${QUEUE}:${messageId}`;
    return `mp:processed:${slotTagOf(`ledger:balance:${String(accountId)}`)}${QUEUE}:${messageId}`;
  }

  /** The effect journal of `account`, as the service names it (see {@link markerKey}). */
  private journalKey(account: string): string {
    if (!this.options.redisCluster) return `mp:journal:account:${account}`;
    return `mp:journal:${slotTagOf(`ledger:balance:${account}`)}account:${account}`;
  }

  /**
   * Takes every message out of the DLQ: tracking id (correlationId) and x-exception-type, and
   * every message's properties and headers as text, for the secret sweep.
   */
  private async drainDlq(): Promise<{ dead: { id: string; reason: string }[]; described: string }> {
    const channel = await this.connection.createChannel();
    try {
      return await drainDeadLetters(channel, DLQ);
    } finally {
      await channel.close().catch(() => undefined);
    }
  }

  /** Stops every instance, then removes everything the run created. */
  async stop(): Promise<void> {
    await this.stopLoad();
    for (const s of this.services) s.kill('SIGKILL');
    await Promise.all(this.services.map((s) => s.exitCode(10_000).catch(() => undefined)));
    await this.connection?.close().catch(() => undefined);
    try {
      // a cluster of the run's own goes with the run; the shared Redis is cleaned key by key
      if (this.main && !this.redisClusterGroup) await this.deleteRunKeys(this.main);
    } finally {
      this.main?.disconnect();
      this.oracle?.disconnect();
      await this.oracleServer?.stop();
      await this.mainServer?.stop();
      await this.sentinelGroup?.stop();
      await this.redisClusterGroup?.stop();
      if (this.mainDir) rmSync(this.mainDir, { recursive: true, force: true });
      if (this.vhost) {
        await this.vhost.delete();
        await this.rabbitmqctl('delete_user', this.amqpUser).catch(() => undefined);
      }
      await this.broker?.stop();
      await this.cluster?.stop();
      for (const server of this.lockServers) await server.stop();
    }
  }

  private async deleteRunKeys(main: RedisClient): Promise<void> {
    if (isClusterClient(main)) throw new Error('deleteRunKeys scans one server: not a cluster');
    const prefix = `c${this.id}-`;
    for (const pattern of [
      `ledger:*:${prefix}*`,
      `mp:processed:${QUEUE}:${prefix}*`,
      `mp:lock:account:${prefix}*`,
      `mp:fence:account:${prefix}*`,
      `mp:journal:account:${prefix}*`,
    ]) {
      const stream = main.scanStream({ match: pattern, count: 1_000 });
      for await (const keys of stream as AsyncIterable<string[]>) {
        if (keys.length > 0) await main.del(...keys);
      }
    }
    // the schema-invalid bad input is locked on its (invalid) account before validation
    await main.del('mp:lock:account:bad id!', 'mp:fence:account:bad id!');
  }
}

/** The accountId a bad input's body names, when it parses as JSON with one; else undefined. */
function accountOf(body: Buffer): string | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { accountId?: unknown };
    return typeof parsed.accountId === 'string' ? parsed.accountId : undefined;
  } catch {
    return undefined;
  }
}
