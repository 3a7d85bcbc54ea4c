import type { Message, Options } from 'amqplib';

/** Dead-letter bookkeeping that must not follow a message back into its queue. */
export const REPLAY_STRIPPED_HEADERS: readonly string[] = [
  'x-failed-at',
  'x-first-failed-at',
  'x-last-failed-at',
  'x-handler',
  'x-death',
  'x-delivery-count',
  'x-acquired-count',
  // The replayed message starts its retries afresh.
  'x-attempts',
];

/**
 * `x-exception-*` is the service's failure report. `x-first-death-*` / `x-last-death-*` are the
 * broker's companions of `x-death`: left behind without it they would describe a death that the
 * message's new life does not have.
 */
export const REPLAY_STRIPPED_HEADER_PREFIXES: readonly string[] = [
  'x-exception-',
  'x-first-death-',
  'x-last-death-',
];

export const REPLAYED_AT_HEADER = 'x-replayed-at';
export const REPLAY_COUNT_HEADER = 'x-replay-count';
export const EXCEPTION_TYPE_HEADER = 'x-exception-type';
/** Why the broker dead-lettered a message first (`delivery_limit`, `expired`, `maxlen`...). */
export const FIRST_DEATH_REASON_HEADER = 'x-first-death-reason';
export const ORIGINAL_EXCHANGE_HEADER = 'x-original-exchange';
export const ORIGINAL_ROUTING_KEY_HEADER = 'x-original-routing-key';

type Headers = Readonly<Record<string, unknown>>;

/** Where a dead letter goes back to. */
export interface ReplayTarget {
  readonly exchange: string;
  readonly routingKey: string;
}

/** What the CLI prints about a dead letter. */
export interface DeadLetterSummary {
  readonly messageId: string | undefined;
  readonly exceptionType: string | undefined;
  readonly originalRoutingKey: string | undefined;
  readonly target: ReplayTarget;
}

/**
 * Where a dead letter was first published: the service's `x-original-*` headers; for a message the
 * broker dead-lettered itself (past the work queue's delivery limit), the x-death entry of the
 * work queue, which records the exchange and routing key it arrived with. Undefined when neither
 * says (or the message came into the queue through the default exchange).
 */
export function originOf(message: Message, queue: string): ReplayTarget | undefined {
  const headers = headersOf(message);
  const exchange = headerString(headers, ORIGINAL_EXCHANGE_HEADER);
  const routingKey = headerString(headers, ORIGINAL_ROUTING_KEY_HEADER);
  if (exchange !== undefined && routingKey !== undefined) return { exchange, routingKey };
  const death = deathIn(headers, queue);
  if (death === undefined || death.exchange === '') return undefined;
  return death;
}

/**
 * Where a dead letter goes back to: its origin ({@link originOf}); with `direct`, or when the
 * origin is unknown, the default exchange with the queue's name, which delivers straight to it.
 */
export function replayTargetOf(message: Message, queue: string, direct: boolean): ReplayTarget {
  const origin = originOf(message, queue);
  if (direct || origin === undefined) return { exchange: '', routingKey: queue };
  return origin;
}

/**
 * True when no filter is given, or when the `x-exception-type` header (the service's failure) or,
 * without one, the broker's `x-first-death-reason` (`delivery_limit`...) equals it.
 */
export function matchesExceptionType(message: Message, exceptionType: string | undefined): boolean {
  return exceptionType === undefined || failureTypeOf(message) === exceptionType;
}

/** The service's exception type, or the reason the broker dead-lettered the message. */
export function failureTypeOf(message: Message): string | undefined {
  const headers = headersOf(message);
  return (
    headerString(headers, EXCEPTION_TYPE_HEADER) ?? headerString(headers, FIRST_DEATH_REASON_HEADER)
  );
}

export function summarizeDeadLetter(message: Message, target: ReplayTarget): DeadLetterSummary {
  const headers = headersOf(message);
  return {
    messageId: stringOrUndefined(message.properties.messageId),
    exceptionType: failureTypeOf(message),
    originalRoutingKey: headerString(headers, ORIGINAL_ROUTING_KEY_HEADER),
    target,
  };
}

/**
 * The headers of the replayed copy: bookkeeping removed, replay time and count added, and the
 * origin recorded in `x-original-*` when only the broker's x-death knew it (the handler is chosen
 * by the original routing key, also for a copy published straight to the queue).
 */
