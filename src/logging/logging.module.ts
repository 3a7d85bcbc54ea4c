import { Module } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import { LoggerModule } from 'nestjs-pino';
import { stdSerializers } from 'pino';
import { amqpConfig, lockConfig, redisConfig, serverConfig } from '../config/app.config';
import { scrubError, secretsOf } from '../config/secret-redaction';

/**
 * JSON lines on stdout (nestjs-pino); pretty output for a terminal or `NODE_ENV=development`.
 * Errors are serialized with every configured credential scrubbed from their message and stack,
 * since client libraries sometimes echo the URL they were given.
 */
@Module({
  imports: [
    LoggerModule.forRootAsync({
      inject: [serverConfig.KEY, amqpConfig.KEY, redisConfig.KEY, lockConfig.KEY],
      useFactory: (
        server: ConfigType<typeof serverConfig>,
        amqp: ConfigType<typeof amqpConfig>,
        redis: ConfigType<typeof redisConfig>,
        lock: ConfigType<typeof lockConfig>,
      ) => {
        const secrets = secretsOf([...amqp.urls, redis.url, ...lock.redlockUrls]);
        return {
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
