import { Module } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import { APP_FILTER, DiscoveryModule } from '@nestjs/core';
import { PinoLogger } from 'nestjs-pino';
import { amqpConfig } from '../config/app.config.js';
import { LockModule } from '../lock/lock.module.js';
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
      inject: [amqpConfig.KEY, MessageMetrics, PinoLogger],
      // not awaited: the service starts (and reports not-ready) while the broker is unreachable
      useFactory: (
        config: ConfigType<typeof amqpConfig>,
        metrics: MessageMetrics,
        logger: PinoLogger,
      ) => {
        logger.setContext(AmqpConnection.name);
        return new AmqpConnection(
          { urls: config.urls, heartbeatSeconds: config.heartbeatSeconds },
          metrics,
          logger,
        );
      },
    },
    { provide: APP_FILTER, useClass: MessageExceptionsFilter },
    MessageHandlerExplorer,
    IdempotencyStore,
    MessagePublisher,
    MessageProcessor,
    MessageConsumerService,
  ],
  exports: [AmqpConnection, MessagePublisher, MessageConsumerService],
})
export class MessagingModule {}
