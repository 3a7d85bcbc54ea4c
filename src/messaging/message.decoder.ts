import type { MessageProperties } from 'amqplib';
import { MAX_JSON_DEPTH } from './messaging.constants.js';
import { MessageDecodeError } from './messaging.errors.js';

export type DecodeResult =
  | { readonly ok: true; readonly payload: unknown }
  | { readonly ok: false; readonly error: MessageDecodeError };

const utf8 = new TextDecoder('utf-8', { fatal: true });
const ACCEPTED_ENCODINGS = new Set(['identity', 'utf-8', 'utf8']);

/**
 * Turns a delivery body into a JSON value, or says precisely why it cannot: the checks run
 * cheapest first and the size limit is enforced before anything is parsed. Producers may omit
 * the content type (plain JSON from any client is accepted); a different one is refused.
 */
export function decodeMessage(
  content: Buffer,
  properties: Pick<MessageProperties, 'contentType' | 'contentEncoding'>,
  maxBytes: number,
): DecodeResult {
  if (content.length > maxBytes) {
    return fail('too-large', `body is ${content.length} bytes, MESSAGE_MAX_BYTES is ${maxBytes}`);
  }
  const contentType = properties.contentType as string | undefined;
  if (contentType !== undefined && contentType !== '' && !isJsonContentType(contentType)) {
    return fail('content-type', `content type "${contentType}" is not application/json`);
  }
  const encoding = properties.contentEncoding as string | undefined;
  if (
    encoding !== undefined &&
    encoding !== '' &&
    !ACCEPTED_ENCODINGS.has(encoding.toLowerCase())
  ) {
    return fail('content-encoding', `content encoding "${encoding}" is not supported`);
  }
  if (content.length === 0) return fail('empty-body', 'the body is empty');
  let text: string;
  try {
    text = utf8.decode(content);
  } catch {
    return fail('not-utf8', 'the body is not valid UTF-8');
  }
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch (error) {
    // blank is the only failure worth its own kind; checked here, not on every valid body
    if (text.trim().length === 0) return fail('empty-body', 'the body is blank');
    return fail('not-json', error instanceof Error ? error.message : 'invalid JSON');
  }
  // one walk of the parsed value checks depth and keys: JSON.parse itself is iterative, and the
  // value has far fewer nodes than the text has characters (a scan of the text cost more than
  // the parse); keys spelled with \u escapes arrive here decoded
  const refused = typeof payload === 'object' && payload !== null ? inspect(payload, 1) : undefined;
  return refused ? { ok: false, error: refused } : { ok: true, payload };
}

function fail(kind: MessageDecodeError['kind'], detail: string): DecodeResult {
  return { ok: false, error: new MessageDecodeError(kind, detail) };
}

function isJsonContentType(value: string): boolean {
  if (value === 'application/json') return true;
  const mediaType = value.split(';', 1)[0].trim().toLowerCase();
  return mediaType === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(mediaType);
}

/**
 * Why a parsed JSON container at nesting `depth` (1 for the top level) is refused: nesting deeper
 * than {@link MAX_JSON_DEPTH}, or a key that reaches an object's prototype when the payload is
 * later merged or transformed (`__proto__`, which JSON.parse keeps as a plain own property, or
 * `constructor` holding a `prototype`). Undefined when it is fine.
 */
function inspect(value: object, depth: number): MessageDecodeError | undefined {
  if (depth > MAX_JSON_DEPTH) {
    return new MessageDecodeError('too-deep', `nesting deeper than ${MAX_JSON_DEPTH} levels`);
  }
  if (Array.isArray(value)) {
    for (const item of value as unknown[]) {
      if (typeof item === 'object' && item !== null) {
        const refused = inspect(item, depth + 1);
        if (refused) return refused;
      }
    }
    return undefined;
  }
  for (const key in value) {
    if (key === '__proto__') return forbidden(key);
    const item = (value as Record<string, unknown>)[key];
    if (typeof item === 'object' && item !== null) {
      if (key === 'constructor' && Object.hasOwn(item, 'prototype')) return forbidden(key);
      const refused = inspect(item, depth + 1);
      if (refused) return refused;
    }
  }
  return undefined;
}

function forbidden(key: string): MessageDecodeError {
  return new MessageDecodeError('forbidden-key', `key "${key}" is not allowed`);
}
