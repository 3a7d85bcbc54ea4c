import {
  type BeforeApplicationShutdown,
  Global,
  Inject,
  Module,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  Optional,
} from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import type { Logger } from 'pino';
import { lockConfig, postgresConfig } from '../config/app.config.js';
import { shutdownStep } from '../lifecycle/shutdown-step.js';
import { contextLogger, MESSAGE_PROCESSOR_LOGGER } from '../logging/service-logger.js';
import { AmqpConnection } from '../messaging/amqp.connection.js';
import { MessagePublisher } from '../messaging/message.publisher.js';
import { MessagingModule } from '../messaging/messaging.module.js';
import { OutboxMetrics } from '../metrics/outbox.metrics.js';
import { OutboxRelay } from './outbox.relay.js';
import { PostgresConnection } from './postgres.connection.js';
import { PostgresTransactions } from './postgres-transactions.js';

/**
 * PostgreSQL for the application when `DATABASE_URL` is set: the pool, the schema (migrated at
 * start), {@link PostgresTransactions} (the inbox of `postgres-transaction` handlers, and
 * transactions outside handlers) and the {@link OutboxRelay}. Without `DATABASE_URL`,
 * `PostgresTransactions.configured` is false and the relay is `null`.
 */
@Global()
@Module({
  imports: [MessagingModule],
  providers: [
    {
      provide: PostgresTransactions,
      inject: [postgresConfig.KEY, lockConfig.KEY, OutboxMetrics, MESSAGE_PROCESSOR_LOGGER],
      useFactory: (
        config: ConfigType<typeof postgresConfig>,
        lock: ConfigType<typeof lockConfig>,
        metrics: OutboxMetrics,
        root: Logger,
      ) => {
        if (config.url === undefined) return new PostgresTransactions(undefined);
        const logger = contextLogger(root, PostgresConnection.name);
        return new PostgresTransactions(
          new PostgresConnection({ url: config.url, poolMax: config.poolMax }, metrics, logger),
          { waitMs: lock.waitMs, ttlMs: lock.ttlMs },
        );
      },
    },
    {
      provide: OutboxRelay,
      inject: [
        PostgresTransactions,
        MessagePublisher,
        AmqpConnection,
        OutboxMetrics,
        postgresConfig.KEY,
        MESSAGE_PROCESSOR_LOGGER,
      ],
      useFactory: (
        transactions: PostgresTransactions,
        publisher: MessagePublisher,
        amqp: AmqpConnection,
        metrics: OutboxMetrics,
        config: ConfigType<typeof postgresConfig>,
        root: Logger,
      ): OutboxRelay | null => {
        if (!transactions.connection) return null;
        const logger = contextLogger(root, OutboxRelay.name);
        return new OutboxRelay(transactions.connection, publisher, amqp, metrics, config, logger);
      },
    },
  ],
  exports: [PostgresTransactions, OutboxRelay],
})
export class PostgresModule
  implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown
{
  constructor(
    @Inject(PostgresTransactions) private readonly transactions: PostgresTransactions,
    @Optional() @Inject(OutboxRelay) private readonly relay: OutboxRelay | null,
  ) {}

  onApplicationBootstrap(): void {
    this.transactions.connection?.start();
    if (this.relay) this.transactions.useRelay(this.relay);
    this.relay?.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    await shutdownStep(this.relay?.stop() ?? Promise.resolve());
  }

  async onApplicationShutdown(): Promise<void> {
    await shutdownStep(this.transactions.connection?.close() ?? Promise.resolve());
  }
}