export function replayHeaders(message: Message, now: Date, queue: string): Record<string, unknown> {
  const headers: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headersOf(message))) {
    const lower = name.toLowerCase();
    if (REPLAY_STRIPPED_HEADERS.includes(lower)) continue;
    if (REPLAY_STRIPPED_HEADER_PREFIXES.some((prefix) => lower.startsWith(prefix))) continue;
    headers[name] = value;
  }
  const origin = originOf(message, queue);
  if (origin !== undefined) {
    headers[ORIGINAL_EXCHANGE_HEADER] ??= origin.exchange;
    headers[ORIGINAL_ROUTING_KEY_HEADER] ??= origin.routingKey;
  }
  headers[REPLAYED_AT_HEADER] = now.toISOString();
  headers[REPLAY_COUNT_HEADER] = previousReplayCount(headersOf(message)) + 1;
  return headers;
}

/**
 * The headers of a copy that keeps a dead letter in its DLQ (not replayed this time): all of them,
 * but the counts the queue sets on delivery, which would read as deliveries of the copy.
 */
export function keptHeaders(message: Message): Record<string, unknown> {
  const headers: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headersOf(message))) {
    const lower = name.toLowerCase();
    if (lower === 'x-delivery-count' || lower === 'x-acquired-count') continue;
    headers[name] = value;
  }
  return headers;
}

/**
 * The publish options of the replayed copy: every property of the dead letter kept (body,
 * messageId, correlationId, contentType, timestamp…), persistent unless it was explicitly
 * transient, and `mandatory` so an unroutable copy comes back instead of vanishing.
 *
 * @param publishingUser the user we connect as; RabbitMQ rejects a `userId` that differs from it,
 *   so another user's `userId` is dropped rather than failing the publish.
 */
export function replayPublishOptions(
  message: Message,
  now: Date,
  publishingUser: string,
  queue: string,
): Options.Publish {
  return publishOptions(message, replayHeaders(message, now, queue), publishingUser);
}

/** The publish options of a copy that keeps a dead letter in its DLQ: the same message again. */
export function keptPublishOptions(message: Message, publishingUser: string): Options.Publish {
  return publishOptions(message, keptHeaders(message), publishingUser);
}

function publishOptions(
  message: Message,
  headers: Record<string, unknown>,
  publishingUser: string,
): Options.Publish {
  const p = message.properties;
  const options: Options.Publish = {
    headers,
    deliveryMode: numberOrUndefined(p.deliveryMode) ?? 2,
    mandatory: true,
  };
  const contentType = stringOrUndefined(p.contentType);
  const contentEncoding = stringOrUndefined(p.contentEncoding);
  const priority = numberOrUndefined(p.priority);
  const correlationId = stringOrUndefined(p.correlationId);
  const replyTo = stringOrUndefined(p.replyTo);
  const expiration = stringOrUndefined(p.expiration);
  const messageId = stringOrUndefined(p.messageId);
  const timestamp = numberOrUndefined(p.timestamp);
  const type = stringOrUndefined(p.type);
  const appId = stringOrUndefined(p.appId);
  const userId = stringOrUndefined(p.userId);
  if (contentType !== undefined) options.contentType = contentType;
  if (contentEncoding !== undefined) options.contentEncoding = contentEncoding;
  if (priority !== undefined) options.priority = priority;
  if (correlationId !== undefined) options.correlationId = correlationId;
  if (replyTo !== undefined) options.replyTo = replyTo;
  if (expiration !== undefined) options.expiration = expiration;
  if (messageId !== undefined) options.messageId = messageId;
  if (timestamp !== undefined) options.timestamp = timestamp;
  if (type !== undefined) options.type = type;
  if (appId !== undefined) options.appId = appId;
  if (userId !== undefined && userId === publishingUser) options.userId = userId;
  return options;
}

/** The x-death entry of `queue` (where the broker dead-lettered it), as exchange and routing key. */
function deathIn(headers: Headers, queue: string): ReplayTarget | undefined {
  const deaths = headers['x-death'];
  if (!Array.isArray(deaths)) return undefined;
  for (const entry of deaths as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    const death = entry as Record<string, unknown>;
    if (asString(death.queue) !== queue) continue;
    const exchange = asString(death.exchange);
    const keys = death['routing-keys'];
    const routingKey = Array.isArray(keys) ? asString(keys[0] as unknown) : undefined;
    if (exchange !== undefined && routingKey !== undefined) return { exchange, routingKey };
  }
  return undefined;
}

function previousReplayCount(headers: Headers): number {
  const raw = headers[REPLAY_COUNT_HEADER];
  const count = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number(raw) : 0;
  return Number.isSafeInteger(count) && count > 0 ? count : 0;
}

function headersOf(message: Message): Headers {
  return message.properties.headers ?? {};
}

/** amqplib decodes AMQP long strings to `string` but byte arrays to `Buffer`; accept both. */
function headerString(headers: Headers, name: string): string | undefined {
  return asString(headers[name]);
}

function asString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

function stringOrUndefined(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function numberOrUndefined(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}
