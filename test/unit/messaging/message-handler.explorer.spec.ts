import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import 'reflect-metadata';
import {
  Injectable,
  UseGuards,
  UseInterceptors,
  type CallHandler,
  type CanActivate,
  type ExecutionContext,
  type NestInterceptor,
  type Provider,
} from '@nestjs/common';
import { APP_FILTER, APP_INTERCEPTOR, DiscoveryModule } from '@nestjs/core';
import { Ctx, Payload } from '@nestjs/microservices';
import { Test, type TestingModule } from '@nestjs/testing';
import type { ConsumeMessage } from 'amqplib';
import { IsInt, IsString, Matches } from 'class-validator';
import pino from 'pino';
import { map, of, type Observable } from 'rxjs';
import { amqpConfig, postgresConfig, processingConfig } from '../../../src/config/app.config.js';
import {
  MessageContext,
  MessageHandler,
  MessageValidationError,
} from '../../../src/messaging/index.js';
import {
  MessageHandlerExplorer,
  groupByQueue,
} from '../../../src/messaging/message-handler.explorer.js';
import type {
  HandlerEffect,
  QueueBinding,
  RegisteredHandler,
} from '../../../src/messaging/message-handler.interfaces.js';
import { MessageExceptionsFilter } from '../../../src/messaging/message-exceptions.filter.js';
import { HandlerConfigurationError } from '../../../src/messaging/messaging.errors.js';
import type { RetryPolicy } from '../../../src/messaging/retry.policy.js';

/** The RETRY_* defaults. */
const DEFAULT_RETRY: RetryPolicy = {
  maxAttempts: 5,
  initialDelayMs: 1_000,
  maxDelayMs: 60_000,
  multiplier: 2,
  jitter: 0.2,
};

function handler(
  id: string,
  options: {
    queue: string;
    exchange?: string;
    routingKeys: string[];
    prefetch?: number;
    retry?: Partial<RetryPolicy>;
  },
): RegisteredHandler {
  return {
    id,
    options: {
      exchange: options.exchange ?? 'ledger',
      queue: options.queue,
      routingKeys: options.routingKeys,
      prefetch: options.prefetch,
      effect: 'marker-after',
      lockKey: false,
      retry: { ...DEFAULT_RETRY, ...options.retry },
      nonRetryable: [],
      killSwitch: KILL_SWITCH_OFF,
    },
    matches: () => false,
    invoke: () => Promise.resolve(undefined),
    calledDirectly: false,
  };
}

const KILL_SWITCH_OFF = {
  threshold: 0,
  minAttempts: 1,
  windowMs: 1_000,
  restartMs: 1_000,
  trickle: 1,
};

