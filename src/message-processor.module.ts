import {
  type ConfigurableModuleAsyncOptions,
  ConfigurableModuleBuilder,
  type DynamicModule,
  Module,
} from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import type { Logger } from 'pino';
import type { Registry, RegistryContentType } from 'prom-client';
import {
  amqpConfig,
  amqpSection,
  lockConfig,
  lockSection,
  postgresConfig,
  postgresSection,
  processingConfig,
  processingSection,
  redisConfig,
  redisSection,
  type RedisSettings,
} from './config/app.config.js';
import type { AppEnv } from './config/env.schema.js';
import { secretsOf } from './config/secret-redaction.js';
import { HealthIndicatorsModule } from './health/health-indicators.module.js';
import { LockModule } from './lock/lock.module.js';
import { MESSAGE_PROCESSOR_LOGGER, nestLoggerBridge } from './logging/service-logger.js';
import { type MessageProcessorOptions, resolveOptions } from './message-processor.options.js';
import { MessagingModule } from './messaging/messaging.module.js';
import { METRICS_REGISTRY } from './metrics/metric-providers.js';
import { MetricsModule } from './metrics/metrics.module.js';
import { PostgresModule } from './postgres/postgres.module.js';
import { RedisModule } from './redis/redis.module.js';

/** The validated configuration the options resolve to. */
const RESOLVED_CONFIGURATION = Symbol('message-processor:configuration');

const { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN } =
  new ConfigurableModuleBuilder<MessageProcessorOptions>({ moduleName: 'MessageProcessor' })
    .setClassMethodName('forRoot')
    .build();

/**
 * RabbitMQ consumers for the application's `@MessageHandler` methods, with locks, retries,
 * dead-lettering, metrics and health, configured by options (never `process.env`):
 *
 *     MessageProcessorModule.forRoot({ amqp: { urls: 'amqp://…' }, redis: { url: 'redis://…' } })
 *     MessageProcessorModule.forRootAsync({ inject: [ConfigService], useFactory: (c) => ({ … }) })
 *
 * Global: `MessagePublisher`, `PostgresTransactions`, `LockService` and the health indicators
 * (`MessageProcessorHealth`) can be injected anywhere. Handlers are found among the
 * application's providers. Logs go through nestjs-pino when the application has it, else to its
 * Nest logger; metrics are registered on the application's registry (`metrics.registry`) or
 * prom-client's default one (the application serves them); shutdown follows the application's
 * (`app.enableShutdownHooks()`).
 */
@Module({})
export class MessageProcessorModule extends ConfigurableModuleClass {
  static override forRoot(options: MessageProcessorOptions): DynamicModule {
    return withInternals(super.forRoot(options));
  }

  static override forRootAsync(
    options: ConfigurableModuleAsyncOptions<MessageProcessorOptions>,
  ): DynamicModule {
    return withInternals(super.forRootAsync(options));
  }
}

const SECTIONS = [
  [amqpConfig.KEY, amqpSection],
  [processingConfig.KEY, processingSection],
  [lockConfig.KEY, lockSection],
  [postgresConfig.KEY, postgresSection],
] as const;

function withInternals(base: DynamicModule): DynamicModule {
  return {
    ...base,
    global: true,
    imports: [
      ...(base.imports ?? []),
      MetricsModule,
      RedisModule,
      LockModule,
      MessagingModule,
      PostgresModule,
      HealthIndicatorsModule,
    ],
    providers: [
      ...(base.providers ?? []),
      {
        provide: RESOLVED_CONFIGURATION,
        inject: [MODULE_OPTIONS_TOKEN],
        useFactory: resolveOptions,
      },
      ...SECTIONS.map(([token, section]) => ({
        provide: token,
        inject: [RESOLVED_CONFIGURATION],
        useFactory: section,
      })),
      {
        provide: redisConfig.KEY,
        inject: [RESOLVED_CONFIGURATION, MODULE_OPTIONS_TOKEN],
        useFactory: (env: AppEnv, options: MessageProcessorOptions): RedisSettings => ({
          ...redisSection(env),
          client: options.redis?.client,
        }),
      },
      {
        provide: METRICS_REGISTRY,
        inject: [MODULE_OPTIONS_TOKEN],
        useFactory: (options: MessageProcessorOptions): Registry<RegistryContentType> | undefined =>
          options.metrics?.registry,
      },
      {
        provide: MESSAGE_PROCESSOR_LOGGER,
        inject: [RESOLVED_CONFIGURATION, { token: PinoLogger, optional: true }],
        useFactory: (env: AppEnv, pinoLogger?: PinoLogger): Logger =>
          pinoLogger
            ? pinoLogger.logger
            : nestLoggerBridge(
                env.logLevel,
                secretsOf([
                  ...env.amqpUrls,
                  env.redisUrl,
                  ...env.redisLockUrls,
                  ...(env.databaseUrl === undefined ? [] : [env.databaseUrl]),
                ]),
              ),
      },
    ],
    exports: [
      ...SECTIONS.map(([token]) => token),
      redisConfig.KEY,
      MESSAGE_PROCESSOR_LOGGER,
      METRICS_REGISTRY,
      LockModule,
      MessagingModule,
      HealthIndicatorsModule,
    ],
  };
}
