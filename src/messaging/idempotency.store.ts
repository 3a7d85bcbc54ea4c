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
 * `duplicate` without running the handler again. On a Redis Cluster the marker is
 * `mp:processed:{tag}<queue>:<messageId>`, in the slot of the message's lock and effect (see
 * `slotTagOf`).
 */
@Injectable()
export class IdempotencyStore {
  constructor(
    private readonly redis: RedisConnection,
    @Inject(processingConfig.KEY) private readonly config: ConfigType<typeof processingConfig>,
  ) {}

  /**
   * Whether the service's Redis is a Redis Cluster: a message's keys then start with the hash
   * tag of one slot (`slotTagOf`); on one server or Sentinel, key names stay as they are.
   */
  get clustered(): boolean {
    return this.redis.cluster;
  }

  marker(queue: string, messageId: string, slotTag?: string): ProcessedMarker {
    const ttlSeconds = this.config.idempotencyTtlSeconds;
    if (slotTag === undefined) {
      return { key: `${PROCESSED_MARKER_PREFIX}${queue}:${messageId}`, ttlSeconds };
    }
    return {
      key: `${PROCESSED_MARKER_PREFIX}${slotTag}${queue}:${messageId}`,
      ttlSeconds,
      slotTag,
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
