import { Controller, Get } from '@nestjs/common';
import { HealthCheck, type HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import { MessageProcessorHealth } from './message-processor.health.js';

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
    private readonly messageProcessor: MessageProcessorHealth,
  ) {}

  @Get('live')
  @HealthCheck()
  live(): Promise<HealthCheckResult> {
    return this.health.check(this.messageProcessor.liveness());
  }

  @Get('ready')
  @HealthCheck()
  ready(): Promise<HealthCheckResult> {
    return this.health.check(this.messageProcessor.readiness());
  }
}
