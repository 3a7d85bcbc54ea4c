import { Injectable } from '@nestjs/common';
import { type HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { LockService } from '../lock/lock.service.js';

/**
 * Whether locks can be taken. On a single Redis that is the Redis check; in Redlock mode, a
 * quorum of the lock servers must be connected (the body lists which are, URLs redacted).
 */
@Injectable()
export class LockHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly locks: LockService,
  ) {}

  check(key = 'locks'): HealthIndicatorResult {
    const indicator = this.health.check(key);
    const status = this.locks.status();
    if (status.available) return indicator.up({ mode: status.mode });
    const up = status.servers.filter((s) => s.up).length;
    return indicator.down({
      mode: status.mode,
      message: `${up} of ${status.servers.length} lock servers connected: no quorum`,
      servers: status.servers,
    });
  }
}
