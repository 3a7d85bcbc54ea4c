import { setMaxListeners } from 'node:events';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { QueueType } from '../config/env.schema.js';
import { AckCoalescer, type Settlement } from './ack.coalescer.js';
import { KillSwitch } from './kill-switch.js';
import { shutdownStep } from '../lifecycle/shutdown-step.js';
import type { QueueBinding } from './message-handler.interfaces.js';
import type { ConsumerHandle } from './message.processor.js';
import { REATTACH_BACKOFF, TOPOLOGY_CONFLICT_RETRY_MS } from './messaging.constants.js';
import { TopologyConflictError } from './messaging.errors.js';
import {
  declareTopology,
  type LegacyQueue,
  migrationCommand,
  topologyPresent,
} from './queue.topology.js';

/** What a consumer needs from the rest of the service. */
export interface QueueConsumerDeps {
  /** The current amqplib connection, if the broker is reachable. */
  connection(): ChannelModel | undefined;
  /** What keeps the consumer from taking messages (Redis down, no lock quorum), if anything. */
  unavailableDependency(): string | undefined;
  /** Settle through `channel` only: it coalesces acks and must see every settlement. */
  process(message: ConsumeMessage, channel: Settlement, consumer: ConsumerHandle): Promise<void>;
  readonly queueType: QueueType;
  /** The vhost of the broker URL, for the migration commands the log suggests. */
  readonly vhost: string;
  readonly logger: Logger;
  /** Reports why the consumer is paused (`consumers_paused`), or that it is not. */
  paused?(queue: string, reason: PauseReason | undefined): void;
  /** Counts a trip of the kill switch (`kill_switch_trips_total`). */
  tripped?(queue: string, handler: string): void;
}

/** Why a consumer is not taking messages: a dependency is down, or its kill switch tripped. */
export type PauseReason = 'dependency' | 'kill_switch';

/** Readiness view of one consumer. */
export interface ConsumerStatus {
  readonly queue: string;
  readonly attached: boolean;
  readonly error?: string;
  /** Queues declared by an earlier version, used as they are; each needs the policy named. */
  readonly legacyQueues?: readonly LegacyQueue[];
  /** Set while the kill switch holds the consumer detached or on one message at a time. */
  readonly killSwitch?: { readonly state: 'open' | 'trickle'; readonly reason: string };
}

/**
 * One queue's consumer, on its own channel (so a channel error on one queue leaves the others
 * running, and prefetch is per queue). It converges to the state it should be in — consuming
 * when the broker and Redis are up and no shutdown has begun, detached otherwise — whenever
 * something changes: reconnect, Redis up or down, channel closed, consumer cancelled by the
 * broker (its queue deleted: re-declared and re-attached), or a retry timer.
 */
export class QueueConsumer implements ConsumerHandle {
  private channel: Channel | undefined;
  private acks: AckCoalescer | undefined;
  private consumerTag: string | undefined;
  private intake = false;
  private stopping = false;
  private attaching = false;
  private converging = false;
  private convergeAgain = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private lastError: Error | undefined;
  private lastLoggedError: string | undefined;
  private legacyQueues: readonly LegacyQueue[] = [];
  private legacyLogged = false;
  /** Set once the topology has been declared: a re-attach then checks it passively first. */
  private topologyDeclared = false;
  /** Deliveries being processed, and who waits for the last of them to finish. */
  private inFlight = 0;
  private drainWaiters: (() => void)[] = [];
  private readonly processed = (): void => {
    if (--this.inFlight > 0) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
  };
  private readonly abortController = new AbortController();
  private readonly stopController = new AbortController();
  private readonly killSwitch: KillSwitch;
  private killSwitchTimer: NodeJS.Timeout | undefined;
  /** The prefetch the current consumer was attached with. */
  private attachedPrefetch = 0;
  private pausedFor: PauseReason | undefined;

  constructor(
    readonly binding: QueueBinding,
    private readonly deps: QueueConsumerDeps,
  ) {
    this.killSwitch = new KillSwitch(
      new Map(binding.handlers.map((h) => [h.id, h.options.killSwitch])),
    );
    // every in-flight message listens on both (its lock wait, its handler's combined signal):
    // up to prefetch listeners each, which is not a leak
    setMaxListeners(0, this.abortController.signal, this.stopController.signal);
  }