describe('groupByQueue', () => {
  it('puts handlers of one queue together and keeps other queues apart', () => {
    const created = handler('A.created', { queue: 'q1', routingKeys: ['transaction.created'] });
    const refunded = handler('A.refunded', { queue: 'q1', routingKeys: ['transaction.refunded'] });
    const audit = handler('B.audit', { queue: 'q2', exchange: 'audit', routingKeys: ['#'] });
    const bindings = groupByQueue([created, audit, refunded], 50);
    expect(bindings.map((b) => [b.queue, b.exchange, b.handlers.map((h) => h.id)])).toEqual([
      ['q1', 'ledger', ['A.created', 'A.refunded']],
      ['q2', 'audit', ['B.audit']],
    ]);
  });

  it('binds the union of the routing keys, each once', () => {
    const bindings = groupByQueue(
      [
        handler('A.one', { queue: 'q', routingKeys: ['a.*', 'b.#'] }),
        handler('A.two', { queue: 'q', routingKeys: ['b.#', 'c'] }),
      ],
      50,
    );
    expect(bindings[0].routingKeys).toEqual(['a.*', 'b.#', 'c']);
  });

  it('uses the default prefetch when no handler sets one', () => {
    const [binding] = groupByQueue([handler('A.one', { queue: 'q', routingKeys: ['a'] })], 50);
    expect(binding.prefetch).toBe(50);
  });

  it("takes the largest of the handlers' prefetch (the default standing in for an unset one)", () => {
    const set = (prefetch: number | undefined, other: number | undefined): number =>
      groupByQueue(
        [
          handler('A.one', { queue: 'q', routingKeys: ['a'], prefetch }),
          handler('A.two', { queue: 'q', routingKeys: ['b'], prefetch: other }),
        ],
        20,
      )[0].prefetch;
    expect(set(5, 100)).toBe(100);
    expect(set(5, 8)).toBe(8);
    expect(set(5, undefined)).toBe(20);
    expect(set(200, undefined)).toBe(200);
  });

  it('refuses two handlers that bind one queue to different exchanges', () => {
    const handlers = [
      handler('A.one', { queue: 'shared', exchange: 'ledger', routingKeys: ['a'] }),
      handler('B.two', { queue: 'shared', exchange: 'payments', routingKeys: ['b'] }),
    ];
    expect(() => groupByQueue(handlers, 50)).toThrow(HandlerConfigurationError);
    expect(() => groupByQueue(handlers, 50)).toThrow(
      'B.two and A.one share queue "shared" but bind it to different exchanges ("payments" vs "ledger")',
    );
  });

  it("declares the queue's delay tiers: the schedule of its one handler", () => {
    const [binding] = groupByQueue([handler('A.one', { queue: 'q', routingKeys: ['a'] })], 50);
    expect(binding.retryTiers).toEqual([1_000, 2_000, 4_000, 8_000]);
  });

  it("unites the handlers' delay tiers, each once, ascending", () => {
    const [binding] = groupByQueue(
      [
        handler('A.slow', {
          queue: 'q',
          routingKeys: ['a'],
          retry: { maxAttempts: 4, initialDelayMs: 3_000 },
        }),
        handler('A.fast', {
          queue: 'q',
          routingKeys: ['b'],
          retry: { maxAttempts: 4, initialDelayMs: 500, maxDelayMs: 1_500 },
        }),
        handler('A.default', { queue: 'q', routingKeys: ['c'] }),
      ],
      50,
    );
    // slow: 3000 6000 12000; fast: 500 1000 1500; default: 1000 2000 4000 8000
    expect(binding.retryTiers).toEqual([
      500, 1_000, 1_500, 2_000, 3_000, 4_000, 6_000, 8_000, 12_000,
    ]);
  });

  it('keeps the delay tiers of each queue apart', () => {
    const bindings = groupByQueue(
      [
        handler('A.one', { queue: 'q1', routingKeys: ['a'], retry: { maxAttempts: 2 } }),
        handler('B.two', {
          queue: 'q2',
          routingKeys: ['b'],
          retry: { maxAttempts: 3, initialDelayMs: 200 },
        }),
      ],
      50,
    );
    expect(bindings.map((b) => [b.queue, b.retryTiers])).toEqual([
      ['q1', [1_000]],
      ['q2', [200, 400]],
    ]);
  });

  it('declares no delay tier for a queue whose handlers never retry (maxAttempts 1)', () => {
    const [binding] = groupByQueue(
      [
        handler('A.one', { queue: 'q', routingKeys: ['a'], retry: { maxAttempts: 1 } }),
        handler('A.two', { queue: 'q', routingKeys: ['b'], retry: { maxAttempts: 1 } }),
      ],
      50,
    );
    expect(binding.retryTiers).toEqual([]);
  });

  it('returns nothing for no handlers', () => {
    expect(groupByQueue([], 50)).toEqual([]);
  });
});

/** A handler's own failure type, declared non-retryable on a handler. */
class TransferRefusedError extends Error {
  override name = 'TransferRefusedError';
}

class TransferDto {
  @IsString()
  @Matches(/^[A-Za-z0-9_-]{1,64}$/, {
    message: 'accountId must be 1-64 characters of [A-Za-z0-9_-]',
  })
  accountId!: string;

