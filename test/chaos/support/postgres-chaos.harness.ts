import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { promisify } from 'node:util';
import amqplib, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import pg from 'pg';
import { enc, sentinel } from '../../e2e/support/secret-sweep.js';
import { TestDatabase } from '../../e2e/support/postgres.database.js';
import { TestPostgresServer } from '../../e2e/support/postgres.server.js';
import { TestVhost } from '../../e2e/support/rabbitmq.vhost.js';
import { ServiceProcess } from '../../e2e/support/service.process.js';
import { waitFor } from '../../e2e/support/wait-for.js';
import { BAD_INPUTS, QUEUE } from './chaos.harness.js';
import {
  drainDeadLetters,
  inFlight,
  outcomesOfLive,
  queueDepths,
  sweepOutputs,
  terminateAll,
  waitAllReady,
} from './instances.js';

const run = promisify(execFile);
const DLQ = `${QUEUE}.dlq`;
const EVENTS_EXCHANGE = 'ledger.events';

/** The verdict of a run of the ledger on PostgreSQL: every published messageId in one class. */
export interface PgVerdict {
  readonly published: number;
  /** An inbox row, exactly one effect, not in the DLQ. */
  readonly exactlyOnce: number;
  /** No inbox row, no effect, not dead-lettered, nothing left in the queues. */
  readonly lost: number;
  readonly stuck: number;
  /** Transactions applied more than once (more than one row in the effect journal). */
  readonly duplicateEffects: number;
  /** Accounts whose balance differs from the sum of the amounts the journal says were applied. */
  readonly balanceErrors: number;
  /** Transactions with an inbox row and no effect, or the reverse. */
  readonly markerJournalMismatches: number;
  readonly deadLettered: Record<string, number>;
  readonly unexpected: number;
  /** Applied transactions whose event never reached the subscriber of `ledger.events`. */
  readonly eventsMissing: number;
  /** Event deliveries beyond the first per transaction (at least once: consumers absorb them). */
  readonly eventDuplicates: number;
  /** Outbox rows not sent when the run settled. */
  readonly outboxPending: number;
  /** Redeliveries the live instances acked as `duplicate` (their /metrics). */
  readonly rerunsAbsorbed: number;
  /** Deliveries of the work queue (the broker's firehose), and messages delivered more than once. */
  readonly brokerDeliveries: number;
  readonly deliveredAgain: number;
  /** Sentinel passwords (or an encoding of one) found in any output of the run. */
  readonly secretsFound: number;
}

export function pgHardCriteria(v: PgVerdict): Record<string, number> {
  return {
    lost: v.lost,
    stuck: v.stuck,
    unexpected: v.unexpected,
    duplicateEffects: v.duplicateEffects,
    balanceErrors: v.balanceErrors,
    markerJournalMismatches: v.markerJournalMismatches,
    eventsMissing: v.eventsMissing,
    outboxPending: v.outboxPending,
    secretsFound: v.secretsFound,
  };
}

export const PG_PASSING = {
  lost: 0,
  stuck: 0,
  unexpected: 0,
  duplicateEffects: 0,
  balanceErrors: 0,
  markerJournalMismatches: 0,
  eventsMissing: 0,
  outboxPending: 0,
  secretsFound: 0,
};

export interface PgChaosOptions {
  readonly instances?: number;
  readonly env?: Record<string, string>;
  readonly accounts?: number;
  /** A PostgreSQL server of the run's own that the test may stop and start. */
  readonly ownPostgres?: boolean;
  /** Where effects and markers are read from (default: the service's outbox and inbox). */
  readonly records?: EffectRecords;
}

/**
 * Where a run reads the applied effects from: for the service, the outbox rows of
 * `ledger.events` (one per applied transaction, written in the transaction of the balance and the
 * inbox row, so they are an effect journal atomic with the effect); for a negative control, the
 * journal table it writes in its own effect transaction.
 */
const SERVICE_JOURNAL = `SELECT message_id FROM mp_outbox WHERE exchange = '${EVENTS_EXCHANGE}'`;
const SERVICE_MARKERS = `SELECT message_id FROM mp_inbox WHERE queue = '${QUEUE}'`;

