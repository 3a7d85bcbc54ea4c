import { Module } from '@nestjs/common';
import { AppConfigModule } from './config/config.module.js';
import { loadEnv } from './config/env.schema.js';
import { HealthModule } from './health/health.module.js';
import { LedgerModule } from './ledger/ledger.module.js';
import { LoggingModule } from './logging/logging.module.js';
import { MessageProcessorModule } from './message-processor.module.js';
import { optionsFromEnv } from './message-processor.options.js';
import { MetricsEndpointModule } from './metrics/metrics-endpoint.module.js';

/**
 * The runnable service: the package configured from the environment, with its own logging
 * (nestjs-pino), `/metrics`, `/health/live` and `/health/ready`, and the example ledger.
 */
@Module({
  imports: [
    AppConfigModule,
    MessageProcessorModule.forRootAsync({ useFactory: () => optionsFromEnv(loadEnv()) }),
    LoggingModule,
    MetricsEndpointModule,
    HealthModule,
    LedgerModule,
  ],
})
export class AppModule {}
