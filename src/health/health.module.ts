import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { AsyncApiController } from '../asyncapi/asyncapi.controller.js';
import { HealthController } from './health.controller.js';

/** The service's probes, `/health/live` and `/health/ready`, on the package's indicators, and `/asyncapi.json`. */
@Module({
  // a failing readiness check is an expected state, reported by the 503 body, not an error log
  imports: [TerminusModule.forRoot({ logger: false })],
  controllers: [HealthController, AsyncApiController],
})
export class HealthModule {}