  get signal(): AbortSignal {
    return this.abortController.signal;
  }

  get stopSignal(): AbortSignal {
    return this.stopController.signal;
  }

  accepting(): boolean {
    return this.intake && !this.stopping;
  }

  /**
   * One attempt of `handler` ended (`failed`: it threw). Feeds the kill switch: a trip detaches
   * the consumer for the restart delay; then it takes one message at a time, and resumes fully
   * once enough in a row succeed.
   */
  attempted(handler: string, failed: boolean): void {
    if (!this.killSwitch.enabled || this.stopping) return;
    const event = this.killSwitch.record(handler, failed, Date.now());
    if (!event) return;
    if (event.kind === 'tripped') {
      const restartMs = this.killSwitch.restartDelayMs(handler);
      this.deps.tripped?.(this.binding.queue, handler);
      this.deps.logger.warn(
        { queue: this.binding.queue, handler, restartMs, code: 'KILL_SWITCH_TRIPPED' },
        `${event.reason}; consumer detached for ${restartMs} ms, messages wait in the queue`,
      );
      clearTimeout(this.killSwitchTimer);
      this.killSwitchTimer = setTimeout(() => {
        this.killSwitchTimer = undefined;
        this.killSwitch.restart();
        this.deps.logger.info(
          { queue: this.binding.queue, code: 'KILL_SWITCH_TRICKLE' },
          'Kill switch: taking one message at a time',
        );
        void this.converge();
      }, restartMs);
      this.killSwitchTimer.unref();
    } else {
      this.deps.logger.info(
        { queue: this.binding.queue, code: 'KILL_SWITCH_RECOVERED' },
        'Kill switch: recovered, consuming at full prefetch',
      );
    }
    void this.converge();
  }

  /** The prefetch to attach with: one message at a time while the kill switch trickles. */
  private wantedPrefetch(): number {
    return this.killSwitch.state === 'trickle' ? 1 : this.binding.prefetch;
  }

  status(): ConsumerStatus {
    return {
      queue: this.binding.queue,
      attached: this.consumerTag !== undefined,
      ...(this.lastError && this.consumerTag === undefined
        ? { error: this.lastError.message }
        : {}),
      ...(this.legacyQueues.length > 0 ? { legacyQueues: this.legacyQueues } : {}),
      ...(this.killSwitch.state === 'closed'
        ? {}
        : { killSwitch: { state: this.killSwitch.state, reason: this.killSwitch.reason ?? '' } }),
    };
  }

  /**
   * Re-evaluates what the consumer should be doing; safe to call any time, from any event.
   * Resolves when this pass is over (at once when another pass is running: it runs again).
   */
  converge(): Promise<void> {
    return this.runConverge();
  }

  private async runConverge(): Promise<void> {
    if (this.converging) {
      this.convergeAgain = true;
      return;
    }
    this.converging = true;
    try {
      do {
        this.convergeAgain = false;
        const dependency = this.deps.unavailableDependency();
        const tripped = this.killSwitch.state === 'open' ? this.killSwitch.reason : undefined;
        const missing = dependency ?? tripped;
        this.setPaused(dependency ? 'dependency' : tripped ? 'kill_switch' : undefined);
        const wanted = !this.stopping && this.deps.connection() !== undefined && !missing;
        if (
          wanted &&
          this.consumerTag !== undefined &&
          this.attachedPrefetch !== this.wantedPrefetch()
        ) {
          // a prefetch applies to consumers started after it: re-subscribe to change it
          await this.detach();
        }
        if (wanted && this.consumerTag === undefined && this.retryTimer === undefined)
          await this.attach();
        else if (!wanted && this.consumerTag !== undefined) {
          await this.detach(dependency, tripped !== undefined && dependency === undefined);
        }
      } while (this.convergeAgain);
    } finally {
      this.converging = false;
    }
  }

