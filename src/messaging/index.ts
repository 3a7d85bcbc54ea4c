// The handler author's part of the public API (re-exported by src/index.ts).
export { MessageHandler } from './message-handler.decorator.js';
export {
  RedisCommit,
  type CommitContext,
  type CommitOutcome,
  type RedisCommitDefinition,
} from './redis-commit.js';
export {
  AlreadyProcessed,
  type EffectKind,
  type HandlerEffect,
  type MessageHandlerOptions,
  type MessagePublication,
} from './message-handler.interfaces.js';
export { MessageContext, type MessageLock, type ProcessedMarker } from './message.context.js';
export { MessagePublisher, type PublishOptions, type PublishReceipt } from './message.publisher.js';
export { MessageValidationPipe } from './message-validation.pipe.js';
export {
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
  DeliveryLimitError,
  UnroutableMessageError,
} from './messaging.errors.js';
export type { RetryOptions } from './retry.policy.js';
export type { KillSwitchOptions } from './kill-switch.js';
