import { Module, RequestMethod } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import { LoggerModule } from 'nestjs-pino';
import { stdSerializers } from 'pino';
import {
  amqpConfig,
  lockConfig,
  postgresConfig,
  redisConfig,
  serverConfig,
} from '../config/app.config.js';
import { scrubError, secretsOf } from '../config/secret-redaction.js';

/** The service's HTTP routes: health probes and the Prometheus scrape. */
const PROBE_ROUTES = ['health/live', 'health/ready', 'metrics'];

/**
 * JSON lines on stdout (nestjs-pino); pretty output for a terminal or `NODE_ENV=development`.
 * Errors are serialized with every configured credential scrubbed from their message and stack,
 * since client libraries sometimes echo the URL they were given.
 */
@Module({
  imports: [
    LoggerModule.forRootAsync({
      inject: [
        serverConfig.KEY,
        amqpConfig.KEY,
        redisConfig.KEY,
        lockConfig.KEY,
        postgresConfig.KEY,
      ],
      useFactory: (
        server: ConfigType<typeof serverConfig>,
        amqp: ConfigType<typeof amqpConfig>,
        redis: ConfigType<typeof redisConfig>,
        lock: ConfigType<typeof lockConfig>,
        postgres: ConfigType<typeof postgresConfig>,
      ) => {
        const secrets = secretsOf([
          ...amqp.urls,
          redis.url,
          ...lock.redlockUrls,
          ...(postgres.url === undefined ? [] : [postgres.url]),
        ]);
        return {
          // No request-scoped logger for the probes and the scrape: binding one runs each request
          // in an AsyncLocalStorage, and the first such run turns on promise hooks for the whole
          // process, a tax on every promise of every message (5 % of the CPU in the profile).
          // These routes log nothing per request anyway.
          exclude: PROBE_ROUTES.map((path) => ({ path, method: RequestMethod.ALL })),
          pinoHttp: {
            level: server.logLevel,
            autoLogging: { ignore: (req) => /^\/(health|metrics)/.test(req.url ?? '') },
            redact: ['req.headers.authorization', 'req.headers.cookie'],
            serializers: {
              err: (err: Error) => scrubError(stdSerializers.err(err), secrets),
            },
            transport:
              server.logFormat === 'pretty'
                ? {
                    target: 'pino-pretty',
                    options: { singleLine: true, translateTime: 'SYS:HH:MM:ss.l' },
                  }
                : undefined,
          },
        };
      },
    }),
  ],
})
export class LoggingModule {}
