import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { LockModule } from '../lock/lock.module';
import { MessagingModule } from '../messaging/messaging.module';
import { EventLoopHealthIndicator } from './event-loop.health';
import { HealthController } from './health.controller';
import { LockHealthIndicator } from './lock.health';
import { MessagingHealthIndicator } from './messaging.health';
import { RedisHealthIndicator } from './redis.health';

@Module({
  // a failing readiness check is an expected state, reported by the 503 body, not an error log
  imports: [TerminusModule.forRoot({ logger: false }), MessagingModule, LockModule],
  controllers: [HealthController],
  providers: [
    MessagingHealthIndicator,
    RedisHealthIndicator,
    LockHealthIndicator,
    EventLoopHealthIndicator,
  ],
})
export class HealthModule {}