  @IsInt()
  amountCents!: number;
}

/** Records every call around a handler so a test can see that Nest ran it. */
@Injectable()
class TracingInterceptor implements NestInterceptor {
  static readonly seen: string[] = [];

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const ctx = context.switchToRpc().getContext<MessageContext>();
    TracingInterceptor.seen.push(
      `${context.getType()} before ${context.getHandler().name} ${ctx.messageId}`,
    );
    return next.handle().pipe(map((result: unknown) => ({ intercepted: result })));
  }
}

interface Received {
  readonly method: string;
  readonly payload: unknown;
  readonly context: unknown;
}

@Injectable()
@UseInterceptors(TracingInterceptor)
class TransferHandlers {
  readonly received: Received[] = [];

  @MessageHandler({ exchange: 'ledger', routingKey: 'transfer.created', queue: 'ledger.transfers' })
  created(transfer: TransferDto, ctx: MessageContext): string {
    this.received.push({ method: 'created', payload: transfer, context: ctx });
    return 'created-done';
  }

  @MessageHandler({
    exchange: 'ledger',
    routingKey: ['transfer.reversed', 'transfer.cancelled'],
    queue: 'ledger.transfers',
    prefetch: 3,
    retry: { maxAttempts: 3, initialDelayMs: 500, jitter: 0 },
    nonRetryable: [RangeError, TransferRefusedError],
  })
  reversed(@Ctx() ctx: MessageContext, @Payload('accountId') accountId: string): string {
    this.received.push({ method: 'reversed', payload: accountId, context: ctx });
    return 'reversed-done';
  }

  /** Not a handler: must not be registered. */
  helper(): string {
    return 'helper';
  }
}

@Injectable()
class AuditHandler {
  @MessageHandler({
    exchange: 'audit',
    routingKey: '#',
    queue: 'audit.all',
    prefetch: 11,
    retry: { maxAttempts: 1 },
  })
  record(payload: Record<string, unknown>): Record<string, unknown> {
    return payload;
  }
}

function messageContext(handlerId: string): MessageContext {
  const message: ConsumeMessage = {
    content: Buffer.from('{}'),
    fields: {
      deliveryTag: 1,
      redelivered: false,
      exchange: 'ledger',
      routingKey: 'transfer.created',
      consumerTag: 'amq.ctag-test',
    },
    properties: {
      contentType: 'application/json',
      contentEncoding: undefined,
      headers: {},
      deliveryMode: 2,
      priority: undefined,
      correlationId: 'corr-1',
      replyTo: undefined,
      expiration: undefined,
      messageId: 'msg-1',
      timestamp: undefined,
      type: undefined,
      userId: undefined,
      appId: undefined,
      clusterId: undefined,
    },
  };
  return new MessageContext({
    messageId: 'msg-1',
    correlationId: 'corr-1',
    exchange: 'ledger',
    routingKey: 'transfer.created',
    queue: 'ledger.transfers',
    handler: handlerId,
    headers: {},
    attempt: 1,
    redelivered: false,
    signal: new AbortController().signal,
    effect: 'marker-after',
    processedMarker: undefined,
    lock: undefined,
    message,
    baseLogger: pino({ enabled: false }),
  });
}

/** A TransferDto payload with a bad accountId and a fractional amount, refused with both listed. */
async function expectTransferViolations(invoking: Promise<unknown>): Promise<void> {
  await expect(invoking).rejects.toBeInstanceOf(MessageValidationError);
  await expect(invoking).rejects.toMatchObject({
    violations: expect.arrayContaining([
      'accountId must be 1-64 characters of [A-Za-z0-9_-]',
      'amountCents must be an integer number',
    ]) as unknown,
  });
}

