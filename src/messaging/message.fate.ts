import { HttpException } from '@nestjs/common';
import { REQUEUE_DELAY_MS } from './messaging.constants';
import { DependencyUnavailableError, NonRetryableError } from './messaging.errors';

/** What happened to a delivery before it is settled. */
export type ProcessingResult =
  | { readonly status: 'succeeded' }
  | { readonly status: 'duplicate' }
  /** Refused before the handler ran: undecodable, no matching handler, no messageId. */
  | { readonly status: 'invalid'; readonly error: NonRetryableError }
  /** The handler (or a pipe, guard, interceptor around it, or the marker write) threw. */
  | { readonly status: 'threw'; readonly error: unknown }
  /** Delivered while this consumer stops: never started. */
  | { readonly status: 'stopping' };

/** How a delivery is settled. */
export type Fate =
  | { readonly action: 'ack'; readonly outcome: 'ack' | 'duplicate' }
  | { readonly action: 'dead-letter'; readonly outcome: 'dead_letter'; readonly error: Error }
  | {
      readonly action: 'requeue';
      readonly outcome: 'requeue';
      readonly delayMs: number;
      readonly reason: string;
      readonly error?: unknown;
    };

/**
 * THE decision of a message's fate, kept pure so it is tested outcome by outcome. Handler errors
 * are classified here: a dependency outage hands the message back (never a spent attempt, never a
 * dead-letter); anything non-retryable (including Nest's 4xx exceptions from pipes and guards) and,
 * until delayed retries exist, any other failure goes to the dead-letter queue with its reason.
 */
export function decideFate(result: ProcessingResult): Fate {
  switch (result.status) {
    case 'succeeded':
      return { action: 'ack', outcome: 'ack' };
    case 'duplicate':
      return { action: 'ack', outcome: 'duplicate' };
    case 'stopping':
      return { action: 'requeue', outcome: 'requeue', delayMs: 0, reason: 'shutting down' };
    case 'invalid':
      return { action: 'dead-letter', outcome: 'dead_letter', error: result.error };
    case 'threw': {
      const error = asError(result.error);
      if (isDependencyOutage(error)) {
        return {
          action: 'requeue',
          outcome: 'requeue',
          delayMs: REQUEUE_DELAY_MS,
          reason: 'dependency unavailable',
          error,
        };
      }
      return { action: 'dead-letter', outcome: 'dead_letter', error };
    }
  }
}

/** Whether a failure is "not now" (a dependency is down) rather than a property of the message. */
export function isDependencyOutage(error: Error): boolean {
  if (error instanceof DependencyUnavailableError) return true;
  if (error instanceof NonRetryableError || error instanceof HttpException) return false;
  // ioredis: fail-fast errors while disconnected, command timeouts, retries exhausted
  return (
    error.name === 'MaxRetriesPerRequestError' ||
    /^(Connection is closed\.|Stream isn't writeable|Command timed out)/.test(error.message) ||
    /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH)\b/.test(error.message)
  );
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
