import { checkHaUrl, redisUrlKind } from '../config/redis-url.js';
import { redactUrl } from '../config/secret-redaction.js';
import { ENV_DEFAULTS } from '../config/env.schema.js';
import { CliUsageError } from './cli.errors.js';

/** The environment as the CLIs read it (`process.env`, or a plain object in tests). */
export type CliEnv = Readonly<Record<string, string | undefined>>;

const AMQP_PROTOCOLS = ['amqp:', 'amqps:'];
const REDIS_PROTOCOLS = ['redis:', 'rediss:'];
const POSTGRES_PROTOCOLS = ['postgres:', 'postgresql:'];
/** AMQP 0-9-1 short strings (exchange, queue, routing key) are at most 255 bytes. */
const MAX_SHORT_STRING_BYTES = 255;

/**
 * Runs `util.parseArgs` and turns its errors (unknown option, missing value, stray positional)
 * into a `CliUsageError`, so the caller prints one clear line and the usage.
 */
export function withUsageErrors<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (isParseArgsError(err)) throw new CliUsageError(err.message, { cause: err });
    throw err;
  }
}

/** By shape, not `instanceof`: Node's own errors may come from another realm when a test runner loads modules in a VM context. */
function isParseArgsError(err: unknown): err is { code: string; message: string } {
  return (
    typeof err === 'object' &&
    err !== null &&
    'code' in err &&
    typeof err.code === 'string' &&
    err.code.startsWith('ERR_PARSE_ARGS') &&
    'message' in err &&
    typeof err.message === 'string'
  );
}

/** A required whole number in `[min, max]`. */
export function requireInteger(
  flag: string,
  raw: string | undefined,
  min: number,
  max: number,
): number {
  if (raw === undefined) throw new CliUsageError(`${flag} is required`);
  return parseInteger(flag, raw, min, max);
}

/** An optional whole number in `[min, max]`; `fallback` when the option is absent. */
export function optionalInteger(
  flag: string,
  raw: string | undefined,
  min: number,
  max: number,
  fallback: number,
): number;
export function optionalInteger(
  flag: string,
  raw: string | undefined,
  min: number,
  max: number,
): number | undefined;
export function optionalInteger(
  flag: string,
  raw: string | undefined,
  min: number,
  max: number,
  fallback?: number,
): number | undefined {
  return raw === undefined ? fallback : parseInteger(flag, raw, min, max);
}

function parseInteger(flag: string, raw: string, min: number, max: number): number {
  const value = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new CliUsageError(`${flag} must be a whole number from ${min} to ${max} (got "${raw}")`);
  }
  return value;
}

/** An optional finite number greater than 0 (e.g. a rate in messages per second). */
export function optionalPositiveNumber(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const value = /^\d*\.?\d+$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
  if (!Number.isFinite(value) || value <= 0) {
    throw new CliUsageError(`${flag} must be a number greater than 0 (got "${raw}")`);
  }
  return value;
}

/** An exchange, queue or routing key: at most 255 bytes. */
export function shortString(flag: string, value: string, allowEmpty: boolean): string {
  if (!allowEmpty && value.length === 0) throw new CliUsageError(`${flag} must not be empty`);
  if (Buffer.byteLength(value) > MAX_SHORT_STRING_BYTES) {
    throw new CliUsageError(`${flag} must be at most ${MAX_SHORT_STRING_BYTES} bytes`);
  }
  return value;
}

/**
 * The broker URL: `--url`, else `AMQP_URL`, else the default. A comma-separated list (the
 * service's cluster failover form) gives its first node; a CLI run does not need failover.
 */
export function resolveAmqpUrl(flag: string | undefined, env: CliEnv): string {
  const [source, raw] =
    flag !== undefined
      ? ['--url', flag]
      : ['AMQP_URL', nonEmpty(env.AMQP_URL) ?? ENV_DEFAULTS.AMQP_URL];
  return checkedUrl(source, firstOfList(raw), AMQP_PROTOCOLS);
}

/**
 * The Redis URL: `--redis-url`, else `REDIS_URL`, else the default. A `redis+sentinel://` or
 * `redis+cluster://` URL is checked by its own parser.
 */
export function resolveRedisUrl(flag: string | undefined, env: CliEnv): string {
  const [source, raw] =
    flag !== undefined
      ? ['--redis-url', flag]
      : ['REDIS_URL', nonEmpty(env.REDIS_URL) ?? ENV_DEFAULTS.REDIS_URL];
  const url = raw.trim();
  if (redisUrlKind(url) !== 'server') {
    try {
      checkHaUrl(url);
    } catch (error) {
      throw new CliUsageError(`${source}: ${(error as Error).message} (got ${redactUrl(url)})`);
    }
    return url;
  }
  return checkedUrl(source, url, REDIS_PROTOCOLS);
}

/** Where the ledger keeps its balances, as `--verify` reads them. */
export type BalanceStore =
  | { readonly kind: 'redis'; readonly url: string }
  | { readonly kind: 'postgres'; readonly url: string };

/**
 * The store `--verify` reads: `--store`, else `LEDGER_STORE`, else Redis; PostgreSQL at
 * `--database-url`, else `DATABASE_URL` (required then).
 */
export function resolveBalanceStore(
  flags: { store?: string; databaseUrl?: string; redisUrl?: string },
  env: CliEnv,
): BalanceStore {
  const [source, kind] =
    flags.store !== undefined
      ? ['--store', flags.store]
      : ['LEDGER_STORE', nonEmpty(env.LEDGER_STORE) ?? 'redis'];
  if (kind === 'redis') return { kind, url: resolveRedisUrl(flags.redisUrl, env) };
  if (kind !== 'postgres') {
    throw new CliUsageError(`${source} must be redis or postgres, got ${JSON.stringify(kind)}`);
  }
  const [urlSource, raw] =
    flags.databaseUrl !== undefined
      ? ['--database-url', flags.databaseUrl]
      : ['DATABASE_URL', nonEmpty(env.DATABASE_URL)];
  if (raw === undefined) {
    throw new CliUsageError(`${source}=postgres needs --database-url or DATABASE_URL`);
  }
  return { kind, url: checkedUrl(urlSource, raw.trim(), POSTGRES_PROTOCOLS) };
}

/** `MESSAGE_MAX_BYTES`, the service's body limit, which oversize test messages must exceed. */
export function resolveMessageMaxBytes(env: CliEnv): number {
  const raw = nonEmpty(env.MESSAGE_MAX_BYTES);
  return raw === undefined
    ? ENV_DEFAULTS.MESSAGE_MAX_BYTES
    : parseInteger('MESSAGE_MAX_BYTES', raw, 1, 100 * 1024 * 1024);
}

function firstOfList(raw: string): string {
  return (
    raw
      .split(',')
      .map((part) => part.trim())
      .find((part) => part.length > 0) ?? ''
  );
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim().length === 0 ? undefined : value;
}

function checkedUrl(source: string, url: string, protocols: readonly string[]): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CliUsageError(`${source} is not a valid URL (${redactUrl(url)})`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new CliUsageError(
      `${source} must start with ${protocols.map((p) => `${p}//`).join(' or ')} (got ${redactUrl(url)})`,
    );
  }
  return url;
}