/** Where a run finds what was applied (`journal`) and what was marked processed (`markers`). */
export interface EffectRecords {
  readonly journal: string;
  readonly markers: string;
  /** Whether the effects announce themselves on `ledger.events` (the service's do). */
  readonly events: boolean;
}

export const SERVICE_RECORDS: EffectRecords = {
  journal: SERVICE_JOURNAL,
  markers: SERVICE_MARKERS,
  events: true,
};

/**
 * One reliability run of the ledger on PostgreSQL: a throw-away vhost and database (or a
 * PostgreSQL server of its own), N instances of the service started like production with
 * `LEDGER_STORE=postgres`, a subscriber of `ledger.events`, a confirming publisher, and the
 * classification of every messageId from the database itself.
 */
export class PgChaosRun {
  readonly id = randomBytes(3).toString('hex');
  readonly services: ServiceProcess[] = [];
  private readonly everyService: ServiceProcess[] = [];
  private readonly published = new Map<string, { accountId: string; amountCents: number }>();
  private readonly bad = new Map<string, { reason: string }>();
  private readonly accounts: string[];
  private readonly events = new Map<string, number>();
  /** Deliveries of the work queue per tracking id, from the broker's firehose (`trace_on`). */
  private readonly deliveries = new Map<string, number>();
  private readonly dbPassword = sentinel(true);
  private vhost!: TestVhost;
  private database: TestDatabase | undefined;
  /** The run's own server, with `ownPostgres`. */
  server: TestPostgresServer | undefined;
  private databaseUrl = '';
  private admin!: pg.Pool;
  private connection!: ChannelModel;
  private channel!: ConfirmChannel;
  private seq = 0;

  private constructor(private readonly options: PgChaosOptions) {
    this.accounts = Array.from({ length: options.accounts ?? 200 }, (_, i) => `p${this.id}-a${i}`);
  }

  static async start(options: PgChaosOptions = {}): Promise<PgChaosRun> {
    const chaos = new PgChaosRun(options);
    try {
      await chaos.boot();
    } catch (error) {
      await chaos.stop().catch(() => undefined);
      throw error;
    }
    return chaos;
  }

  private async boot(): Promise<void> {
    this.vhost = await TestVhost.create('pgchaos');
    if (this.options.ownPostgres) {
      this.server = await TestPostgresServer.start();
      const name = `chaos_${this.id}`;
      const client = new pg.Client(this.server.url());
      await client.connect();
      await client.query(`CREATE DATABASE ${name}`);
      await client.end();
      this.databaseUrl = this.server.url(name, this.dbPassword);
    } else {
      this.database = await TestDatabase.create(`chaos_${this.id}`);
      this.databaseUrl = this.database.url(this.dbPassword);
    }
    this.admin = new pg.Pool({ connectionString: this.databaseUrl, max: 2 });
    this.admin.on('error', () => undefined);
    await this.connectBroker();
    const count = this.options.instances ?? 3;
    for (let i = 0; i < count; i++) this.services.push(this.spawn());
    await this.waitReady(this.services);
  }

  private async connectBroker(): Promise<void> {
    this.connection = await amqplib.connect(this.vhost.url());
    this.connection.on('error', () => undefined);
    this.channel = await this.connection.createConfirmChannel();
    this.channel.on('error', () => undefined);
    // the subscriber of the events, there before any is published
    const events = `chaos.events.${this.id}`;
    await this.channel.assertExchange(EVENTS_EXCHANGE, 'topic', { durable: true });
    await this.channel.assertQueue(events, { durable: true });
    await this.channel.bindQueue(events, EVENTS_EXCHANGE, '#');
    await this.channel.consume(
      events,
      (message) => {
        const id = message?.properties.messageId as unknown;
        if (typeof id === 'string') this.events.set(id, (this.events.get(id) ?? 0) + 1);
      },
      { noAck: true },
    );
    // the broker reports every delivery of the work queue to amq.rabbitmq.trace
    await this.ctl('trace_on', '-p', this.vhost.name);
    const trace = `chaos.trace.${this.id}`;
    await this.channel.assertQueue(trace, { durable: true });
    await this.channel.bindQueue(trace, 'amq.rabbitmq.trace', `deliver.${QUEUE}`);
    await this.channel.consume(
      trace,
      (message) => {
        const props = message?.properties.headers?.properties as
          { correlation_id?: unknown } | undefined;
        const id = props?.correlation_id;
        if (typeof id === 'string') this.deliveries.set(id, (this.deliveries.get(id) ?? 0) + 1);
      },
      { noAck: true },
    );
  }