const AMQP_CONFIG = {
  provide: amqpConfig.KEY,
  useValue: {
    urls: ['amqp://localhost:5672'],
    prefetch: 7,
    queueType: 'quorum',
    heartbeatSeconds: 10,
    publishTimeoutMs: 10_000,
    publishBufferLimit: 1_000,
  },
};

/** processingConfig with the RETRY_* defaults of env.schema.ts. */
const PROCESSING_CONFIG = {
  provide: processingConfig.KEY,
  useValue: {
    messageMaxBytes: 1_048_576,
    idempotencyTtlSeconds: 86_400,
    retry: { maxAttempts: 5, initialDelayMs: 1_000, maxDelayMs: 60_000 },
    shutdownTimeoutMs: 30_000,
    killSwitch: KILL_SWITCH_OFF,
  },
};

/** postgresConfig without DATABASE_URL (the default). */
const POSTGRES_CONFIG = { provide: postgresConfig.KEY, useValue: { url: undefined } };

describe('MessageHandlerExplorer', () => {
  let moduleRef: TestingModule;
  let bindings: QueueBinding[];

  beforeAll(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [DiscoveryModule],
      providers: [
        MessageHandlerExplorer,
        TransferHandlers,
        AuditHandler,
        AMQP_CONFIG,
        PROCESSING_CONFIG,
        POSTGRES_CONFIG,
        POSTGRES_CONFIG,
      ],
    })
      .setLogger({ log: () => undefined, error: () => undefined, warn: () => undefined })
      .compile();
    await moduleRef.init();
    bindings = moduleRef.get(MessageHandlerExplorer).explore();
  });

  afterAll(async () => {
    await moduleRef.close();
  });

  beforeEach(() => {
    TracingInterceptor.seen.length = 0;
    moduleRef.get(TransferHandlers).received.length = 0;
  });

  function registered(id: string): RegisteredHandler {
    const found = bindings.flatMap((b) => b.handlers).find((h) => h.id === id);
    if (!found) throw new Error(`${id} was not registered`);
    return found;
  }

  it('finds every @MessageHandler method, named ClassName.method, grouped by queue', () => {
    expect(
      bindings.map((b) => ({ queue: b.queue, handlers: b.handlers.map((h) => h.id) })),
    ).toEqual([
      {
        queue: 'ledger.transfers',
        handlers: ['TransferHandlers.created', 'TransferHandlers.reversed'],
      },
      { queue: 'audit.all', handlers: ['AuditHandler.record'] },
    ]);
  });

  it('binds the union of routing keys, with the largest prefetch including the configured default', () => {
    const transfers = bindings.find((b) => b.queue === 'ledger.transfers');
    expect(transfers).toMatchObject({
      exchange: 'ledger',
      routingKeys: ['transfer.created', 'transfer.reversed', 'transfer.cancelled'],
      prefetch: 7,
    });
    expect(bindings.find((b) => b.queue === 'audit.all')?.prefetch).toBe(11);
  });

  it('fills in the handler options and compiles the routing-key matchers', () => {
    const reversed = registered('TransferHandlers.reversed');
    expect(reversed.options).toEqual({
      exchange: 'ledger',
      queue: 'ledger.transfers',
      routingKeys: ['transfer.reversed', 'transfer.cancelled'],
      prefetch: 3,
      effect: 'marker-after',
      lockKey: 'message-id',
      retry: { maxAttempts: 3, initialDelayMs: 500, maxDelayMs: 60_000, multiplier: 2, jitter: 0 },
      nonRetryable: [RangeError, TransferRefusedError],
      killSwitch: KILL_SWITCH_OFF,
      payloadType: undefined,
      publishes: [],
    });
    expect(reversed.matches('transfer.cancelled')).toBe(true);
    expect(reversed.matches('transfer.created')).toBe(false);
    expect(registered('AuditHandler.record').matches('anything.at.all')).toBe(true);
  });

  it('gives a handler without retry options the configured RETRY_* defaults and no non-retryable types', () => {
    expect(registered('TransferHandlers.created').options).toMatchObject({
      retry: DEFAULT_RETRY,
      nonRetryable: [],
    });
  });

  it("declares each queue's delay tiers from its handlers' policies", () => {
    // created: 1000 2000 4000 8000; reversed: 500 1000
    expect(bindings.find((b) => b.queue === 'ledger.transfers')?.retryTiers).toEqual([
      500, 1_000, 2_000, 4_000, 8_000,
    ]);
    expect(bindings.find((b) => b.queue === 'audit.all')?.retryTiers).toEqual([]);
  });

  it('hands a valid payload to the method as an instance of its DTO class, with the context', async () => {
    const ctx = messageContext('TransferHandlers.created');
    await registered('TransferHandlers.created').invoke(
      { accountId: 'acc-42', amountCents: 1250, unknownField: 'stripped' },
      ctx,
    );
    const [call] = moduleRef.get(TransferHandlers).received;
    expect(call.payload).toBeInstanceOf(TransferDto);
    expect(call.payload).toEqual({ accountId: 'acc-42', amountCents: 1250 });
    expect(call.context).toBe(ctx);
  });

  it('rejects an invalid payload with MessageValidationError listing each violation', async () => {
    const invoking = registered('TransferHandlers.created').invoke(
      { accountId: 'not valid!', amountCents: 12.5 },
      messageContext('TransferHandlers.created'),
    );
    await expectTransferViolations(invoking);
    expect(moduleRef.get(TransferHandlers).received).toEqual([]);
  });

  it('rejects a payload that is not an object', async () => {
    await expect(
      registered('TransferHandlers.created').invoke('a string', messageContext('x')),
    ).rejects.toBeInstanceOf(MessageValidationError);
  });

  it('runs a class-level interceptor around the handler in the rpc context', async () => {
    const result = await registered('TransferHandlers.created').invoke(
      { accountId: 'acc-1', amountCents: 1 },
      messageContext('TransferHandlers.created'),
    );
    expect(TracingInterceptor.seen).toEqual(['rpc before created msg-1']);
    expect(result).toEqual({ intercepted: 'created-done' });
  });

  it('resolves @Payload(property) and @Ctx() in place of the default parameters', async () => {
    const ctx = messageContext('TransferHandlers.reversed');
    const result = await registered('TransferHandlers.reversed').invoke(
      { accountId: 'acc-7', amountCents: -5 },
      ctx,
    );
    expect(moduleRef.get(TransferHandlers).received).toEqual([
      { method: 'reversed', payload: 'acc-7', context: ctx },
    ]);
    expect(result).toEqual({ intercepted: 'reversed-done' });
  });

  it('passes a payload through unvalidated when the parameter type is not a class', async () => {
    const payload = { anything: ['goes'] };
    await expect(
      registered('AuditHandler.record').invoke(payload, messageContext('AuditHandler.record')),
    ).resolves.toEqual(payload);
  });
});

