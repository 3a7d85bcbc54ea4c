import { Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import type { Logger } from 'pino';
import { redisConfig } from '../config/app.config.js';
import { contextLogger, MESSAGE_PROCESSOR_LOGGER } from '../logging/service-logger.js';
import { MessageMetrics } from '../metrics/message.metrics.js';
import { RedisConnection } from './redis.connection.js';

/** Provides the shared {@link RedisConnection} and closes it last, after consumers have drained. */
@Global()
@Module({
  providers: [
    {
      provide: RedisConnection,
      inject: [redisConfig.KEY, MessageMetrics, MESSAGE_PROCESSOR_LOGGER],
      useFactory: (config: ConfigType<typeof redisConfig>, metrics: MessageMetrics, root: Logger) =>
        new RedisConnection(
          config.url,
          metrics,
          contextLogger(root, RedisConnection.name),
          config.client,
        ),
    },
  ],
  exports: [RedisConnection],
})
export class RedisModule implements OnApplicationShutdown {
  constructor(@Inject(RedisConnection) private readonly redis: RedisConnection) {}

  async onApplicationShutdown(): Promise<void> {
    await this.redis.close();
  }
}
