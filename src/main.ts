import 'reflect-metadata';
import { AppModule } from './app.module.js';
import { bootstrap } from './bootstrap.js';

bootstrap(AppModule).catch((error: unknown) => {
  process.stderr.write(
    `Failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
