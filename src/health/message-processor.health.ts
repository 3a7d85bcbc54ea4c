import { Injectable } from '@nestjs/common';
import type { HealthIndicatorResult } from '@nestjs/terminus';
import { EventLoopHealthIndicator } from './event-loop.health.js';
import { LockHealthIndicator } from './lock.health.js';
import { MessagingHealthIndicator } from './messaging.health.js';
import { PostgresHealthIndicator } from './postgres.health.js';
import { RedisHealthIndicator } from './redis.health.js';

/** One check, as `HealthCheckService.check()` takes it. */
export type MessageProcessorCheck = () => HealthIndicatorResult | Promise<HealthIndicatorResult>;

/**
 * The checks of the package for a Terminus controller:
 * `health.check([...messageProcessor.readiness(), ...yourOwn])`. Readiness is down while the
 * broker, Redis, a quorum of lock servers or (when configured) PostgreSQL is unreachable, while
 * a consumer is detached, and from the moment shutdown begins; liveness reports the event-loop
 * delay and never fails on a dependency.
 */
@Injectable()
export class MessageProcessorHealth {
  constructor(
    private readonly messaging: MessagingHealthIndicator,
    private readonly redis: RedisHealthIndicator,
    private readonly locks: LockHealthIndicator,
    private readonly eventLoop: EventLoopHealthIndicator,
    private readonly postgres: PostgresHealthIndicator,
  ) {}

  /** Checks named `amqp`, `redis`, `locks` and, with PostgreSQL configured, `postgres`. */
  readiness(): MessageProcessorCheck[] {
    return [
      () => this.messaging.check(),
      () => this.redis.check(),
      () => this.locks.check(),
      ...(this.postgres.configured ? [() => this.postgres.check()] : []),
    ];
  }

  /** The check named `eventLoop`. */
  liveness(): MessageProcessorCheck[] {
    return [() => this.eventLoop.check()];
  }
}
