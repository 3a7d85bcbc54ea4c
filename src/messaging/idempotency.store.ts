import { Inject, Injectable } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import { processingConfig } from '../config/app.config.js';
import { RedisConnection } from '../redis/redis.connection.js';
import type { ProcessedMarker } from './message.context.js';
import { PROCESSED_MARKER_PREFIX } from './messaging.constants.js';
import { DependencyUnavailableError } from './messaging.errors.js';

/**
 * Processed markers in Redis: `mp:processed:<queue>:<messageId>`, expiring after
 * `IDEMPOTENCY_TTL_S`. A redelivery or a duplicate publish inside that window is acked as
 * `duplicate` without running the handler again.
 */
@Injectable()
export class IdempotencyStore {
  constructor(
    private readonly redis: RedisConnection,
    @Inject(processingConfig.KEY) private readonly config: ConfigType<typeof processingConfig>,
  ) {}

  marker(queue: string, messageId: string): ProcessedMarker {
    return {
      key: `${PROCESSED_MARKER_PREFIX}${queue}:${messageId}`,
      ttlSeconds: this.config.idempotencyTtlSeconds,
    };
  }

  async isProcessed(marker: ProcessedMarker): Promise<boolean> {
    try {
      return (await this.redis.client.exists(marker.key)) === 1;
    } catch (error) {
      throw unavailable(error);
    }
  }

  async markProcessed(marker: ProcessedMarker): Promise<void> {
    try {
      await this.redis.client.set(marker.key, '1', 'EX', marker.ttlSeconds);
    } catch (error) {
      throw unavailable(error);
    }
  }
}

function unavailable(error: unknown): DependencyUnavailableError {
  const message = error instanceof Error ? error.message : String(error);
  return new DependencyUnavailableError('redis', message, { cause: error });
}
