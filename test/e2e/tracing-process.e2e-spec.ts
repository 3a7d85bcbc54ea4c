import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { freePort } from './support/redis.server.js';
import { TestVhost } from './support/rabbitmq.vhost.js';
import { ServiceProcess } from './support/service.process.js';
import { TestBroker } from './support/test-app.js';
import { waitFor } from './support/wait-for.js';

const SECRET = 'otlp-token-5e1d';

interface OtlpValue {
  readonly stringValue?: string;
  readonly intValue?: number | string;
}
interface OtlpSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly name: string;
  readonly kind: number;
  readonly attributes: { key: string; value: OtlpValue }[];
}
interface OtlpExport {
  readonly resourceSpans: {
    resource: { attributes: { key: string; value: OtlpValue }[] };
    scopeSpans: { spans: OtlpSpan[] }[];
  }[];
}

/** A local OTLP/HTTP receiver (JSON encoding): what the service's exporter sent, and how. */
class OtlpReceiver {
  readonly exports: OtlpExport[] = [];
  readonly headers: IncomingHttpHeaders[] = [];
  private constructor(private readonly server: Server) {}

  static async start(port: number): Promise<OtlpReceiver> {
    const server = createServer();
    const receiver = new OtlpReceiver(server);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/v1/traces') {
          receiver.headers.push(req.headers);
          receiver.exports.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpExport);
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    return receiver;
  }

  spans(traceId: string): { span: OtlpSpan; service: string | undefined }[] {
    return this.exports.flatMap((e) =>
      e.resourceSpans.flatMap((r) => {
        const service = r.resource.attributes.find((a) => a.key === 'service.name')?.value
          .stringValue;
        return r.scopeSpans.flatMap((s) =>
          s.spans.filter((span) => span.traceId === traceId).map((span) => ({ span, service })),
        );
      }),
    );
  }

  async close(): Promise<void> {
    this.server.close();
    await once(this.server, 'close');
  }
}

/**
 * `node dist/main.js` with the standard `OTEL_*` variables: the service starts the SDK and sends
 * its spans over OTLP/HTTP (JSON) to a receiver the test runs, continuing the publisher's trace.
 */
describe('tracing in the service process (OTLP/HTTP to a local receiver)', () => {
  let vhost: TestVhost;
  let broker: TestBroker;
  let receiver: OtlpReceiver;
  let otlpPort: number;
  const started: ServiceProcess[] = [];

  beforeAll(async () => {
    vhost = await TestVhost.create('otlp');
    broker = await TestBroker.connect(vhost.url());
    otlpPort = await freePort();
    receiver = await OtlpReceiver.start(otlpPort);
  });

  afterAll(async () => {
    started.forEach((p) => p.kill());
    await receiver?.close();
    await broker?.close();
    await vhost?.delete();
  });

  it('exits 1 naming a protocol it does not ship, before connecting anywhere', async () => {
    const service = ServiceProcess.start({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4317',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_TRACES_SAMPLER: 'sometimes',
    });
    started.push(service);
    expect(await service.exitCode()).toBe(1);
    expect(service.stderr).toContain(
      'OTEL_EXPORTER_OTLP_PROTOCOL="grpc": expected http/protobuf or http/json',
    );
    expect(service.stderr).toContain('OTEL_TRACES_SAMPLER="sometimes": expected one of always_on');
  });

  it("continues the publisher's trace: its consumer and handler spans reach the collector", async () => {
    const service = ServiceProcess.start({
      AMQP_URL: vhost.url(),
      HTTP_PORT: '0',
      LOG_LEVEL: 'debug',
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${otlpPort}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer ${SECRET}`,
      OTEL_SERVICE_NAME: 'ledger-under-test',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    started.push(service);
    await waitFor('the service listening', () => service.httpPort, 30_000);
    await waitFor('the service ready', async () => {
      const res = await fetch(`http://127.0.0.1:${service.httpPort}/health/ready`);
      return res.status === 200;
    });
    expect(service.stdout).toContain(`Tracing on: OTLP http/json to http://127.0.0.1:${otlpPort}`);

    // an upstream service's span, sampled, in the W3C header it would send
    const traceId = randomBytes(16).toString('hex');
    const upstreamSpanId = randomBytes(8).toString('hex');
    const accountId = `otlp-${randomBytes(4).toString('hex')}`;
    await broker.publish(
      'ledger',
      'transaction.created',
      JSON.stringify({ accountId, amountCents: 7 }),
      {
        messageId: `otlp-${traceId}`,
        contentType: 'application/json',
        headers: { traceparent: `00-${traceId}-${upstreamSpanId}-01` },
      },
    );
    const consumer = await waitFor('the consumer span at the collector', () =>
      receiver.spans(traceId).find((s) => s.span.name === 'process ledger.transactions'),
    );
    expect(consumer.service).toBe('ledger-under-test');
    expect(consumer.span.parentSpanId).toBe(upstreamSpanId);
    expect(consumer.span.kind).toBe(5); // SPAN_KIND_CONSUMER
    const attribute = (span: OtlpSpan, key: string): OtlpValue | undefined =>
      span.attributes.find((a) => a.key === key)?.value;
    expect(attribute(consumer.span, 'messaging.system')?.stringValue).toBe('rabbitmq');
    expect(attribute(consumer.span, 'messaging.message.id')?.stringValue).toBe(`otlp-${traceId}`);
    expect(attribute(consumer.span, 'message_processor.outcome')?.stringValue).toBe('ack');
    const handler = await waitFor('the handler span', () =>
      receiver.spans(traceId).find((s) => s.span.name === 'handler LedgerHandler.apply'),
    );
    expect(handler.span.parentSpanId).toBe(consumer.span.spanId);
    // the handler's own log line names the trace and the delivery's span
    const line = service.stdout
      .split('\n')
      .find((l) => l.includes(accountId) && l.includes('transaction applied'));
    expect(line && JSON.parse(line)).toMatchObject({
      trace_id: traceId,
      span_id: consumer.span.spanId,
    });
    expect(receiver.headers[0]?.authorization).toBe(`Bearer ${SECRET}`);

    // the metrics link to the trace: OpenMetrics, the message's duration bucket names its span
    const scrape = await fetch(`http://127.0.0.1:${service.httpPort}/metrics`);
    expect(scrape.headers.get('content-type')).toContain('application/openmetrics-text');
    const exposition = await scrape.text();
    const exemplars = exposition
      .split('\n')
      .filter((l) => l.startsWith('message_processing_duration_seconds_bucket{le='))
      .filter((l) =>
        l.includes('queue="ledger.transactions",handler="LedgerHandler.apply",outcome="ack"'),
      )
      .filter((l) => l.includes(' # {'));
    expect(exemplars).toHaveLength(1);
    expect(exemplars[0]).toContain(`# {trace_id="${traceId}",span_id="${consumer.span.spanId}"}`);
    expect(exposition.endsWith('# EOF\n')).toBe(true);

    service.kill('SIGTERM');
    expect(await service.exitCode()).toBe(0);
    expect(service.stdout + service.stderr).not.toContain(SECRET);
  });
});
