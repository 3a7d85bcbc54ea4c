import { afterEach, describe, expect, it } from 'vitest';
import { context, propagation, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import {
  extractContext,
  inHandlerSpan,
  sampledIds,
  startDeliverySpan,
  startPublishSpan,
  traceLogFields,
  withContext,
} from '../../../src/tracing/message-tracing.js';

const delivery = {
  queue: 'orders',
  exchange: 'shop',
  routingKey: 'order.placed',
  messageId: 'm-1',
  correlationId: 'm-1',
  bodySize: 12,
  deliveryTag: 1,
  attempt: 1,
  handler: 'OrdersHandler.place',
};
const publish = {
  exchange: 'shop',
  routingKey: 'order.placed',
  messageId: 'm-1',
  correlationId: 'm-1',
  bodySize: 12,
};
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const traceparent = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

/** A provider of the real SDK, registered globally as a host application or the service would. */
function registerProvider(): { provider: TracerProvider; exporter: InMemorySpanExporter } {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  return { provider, exporter };
}

// The untraced path relies on @opentelemetry/api's ProxyTracerProvider.getDelegate() returning
// the API's one no-op provider until a provider is registered (docs/architecture.md, "Internals
// inventory"): the identity checks below fail if that stops holding.
describe('message tracing without an SDK, and with one (the real @opentelemetry/api)', () => {
  afterEach(() => {
    trace.disable();
    propagation.disable();
    context.disable();
  });

  it('asks the API nothing per message while no provider is registered: one shared no-op trace, the handler called as it is', async () => {
    const first = startDeliverySpan(extractContext({}), delivery);
    const second = startDeliverySpan(extractContext(undefined), delivery);
    expect(second).toBe(first);
    expect(first.span.isRecording()).toBe(false);
    expect(traceLogFields(first.span)).toBeUndefined();
    expect(sampledIds(first.span)).toBeUndefined();
    expect(startPublishSpan(publish)).toBeUndefined();

    const work = Promise.resolve('done');
    // the very promise the handler returned: no span and no async frame around it
    expect(inHandlerSpan(first.context, delivery.handler, () => work)).toBe(work);
    await expect(inHandlerSpan(first.context, delivery.handler, () => work)).resolves.toBe('done');
  });

  it('records every span once a provider is registered, and stops again when it is gone', async () => {
    const { provider, exporter } = registerProvider();
    const traced = startDeliverySpan(ROOT_CONTEXT, delivery);
    expect(traced.span.isRecording()).toBe(true);
    expect(traceLogFields(traced.span)?.trace_id).toMatch(/^[0-9a-f]{32}$/);
    await expect(
      inHandlerSpan(traced.context, delivery.handler, () => Promise.resolve(7)),
    ).resolves.toBe(7);
    const published = withContext(traced.context, () => startPublishSpan(publish));
    expect(published?.span.isRecording()).toBe(true);
    published?.span.end();
    traced.span.end();
    await provider.forceFlush();
    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual([
      'handler OrdersHandler.place',
      'publish shop',
      'process orders',
    ]);

    trace.disable();
    const after = startDeliverySpan(ROOT_CONTEXT, delivery);
    expect(after.span.isRecording()).toBe(false);
    expect(startDeliverySpan(ROOT_CONTEXT, delivery)).toBe(after);
  });

  it('continues a trace the headers carry with a propagator but no provider, as the no-op tracer does', () => {
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    const traced = startDeliverySpan(extractContext({ traceparent }), delivery);
    expect(traced.span.isRecording()).toBe(false);
    expect(traceLogFields(traced.span)?.trace_id).toBe(TRACE_ID);
    // a copy published while handling it carries the same trace on
    const published = withContext(traced.context, () => startPublishSpan(publish));
    expect(String(published?.headers.traceparent)).toContain(TRACE_ID);
  });
});
