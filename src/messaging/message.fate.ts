import { HttpException } from '@nestjs/common';
import { LockUnavailableError } from '../lock/lock.errors.js';
import { HAND_BACK_DELAY_MS } from './messaging.constants.js';
import {
  DependencyUnavailableError,
  NonRetryableError,
  RetryAfterError,
} from './messaging.errors.js';
import { baseDelay, jitteredDelay, type RetryPolicy, tierFor } from './retry.policy.js';

/** What happened to a delivery before it is settled. */
export type ProcessingResult =
  | { readonly status: 'succeeded' }
  | { readonly status: 'duplicate' }
  /** Refused before the handler ran: undecodable, no matching handler, no messageId, poison. */
  | { readonly status: 'invalid'; readonly error: NonRetryableError }
  /** The handler (or a pipe, guard, interceptor around it, or the marker write) threw. */
  | { readonly status: 'threw'; readonly error: unknown }
  /** Delivered while this consumer stops: never started. */
  | { readonly status: 'stopping' }
  /** Its lock was still held by another worker after `LOCK_WAIT_MS`: not now, not a failure. */
  | { readonly status: 'busy'; readonly error: Error };

/** An error class a handler declares non-retryable (`@MessageHandler({ nonRetryable: [...] })`). */
export type ErrorClass = abstract new (...args: never[]) => Error;

/** What the decision needs to know besides the result. */
export interface FateInputs {
  /** 1-based number of the attempt that just ran. */
  readonly attempt: number;
  /** The handler's retry policy; undefined when no handler matched. */
  readonly retry: RetryPolicy | undefined;
  readonly nonRetryable: readonly ErrorClass[];
  /** The queue's delay tiers (ascending base delays). */
  readonly tiers: readonly number[];
  readonly random?: () => number;
}

/** How a delivery is settled. */
export type Fate =
  | { readonly action: 'ack'; readonly outcome: 'ack' | 'duplicate' }
  | {
      readonly action: 'retry';
      readonly outcome: 'retry';
      readonly error: Error;
      /** Time the copy waits in its delay tier. */
      readonly delayMs: number;
      /** Index of the delay tier (`Q.retry.<tier + 1>`). */
      readonly tier: number;
    }
  | { readonly action: 'dead-letter'; readonly outcome: 'dead_letter'; readonly error: Error }
  | {
      /**
       * "Not now" (a dependency is down, the lock is busy, the consumer is stopping): a copy goes
       * back to the queue, after `delayMs` in delay tier `tier` (or, without one, in the process).
       * No attempt spent, and nothing the broker counts toward a delivery limit.
       */
      readonly action: 'hand-back';
      readonly outcome: 'requeue';
      readonly delayMs: number;
      readonly tier: number | undefined;
      readonly reason: string;
      readonly error?: unknown;
      /** Expected in normal operation (a busy lock, a shutdown): logged at debug, not as a fault. */
      readonly routine?: true;
    }
  | {
      /**
       * The copy a fate needed could not be published: the original goes back with a requeueing
       * nack, which RabbitMQ up to 4.2 counts toward the delivery limit (past it: `Q.dlq`). Also
       * the fate of a delivery whose channel closed first: the broker has taken it back already.
       */
      readonly action: 'requeue';
      readonly outcome: 'requeue';
      readonly delayMs: number;
      readonly reason: string;
      readonly error?: unknown;
    };

/**
 * THE decision of a message's fate, kept pure so it is tested outcome by outcome:
 * - success → ack; a processed marker found → ack as duplicate;
 * - a dependency outage or a lock still busy after `LOCK_WAIT_MS` → hand back a copy that waits a
 *   second, a shutdown → hand back a copy at once (`requeue` outcome): no attempt spent, never a
 *   DLQ, never counted by the broker as a delivery;
 * - bad input, `NonRetryableError`, a declared non-retryable type, Nest's 4xx exceptions (pipes,
 *   guards) → dead-letter at once;
 * - any other failure → retry through a delay tier with backoff (`RetryAfterError` with a finite
 *   delay: at least that delay), until `maxAttempts` attempts have run → dead-letter.
 */
export function decideFate(result: ProcessingResult, inputs: FateInputs): Fate {
  switch (result.status) {
    case 'succeeded':
      return { action: 'ack', outcome: 'ack' };
    case 'duplicate':
      return { action: 'ack', outcome: 'duplicate' };
    case 'stopping':
      return {
        action: 'hand-back',
        outcome: 'requeue',
        delayMs: 0,
        tier: undefined,
        reason: 'consumer stopping',
        routine: true,
      };
    case 'invalid':
      return { action: 'dead-letter', outcome: 'dead_letter', error: result.error };
    case 'busy':
      // contention on a hot key: the lock metrics show it, the log need not
      return handBack(inputs, 'lock busy', result.error, true);
    case 'threw': {
      const error = asError(result.error);
      if (isDependencyOutage(error)) return handBack(inputs, 'dependency unavailable', error);
      const { retry } = inputs;
      if (
        !retry ||
        isNonRetryable(error, inputs.nonRetryable) ||
        inputs.attempt >= retry.maxAttempts ||
        inputs.tiers.length === 0
      ) {
        return { action: 'dead-letter', outcome: 'dead_letter', error };
      }
      if (error instanceof RetryAfterError && Number.isFinite(error.delayMs)) {
        const delayMs = Math.max(1, Math.ceil(error.delayMs));
        return {
          action: 'retry',
          outcome: 'retry',
          error,
          delayMs,
          tier: tierFor(inputs.tiers, delayMs),
        };
      }
      const base = baseDelay(retry, inputs.attempt);
      return {
        action: 'retry',
        outcome: 'retry',
        error,
        delayMs: jitteredDelay(base, retry.jitter, inputs.random),
        tier: tierFor(inputs.tiers, base),
      };
    }
  }
}

/**
 * "Not now": handed back as a copy that waits a second, in the shortest delay tier that long or,
 * on a queue without tiers, in the process. Never a requeueing nack: RabbitMQ up to 4.2 counts
 * each one toward the delivery limit, so a long outage or a hot lock would make healthy messages
 * look poisonous, and a requeue comes straight back while the cause is still there.
 */
function handBack(inputs: FateInputs, reason: string, error: Error, routine = false): Fate {
  return {
    action: 'hand-back',
    outcome: 'requeue',
    delayMs: HAND_BACK_DELAY_MS,
    tier: inputs.tiers.length > 0 ? tierFor(inputs.tiers, HAND_BACK_DELAY_MS) : undefined,
    reason,
    error,
    ...(routine ? { routine: true as const } : {}),
  };
}

/** Whether a failure is "not now" (a dependency is down) rather than a property of the message. */
export function isDependencyOutage(error: Error): boolean {
  if (error instanceof DependencyUnavailableError || error instanceof LockUnavailableError) {
    return true;
  }
  if (error instanceof NonRetryableError || error instanceof HttpException) return false;
  // ioredis: fail-fast errors while disconnected, command timeouts, retries exhausted
  return (
    error.name === 'MaxRetriesPerRequestError' ||
    /^(Connection is closed\.|Stream isn't writeable|Command timed out)/.test(error.message) ||
    /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH)\b/.test(error.message)
  );
}

/** Retrying cannot help: the message or the request is wrong, not the moment. */
export function isNonRetryable(error: Error, declared: readonly ErrorClass[]): boolean {
  if (error instanceof NonRetryableError) return true;
  if (error instanceof HttpException && error.getStatus() < 500) return true;
  return declared.some((type) => error instanceof type);
}

function asError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(typeof value === 'string' ? value : `non-error thrown: ${safeString(value)}`);
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
