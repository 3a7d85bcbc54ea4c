import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { type INestApplication, Injectable, Module } from '@nestjs/common';
import { Parser } from '@asyncapi/parser';
import { Type } from 'class-transformer';
import { IsIn, IsInt, IsOptional, IsString, IsUUID, Min, ValidateNested } from 'class-validator';
import { MessageHandler } from '../../src/index.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { http, startApp } from './support/test-app.js';

const QUEUE = `orders-${randomBytes(3).toString('hex')}`;

class OrderLine {
  @IsString()
  sku!: string;

  @IsInt()
  @Min(1)
  quantity!: number;
}

class OrderPlaced {
  @IsUUID()
  orderId!: string;

  @IsIn(['web', 'store'])
  channel!: string;

  @ValidateNested({ each: true })
  @Type(() => OrderLine)
  lines!: OrderLine[];

  @IsOptional()
  @IsString()
  note?: string;
}

class OrderAccepted {
  @IsUUID()
  orderId!: string;
}

@Injectable()
class OrderHandlers {
  @MessageHandler({
    exchange: 'orders',
    routingKey: 'order.placed',
    queue: QUEUE,
    retry: { maxAttempts: 3, initialDelayMs: 1_000 },
    description: 'Reserves the stock of a new order',
    publishes: [
      { exchange: 'orders.events', routingKey: 'order.accepted', payload: OrderAccepted },
    ],
  })
  place(_order: OrderPlaced): void {}
}

@Module({ providers: [OrderHandlers] })
class OrdersModule {}

type Doc = {
  channels: Record<string, { address: string; bindings: { amqp: Record<string, unknown> } }>;
  operations: Record<string, { action: string; summary?: string; channel: { $ref: string } }>;
  components: { schemas: Record<string, Record<string, unknown>> };
};

/**
 * The service's `GET /asyncapi.json`: the real AppModule (the ledger's handler) plus a module of
 * the test's own, checked with the official AsyncAPI parser and for what it must say.
 */
describe('AsyncAPI document (GET /asyncapi.json)', () => {
  let vhost: TestVhost;
  let app: INestApplication;
  let body: string;
  let doc: Doc;

  beforeAll(async () => {
    vhost = await TestVhost.create('asyncapi');
    app = await startApp({ AMQP_URL: vhost.url() }, [OrdersModule]);
    const res = await http(app).get('/asyncapi.json').expect(200);
    body = res.text;
    doc = JSON.parse(body) as Doc;
  });

  afterAll(async () => {
    await app?.close();
    await vhost?.delete();
  });

  it('is a valid AsyncAPI 3 document for the official parser, without warnings', async () => {
    const diagnostics = await new Parser().validate(body);
    // severity 0 is an error, 1 a warning
    expect(diagnostics.filter((d) => Number(d.severity) <= 1)).toEqual([]);
    const { document } = await new Parser().parse(body);
    expect(document?.version()).toBe('3.0.0');
  });

  it("describes each handler's channel and operation, and what it publishes", () => {
    expect(doc.channels['orders.order.placed']).toMatchObject({
      address: 'order.placed',
      bindings: { amqp: { is: 'routingKey', exchange: { name: 'orders', type: 'topic' } } },
    });
    expect(doc.operations[`receive.OrderHandlers.place.order.placed`]).toMatchObject({
      action: 'receive',
      summary: 'Reserves the stock of a new order',
    });
    expect(doc.operations['send.OrderHandlers.place.orders.events.order.accepted']).toMatchObject({
      action: 'send',
      channel: { $ref: '#/channels/orders.events.order.accepted' },
    });
    // the service's own ledger handler is there too
    expect(doc.channels['ledger.transaction._']?.address).toBe('transaction.*');
  });

  it('includes the retry tiers and the dead-letter queue of each queue', () => {
    expect(doc.channels[`${QUEUE}.retry.1`]?.bindings.amqp).toMatchObject({
      is: 'queue',
      queue: { name: `${QUEUE}.retry.1` },
    });
    expect(doc.channels[`${QUEUE}.dlq`]?.bindings.amqp).toMatchObject({
      is: 'queue',
      queue: { name: `${QUEUE}.dlq` },
    });
    expect(doc.operations[`deadLetter.${QUEUE}`]?.action).toBe('send');
  });

  it('gives payloads the JSON Schema of their validation decorators', () => {
    expect(doc.components.schemas.OrderPlaced).toEqual({
      type: 'object',
      title: 'OrderPlaced',
      properties: {
        orderId: { type: 'string', format: 'uuid' },
        channel: { enum: ['web', 'store'] },
        lines: {
          type: 'array',
          items: {
            type: 'object',
            title: 'OrderLine',
            properties: { sku: { type: 'string' }, quantity: { type: 'integer', minimum: 1 } },
            required: ['quantity', 'sku'],
          },
        },
        note: { type: 'string' },
      },
      required: ['channel', 'lines', 'orderId'],
    });
    expect(doc.components.schemas.TransactionDto).toMatchObject({
      properties: {
        accountId: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' },
        amountCents: { type: 'integer' },
      },
      required: ['accountId', 'amountCents'],
    });
  });
});
