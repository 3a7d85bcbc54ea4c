/**
 * The public API of message-processor: everything an application needs to consume RabbitMQ
 * messages once in effect. What is not exported here is internal and may change in any release.
 */

// the module and its options
export { MessageProcessorModule } from './message-processor.module.js';
export type { MessageProcessorOptions } from './message-processor.options.js';
export { redisClientOptions as messageProcessorRedisOptions } from './redis/redis.connection.js';
export { ConfigValidationError, type EnvIssue as ConfigIssue } from './config/env.schema.js';

// handlers
export { MessageHandler } from './messaging/message-handler.decorator.js';
export {
  AlreadyProcessed,
  type EffectKind,
  type HandlerEffect,
  type MessageHandlerOptions,
} from './messaging/message-handler.interfaces.js';
export {
  MessageContext,
  type MessageLock,
  type ProcessedMarker,
} from './messaging/message.context.js';
export {
  RedisCommit,
  type CommitContext,
  type CommitOutcome,
  type RedisCommitDefinition,
} from './messaging/redis-commit.js';
export { MessageValidationPipe } from './messaging/message-validation.pipe.js';
export type { RetryOptions } from './messaging/retry.policy.js';

// errors a handler throws or meets
export {
  DeliveryLimitError,
  DependencyUnavailableError,
  HandlerConfigurationError,
  InvalidLockKeyError,
  MessageDecodeError,
  MessageValidationError,
  MissingMessageIdError,
  NoHandlerError,
  NonRetryableError,
  PublishError,
  PublishNackedError,
  PublishTimeoutError,
  PublisherBufferFullError,
  RetryAfterError,
  UnroutableMessageError,
} from './messaging/messaging.errors.js';

// publishing
export {
  MessagePublisher,
  type PublishOptions,
  type PublishReceipt,
} from './messaging/message.publisher.js';

// locks
export type { Lock } from './lock/lease.js';
export type { ReleaseOutcome } from './lock/lock.backend.js';
export {
  LockLostError,
  LockTimeoutError,
  LockUnavailableError,
  type LockLossReason,
} from './lock/lock.errors.js';
export { LockService, type AcquireOptions } from './lock/lock.service.js';

// PostgreSQL: the inbox and outbox
export { PostgresTransactions } from './postgres/postgres-transactions.js';
export { PostgresTransaction, type OutboxPublishOptions } from './postgres/postgres-transaction.js';
export type { Migration } from './postgres/postgres.schema.js';

// health, for the application's Terminus controller
export {
  MessageProcessorHealth,
  type MessageProcessorCheck,
} from './health/message-processor.health.js';
export { MessagingHealthIndicator } from './health/messaging.health.js';
export { RedisHealthIndicator } from './health/redis.health.js';
export { LockHealthIndicator } from './health/lock.health.js';
export { PostgresHealthIndicator } from './health/postgres.health.js';
export { EventLoopHealthIndicator } from './health/event-loop.health.js';

// metric names (part of the contract: dashboards and alerts use them)
export { LOCK_METRIC, METRIC, OUTBOX_METRIC } from './metrics/metrics.constants.js';
