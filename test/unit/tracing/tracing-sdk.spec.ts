import { describe, it, expect } from 'vitest';
import { tracingSettings } from '../../../src/tracing/tracing-sdk.js';

describe('tracingSettings (the OTEL_* variables)', () => {
  it('leaves tracing off when nothing asks for it, or when told off', () => {
    expect(tracingSettings({})).toEqual({ settings: undefined, issues: [] });
    expect(tracingSettings({ OTEL_SERVICE_NAME: 'ledger' }).settings).toBeUndefined();
    for (const off of [
      { OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' },
      { OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' },
    ]) {
      expect(tracingSettings(off)).toEqual({ settings: undefined, issues: [] });
    }
  });

  it('turns on with an endpoint: OTLP over http/protobuf, parent-based always-on, W3C propagation', () => {
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toEqual({
      settings: {
        exporter: 'otlp',
        protocol: 'http/protobuf',
        endpoint: 'http://collector:4318',
        sampler: 'parentbased_always_on',
        samplerArg: 1,
        propagators: ['tracecontext', 'baggage'],
        exportDelayMs: 5_000,
      },
      issues: [],
    });
  });

  it('reads the traces-specific variables first, and the sampler with its ratio', () => {
    const { settings } = tracingSettings({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://all:4318',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces:4318/v1/traces',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_TRACES_SAMPLER: 'ParentBased_TraceIdRatio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_PROPAGATORS: 'tracecontext',
      OTEL_BSP_SCHEDULE_DELAY: '200',
    });
    expect(settings).toMatchObject({
      protocol: 'http/json',
      endpoint: 'https://traces:4318/v1/traces',
      sampler: 'parentbased_traceidratio',
      samplerArg: 0.25,
      propagators: ['tracecontext'],
      exportDelayMs: 200,
    });
  });

  it('names every bad variable, with a password in an endpoint redacted', () => {
    const { settings, issues } = tracingSettings({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://user:hunter2@collector',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_TRACES_EXPORTER: 'zipkin',
      OTEL_TRACES_SAMPLER: 'traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '1.5',
      OTEL_PROPAGATORS: 'tracecontext,b3',
      OTEL_BSP_SCHEDULE_DELAY: 'soon',
    });
    expect(settings).toBeUndefined();
    expect(issues.map((i) => i.variable)).toEqual([
      'OTEL_TRACES_EXPORTER',
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      'OTEL_EXPORTER_OTLP_PROTOCOL',
      'OTEL_TRACES_SAMPLER_ARG',
      'OTEL_PROPAGATORS',
      'OTEL_BSP_SCHEDULE_DELAY',
    ]);
    expect(JSON.stringify(issues)).not.toContain('hunter2');
    expect(issues[2].accepts).toContain('does not ship the gRPC exporter');
  });

  it('keeps credentials of the endpoint out of what it reports', () => {
    const { settings } = tracingSettings({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'https://tenant:s3cret@collector.example:4318',
    });
    expect(settings?.endpoint).not.toContain('s3cret');
  });
});
