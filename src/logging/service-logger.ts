import { Logger as NestLogger } from '@nestjs/common';
import { pino, type DestinationStream, type Level, type Logger, stdSerializers } from 'pino';
import type { LogLevel } from '../config/env.schema.js';
import { scrubError } from '../config/secret-redaction.js';

/**
 * The injection token of the root pino logger every part of the package logs through (each
 * takes a child with its `context`). With nestjs-pino in the application it is nestjs-pino's own
 * root logger: one stream, one format, one redaction for the application's lines and ours.
 * Without it, {@link nestLoggerBridge}: the same lines handed to the application's Nest logger.
 */
export const MESSAGE_PROCESSOR_LOGGER = Symbol('message-processor:logger');

/** A child of `root` whose lines carry `context` (as nestjs-pino's `PinoLogger` sets it). */
export function contextLogger(root: Logger, context: string): Logger {
  return root.child({ context });
}

const NEST_METHOD: Record<Level, 'verbose' | 'debug' | 'log' | 'warn' | 'error' | 'fatal'> = {
  trace: 'verbose',
  debug: 'debug',
  info: 'log',
  warn: 'warn',
  error: 'error',
  fatal: 'fatal',
};

/**
 * A pino logger whose lines go to the application's Nest logger (whatever `app.useLogger` set,
 * else Nest's console logger): the message as the message, the other fields as one JSON object
 * after it, the `context` field as Nest's context. Logging is off the per-message path (debug
 * lines are checked with `isLevelEnabled` first), so the parse per line costs nothing that
 * matters. Errors are serialized with `secrets` (the configured URLs' credentials) scrubbed.
 */
export function nestLoggerBridge(level: LogLevel, secrets: readonly string[]): Logger {
  const destination: DestinationStream = {
    write(line: string): void {
      const record = JSON.parse(line) as Record<string, unknown>;
      const { level: levelLabel, msg, context, ...fields } = record;
      const method = NEST_METHOD[levelLabel as Level] ?? 'log';
      const text = typeof msg === 'string' ? msg : '';
      const message = Object.keys(fields).length > 0 ? `${text} ${JSON.stringify(fields)}` : text;
      new NestLogger(typeof context === 'string' ? context : 'MessageProcessor')[method](message);
    },
  };
  return pino(
    {
      level,
      base: undefined,
      timestamp: false,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: (err: Error) => scrubError(stdSerializers.err(err), secrets) },
    },
    destination,
  );
}
