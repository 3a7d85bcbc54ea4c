/**
 * The public API of message-processor: everything an application needs to consume RabbitMQ
 * messages once in effect. What is not exported here is internal and may change in any release.
 */

// the module and its options
export { MessageProcessorModule } from './message-processor.module.js';
export type { MessageProcessorOptions } from './message-processor.options.js';
export { redisClientOptions as messageProcessorRedisOptions } from './redis/redis.connection.js';
export type { RedisClient } from './redis/redis.connection.js';
export { keySlot, slotTagOf } from './redis/key-slot.js';
export { ConfigValidationError, type EnvIssue as ConfigIssue } from './config/env.schema.js';

// handlers, their context and errors, publishing
export * from './messaging/index.js';

// locks
export * from './lock/index.js';

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
// the AsyncAPI document of the application's handlers
export { MessageProcessorAsyncApi } from './asyncapi/asyncapi.service.js';
export {
  buildAsyncApi,
  type AsyncApiDocument,
  type AsyncApiInfo,
} from './asyncapi/asyncapi.document.js';
