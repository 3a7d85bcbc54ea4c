import 'reflect-metadata';
import { writeFile } from 'node:fs/promises';
import { NestFactory } from '@nestjs/core';
import { buildAsyncApi, serviceInfo } from '../asyncapi/asyncapi.document.js';
import { MessageHandlerExplorer } from '../messaging/message-handler.explorer.js';
import { packageVersion } from '../package-version.js';

const USAGE = `npm run asyncapi [-- --out <file>|-]

Writes the service's AsyncAPI 3 document (what GET /asyncapi.json serves) to docs/asyncapi.json,
or to <file>, or to stdout with "-". The application is created but not started: it consumes
nothing and declares nothing (its clients connect and close; no broker is needed).`;

/**
 * `npm run asyncapi`: the document of the service's handlers, from the same modules main.ts
 * runs, configured by the same environment (DATABASE_URL and LEDGER_STORE choose the ledger's
 * handler), without the lifecycle hooks that connect and consume.
 */
async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const at = argv.indexOf('--out');
  const out = at === -1 ? 'docs/asyncapi.json' : argv[at + 1];
  if (out === undefined || (at === -1 && argv.length > 0)) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  // the modules' own lines (connections) say nothing useful here; set LOG_LEVEL to see them
  process.env.LOG_LEVEL ??= 'silent';
  const { AppModule } = await import('../app.module.js');
  const app = await NestFactory.create(AppModule, { logger: false, abortOnError: false });
  try {
    const document = buildAsyncApi(
      app.get(MessageHandlerExplorer).explore(),
      serviceInfo(packageVersion()),
    );
    const text = `${JSON.stringify(document, null, 2)}\n`;
    if (out === '-') process.stdout.write(text);
    else {
      await writeFile(out, text);
      process.stderr.write(`wrote ${out}\n`);
    }
    return 0;
  } finally {
    await app.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`asyncapi: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