  /**
   * Makes every COMMIT of an inbox row take `ms` longer (a deferred trigger of the test's, run at
   * commit time): a worker killed meanwhile leaves transactions that commit without their ack,
   * whose redeliveries the inbox must absorb.
   */
  async slowCommits(ms: number): Promise<void> {
    await this.admin.query(`CREATE OR REPLACE FUNCTION chaos_slow_commit() RETURNS trigger
      LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(${ms / 1000}); RETURN NULL; END $$`);
    await this.admin.query(`CREATE CONSTRAINT TRIGGER chaos_slow_commit AFTER INSERT ON mp_inbox
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION chaos_slow_commit()`);
  }

  /** `messages_in_flight` of `service` (received, not settled), from its /metrics. */
  async inFlight(service: ServiceProcess): Promise<number> {
    return inFlight(service);
  }

  /** Environment of every instance. */
  env(): Record<string, string> {
    return {
      AMQP_URL: this.vhost.url(),
      REDIS_URL: 'redis://127.0.0.1:6379',
      DATABASE_URL: this.databaseUrl,
      LEDGER_STORE: 'postgres',
      HTTP_PORT: '0',
      LOG_LEVEL: 'info',
      AMQP_PREFETCH: '20',
      SHUTDOWN_TIMEOUT_MS: '5000',
      LOCK_TTL_MS: '3000',
      LOCK_WAIT_MS: '2000',
      ...this.options.env,
    };
  }

  private spawn(extraEnv: Record<string, string> = {}, script?: string): ServiceProcess {
    const service = ServiceProcess.start({ ...this.env(), ...extraEnv }, script);
    this.everyService.push(service);
    return service;
  }

  /** Starts another process on the run's vhost and database (a negative control's consumer). */
  startProcess(script: string, extraEnv: Record<string, string> = {}): ServiceProcess {
    return this.spawn(extraEnv, script);
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

  /** Publishes `count` transactions with confirms (amounts never 0, unique messageIds). */
  async publish(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const messageId = `p${this.id}-m${this.seq++}`;
      const tx = {
        accountId: this.accounts[randomInt(this.accounts.length)],
        amountCents: randomInt(1, 10_001) * (randomInt(10) === 0 ? -1 : 1),
      };
      this.published.set(messageId, tx);
      this.channel.publish('ledger', 'transaction.created', Buffer.from(JSON.stringify(tx)), {
        persistent: true,
        mandatory: true,
        contentType: 'application/json',
        messageId,
        correlationId: messageId,
      });
    }
    await this.channel.waitForConfirms();
  }

