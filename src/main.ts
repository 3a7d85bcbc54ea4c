import 'reflect-metadata';
import type { Server } from 'node:http';
import { NestFactory } from '@nestjs/core';
import { Logger } from 'nestjs-pino';
import { AppModule } from './app.module';
import { serverConfig } from './config/app.config';
import { ConfigValidationError, validateEnv } from './config/env.schema';
import { type ConfigType } from '@nestjs/config';

const SHUTDOWN_SIGNALS = ['SIGTERM', 'SIGINT'] as const;

async function bootstrap(): Promise<void> {
  const { issues } = validateEnv(process.env);
  if (issues.length > 0) {
    process.stderr.write(`${new ConfigValidationError(issues).message}\n`);
    process.exit(1);
  }
  const app = await NestFactory.create(AppModule, { bufferLogs: true });
  const logger = app.get(Logger);
  app.useLogger(logger);
  process.on('unhandledRejection', (reason) => {
    logger.error(
      { err: reason, code: 'UNHANDLED_REJECTION' },
      'Unhandled promise rejection',
      'Bootstrap',
    );
  });

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
      closing = app.close().then(
        () => process.exit(0),
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

bootstrap().catch((error: unknown) => {
  process.stderr.write(
    `Failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
