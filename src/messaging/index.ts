// The public API for handler authors.
export { MessageHandler } from './message-handler.decorator';
export {
  RedisCommit,
  type CommitContext,
  type CommitOutcome,
  type RedisCommitDefinition,
} from './redis-commit';
export {
  AlreadyProcessed,
  type EffectKind,
  type HandlerEffect,
  type MessageHandlerOptions,
} from './message-handler.interfaces';
export { MessageContext, type MessageLock, type ProcessedMarker } from './message.context';
export { MessagePublisher, type PublishOptions, type PublishReceipt } from './message.publisher';
export { MessageValidationPipe } from './message-validation.pipe';
export {
  DependencyUnavailableError,
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
} from './messaging.errors';
export { MessagingModule } from './messaging.module';
export type { RetryOptions } from './retry.policy';
