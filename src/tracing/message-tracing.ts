import {
  type Attributes,
  type Context,
  context,
  INVALID_SPAN_CONTEXT,
  isSpanContextValid,
  propagation,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  trace,
  TraceFlags,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import type { MessagePropertyHeaders } from 'amqplib';

/**
 * Tracing of the message path with `@opentelemetry/api` only (docs/architecture.md, "Tracing"):
 * without an SDK registered every call here is the API's no-op (no span is recorded, nothing is
 * injected), and the service starts one only when the `OTEL_*` variables ask for it.
 *
 * Spans follow OpenTelemetry's messaging semantic conventions: a PRODUCER span per publish
 * (`publish <exchange>`), whose context travels in the `traceparent`/`tracestate` headers; a
 * CONSUMER span per delivery (`process <queue>`), child of the context its headers carry; an
 * INTERNAL span around the handler; the lock wait and the settlement as events of the consumer
 * span. A retry or dead-letter copy is a publish in the consumer span's context, so the next
 * attempt (or the dead letter) is its descendant in the same trace.
 */
export const TRACER_NAME = 'message-processor';

/** The tracer of the package (a proxy until an SDK registers a provider). */
export function tracer(): Tracer {
  // the API's global provider makes a new proxy tracer per call while no SDK is registered: one
  // per message on every publish and delivery. The global provider object changes only when
  // tracing is disabled and registered anew, so the tracer is kept for as long as it is the same.
  const provider = trace.getTracerProvider();
  if (provider !== cached.provider) {
    cached.provider = provider;
    cached.tracer = provider.getTracer(TRACER_NAME);
  }
  return cached.tracer;
}

const cached: { provider: TracerProvider | undefined; tracer: Tracer } = {
  provider: undefined,
  tracer: trace.getTracer(TRACER_NAME),
};

/**
 * The API's own no-op provider: what its global proxy provider delegates to until an SDK (the
 * service's or the host application's) registers one. `getDelegate()` is public on the proxy,
 * which the API marks deprecated for its next major version (docs/architecture.md, "Internals
 * inventory"; test/unit/tracing/message-tracing.spec.ts fails if this stops holding).
 */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();

/**
 * Whether no tracer provider is registered: every span started now would be the API's no-op.
 * False whenever that is not certain (a provider of another copy of the API, say).
 */
function noProvider(): boolean {
  const provider = trace.getTracerProvider();
  return provider instanceof ProxyTracerProvider && provider.getDelegate() === NOOP_PROVIDER;
}

/** The span the API's no-op tracer starts under a context that carries none: never recording. */
const NO_SPAN = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/**
 * A delivery's trace when nothing can be recorded or continued: no provider, and headers that
 * carry no trace context (or no propagator to read them). What the API's no-op would return,
 * made once instead of per message: two spans, two contexts, an async frame and three id checks
 * a message (docs/benchmarks.md, "Tracing off costs nothing").
 */
const UNTRACED: { readonly span: Span; readonly context: Context } = {
  span: NO_SPAN,
  context: trace.setSpan(ROOT_CONTEXT, NO_SPAN),
};

/** Reads trace context from AMQP headers (strings, or the buffers other clients may send). */
const headerGetter: TextMapGetter<Readonly<MessagePropertyHeaders>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const value = carrier[key] as unknown;
    if (typeof value === 'string') return value;
    if (Buffer.isBuffer(value)) return value.toString('utf8');
    return undefined;
  },
};

const headerSetter: TextMapSetter<Record<string, unknown>> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

/** The context the headers of a message carry (the root context when they carry none). */
export function extractContext(headers: Readonly<MessagePropertyHeaders> | undefined): Context {
  return headers ? propagation.extract(ROOT_CONTEXT, headers, headerGetter) : ROOT_CONTEXT;
}

/**
 * Writes `ctx`'s trace context into `headers` (replacing what was there): a no-op without a
 * registered propagator, so a copy keeps the headers of its original then.
 */
export function injectContext(ctx: Context, headers: Record<string, unknown>): void {
  propagation.inject(ctx, headers, headerSetter);
}

/** The ids to put on log lines, when the span belongs to a trace. */
export function traceLogFields(span: Span): TraceIds | undefined {
  if (span === NO_SPAN) return undefined;
  const spanContext = span.spanContext();
  return isSpanContextValid(spanContext)
    ? { trace_id: spanContext.traceId, span_id: spanContext.spanId }
    : undefined;
}

/** The ids that link a log line or a metric's exemplar to a span (lowercase hex). */
export interface TraceIds {
  readonly trace_id: string;
  readonly span_id: string;
}

/**
 * The ids of a span whose trace is sampled (exported, so a metric's exemplar can link to it);
 * undefined for an unsampled or invalid one.
 */
export function sampledIds(span: Span): TraceIds | undefined {
  if (span === NO_SPAN) return undefined;
  const spanContext = span.spanContext();
  return (spanContext.traceFlags & TraceFlags.SAMPLED) !== 0 && isSpanContextValid(spanContext)
    ? { trace_id: spanContext.traceId, span_id: spanContext.spanId }
    : undefined;
}

