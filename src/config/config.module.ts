import { Global, Module } from '@nestjs/common';
import { serverConfig, serverSection } from './app.config.js';
import { loadEnv } from './env.schema.js';

/**
 * The runnable service's own settings (`HTTP_PORT`, `LOG_LEVEL`, `LOG_FORMAT`, `LEDGER_STORE`),
 * read from the environment validated in `bootstrap` (tests set `process.env` before building
 * the module). The package's settings go through `MessageProcessorModule`'s options.
 */
@Global()
@Module({
  providers: [{ provide: serverConfig.KEY, useFactory: () => serverSection(loadEnv()) }],
  exports: [serverConfig.KEY],
})
export class AppConfigModule {}