describe('MessageHandlerExplorer retry options', () => {
  @Injectable()
  class NegativeDelayHandler {
    @MessageHandler({
      exchange: 'ledger',
      routingKey: 'transfer.created',
      queue: 'ledger.transfers',
      retry: { initialDelayMs: -1 },
    })
    apply(): void {}
  }

  @Injectable()
  class TooMuchJitterHandler {
    @MessageHandler({
      exchange: 'ledger',
      routingKey: 'transfer.created',
      queue: 'ledger.transfers',
      retry: { jitter: 1.5, maxAttempts: 0 },
    })
    apply(): void {}
  }

  @Injectable()
  class UnknownEffectHandler {
    @MessageHandler({
      exchange: 'ledger',
      routingKey: 'transfer.created',
      queue: 'ledger.transfers',
      // what a JavaScript caller (or a cast) can still pass
      effect: { kind: 'exactly-once' } as unknown as HandlerEffect,
    })
    apply(): void {}
  }

  @Injectable()
  class StringEffectHandler {
    @MessageHandler({
      exchange: 'ledger',
      routingKey: 'transfer.created',
      queue: 'ledger.transfers',
      // the kind alone, not the declaration: it must not read as the default
      effect: 'postgres-commit' as unknown as HandlerEffect,
    })
    apply(): void {}
  }

  @Injectable()
  class BadLockKeyHandler {
    @MessageHandler({
      exchange: 'ledger',
      routingKey: 'transfer.created',
      queue: 'ledger.transfers',
      lockKey: 'account' as unknown as false,
    })
    apply(): void {}
  }

  @Injectable()
  class SlotKeyOnMarkerAfterHandler {
    @MessageHandler({
      exchange: 'ledger',
      routingKey: 'transfer.created',
      queue: 'ledger.transfers',
      effect: { kind: 'marker-after', slotKey: () => 'k' } as unknown as { kind: 'marker-after' },
    })
    apply(): void {}
  }

  @Injectable()
  class SlotKeyNotAFunctionHandler {
    @MessageHandler({
      exchange: 'ledger',
      routingKey: 'transfer.created',
      queue: 'ledger.transfers',
      effect: { kind: 'redis-commit', slotKey: 'balance' as unknown as () => string },
    })
    apply(): void {}
  }

  @Injectable()
  class RedisCommitUnlockedHandler {
    @MessageHandler({
      exchange: 'ledger',
      routingKey: 'transfer.created',
      queue: 'ledger.transfers',
      effect: { kind: 'redis-commit' },
      lockKey: false,
    })
    apply(): void {}
  }

  @Injectable()
  class PostgresWithoutDatabaseHandler {
    @MessageHandler({
      exchange: 'ledger',
      routingKey: 'transfer.created',
      queue: 'ledger.transfers',
      effect: { kind: 'postgres-transaction' },
    })
    apply(): void {}
  }

  /** What exploring a module with just this handler provider throws (undefined if nothing). */
  async function exploreError(provider: new () => object): Promise<unknown> {
    const moduleRef = await Test.createTestingModule({
      imports: [DiscoveryModule],
      providers: [
        MessageHandlerExplorer,
        provider,
        AMQP_CONFIG,
        PROCESSING_CONFIG,
        POSTGRES_CONFIG,
      ],
    })
      .setLogger({ log: () => undefined, error: () => undefined, warn: () => undefined })
      .compile();
    try {
      moduleRef.get(MessageHandlerExplorer).explore();
      return undefined;
    } catch (error) {
      return error;
    } finally {
      await moduleRef.close();
    }
  }

  it('refuses invalid retry options with a HandlerConfigurationError naming the handler', async () => {
    const error = await exploreError(NegativeDelayHandler);
    expect(error).toBeInstanceOf(HandlerConfigurationError);
    expect(error).toHaveProperty(
      'message',
      'NegativeDelayHandler.apply: retry initialDelayMs must be an integer >= 1',
    );
  });

  it('names every problem of the options in the one error', async () => {
    const error = await exploreError(TooMuchJitterHandler);
    expect(error).toBeInstanceOf(HandlerConfigurationError);
    expect(error).toHaveProperty(
      'message',
      'TooMuchJitterHandler.apply: retry maxAttempts must be an integer >= 1; jitter must be between 0 and 1',
    );
  });

  it('refuses a bare effect kind instead of taking it for the default', async () => {
    const error = await exploreError(StringEffectHandler);
    expect(error).toHaveProperty(
      'message',
      `StringEffectHandler.apply: "effect.kind" must be one of 'marker-after', 'redis-commit', 'postgres-transaction', 'postgres-commit', 'idempotent'`,
    );
  });

  it('refuses an effect kind it does not know, naming the ones it does', async () => {
    const error = await exploreError(UnknownEffectHandler);
    expect(error).toBeInstanceOf(HandlerConfigurationError);
    expect(error).toHaveProperty(
      'message',
      `UnknownEffectHandler.apply: "effect.kind" must be one of 'marker-after', 'redis-commit', 'postgres-transaction', 'postgres-commit', 'idempotent'`,
    );
  });

  it('refuses a lockKey that is neither a function nor false', async () => {
    const error = await exploreError(BadLockKeyHandler);
    expect(error).toHaveProperty(
      'message',
      'BadLockKeyHandler.apply: "lockKey" must be a function of the payload, or false for no lock',
    );
  });

  it.each([
    ['on another effect kind', SlotKeyOnMarkerAfterHandler],
    ['that is not a function', SlotKeyNotAFunctionHandler],
  ])('refuses an effect.slotKey %s', async (_case, handler) => {
    const error = await exploreError(handler);
    expect(error).toBeInstanceOf(HandlerConfigurationError);
    expect(error).toHaveProperty(
      'message',
      `${handler.name}.apply: "effect.slotKey" is a function of the payload, for effect 'redis-commit' only`,
    );
  });

  it('refuses a postgres-transaction handler when DATABASE_URL is not set, saying so', async () => {
    const error = await exploreError(PostgresWithoutDatabaseHandler);
    expect(error).toBeInstanceOf(HandlerConfigurationError);
    expect(error).toHaveProperty(
      'message',
      "PostgresWithoutDatabaseHandler.apply: effect 'postgres-transaction' needs PostgreSQL: set DATABASE_URL",
    );
  });

  it('accepts every kind with or without a lock', async () => {
    expect(await exploreError(RedisCommitUnlockedHandler)).toBeUndefined();
  });
});

