import {
  type BeforeApplicationShutdown,
  Inject,
  Injectable,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  Optional,
} from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import type { Logger } from 'pino';
import { amqpConfig, processingConfig } from '../config/app.config.js';
import { shutdownStep } from '../lifecycle/shutdown-step.js';
import { contextLogger, MESSAGE_PROCESSOR_LOGGER } from '../logging/service-logger.js';
import { LockService } from '../lock/lock.service.js';
import { MessageMetrics } from '../metrics/message.metrics.js';
import { PostgresTransactions } from '../postgres/postgres-transactions.js';
import { RedisConnection } from '../redis/redis.connection.js';
import { AmqpConnection } from './amqp.connection.js';
import { MessageHandlerExplorer } from './message-handler.explorer.js';
import { MessageProcessor } from './message.processor.js';
import { MessagePublisher } from './message.publisher.js';
import { isPostgresEffect, type QueueBinding } from './message-handler.interfaces.js';
import { type ConsumerStatus, QueueConsumer } from './queue.consumer.js';

/** Whether a queue's handlers need PostgreSQL (its consumer pauses while PostgreSQL is down). */
function usesPostgres(binding: QueueBinding): boolean {
  return binding.handlers.some((h) => isPostgresEffect(h.options.effect));
}

/** Whether all of a queue's handlers lock and mark in PostgreSQL (it consumes through a Redis outage). */
function onlyPostgres(binding: QueueBinding): boolean {
  return binding.handlers.every((h) => isPostgresEffect(h.options.effect));
}

/**
 * Starts one consumer per queue once the application has bootstrapped, keeps them attached
 * across broker reconnects and Redis outages, and drains them on shutdown: intake stops first
 * (`beforeApplicationShutdown`, while HTTP still answers 503 on readiness), then in-flight
 * handlers finish within `SHUTDOWN_TIMEOUT_MS`, then channels and the connection close.
 */
@Injectable()
export class MessageConsumerService
  implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown
{
  private consumers: QueueConsumer[] = [];
  private shuttingDown = false;
  private forcedAtShutdown = 0;
  private readonly logger: Logger;
  private readonly reconcile = (): void => this.consumers.forEach((c) => void c.converge());

  constructor(
    private readonly explorer: MessageHandlerExplorer,
    private readonly processor: MessageProcessor,
    private readonly publisher: MessagePublisher,
    private readonly connection: AmqpConnection,
    private readonly redis: RedisConnection,
    private readonly locks: LockService,
    private readonly metrics: MessageMetrics,
    @Inject(amqpConfig.KEY) private readonly amqp: ConfigType<typeof amqpConfig>,
    @Inject(processingConfig.KEY) private readonly processing: ConfigType<typeof processingConfig>,
    @Inject(MESSAGE_PROCESSOR_LOGGER) root: Logger,
    @Optional() private readonly postgres?: PostgresTransactions,
  ) {
    this.logger = contextLogger(root, MessageConsumerService.name);
  }

  onApplicationBootstrap(): void {
    const bindings = this.explorer.explore();
    this.consumers = bindings.map(
      (binding) =>
        new QueueConsumer(binding, {
          connection: () =>
            this.connection.isConnected() ? this.connection.connection : undefined,
          unavailableDependency: () => {
            // a queue whose handlers all keep lock and marker in PostgreSQL needs no Redis
            if (!onlyPostgres(binding)) {
              if (!this.redis.isReady()) return 'Redis is not ready';
              if (!this.locks.isAvailable()) return 'the lock servers are unavailable';
            }
            if (usesPostgres(binding) && !this.postgres?.isReady()) {
              return 'PostgreSQL is not ready';
            }
            return undefined;
          },
          process: (message, channel, consumer) =>
            this.processor.process(message, channel, consumer),
          queueType: this.amqp.queueType,
          vhost: this.connection.vhost,
          logger: this.logger,
          paused: (queue, reason) => this.metrics.consumerPaused(queue, reason),
          tripped: (queue, handler) => this.metrics.killSwitchTripped(queue, handler),
        }),
    );
    this.connection.on('connected', this.reconcile);
    this.connection.on('disconnected', this.reconcile);
    this.redis.on('ready', this.reconcile);
    this.redis.on('down', this.reconcile);
    this.locks.on('availability', this.reconcile);
    this.postgres?.connection?.on('ready', this.reconcile);
    this.postgres?.connection?.on('down', this.reconcile);
    this.logger.info(
      { queues: bindings.map((b) => b.queue), amqp: this.connection.describeUrls() },
      `Starting ${this.consumers.length} consumer(s)`,
    );
    this.reconcile();
  }

  /** The queues consumed and their handlers, as explored at bootstrap (none before it). */
  bindings(): QueueBinding[] {
    return this.consumers.map((c) => c.binding);
  }

  status(): ConsumerStatus[] {
    return this.consumers.map((c) => c.status());
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** Handlers still running when the shutdown deadline passed (their signal was aborted). */
  forcedByDeadline(): number {
    return this.forcedAtShutdown;
  }

  async beforeApplicationShutdown(signal?: string): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.logger.info(
      { signal, timeoutMs: this.processing.shutdownTimeoutMs },
      'Draining consumers',
    );
    const forced = await Promise.all(
      this.consumers.map((c) => c.stop(this.processing.shutdownTimeoutMs)),
    );
    const stillRunning = forced.reduce((a, b) => a + b, 0);
    this.forcedAtShutdown = stillRunning;
    if (stillRunning > 0) {
      this.logger.warn(
        { stillRunning, code: 'SHUTDOWN_DEADLINE' },
        'Shutdown deadline passed; aborted handlers, their messages return to the queue',
      );
    } else this.logger.info('Consumers drained');
  }

  async onApplicationShutdown(): Promise<void> {
    this.connection.off('connected', this.reconcile);
    this.connection.off('disconnected', this.reconcile);
    this.redis.off('ready', this.reconcile);
    this.redis.off('down', this.reconcile);
    this.locks.off('availability', this.reconcile);
    this.postgres?.connection?.off('ready', this.reconcile);
    this.postgres?.connection?.off('down', this.reconcile);
    await Promise.all(this.consumers.map((c) => c.close()));
    await shutdownStep(this.publisher.close());
    await shutdownStep(this.connection.close());
  }
}
