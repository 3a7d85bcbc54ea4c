import { MessageProcessorAsyncApi } from '../asyncapi/asyncapi.service.js';
import { Module } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import { APP_FILTER, DiscoveryModule } from '@nestjs/core';
import type { Logger } from 'pino';
import { amqpConfig } from '../config/app.config.js';
import { LockModule } from '../lock/lock.module.js';
import { contextLogger, MESSAGE_PROCESSOR_LOGGER } from '../logging/service-logger.js';
import { MessageMetrics } from '../metrics/message.metrics.js';
import { AmqpConnection } from './amqp.connection.js';
import { IdempotencyStore } from './idempotency.store.js';
import { MessageConsumerService } from './message-consumer.service.js';
import { MessageExceptionsFilter } from './message-exceptions.filter.js';
import { MessageHandlerExplorer } from './message-handler.explorer.js';
import { MessageProcessor } from './message.processor.js';
import { MessagePublisher } from './message.publisher.js';

/**
 * RabbitMQ for the application: the connection, handler discovery, topology, consumers and the
 * confirming publisher. Import it once (the app module does); inject {@link MessagePublisher}
 * anywhere to publish.
 */
@Module({
  imports: [DiscoveryModule, LockModule],
  providers: [
    {
      provide: AmqpConnection,
      inject: [amqpConfig.KEY, MessageMetrics, MESSAGE_PROCESSOR_LOGGER],
      // not awaited: the service starts (and reports not-ready) while the broker is unreachable
      useFactory: (config: ConfigType<typeof amqpConfig>, metrics: MessageMetrics, root: Logger) =>
        new AmqpConnection(
          { urls: config.urls, heartbeatSeconds: config.heartbeatSeconds },
          metrics,
          contextLogger(root, AmqpConnection.name),
        ),
    },
    { provide: APP_FILTER, useClass: MessageExceptionsFilter },
    MessageHandlerExplorer,
    IdempotencyStore,
    {
      provide: MessagePublisher,
      inject: [AmqpConnection, amqpConfig.KEY, MessageMetrics, MESSAGE_PROCESSOR_LOGGER],
      useFactory: (
        connection: AmqpConnection,
        config: ConfigType<typeof amqpConfig>,
        metrics: MessageMetrics,
        root: Logger,
      ) =>
        new MessagePublisher(
          connection,
          config,
          metrics,
          contextLogger(root, MessagePublisher.name),
        ),
    },
    MessageProcessor,
    MessageConsumerService,
    MessageProcessorAsyncApi,
  ],
  exports: [AmqpConnection, MessagePublisher, MessageConsumerService, MessageProcessorAsyncApi],
})
export class MessagingModule {}