/** What a consumer span is started with. */
export interface DeliveryTraceInfo {
  readonly queue: string;
  /** The exchange it was first published to, and with which routing key. */
  readonly exchange: string;
  readonly routingKey: string;
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly bodySize: number;
  readonly deliveryTag: number;
  readonly attempt: number;
  readonly handler: string;
}

/** The CONSUMER span of one delivery, child of the context its headers carry. */
export function startDeliverySpan(
  parent: Context,
  info: DeliveryTraceInfo,
): { span: Span; context: Context } {
  if (parent === ROOT_CONTEXT && noProvider()) return UNTRACED;
  const span = tracer().startSpan(`process ${info.queue}`, { kind: SpanKind.CONSUMER }, parent);
  if (span.isRecording()) {
    const attributes: Attributes = {
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'process',
      'messaging.destination.name': info.exchange,
      'messaging.destination.subscription.name': info.queue,
      'messaging.rabbitmq.destination.routing_key': info.routingKey,
      'messaging.rabbitmq.message.delivery_tag': info.deliveryTag,
      'messaging.message.body.size': info.bodySize,
      'message_processor.attempt': info.attempt,
      'message_processor.handler': info.handler,
    };
    if (info.messageId !== undefined) attributes['messaging.message.id'] = info.messageId;
    if (info.correlationId !== undefined) {
      attributes['messaging.message.conversation_id'] = info.correlationId;
    }
    span.setAttributes(attributes);
  }
  return { span, context: trace.setSpan(parent, span) };
}

/**
 * Runs `work` in a span of its own (`handler <id>`), child of `parent`. Under the untraced
 * delivery context (no provider when the delivery started), `work` runs as it is, without a span
 * or an async frame around it, like its delivery (so a synchronous throw of `work` is thrown
 * here: the caller awaits this inside an async function, where that is a rejection).
 */
export function inHandlerSpan<T>(
  parent: Context,
  handler: string,
  work: () => Promise<T>,
): Promise<T> {
  if (parent === UNTRACED.context) return work();
  return inNewHandlerSpan(parent, handler, work);
}

async function inNewHandlerSpan<T>(
  parent: Context,
  handler: string,
  work: () => Promise<T>,
): Promise<T> {
  const span = tracer().startSpan(`handler ${handler}`, { kind: SpanKind.INTERNAL }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), work);
  } catch (error) {
    recordFailure(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/** An event on the delivery's span: the lock wait ended (`acquired`, or `processed` already). */
export function lockWaited(parent: Context, result: string, waitStartedAt: number): void {
  const span = trace.getSpan(parent);
  if (!span?.isRecording()) return;
  span.addEvent(`lock ${result}`, {
    'message_processor.lock.wait_ms': Math.round((performance.now() - waitStartedAt) * 1000) / 1000,
  });
}

/** Marks a span failed with the error as an exception event. */
export function recordFailure(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  if (error instanceof Error) {
    span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
  } else {
    span.setStatus({ code: SpanStatusCode.ERROR, message: String(error) });
  }
}

/** What a PRODUCER span is started with. */
export interface PublishTraceInfo {
  readonly exchange: string;
  readonly routingKey: string;
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  readonly bodySize: number;
}

/**
 * The PRODUCER span of one publish, child of the active context, and the trace headers that
 * carry its context (to merge over the message's own). Undefined when nothing is traced.
 */
export function startPublishSpan(
  info: PublishTraceInfo,
): { span: Span; headers: Record<string, unknown> } | undefined {
  const active = context.active();
  // no provider and no span to continue: the no-op span would carry nothing to inject
  if (noProvider() && trace.getSpan(active) === undefined) return undefined;
  const destination = info.exchange === '' ? info.routingKey : info.exchange;
  const span = tracer().startSpan(`publish ${destination}`, { kind: SpanKind.PRODUCER }, active);
  if (!isSpanContextValid(span.spanContext())) return undefined;
  if (span.isRecording()) {
    const attributes: Attributes = {
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'publish',
      'messaging.destination.name': info.exchange,
      'messaging.rabbitmq.destination.routing_key': info.routingKey,
      'messaging.message.body.size': info.bodySize,
    };
    if (info.messageId !== undefined) attributes['messaging.message.id'] = info.messageId;
    if (info.correlationId !== undefined) {
      attributes['messaging.message.conversation_id'] = info.correlationId;
    }
    span.setAttributes(attributes);
  }
  const headers: Record<string, unknown> = {};
  injectContext(trace.setSpan(active, span), headers);
  return { span, headers };
}

/** Runs `work` with `ctx` active (the relay publishes each row in the context it was written in). */
export function withContext<T>(ctx: Context, work: () => T): T {
  return context.with(ctx, work);
}

/** The active context (where an outbox row is written: its trace continues from there). */
export function activeContext(): Context {
  return context.active();
}
