import { Injectable, Module } from '@nestjs/common';
import { AlreadyProcessed, type MessageContext, MessageHandler } from '../../../src/messaging';
import { RedisConnection } from '../../../src/redis/redis.connection';

/**
 * The same queue as retry-crash.child.js, with a handler that succeeds. Its effect (recording the
 * messageId) is committed atomically with the processed marker, as the ledger does, so two copies
 * delivered at the same time still apply once.
 */
@Injectable()
export class CrashSurvivor {
  readonly effects: string[] = [];

  constructor(private readonly redis: RedisConnection) {}

  @MessageHandler({
    exchange: 'crash-test',
    routingKey: 'job.*',
    queue: 'crash-test.jobs',
    retry: { maxAttempts: 3, initialDelayMs: 300, maxDelayMs: 1000 },
    commitsMarker: true,
  })
  async handle(_job: unknown, ctx: MessageContext): Promise<typeof AlreadyProcessed | void> {
    const marker = ctx.processedMarker;
    if (!marker) throw new Error('deduplication is on for this handler');
    const first = await this.redis.client.set(marker.key, '1', 'EX', marker.ttlSeconds, 'NX');
    if (first !== 'OK') return AlreadyProcessed;
    this.effects.push(ctx.messageId ?? 'none');
  }
}

@Module({ providers: [CrashSurvivor] })
export class CrashSurvivorModule {}
