import { Injectable, Module } from '@nestjs/common';
import {
  AlreadyProcessed,
  type MessageContext,
  MessageHandler,
  RedisCommit,
} from '../../../src/messaging/index.js';
import { RedisConnection } from '../../../src/redis/redis.connection.js';

/**
 * The same queue as retry-crash.child.js, with a handler that succeeds. Its effect (recording the
 * messageId) is committed atomically with the processed marker, as the ledger's is, so two
 * copies delivered at the same time still apply once.
 */
@Injectable()
export class CrashSurvivor {
  readonly effects: string[] = [];
  private readonly commit: RedisCommit;

  constructor(redis: RedisConnection) {
    this.commit = new RedisCommit(redis.client, 'CrashSurvivor', { numberOfKeys: 0, lua: '' });
  }

  @MessageHandler({
    exchange: 'crash-test',
    routingKey: 'job.*',
    queue: 'crash-test.jobs',
    retry: { maxAttempts: 3, initialDelayMs: 300, maxDelayMs: 1000 },
    effect: { kind: 'redis-commit' },
  })
  async handle(_job: unknown, ctx: MessageContext): Promise<typeof AlreadyProcessed | void> {
    const outcome = await this.commit.run(ctx, [], []);
    if (outcome.status !== 'committed') return AlreadyProcessed;
    this.effects.push(ctx.messageId ?? 'none');
  }
}

@Module({ providers: [CrashSurvivor] })
export class CrashSurvivorModule {}
