import { Module } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import type { Logger } from 'pino';
import { lockConfig, redisConfig } from '../config/app.config.js';
import { redactUrl } from '../config/secret-redaction.js';
import { isFailureWorthLogging } from '../logging/failure-log.throttle.js';
import { contextLogger, MESSAGE_PROCESSOR_LOGGER } from '../logging/service-logger.js';
import { LockMetrics } from '../metrics/lock.metrics.js';
import {
  REDIS_COMMAND_TIMEOUT_MS,
  RedisConnection,
  type RedisClient,
  createRedisClient,
} from '../redis/redis.connection.js';
import { type LockBackend, RedlockBackend, SingleLockBackend } from './lock.backend.js';
import { LockServer } from './lock.server.js';
import { LockService } from './lock.service.js';

/**
 * Provides {@link LockService}: on the main Redis (`REDIS_URL`), or on a Redlock quorum when
 * `REDIS_LOCK_URLS` lists 3 or more servers. Its shutdown hook runs after the consumers have
 * drained (this module is imported by messaging) and before the global Redis module closes.
 */
@Module({
  providers: [
    {
      provide: LockService,
      inject: [
        lockConfig.KEY,
        redisConfig.KEY,
        RedisConnection,
        LockMetrics,
        MESSAGE_PROCESSOR_LOGGER,
      ],
      useFactory: (
        config: ConfigType<typeof lockConfig>,
        redisSettings: ConfigType<typeof redisConfig>,
        redis: RedisConnection,
        metrics: LockMetrics,
        root: Logger,
      ): LockService => {
        const logger = contextLogger(root, LockService.name);
        const own: RedisClient[] = [];
        let backend: LockBackend;
        // the service's own Redis: the single lock server, or under Redlock the locks' home
        // record, where commits take and check them
        const home = new LockServer(redis.client, redactUrl(redisSettings.url));
        if (config.redlockUrls.length >= 3) {
          const servers = config.redlockUrls.map((url, i) => {
            const client = createRedisClient(url, `message-processor-lock-${i + 1}`);
            own.push(client);
            watchClient(client, redactUrl(url), logger);
            return new LockServer(client, redactUrl(url));
          });
          backend = new RedlockBackend(servers, REDIS_COMMAND_TIMEOUT_MS, home);
          logger.info(
            { servers: servers.map((s) => s.label), quorum: Math.floor(servers.length / 2) + 1 },
            'Locks: Redlock quorum mode',
          );
        } else {
          backend = new SingleLockBackend(home, REDIS_COMMAND_TIMEOUT_MS);
        }
        const service = new LockService({
          backend,
          defaults: {
            ttlMs: config.ttlMs,
            waitMs: config.waitMs,
            commandTimeoutMs: REDIS_COMMAND_TIMEOUT_MS,
          },
          metrics,
          close: async () => {
            await Promise.all(own.map((client) => client.quit().catch(() => client.disconnect())));
          },
        });
        // consumers pause while no quorum of lock servers is connected, and resume after
        for (const client of own) {
          client.on('ready', () => service.emit('availability'));
          client.on('close', () => service.emit('availability'));
        }
        return service;
      },
    },
  ],
  exports: [LockService],
})
export class LockModule {}

function watchClient(client: RedisClient, label: string, logger: Logger): void {
  let failures = 0;
  client.on('ready', () => {
    failures = 0;
    logger.info({ url: label }, 'Lock server ready');
  });
  client.on('error', (err: Error) => {
    failures++;
    if (isFailureWorthLogging(failures)) {
      logger.warn(
        { err, url: label, failures, code: 'LOCK_SERVER_ERROR' },
        'Lock server connection error; reconnecting',
      );
    }
  });
}
