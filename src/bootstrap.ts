import type { Server } from 'node:http';
import type { Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Logger } from 'nestjs-pino';
import { SHUTDOWN_BACKSTOP_MS } from './lifecycle/shutdown-step.js';
import { MessageConsumerService } from './messaging/message-consumer.service.js';
import { serveOpenMetrics } from './metrics/metrics-endpoint.module.js';
import { processingConfig, serverConfig } from './config/app.config.js';
import { ConfigValidationError, validateEnv } from './config/env.schema.js';
import { type ConfigType } from '@nestjs/config';
import { packageVersion } from './package-version.js';
import { startTracing, type TracingHandle, tracingSettings } from './tracing/tracing-sdk.js';

const SHUTDOWN_SIGNALS = ['SIGTERM', 'SIGINT'] as const;

/**
 * Runs a root module as the service: validates the environment (exit 1 naming every bad
 * variable), starts the app and its HTTP port, and owns SIGTERM/SIGINT. `main.ts` runs
 * `AppModule` with it; tests run the same code with extra handler modules.
 */
export async function bootstrap(rootModule: Type): Promise<void> {
  const tracing = tracingSettings(process.env);
  const issues = [...validateEnv(process.env).issues, ...tracing.issues];
  if (issues.length > 0) {
    process.stderr.write(`${new ConfigValidationError(issues).message}\n`);
    process.exit(1);
  }
  // before the app: the first delivery is traced too
  const tracer: TracingHandle | undefined = tracing.settings
    ? await startTracing(tracing.settings, packageVersion())
    : undefined;
  // with traces to link to, /metrics carries exemplars (before the app creates its metrics)
  if (tracing.settings) serveOpenMetrics();
  const app = await NestFactory.create(rootModule, { bufferLogs: true });
  const logger = app.get(Logger);
  app.useLogger(logger);
  if (tracing.settings) {
    const { exporter, protocol, endpoint, sampler, samplerArg } = tracing.settings;
    logger.log(
      {
        exporter,
        protocol,
        endpoint,
        sampler,
        ...(sampler.endsWith('traceidratio') ? { samplerArg } : {}),
        metricsFormat: 'openmetrics',
        code: 'TRACING_ON',
      },
      `Tracing on: ${exporter === 'otlp' ? `OTLP ${protocol} to ${endpoint}` : 'console'}`,
      'Bootstrap',
    );
  }
  process.on('unhandledRejection', (reason) => {
    logger.error(
      { err: reason, code: 'UNHANDLED_REJECTION' },
      'Unhandled promise rejection',
      'Bootstrap',
    );
  });

  const { shutdownTimeoutMs } = app.get<ConfigType<typeof processingConfig>>(processingConfig.KEY);
  // Our own signal handling instead of enableShutdownHooks(): a second signal during the drain
  // must not kill the process before messages are handed back and locks released.
  let closing: Promise<void> | undefined;
  for (const signal of SHUTDOWN_SIGNALS) {
    process.on(signal, () => {
      if (closing) {
        logger.warn(`${signal} received: shutdown already in progress`, 'Bootstrap');
        return;
      }
      logger.log(`${signal} received: shutting down`, 'Bootstrap');
      // last resort: every step is bounded, but nothing may keep the pod past its grace period
      const backstop = setTimeout(() => {
        logger.error(
          { code: 'SHUTDOWN_BACKSTOP', afterMs: shutdownTimeoutMs + SHUTDOWN_BACKSTOP_MS },
          'Shutdown did not finish in time; exiting',
          'Bootstrap',
        );
        process.exit(1);
      }, shutdownTimeoutMs + SHUTDOWN_BACKSTOP_MS);
      backstop.unref();
      closing = app
        .close()
        // the spans of the drain go out before the process ends
        .then(() => tracer?.shutdown().catch(() => undefined))
        .then(
          () => {
            const forced = app.get(MessageConsumerService).forcedByDeadline();
            if (forced > 0) {
              logger.warn(
                { forced, code: 'SHUTDOWN_FORCED' },
                `Exiting with code 1: ${forced} handler(s) were still running at the deadline`,
                'Bootstrap',
              );
            } else logger.log('Shutdown complete', 'Bootstrap');
            process.exit(forced > 0 ? 1 : 0);
          },
          (error: unknown) => {
            logger.error({ err: error, code: 'SHUTDOWN_FAILED' }, 'Shutdown failed', 'Bootstrap');
            process.exit(1);
          },
        );
    });
  }

  const { httpPort } = app.get<ConfigType<typeof serverConfig>>(serverConfig.KEY);
  await app.listen(httpPort);
  // the bound port: HTTP_PORT=0 lets the kernel choose one (tests, several instances on one host)
  const address = (app.getHttpServer() as Server).address();
  const port = typeof address === 'object' && address ? address.port : httpPort;
  logger.log(`HTTP on port ${String(port)}: /health/live, /health/ready, /metrics`, 'Bootstrap');
}
