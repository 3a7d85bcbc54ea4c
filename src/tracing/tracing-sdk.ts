import type { EnvIssue } from '../config/env.schema.js';
import { redactUrl } from '../config/secret-redaction.js';

/**
 * The service's OpenTelemetry SDK, started from the standard `OTEL_*` variables
 * (docs/architecture.md, "Tracing"). The package's library code never loads this file: it uses
 * `@opentelemetry/api` only, and an application brings its own SDK.
 *
 * Tracing is on when the variables ask for it: an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`
 * or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or an explicit `OTEL_TRACES_EXPORTER` (`otlp`,
 * `console`), and not `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. Without them the
 * SDK is not even imported.
 */
export interface TracingSettings {
  readonly exporter: 'otlp' | 'console';
  readonly protocol: 'http/protobuf' | 'http/json';
  /** The traces endpoint as configured (for the startup line; credentials redacted). */
  readonly endpoint: string;
  readonly sampler: Sampler;
  readonly samplerArg: number;
  readonly propagators: readonly ('tracecontext' | 'baggage')[];
  /** How long spans wait to be exported in a batch (`OTEL_BSP_SCHEDULE_DELAY`, default 5000 ms). */
  readonly exportDelayMs: number;
}

const SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;
type Sampler = (typeof SAMPLERS)[number];

type Env = Readonly<Record<string, string | undefined>>;