/** Refuses every call: a handler behind it must never run. */
@Injectable()
class DenyAll implements CanActivate {
  canActivate(): boolean {
    return false;
  }
}

class RefusedError extends Error {}

@Injectable()
class PlainHandlers {
  readonly received: unknown[] = [];

  @MessageHandler({ exchange: 'plain', routingKey: 'dto', queue: 'plain.dto' })
  dto(transfer: TransferDto, ctx: MessageContext): string {
    this.received.push(transfer);
    if (transfer.amountCents < 0) throw new RefusedError(`refused ${ctx.messageId ?? ''}`);
    return 'dto-done';
  }

  @MessageHandler({ exchange: 'plain', routingKey: 'observable', queue: 'plain.observable' })
  observable(payload: { n: number }): Observable<number> {
    return of(payload.n, payload.n + 1);
  }

  @MessageHandler({ exchange: 'plain', routingKey: 'field', queue: 'plain.field' })
  field(@Payload('n') n: number, @Ctx() ctx: MessageContext): string {
    return `${n} ${ctx.messageId ?? ''}`;
  }

  @MessageHandler({ exchange: 'plain', routingKey: 'guarded', queue: 'plain.guarded' })
  @UseGuards(DenyAll)
  guarded(payload: unknown): unknown {
    this.received.push(payload);
    return payload;
  }
}

