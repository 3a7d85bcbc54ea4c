import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { LockModule } from '../lock/lock.module.js';
import { MessagingModule } from '../messaging/messaging.module.js';
import { EventLoopHealthIndicator } from './event-loop.health.js';
import { LockHealthIndicator } from './lock.health.js';
import { MessageProcessorHealth } from './message-processor.health.js';
import { MessagingHealthIndicator } from './messaging.health.js';
import { PostgresHealthIndicator } from './postgres.health.js';
import { RedisHealthIndicator } from './redis.health.js';

const INDICATORS = [
  MessagingHealthIndicator,
  RedisHealthIndicator,
  LockHealthIndicator,
  EventLoopHealthIndicator,
  PostgresHealthIndicator,
  MessageProcessorHealth,
];

/**
 * The health indicators of the package, for the application's own Terminus controller
 * ({@link MessageProcessorHealth} gives them as one list).
 */
@Module({
  imports: [TerminusModule, MessagingModule, LockModule],
  providers: INDICATORS,
  exports: INDICATORS,
})
export class HealthIndicatorsModule {}