  /** Publishes at about `ratePerSecond` in the background until `stop()`. */
  publishWhile(ratePerSecond: number): { stop(): Promise<void> } {
    let running = true;
    const perTick = Math.max(1, Math.round(ratePerSecond / 10));
    const loop = (async () => {
      while (running) {
        const started = performance.now();
        await this.publish(perTick);
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

  /** Publishes one bad input of each kind named, tracked by its correlationId. */
  async publishBad(kinds: readonly string[]): Promise<void> {
    for (const kind of kinds) {
      const input = BAD_INPUTS[kind];
      const id = `p${this.id}-bad${this.seq++}`;
      this.channel.publish('ledger', 'transaction.created', input.body, {
        persistent: true,
        mandatory: true,
        contentType: input.contentType ?? 'application/json',
        correlationId: id,
        ...(input.noMessageId ? {} : { messageId: id }),
      });
      this.bad.set(id, { reason: input.reason });
    }
    await this.channel.waitForConfirms();
  }

  private get records(): EffectRecords {
    return this.options.records ?? SERVICE_RECORDS;
  }

  /** Effects applied so far (rows of the effect journal; 0 before it exists). */
  async applied(): Promise<number> {
    const { rows } = await this.admin
      .query<{ n: number }>(`SELECT count(*)::int AS n FROM (${this.records.journal}) j`)
      .catch(() => ({ rows: [{ n: 0 }] }));
    return rows[0]?.n ?? 0;
  }

  /** Ends every session of the service's instances on the database (`pg_terminate_backend`). */
  async terminateServiceSessions(): Promise<number> {
    const { rows } = await this.admin.query<{ n: number }>(
      `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name LIKE 'message-processor%'`,
    );
    return rows[0]?.n ?? 0;
  }

  /** `rabbitmqctl` against the shared broker. */
  private readonly ctl = async (...args: string[]): Promise<string> =>
    (await run('rabbitmqctl', ['-q', ...args], { timeout: 30_000 })).stdout;

  /** `rabbitmqctl close_connection` on every connection of the service instances. */
  async closeServiceConnections(): Promise<number> {
    const stdout = await this.ctl(
      'list_connections',
      '-p',
      this.vhost.name,
      '--no-table-headers',
      'pid',
      'client_properties',
    );
    const pids = stdout
      .split('\n')
      .filter((line) => line.includes('message-processor@'))
      .map((line) => line.split('\t')[0]);
    for (const pid of pids) await this.ctl('close_connection', pid, 'chaos: forced close');
    return pids.length;
  }

  /** `messages_processed_total` by outcome over the live instances. */
  async processedByOutcome(): Promise<Record<string, number>> {
    return outcomesOfLive(this.services);
  }

  /** Readiness of `service`: its HTTP status, 0 when it does not answer. */
  async readiness(service: ServiceProcess): Promise<number> {
    if (service.httpPort === undefined) return 0;
    const res = await fetch(`http://127.0.0.1:${service.httpPort}/health/ready`).catch(() => null);
    return res?.status ?? 0;
  }

  private async queueDepths(): Promise<Record<string, number>> {
    return queueDepths(this.ctl, this.vhost.name);
  }

  private async outboxPending(): Promise<number> {
    if (!this.records.events) return 0;
    const { rows } = await this.admin.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM mp_outbox WHERE sent_at IS NULL',
    );
    return rows[0]?.n ?? 0;
  }

  /** Waits until the work queues are empty, the outbox is sent and nothing changed for `quietMs`. */
  async settle(timeoutMs = 90_000, quietMs = 3_000): Promise<void> {
    let last = -1;
    let quietSince = performance.now();
    await waitFor(
      'queues empty, outbox sent and no commit for 3 s',
      async () => {
        const depths = await this.queueDepths();
        const busy = Object.entries(depths).filter(
          ([q, n]) => q !== DLQ && !q.startsWith('chaos.') && n > 0,
        );
        const count = await this.applied();
        if (count !== last) {
          last = count;
          quietSince = performance.now();
        }
        if (busy.length > 0) throw new Error(`queues: ${JSON.stringify(Object.fromEntries(busy))}`);
        if ((await this.outboxPending()) > 0) throw new Error('outbox rows unsent');
        return performance.now() - quietSince >= quietMs;
      },
      timeoutMs,
      250,
    );
  }

  /**
   * Classifies every published messageId from the database (inbox rows, the effect journal, the
   * balances), the DLQ and the events the subscriber received.
   */
  async classify(): Promise<PgVerdict> {
    const { journal, markers, events } = this.records;
    const inbox = new Set(
      (await this.admin.query<{ message_id: string }>(markers)).rows.map((r) => r.message_id),
    );
    const applied = new Map<string, number>();
    for (const { message_id } of (await this.admin.query<{ message_id: string }>(journal)).rows) {
      applied.set(message_id, (applied.get(message_id) ?? 0) + 1);
    }
    const balances = new Map(
      (
        await this.admin.query<{ account_id: string; balance_cents: string }>(
          'SELECT account_id, balance_cents FROM ledger_balances',
        )
      ).rows.map((r) => [r.account_id, Number(r.balance_cents)]),
    );
    const { dead, described } = await this.drainDlq();
    const depths = await this.queueDepths();
    const waiting = Object.entries(depths)
      .filter(([q]) => q !== DLQ && !q.startsWith('chaos.'))
      .reduce((sum, [, n]) => sum + n, 0);
    const deadById = new Map<string, string[]>();
    for (const { id, reason } of dead) deadById.set(id, [...(deadById.get(id) ?? []), reason]);
    let exactlyOnce = 0;
    let lost = 0;
    let unexpected = 0;
    let duplicateEffects = 0;
    let markerJournalMismatches = 0;
    let eventsMissing = 0;
    let eventDuplicates = 0;
    for (const id of this.published.keys()) {
      const effects = applied.get(id) ?? 0;
      const marked = inbox.has(id);
      if (effects > 1) duplicateEffects++;
      if (marked !== effects > 0) markerJournalMismatches++;
      if (deadById.has(id)) unexpected++;
      else if (marked && effects === 1) exactlyOnce++;
      else if (!marked && effects === 0) lost++;
      if (effects > 0 && events) {
        const received = this.events.get(id) ?? 0;
        if (received === 0) eventsMissing++;
        eventDuplicates += Math.max(0, received - 1);
      }
    }
    const deadLettered: Record<string, number> = {};
    for (const [id, { reason }] of this.bad) {
      const reasons = deadById.get(id) ?? [];
      if (reasons.length === 1 && reasons[0] === reason && !inbox.has(id) && !applied.has(id)) {
        deadLettered[reason] = (deadLettered[reason] ?? 0) + 1;
      } else if (reasons.length === 0) lost++;
      else unexpected++;
    }
    for (const id of deadById.keys()) {
      if (!this.published.has(id) && !this.bad.has(id)) unexpected++;
    }
    // a doubled effect moves the balance twice (amounts are never 0): the sum of each applied
    // transaction once must be what the balances hold, unless effects were doubled
    const once = new Map<string, number>();
    for (const [id, tx] of this.published) {
      if ((applied.get(id) ?? 0) > 0)
        once.set(tx.accountId, (once.get(tx.accountId) ?? 0) + tx.amountCents);
    }
    const balanceErrors = this.accounts.filter(
      (a) => (balances.get(a) ?? 0) !== (once.get(a) ?? 0),
    ).length;
    const outcomes = await this.processedByOutcome();
    const delivered = [...this.published.keys(), ...this.bad.keys()].map(
      (id) => this.deliveries.get(id) ?? 0,
    );
    return {
      published: this.published.size + this.bad.size,
      exactlyOnce,
      lost: Math.max(0, lost - waiting),
      stuck: waiting,
      duplicateEffects,
      balanceErrors,
      markerJournalMismatches,
      deadLettered,
      unexpected,
      eventsMissing,
      eventDuplicates,
      outboxPending: await this.outboxPending(),
      rerunsAbsorbed: outcomes.duplicate ?? 0,
      brokerDeliveries: delivered.reduce((sum, n) => sum + n, 0),
      deliveredAgain: delivered.filter((n) => n > 1).length,
      secretsFound: (await this.secretSweep(described)).length,
    };
  }

  private async drainDlq(): Promise<{ dead: { id: string; reason: string }[]; described: string }> {
    return drainDeadLetters(this.channel, DLQ);
  }

  /** The database password, in every form, in every output of every instance ever started. */
  private async secretSweep(deadLettered: string): Promise<string[]> {
    return sweepOutputs(this.everyService, deadLettered, [this.dbPassword], []);
  }

  /** SIGTERM to every instance; resolves once all have drained and exited. */
  async stopInstances(): Promise<void> {
    await terminateAll(this.services);
  }

  /** Stops every instance, then removes everything the run created. */
  async stop(): Promise<void> {
    for (const s of this.everyService) s.kill('SIGKILL');
    await Promise.all(this.everyService.map((s) => s.exitCode(10_000).catch(() => undefined)));
    await this.connection?.close().catch(() => undefined);
    await this.admin?.end().catch(() => undefined);
    await this.database?.drop().catch(() => undefined);
    await this.server?.destroy();
    await this.vhost?.delete().catch(() => undefined);
  }
}

export { enc };
