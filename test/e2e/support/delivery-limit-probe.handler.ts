import { Injectable, Module } from '@nestjs/common';
import { type MessageContext, MessageHandler } from '../../../src/messaging/index.js';

export const LIMITS_EXCHANGE = 'limits';
/** A queue with delay tiers (a hand-back waits in one). */
export const TIERED_QUEUE = 'limits.jobs';
/** A queue without delay tiers (`maxAttempts: 1`): a hand-back waits in the process. */
export const UNTIERED_QUEUE = 'limits.untiered';

/** What a test message carries: the key its handler locks (`limits:<key>`). */
export interface LimitJob {
  readonly key: string;
}

/** One run of a handler, as it saw its delivery. */
export interface LimitRun {
  readonly queue: string;
  readonly attempt: number;
  readonly deliveryCount: unknown;
}

/**
 * Two handlers that lock `limits:<key>` and record every run, so a test can hold the key from
 * outside (as another replica would) and see how often, and how, the message came back.
 */
@Injectable()
export class DeliveryLimitProbe {
  readonly runs = new Map<string, LimitRun[]>();

  @MessageHandler({
    exchange: LIMITS_EXCHANGE,
    routingKey: 'job.*',
    queue: TIERED_QUEUE,
    lockKey: (job: LimitJob) => `limits:${job.key}`,
    retry: { maxAttempts: 3, initialDelayMs: 200, maxDelayMs: 1_000 },
  })
  tiered(_job: LimitJob, ctx: MessageContext): Promise<void> {
    this.record(TIERED_QUEUE, ctx);
    return Promise.resolve();
  }

  @MessageHandler({
    exchange: LIMITS_EXCHANGE,
    routingKey: 'untiered.*',
    queue: UNTIERED_QUEUE,
    lockKey: (job: LimitJob) => `limits:${job.key}`,
    retry: { maxAttempts: 1 },
  })
  untiered(_job: LimitJob, ctx: MessageContext): Promise<void> {
    this.record(UNTIERED_QUEUE, ctx);
    return Promise.resolve();
  }

  runsOf(messageId: string): LimitRun[] {
    return this.runs.get(messageId) ?? [];
  }

  private record(queue: string, ctx: MessageContext): void {
    const id = ctx.messageId ?? 'none';
    const runs = this.runs.get(id) ?? [];
    runs.push({ queue, attempt: ctx.attempt, deliveryCount: ctx.headers['x-delivery-count'] });
    this.runs.set(id, runs);
  }
}

@Module({ providers: [DeliveryLimitProbe] })
export class DeliveryLimitProbeModule {}
