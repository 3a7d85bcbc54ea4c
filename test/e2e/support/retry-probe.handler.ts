import { Injectable, Module } from '@nestjs/common';
import {
  DependencyUnavailableError,
  type MessageContext,
  MessageHandler,
  NonRetryableError,
  RetryAfterError,
} from '../../../src/messaging/index.js';

/** What a test message asks the probe handler to do. */
export interface ProbeJob {
  /** Fail this many attempts with a retryable error, then succeed. */
  readonly failTimes?: number;
  /** `always`: fail every attempt; `non-retryable`: throw NonRetryableError; `retry-after`: RetryAfterError(retryAfterMs) once; `until-fixed`: fail until the probe is fixed; `outage-once`: DependencyUnavailableError once. */
  readonly mode?: 'always' | 'non-retryable' | 'retry-after' | 'until-fixed' | 'outage-once';
  readonly retryAfterMs?: number;
}

export const PROBE_EXCHANGE = 'retry-test';
export const PROBE_QUEUE = 'retry-test.jobs';
export const PROBE_RETRY = { maxAttempts: 4, initialDelayMs: 300, maxDelayMs: 2_000, jitter: 0.1 };

/** One attempt as the handler saw it. */
export interface ProbeAttempt {
  readonly at: number;
  readonly attempt: number;
  readonly succeeded: boolean;
}

/** A handler whose failures the test scripts through the payload, recording every attempt. */
@Injectable()
export class RetryProbe {
  readonly attempts = new Map<string, ProbeAttempt[]>();
  fixed = false;

  @MessageHandler({
    exchange: PROBE_EXCHANGE,
    routingKey: 'job.*',
    queue: PROBE_QUEUE,
    prefetch: 1,
    retry: PROBE_RETRY,
  })
  handle(job: ProbeJob, ctx: MessageContext): Promise<void> {
    const id = ctx.messageId ?? 'none';
    const seen = this.attempts.get(id) ?? [];
    this.attempts.set(id, seen);
    const fail = this.shouldFail(job, seen.length);
    seen.push({ at: performance.now(), attempt: ctx.attempt, succeeded: fail === undefined });
    return fail === undefined ? Promise.resolve() : Promise.reject(fail);
  }

  private shouldFail(job: ProbeJob, previous: number): Error | undefined {
    switch (job.mode) {
      case 'always':
        return new Error('downstream keeps failing');
      case 'non-retryable':
        return new NonRetryableError('business rule violated');
      case 'retry-after':
        return previous === 0 ? new RetryAfterError(job.retryAfterMs ?? 500) : undefined;
      case 'outage-once':
        return previous === 0
          ? new DependencyUnavailableError('redis', 'simulated outage')
          : undefined;
      case 'until-fixed':
        return this.fixed ? undefined : new Error('not fixed yet');
      default:
        return previous < (job.failTimes ?? 0)
          ? new Error(`transient failure ${previous + 1}`)
          : undefined;
    }
  }
}

@Module({ providers: [RetryProbe] })
export class RetryProbeModule {}