/** Overrides a plain handler with parameters of its own: Nest must resolve those. */
@Injectable()
class FieldOverride extends PlainHandlers {
  @MessageHandler({ exchange: 'plain', routingKey: 'override', queue: 'plain.override' })
  override dto(
    @Payload('accountId') accountId: TransferDto | string,
    @Ctx() ctx: MessageContext,
  ): string {
    return `${typeof accountId === 'string' ? accountId : 'a DTO'} ${ctx.messageId ?? ''}`;
  }
}

/** Explores PlainHandlers in an application with the given extra (global) providers. */
async function exploreWith(providers: Provider[]) {
  const moduleRef = await Test.createTestingModule({
    imports: [DiscoveryModule],
    providers: [
      MessageHandlerExplorer,
      PlainHandlers,
      DenyAll,
      AMQP_CONFIG,
      PROCESSING_CONFIG,
      POSTGRES_CONFIG,
      ...providers,
    ],
  })
    .setLogger({ log: () => undefined, error: () => undefined, warn: () => undefined })
    .compile();
  await moduleRef.init();
  const handlers = moduleRef
    .get(MessageHandlerExplorer)
    .explore()
    .flatMap((b) => b.handlers);
  const byId = (id: string): RegisteredHandler => {
    const found = handlers.find((h) => h.id === id);
    if (!found) throw new Error(`${id} was not registered`);
    return found;
  };
  return { moduleRef, byId };
}

