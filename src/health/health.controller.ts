import { Controller, Get } from '@nestjs/common';
import { HealthCheck, type HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import { EventLoopHealthIndicator } from './event-loop.health.js';
import { LockHealthIndicator } from './lock.health.js';
import { MessagingHealthIndicator } from './messaging.health.js';
import { PostgresHealthIndicator } from './postgres.health.js';
import { RedisHealthIndicator } from './redis.health.js';

/**
 * Kubernetes probes. Liveness stays 200 through dependency outages (restarting the pod would not
 * bring Redis or the broker back); readiness is 503 while a dependency is down (the broker, Redis,
 * a quorum of Redlock servers, PostgreSQL when configured), a consumer is detached, or from the
 * moment shutdown begins.
 */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly messaging: MessagingHealthIndicator,
    private readonly redis: RedisHealthIndicator,
    private readonly locks: LockHealthIndicator,
    private readonly eventLoop: EventLoopHealthIndicator,
    private readonly postgres: PostgresHealthIndicator,
  ) {}

  @Get('live')
  @HealthCheck()
  live(): Promise<HealthCheckResult> {
    return this.health.check([() => this.eventLoop.check()]);
  }

  @Get('ready')
  @HealthCheck()
  ready(): Promise<HealthCheckResult> {
    return this.health.check([
      () => this.messaging.check(),
      () => this.redis.check(),
      () => this.locks.check(),
      ...(this.postgres.configured ? [() => this.postgres.check()] : []),
    ]);
  }
}
