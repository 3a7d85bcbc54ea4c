import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { LockModule } from '../lock/lock.module.js';
import { MessagingModule } from '../messaging/messaging.module.js';
import { EventLoopHealthIndicator } from './event-loop.health.js';
import { HealthController } from './health.controller.js';
import { LockHealthIndicator } from './lock.health.js';
import { MessagingHealthIndicator } from './messaging.health.js';
import { PostgresHealthIndicator } from './postgres.health.js';
import { RedisHealthIndicator } from './redis.health.js';

@Module({
  // a failing readiness check is an expected state, reported by the 503 body, not an error log
  imports: [TerminusModule.forRoot({ logger: false }), MessagingModule, LockModule],
  controllers: [HealthController],
  providers: [
    MessagingHealthIndicator,
    RedisHealthIndicator,
    LockHealthIndicator,
    EventLoopHealthIndicator,
    PostgresHealthIndicator,
  ],
})
export class HealthModule {}
