import { IntrinsicException } from '@nestjs/common';

/**
 * Throw from a handler when retrying cannot help (bad data, a business rule). The message is
 * dead-lettered at once with this error's name and message in its headers.
 */
// IntrinsicException: Nest's exception proxy rethrows it without logging; the settler logs it once.
export class NonRetryableError extends IntrinsicException {
  override name = 'NonRetryableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * Throw from a handler to retry no sooner than `delayMs` from now (a rate limit's Retry-After, a
 * lock held elsewhere). Counts as an attempt; after the last one the message is dead-lettered.
 */
export class RetryAfterError extends IntrinsicException {
  override name = 'RetryAfterError';
  constructor(
    readonly delayMs: number,
    message = `retry requested after ${delayMs} ms`,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The broker delivered the message this many times without it ever being settled: a worker
 * crashed or hung on it each time. Dead-lettered instead of being tried again.
 */
export class DeliveryLimitError extends NonRetryableError {
  override name = 'DeliveryLimitError';
  constructor(readonly deliveries: number) {
    super(
      `delivery-limit: delivered ${deliveries} times without being settled (a worker crashed or hung on it)`,
    );
  }
}

/** Why a body could not be decoded; each kind is dead-lettered with this code in its message. */
export type DecodeFailureKind =
  | 'empty-body'
  | 'too-large'
  | 'content-type'
  | 'content-encoding'
  | 'not-utf8'
  | 'not-json'
  | 'too-deep'
  | 'forbidden-key';

/** The body is not a JSON document this service accepts. Never retried. */
export class MessageDecodeError extends NonRetryableError {
  override name = 'MessageDecodeError';
  constructor(
    readonly kind: DecodeFailureKind,
    detail: string,
  ) {
    super(`${kind}: ${detail}`);
  }
}

/** The payload failed the handler's schema (class-validator through a Nest pipe). Never retried. */
export class MessageValidationError extends NonRetryableError {
  override name = 'MessageValidationError';
  constructor(readonly violations: readonly string[]) {
    super(`schema-invalid: ${violations.join('; ')}`);
  }
}

/** Deduplication needs a messageId; the producer did not set one. Never retried. */
export class MissingMessageIdError extends NonRetryableError {
  override name = 'MissingMessageIdError';
  constructor() {
    super(
      'missing-message-id: set the AMQP messageId property, or declare the handler with idempotent: false',
    );
  }
}

/** The handler's `lockKey` threw or returned something that is not a usable key. Never retried. */
export class InvalidLockKeyError extends NonRetryableError {
  override name = 'InvalidLockKeyError';
  constructor(reason: string) {
    super(`invalid-lock-key: ${reason}`);
  }
}

/** The routing key reached the queue but no handler on it matches. Never retried. */
export class NoHandlerError extends NonRetryableError {
  override name = 'NoHandlerError';
  constructor(
    readonly queue: string,
    readonly routingKey: string,
  ) {
    super(`no-handler: no handler on queue "${queue}" matches routing key "${routingKey}"`);
  }
}

/**
 * A dependency (Redis, the broker) is unreachable. The message is handed back, not counted as a
 * failed attempt and never dead-lettered. Handlers may throw it themselves.
 */
export class DependencyUnavailableError extends IntrinsicException {
  override name = 'DependencyUnavailableError';
  constructor(
    readonly dependency: 'redis' | 'amqp' | (string & {}),
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${dependency} unavailable: ${message}`, options);
  }
}

/** Handler metadata is inconsistent (found at bootstrap). */
export class HandlerConfigurationError extends Error {
  override name = 'HandlerConfigurationError';
}

/** An existing queue or exchange was declared with other arguments than this service asks for. */
export class TopologyConflictError extends Error {
  override name = 'TopologyConflictError';
  constructor(
    readonly resource: string,
    readonly argument: string,
    readonly brokerMessage: string,
  ) {
    super(
      `"${resource}" already exists with a different "${argument}" (${brokerMessage}). ` +
        `Drain and delete it, or configure the service to match (e.g. AMQP_QUEUE_TYPE for x-queue-type); ` +
        `the service stays not-ready and retries the declaration every minute.`,
    );
  }
}

/** Base class of the publisher's errors: the message was not confirmed by the broker. */
export class PublishError extends Error {
  override name = 'PublishError';
  constructor(
    message: string,
    readonly exchange: string,
    readonly routingKey: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The broker refused the message (basic.nack). */
export class PublishNackedError extends PublishError {
  override name = 'PublishNackedError';
}

/** No queue is bound for the routing key (`mandatory` publish came back with basic.return). */
export class UnroutableMessageError extends PublishError {
  override name = 'UnroutableMessageError';
}

/** No confirm arrived within the publish timeout (the broker may or may not have the message). */
export class PublishTimeoutError extends PublishError {
  override name = 'PublishTimeoutError';
}

/** The broker is unreachable and the bounded buffer is full: fail fast instead of queueing forever. */
export class PublisherBufferFullError extends PublishError {
  override name = 'PublisherBufferFullError';
}
