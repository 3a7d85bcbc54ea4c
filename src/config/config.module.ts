import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { ALL_CONFIG } from './app.config.js';

/**
 * Typed configuration namespaces for the whole app. The environment is validated once in
 * `main.ts` before Nest starts (exit 1 with every bad variable named); each namespace
 * re-reads the validated values so tests can set `process.env` before building a module.
 */
@Module({
  imports: [ConfigModule.forRoot({ isGlobal: true, ignoreEnvFile: true, load: ALL_CONFIG })],
})
export class AppConfigModule {}