describe('MessageHandlerExplorer: handlers called without Nest when nothing of it applies', () => {
  it('calls a handler directly when only the service exception filter applies, with the same results as Nest', async () => {
    const { moduleRef, byId } = await exploreWith([
      { provide: APP_FILTER, useClass: MessageExceptionsFilter },
    ]);
    const dto = byId('PlainHandlers.dto');
    expect(dto.calledDirectly).toBe(true);
    expect(byId('PlainHandlers.observable').calledDirectly).toBe(true);

    // a valid payload arrives as the DTO instance, unknown fields stripped
    await expect(
      dto.invoke({ accountId: 'acc-1', amountCents: 5, extra: true }, messageContext('d')),
    ).resolves.toBe('dto-done');
    const [received] = moduleRef.get(PlainHandlers).received;
    expect(received).toBeInstanceOf(TransferDto);
    expect(received).toEqual({ accountId: 'acc-1', amountCents: 5 });

    // an invalid one is reported by the pipe, every violation listed; the method never runs
    const invalid = dto.invoke({ accountId: 'no good!', amountCents: 1.5 }, messageContext('d'));
    await expectTransferViolations(invalid);
    expect(moduleRef.get(PlainHandlers).received).toHaveLength(1);

    // what the method throws comes back as it was thrown; an Observable resolves to its last value
    await expect(
      dto.invoke({ accountId: 'acc-1', amountCents: -1 }, messageContext('d')),
    ).rejects.toThrow(new RefusedError('refused msg-1'));
    await expect(
      byId('PlainHandlers.observable').invoke({ n: 1 }, messageContext('o')),
    ).resolves.toBe(2);
    await moduleRef.close();
  });

  it('keeps Nest for a handler with a guard of its own, and the guard still refuses', async () => {
    const { moduleRef, byId } = await exploreWith([]);
    const guarded = byId('PlainHandlers.guarded');
    expect(guarded.calledDirectly).toBe(false);
    await expect(guarded.invoke({ a: 1 }, messageContext('g'))).rejects.toThrow(
      'Forbidden resource',
    );
    expect(moduleRef.get(PlainHandlers).received).toEqual([]);
    await moduleRef.close();
  });

  it('keeps Nest for every handler when a global interceptor applies, and it runs', async () => {
    const { moduleRef, byId } = await exploreWith([
      { provide: APP_INTERCEPTOR, useClass: TracingInterceptor },
    ]);
    TracingInterceptor.seen.length = 0;
    const dto = byId('PlainHandlers.dto');
    expect(dto.calledDirectly).toBe(false);
    await expect(
      dto.invoke({ accountId: 'acc-2', amountCents: 2 }, messageContext('d')),
    ).resolves.toEqual({ intercepted: 'dto-done' });
    expect(TracingInterceptor.seen).toEqual(['rpc before dto msg-1']);
    await moduleRef.close();
  });

  it('keeps Nest for a handler that declares its own parameters (@Payload, @Ctx)', async () => {
    const { moduleRef, byId } = await exploreWith([FieldOverride]);
    const field = byId('PlainHandlers.field');
    expect(field.calledDirectly).toBe(false);
    await expect(field.invoke({ n: 41 }, messageContext('f'))).resolves.toBe('41 msg-1');
    // also when it overrides a method that had the default parameters
    const override = byId('FieldOverride.dto');
    expect(override.calledDirectly).toBe(false);
    await expect(override.invoke({ accountId: 'acc-9' }, messageContext('o'))).resolves.toBe(
      'acc-9 msg-1',
    );
    await moduleRef.close();
  });
});
