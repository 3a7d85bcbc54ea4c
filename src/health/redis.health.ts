import { Injectable } from '@nestjs/common';
import { type HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { RedisConnection } from '../redis/redis.connection.js';

/** Redis must answer a PING on the service's own connection within this many milliseconds. */
export const REDIS_PING_TIMEOUT_MS = 1_000;

@Injectable()
export class RedisHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly redis: RedisConnection,
  ) {}

  async check(key = 'redis'): Promise<HealthIndicatorResult> {
    const indicator = this.health.check(key);
    const answered = await this.redis.ping(REDIS_PING_TIMEOUT_MS);
    return answered ? indicator.up() : indicator.down({ message: 'Redis did not answer PING' });
  }
}
