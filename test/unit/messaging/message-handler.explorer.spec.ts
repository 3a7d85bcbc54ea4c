import 'reflect-metadata';
import {
  Injectable,
  UseInterceptors,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { Ctx, Payload } from '@nestjs/microservices';
import { Test, type TestingModule } from '@nestjs/testing';
import type { ConsumeMessage } from 'amqplib';
import { IsInt, IsString, Matches } from 'class-validator';
import pino from 'pino';
import { map, type Observable } from 'rxjs';
import { amqpConfig } from '../../../src/config/app.config';
import { MessageContext, MessageHandler, MessageValidationError } from '../../../src/messaging';
import {
  MessageHandlerExplorer,
  groupByQueue,
} from '../../../src/messaging/message-handler.explorer';
import type {
  QueueBinding,
  RegisteredHandler,
} from '../../../src/messaging/message-handler.interfaces';
import { HandlerConfigurationError } from '../../../src/messaging/messaging.errors';

function handler(
  id: string,
  options: { queue: string; exchange?: string; routingKeys: string[]; prefetch?: number },
): RegisteredHandler {
  return {
    id,
    options: {
      exchange: options.exchange ?? 'ledger',
      queue: options.queue,
      routingKeys: options.routingKeys,
      prefetch: options.prefetch,
      idempotent: true,
      commitsMarker: false,
    },
    matches: () => false,
    invoke: () => Promise.resolve(undefined),
  };
}

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

  it('returns nothing for no handlers', () => {
    expect(groupByQueue([], 50)).toEqual([]);
  });
});

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
  @MessageHandler({ exchange: 'audit', routingKey: '#', queue: 'audit.all', prefetch: 11 })
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
    processedMarker: undefined,
    message,
    baseLogger: pino({ enabled: false }),
  });
}

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
        {
          provide: amqpConfig.KEY,
          useValue: {
            urls: ['amqp://localhost:5672'],
            prefetch: 7,
            queueType: 'quorum',
            heartbeatSeconds: 10,
            publishTimeoutMs: 10_000,
            publishBufferLimit: 1_000,
          },
        },
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
      idempotent: true,
      commitsMarker: false,
    });
    expect(reversed.matches('transfer.cancelled')).toBe(true);
    expect(reversed.matches('transfer.created')).toBe(false);
    expect(registered('AuditHandler.record').matches('anything.at.all')).toBe(true);
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
    await expect(invoking).rejects.toBeInstanceOf(MessageValidationError);
    await expect(invoking).rejects.toMatchObject({
      violations: expect.arrayContaining([
        'accountId must be 1-64 characters of [A-Za-z0-9_-]',
        'amountCents must be an integer number',
      ]) as unknown,
    });
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
