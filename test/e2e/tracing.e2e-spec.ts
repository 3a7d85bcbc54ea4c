import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes, randomUUID } from 'node:crypto';
import { type INestApplication, Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { context, propagation, type SpanContext, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { Registry } from 'prom-client';
import {
  type MessageContext,
  MessageHandler,
  MessageProcessorHealth,
  MessageProcessorModule,
  MessagePublisher,
} from '../../src/index.js';
import type { MessageLogFields } from '../../src/messaging/message.context.js';
import { TestDatabase } from './support/postgres.database.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { TestBroker } from './support/test-app.js';
import { waitFor } from './support/wait-for.js';

const tag = randomBytes(3).toString('hex');
const EXCHANGE = `trace-probe-${tag}`;
const EVENTS = `trace-events-${tag}`;
const FAILING = `trace-failing-${tag}`;
const ORDERS = `trace-orders-${tag}`;
const ACCEPTED = `trace-accepted-${tag}`;

@Injectable()
class TracedProbe {
  readonly accepted = new Map<string, MessageLogFields>();

  @MessageHandler({
    exchange: EXCHANGE,
    routingKey: 'fail.#',
    queue: FAILING,
    retry: { maxAttempts: 2, initialDelayMs: 50, jitter: 0 },
  })
  fail(): void {
    throw new Error('downstream broken');
  }

  @MessageHandler({
    exchange: EXCHANGE,
    routingKey: 'order.placed',
    queue: ORDERS,
    effect: { kind: 'postgres-commit' },
  })
  async place(payload: { orderId: string }, ctx: MessageContext): Promise<void> {
    if (!ctx.transaction) throw new Error('no transaction');
    await ctx.transaction.publish(EVENTS, 'order.accepted', payload, {
      messageId: `accepted-${payload.orderId}`,
    });
  }

  @MessageHandler({ exchange: EVENTS, routingKey: 'order.accepted', queue: ACCEPTED })
  accept(payload: { orderId: string }, ctx: MessageContext): void {
    this.accepted.set(payload.orderId, ctx.logFields);
  }
}

/**
 * Trace context through the message path, with the SDK an application would register (here an
 * in-memory exporter): publish → consume → retry → dead letter, and through the outbox relay.
 */
describe('tracing (real RabbitMQ, Redis and PostgreSQL; in-memory span exporter)', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  let vhost: TestVhost;
  let broker: TestBroker;
  let db: TestDatabase;
  let app: INestApplication;

  const spansOf = (traceId: string): ReadableSpan[] =>
    exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
  const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId;
  /** The one span of the trace named `name` whose parent is `parent`. */
  const childOf = (traceId: string, parent: SpanContext, name: string): ReadableSpan => {
    const found = spansOf(traceId).filter((s) => s.name === name && parentOf(s) === parent.spanId);
    expect(found, `${name} under ${parent.spanId}`).toHaveLength(1);
    return found[0];
  };
  /** Publishes from within a span of the test (an upstream service's); returns its context. */
  const publishTraced = async (routingKey: string, payload: unknown): Promise<SpanContext> => {
    const upstream = trace.getTracer('test').startSpan('upstream request');
    await context.with(trace.setSpan(context.active(), upstream), () =>
      app.get(MessagePublisher).publish(EXCHANGE, routingKey, payload),
    );
    upstream.end();
    return upstream.spanContext();
  };

  beforeAll(async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(provider);
    vhost = await TestVhost.create('tracing');
    broker = await TestBroker.connect(vhost.url());
    db = await TestDatabase.create('tracing');
    const moduleRef = await Test.createTestingModule({
      imports: [
        MessageProcessorModule.forRoot({
          amqp: { urls: vhost.url(), prefetch: 10 },
          redis: { url: 'redis://127.0.0.1:6379' },
          postgres: { url: db.url() },
          metrics: { registry: new Registry() },
          logLevel: 'warn',
        }),
      ],
      providers: [TracedProbe],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    const health = app.get(MessageProcessorHealth);
    await waitFor('the module ready', async () => {
      const checks = await Promise.all(health.readiness().map(async (check) => check()));
      return checks.every((c) => Object.values(c)[0].status === 'up');
    });
  });

  afterAll(async () => {
    await app?.close();
    await broker?.close();
    await vhost?.delete();
    await db?.drop();
    await provider.shutdown();
    trace.disable();
    propagation.disable();
    context.disable();
  });

  it('links publish → consume → retry → consume → dead letter in one trace', async () => {
    const upstream = await publishTraced('fail.now', { n: 1 });
    const [deadLetter] = await broker.drain(`${FAILING}.dlq`, 1);
    const { traceId } = upstream;
    await waitFor('the second attempt span ended', () =>
      spansOf(traceId).some(
        (s) => s.name === `process ${FAILING}` && s.attributes['message_processor.attempt'] === 2,
      ),
    );
    const publish = childOf(traceId, upstream, `publish ${EXCHANGE}`);
    expect(publish.kind).toBe(SpanKind.PRODUCER);
    expect(publish.attributes).toMatchObject({
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'send',
      'messaging.destination.name': EXCHANGE,
      'messaging.rabbitmq.destination.routing_key': 'fail.now',
    });
    const first = childOf(traceId, publish.spanContext(), `process ${FAILING}`);
    expect(first.kind).toBe(SpanKind.CONSUMER);
    expect(first.attributes).toMatchObject({
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'process',
      'messaging.destination.subscription.name': FAILING,
      'message_processor.attempt': 1,
      'message_processor.outcome': 'retry',
    });
    expect(first.events.map((e) => e.name)).toEqual(
      expect.arrayContaining(['exception', 'settled']),
    );
    const handler = childOf(traceId, first.spanContext(), 'handler TracedProbe.fail');
    expect(handler.status.message).toBe('downstream broken');
    // the retry copy is published in the first attempt's context: the second attempt is its child
    const retry = childOf(traceId, first.spanContext(), `publish ${FAILING}.retry.1`);
    const second = childOf(traceId, retry.spanContext(), `process ${FAILING}`);
    expect(second.attributes).toMatchObject({
      'message_processor.attempt': 2,
      'message_processor.outcome': 'dead_letter',
    });
    const dead = childOf(traceId, second.spanContext(), `publish ${EXCHANGE}.dlx`);
    // the dead letter carries the trace on: whoever replays it continues it
    expect(String(deadLetter.properties.headers?.traceparent)).toBe(
      `00-${traceId}-${dead.spanContext().spanId}-01`,
    );
  });

  it('continues the trace through the outbox: handler → relay → the event’s consumer', async () => {
    const orderId = randomUUID();
    const upstream = await publishTraced('order.placed', { orderId });
    const probe = app.get(TracedProbe);
    const fields = await waitFor('the event consumed', () => probe.accepted.get(orderId));
    const { traceId } = upstream;
    const publish = childOf(traceId, upstream, `publish ${EXCHANGE}`);
    const consume = childOf(traceId, publish.spanContext(), `process ${ORDERS}`);
    const handler = childOf(traceId, consume.spanContext(), 'handler TracedProbe.place');
    // the row was written in the handler's span; the relay publishes it in that context
    const relayed = childOf(traceId, handler.spanContext(), `publish ${EVENTS}`);
    expect(relayed.attributes).toMatchObject({
      'messaging.message.id': `accepted-${orderId}`,
      'messaging.rabbitmq.destination.routing_key': 'order.accepted',
    });
    await waitFor('the event’s consumer span ended', () =>
      spansOf(traceId).some((s) => s.name === `process ${ACCEPTED}`),
    );
    const event = childOf(traceId, relayed.spanContext(), `process ${ACCEPTED}`);
    // the handler's log fields name the trace and its delivery span
    expect(fields).toMatchObject({ trace_id: traceId, span_id: event.spanContext().spanId });
  });
});