  private async attach(): Promise<void> {
    const connection = this.deps.connection();
    if (!connection) return;
    this.attaching = true;
    try {
      const channel = this.channel ?? (await this.openChannel(connection));
      const acks = this.acks ?? new AckCoalescer(channel);
      this.acks = acks;
      const openTopologyChannel = (): Promise<Channel> => this.openTopologyChannel(connection);
      // declared once; after a reconnect, a lookup unless something is gone (topologyPresent)
      if (!this.topologyDeclared || !(await topologyPresent(openTopologyChannel, this.binding))) {
        const topology = await declareTopology(
          openTopologyChannel,
          this.binding,
          this.deps.queueType,
        );
        this.reportLegacyQueues(topology.legacyQueues);
        this.topologyDeclared = true;
      }
      const prefetch = this.wantedPrefetch();
      await channel.prefetch(prefetch);
      this.intake = true;
      const { consumerTag } = await channel.consume(
        this.binding.queue,
        (message) => this.onDelivery(channel, acks, message),
        { noAck: false },
      );
      this.consumerTag = consumerTag;
      this.attachedPrefetch = prefetch;
      this.failures = 0;
      this.lastError = undefined;
      this.lastLoggedError = undefined;
      this.deps.logger.info({ queue: this.binding.queue, prefetch }, 'Consumer attached');
      this.convergeAgain = true; // things may have changed while attaching
    } catch (error) {
      this.intake = false;
      this.onAttachFailed(error);
    } finally {
      this.attaching = false;
    }
  }

  private async openChannel(connection: ChannelModel): Promise<Channel> {
    const channel = await connection.createChannel();
    this.channel = channel;
    channel.on('error', (err: Error) => {
      this.lastError = err;
    });
    channel.on('close', () => {
      if (this.channel !== channel) return;
      this.channel = undefined;
      // deliveries still in flight settle nothing more on it: the broker has taken them back
      this.acks?.channelClosed();
      this.acks = undefined;
      this.consumerTag = undefined;
      this.intake = false;
      // attach() reports its own failures; otherwise the channel died under a running consumer
      if (!this.attaching && !this.stopping) {
        this.deps.logger.warn(
          { queue: this.binding.queue, err: this.lastError, code: 'CONSUMER_CHANNEL_CLOSED' },
          'Consumer channel closed; re-attaching',
        );
        this.retryLater(this.backoff());
      }
    });
    return channel;
  }

  /** A channel for declarations only: a refused declaration closes it, not the consumer's. */
  private async openTopologyChannel(connection: ChannelModel): Promise<Channel> {
    const channel = await connection.createChannel();
    channel.on('error', () => undefined); // the refused call itself rejects with the reason
    return channel;
  }

  private reportLegacyQueues(legacy: readonly LegacyQueue[]): void {
    this.legacyQueues = legacy;
    // once per process: the queue stays as it is until an operator applies the policy
    if (legacy.length === 0 || this.legacyLogged) return;
    this.legacyLogged = true;
    for (const queue of legacy) {
      this.deps.logger.warn(
        {
          queue: this.binding.queue,
          legacyQueue: queue.queue,
          missingArgument: queue.missingArgument,
          policy: queue.policy,
          code: 'TOPOLOGY_MIGRATION_NEEDED',
        },
        `Queue "${queue.queue}" was declared by an earlier version without ${queue.missingArgument}; ` +
          `it is used as it is. On RabbitMQ 4.x it can drop messages past its delivery limit until ` +
          `this policy is applied (see the README, "RabbitMQ 4.x"): ${migrationCommand(this.deps.vhost, queue)}`,
      );
    }
  }

  private onAttachFailed(error: unknown): void {
    const err = error instanceof Error ? error : new Error(String(error));
    this.lastError = err;
    this.failures++;
    const conflict = err instanceof TopologyConflictError;
    if (err.message !== this.lastLoggedError) {
      this.lastLoggedError = err.message;
      this.deps.logger.error(
        {
          queue: this.binding.queue,
          err,
          code: conflict ? 'TOPOLOGY_CONFLICT' : 'CONSUMER_ATTACH_FAILED',
        },
        conflict ? err.message : 'Could not attach consumer; retrying',
      );
    }
    this.retryLater(conflict ? TOPOLOGY_CONFLICT_RETRY_MS : this.backoff());
  }