/** What the `OTEL_*` variables ask for: off (undefined), settings, or what is wrong with them. */
export function tracingSettings(env: Env): {
  settings: TracingSettings | undefined;
  issues: EnvIssue[];
} {
  const issues: EnvIssue[] = [];
  const value = (name: string): string | undefined => {
    const raw = env[name]?.trim();
    return raw === undefined || raw === '' ? undefined : raw;
  };
  const fail = (variable: string, accepts: string, received: string): void => {
    issues.push({ variable, accepts, received: JSON.stringify(received) });
  };
  if (value('OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return { settings: undefined, issues };
  const endpoint =
    value('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? value('OTEL_EXPORTER_OTLP_ENDPOINT');
  const exporterName = value('OTEL_TRACES_EXPORTER')?.toLowerCase();
  if (exporterName === 'none' || (exporterName === undefined && endpoint === undefined)) {
    return { settings: undefined, issues };
  }
  if (exporterName !== undefined && exporterName !== 'otlp' && exporterName !== 'console') {
    fail('OTEL_TRACES_EXPORTER', 'one of otlp, console, none', exporterName);
  }
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT']) {
    const url = value(name);
    if (url === undefined) continue;
    let ok: boolean;
    try {
      ok = ['http:', 'https:'].includes(new URL(url).protocol);
    } catch {
      ok = false;
    }
    if (!ok) fail(name, 'an http:// or https:// URL', redactUrl(url));
  }
  const protocolVariable = value('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL')
    ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'
    : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = value(protocolVariable) ?? 'http/protobuf';
  if (protocol !== 'http/protobuf' && protocol !== 'http/json') {
    fail(
      protocolVariable,
      protocol === 'grpc'
        ? 'http/protobuf or http/json (this service does not ship the gRPC exporter)'
        : 'http/protobuf or http/json',
      protocol,
    );
  }
  const sampler = (value('OTEL_TRACES_SAMPLER')?.toLowerCase() ??
    'parentbased_always_on') as Sampler;
  if (!SAMPLERS.includes(sampler))
    fail('OTEL_TRACES_SAMPLER', `one of ${SAMPLERS.join(', ')}`, sampler);
  const rawArg = value('OTEL_TRACES_SAMPLER_ARG');
  const samplerArg = rawArg === undefined ? 1 : Number(rawArg);
  if (sampler.endsWith('traceidratio') && !(samplerArg >= 0 && samplerArg <= 1)) {
    fail(
      'OTEL_TRACES_SAMPLER_ARG',
      'a number from 0 to 1 (the share of traces sampled)',
      rawArg ?? '',
    );
  }
  const propagators: ('tracecontext' | 'baggage')[] = [];
  for (const name of (value('OTEL_PROPAGATORS') ?? 'tracecontext,baggage').split(',')) {
    const propagator = name.trim().toLowerCase();
    if (propagator === 'tracecontext' || propagator === 'baggage') propagators.push(propagator);
    else if (propagator !== 'none' && propagator !== '') {
      fail('OTEL_PROPAGATORS', 'a comma-separated list of tracecontext, baggage, none', name);
    }
  }
  const rawDelay = value('OTEL_BSP_SCHEDULE_DELAY');
  const exportDelayMs = rawDelay === undefined ? 5_000 : Number(rawDelay);
  if (!Number.isSafeInteger(exportDelayMs) || exportDelayMs < 1 || exportDelayMs > 600_000) {
    fail('OTEL_BSP_SCHEDULE_DELAY', 'an integer from 1 to 600000 (milliseconds)', rawDelay ?? '');
  }
  if (issues.length > 0) return { settings: undefined, issues };
  return {
    settings: {
      exporter: exporterName === 'console' ? 'console' : 'otlp',
      protocol: protocol as TracingSettings['protocol'],
      endpoint:
        endpoint === undefined
          ? 'http://localhost:4318'
          : endpoint.includes('@')
            ? redactUrl(endpoint)
            : endpoint,
      sampler,
      samplerArg,
      propagators,
      exportDelayMs,
    },
    issues,
  };
}

/** The running SDK: flushed and stopped after the application closed. */
export interface TracingHandle {
  shutdown(): Promise<void>;
}

/**
 * Starts the SDK: a tracer provider with a batch span processor and the configured exporter
 * (which reads the endpoint, headers and timeout from the `OTEL_EXPORTER_OTLP_*` variables
 * itself), the sampler, the W3C propagators, and an AsyncLocalStorage context manager (the
 * active span follows the awaits of a handler). The resource is `service.name`
 * `message-processor` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` say otherwise.
 */
export async function startTracing(
  settings: TracingSettings,
  serviceVersion: string,
): Promise<TracingHandle> {
  const api = await import('@opentelemetry/api');
  const sdk = await import('@opentelemetry/sdk-trace');
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
  const core = await import('@opentelemetry/core');
  const resources = await import('@opentelemetry/resources');
  const exporter =
    settings.exporter === 'console'
      ? new sdk.ConsoleSpanExporter()
      : settings.protocol === 'http/json'
        ? new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter()
        : new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter();
  const ratio = new sdk.TraceIdRatioBasedSampler(settings.samplerArg);
  const sampler = {
    always_on: () => new sdk.AlwaysOnSampler(),
    always_off: () => new sdk.AlwaysOffSampler(),
    traceidratio: () => ratio,
    parentbased_always_on: () => new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() }),
    parentbased_always_off: () => new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() }),
    parentbased_traceidratio: () => new sdk.ParentBasedSampler({ root: ratio }),
  }[settings.sampler]();
  const resource = resources
    .resourceFromAttributes({
      'service.name': 'message-processor',
      'service.version': serviceVersion,
    })
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  const provider = new sdk.TracerProvider({
    resource,
    sampler,
    spanProcessors: [
      new sdk.BatchSpanProcessor({ exporter, scheduledDelayMillis: settings.exportDelayMs }),
    ],
  });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  api.context.setGlobalContextManager(contextManager);
  api.propagation.setGlobalPropagator(
    new core.CompositePropagator({
      propagators: settings.propagators.map((name) =>
        name === 'tracecontext'
          ? new core.W3CTraceContextPropagator()
          : new core.W3CBaggagePropagator(),
      ),
    }),
  );
  api.trace.setGlobalTracerProvider(provider);
  return {
    shutdown: async () => {
      await provider.shutdown();
      api.trace.disable();
      api.propagation.disable();
      api.context.disable();
    },
  };
}
