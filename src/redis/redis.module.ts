import { Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import { PinoLogger } from 'nestjs-pino';
import { redisConfig } from '../config/app.config.js';
import { MessageMetrics } from '../metrics/message.metrics.js';
import { RedisConnection } from './redis.connection.js';

/** Provides the shared {@link RedisConnection} and closes it last, after consumers have drained. */
@Global()
@Module({
  providers: [
    {
      provide: RedisConnection,
      inject: [redisConfig.KEY, MessageMetrics, PinoLogger],
      useFactory: (
        config: ConfigType<typeof redisConfig>,
        metrics: MessageMetrics,
        logger: PinoLogger,
      ) => {
        logger.setContext(RedisConnection.name);
        return new RedisConnection(config.url, metrics, logger);
      },
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