  private onDelivery(channel: Channel, acks: AckCoalescer, message: ConsumeMessage | null): void {
    if (message === null) {
      // basic.cancel from the broker: the queue was deleted, or (RabbitMQ 4.3+) a delivery stayed
      // unacknowledged past the consumer timeout, and the broker took its deliveries back
      if (channel !== this.channel) return;
      this.consumerTag = undefined;
      this.intake = false;
      this.lastError = new Error(
        `consumer cancelled by the broker (queue "${this.binding.queue}" deleted, or a delivery ` +
          `unacknowledged past the broker's consumer timeout)`,
      );
      this.deps.logger.warn(
        { queue: this.binding.queue, code: 'CONSUMER_CANCELLED' },
        'Consumer cancelled by the broker; re-declaring and re-attaching',
      );
      this.retryLater(this.backoff());
      return;
    }
    acks.track(message);
    this.inFlight++;
    // processing never rejects (every path ends in one settlement); counted either way
    void this.deps.process(message, acks, this).then(this.processed, this.processed);
  }

  private setPaused(reason: PauseReason | undefined): void {
    if (reason === this.pausedFor) return;
    this.pausedFor = reason;
    this.deps.paused?.(this.binding.queue, reason);
  }

  /**
   * Stops intake; `missing` names the dependency that went away (a shutdown, a re-subscription
   * and the kill switch, which logged its trip, have none).
   */
  private async detach(missing?: string, quietly = false): Promise<void> {
    this.intake = false;
    const tag = this.consumerTag;
    this.consumerTag = undefined;
    if (tag === undefined || !this.channel) return;
    try {
      await this.channel.cancel(tag);
      if (missing) {
        this.deps.logger.warn(
          { queue: this.binding.queue, reason: missing, code: 'CONSUMER_PAUSED' },
          `Consumer detached: ${missing}; messages wait in the queue until it is back`,
        );
      } else if (!quietly)
        this.deps.logger.info({ queue: this.binding.queue }, 'Consumer detached');
    } catch {
      // the channel is already gone, and with it the consumer
    }
  }

  private backoff(): number {
    const exp = REATTACH_BACKOFF.initialMs * 2 ** Math.min(this.failures, 16);
    return Math.min(REATTACH_BACKOFF.maxMs, exp) * (0.5 + Math.random() / 2);
  }

  private retryLater(delayMs: number): void {
    if (this.stopping) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.converge();
    }, delayMs);
    this.retryTimer.unref();
  }

  /**
   * Stops intake (basic.cancel), waits up to `timeoutMs` for in-flight messages, then aborts the
   * signal of those still running. Resolves with how many were still running at the deadline.
   */
  async stop(timeoutMs: number): Promise<number> {
    this.stopping = true;
    clearTimeout(this.killSwitchTimer);
    this.stopController.abort(new Error('consumer stopping'));
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await shutdownStep(this.detach());
    let timer: NodeJS.Timeout | undefined;
    const drained =
      this.inFlight === 0
        ? Promise.resolve(true)
        : new Promise<true>((resolve) => this.drainWaiters.push(() => resolve(true)));
    const deadline = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const inTime = await Promise.race([drained, deadline]);
    clearTimeout(timer);
    const forced = inTime ? 0 : this.inFlight;
    if (!inTime) this.abortController.abort(new Error('shutdown deadline passed'));
    await shutdownStep(this.flushAcks());
    return forced;
  }

  // basic.ack has no reply; a synchronous round trip on the same channel proves the broker has
  // read every ack sent before it (docs/architecture.md, Shutdown), so closing the channel next
  // cannot lose them.
  private async flushAcks(): Promise<void> {
    if (!this.channel) return;
    this.acks?.flush();
    try {
      await this.channel.checkQueue(this.binding.queue);
    } catch {
      // channel closed: unacked messages return to the queue and deduplication absorbs them
    }
  }

  async close(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.killSwitchTimer);
    clearTimeout(this.retryTimer);
    const channel = this.channel;
    this.channel = undefined;
    if (!channel) return;
    const acks = this.acks;
    acks?.flush();
    this.acks = undefined;
    // already closed with its connection, or the broker does not answer: unacked messages
    // return to the queue when the connection goes
    await shutdownStep(channel.close());
    acks?.channelClosed();
  }
}
