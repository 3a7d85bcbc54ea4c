import 'reflect-metadata';
import { AppModule } from './app.module';
import { bootstrap } from './bootstrap';

bootstrap(AppModule).catch((error: unknown) => {
  process.stderr.write(
    `Failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
