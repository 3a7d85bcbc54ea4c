import type { MessageProperties } from 'amqplib';
import { MAX_JSON_DEPTH } from './messaging.constants';
import { MessageDecodeError } from './messaging.errors';

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
    payload = hasSuspiciousKey(text) ? JSON.parse(text, rejectPrototypeKeys) : JSON.parse(text);
  } catch (error) {
    if (error instanceof MessageDecodeError) return { ok: false, error };
    // blank is the only failure worth its own kind; checked here, not on every valid body
    if (text.trim().length === 0) return fail('empty-body', 'the body is blank');
    return fail('not-json', error instanceof Error ? error.message : 'invalid JSON');
  }
  if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) {
    return fail('too-deep', `nesting deeper than ${MAX_JSON_DEPTH} levels`);
  }
  return { ok: true, payload };
}

function fail(kind: MessageDecodeError['kind'], detail: string): DecodeResult {
  return { ok: false, error: new MessageDecodeError(kind, detail) };
}

function isJsonContentType(value: string): boolean {
  if (value === 'application/json') return true;
  const mediaType = value.split(';', 1)[0].trim().toLowerCase();
  return mediaType === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(mediaType);
}

// Only pay for a reviver when a dangerous key can be present at all (also spelled with \u escapes).
function hasSuspiciousKey(text: string): boolean {
  return text.includes('__proto__') || text.includes('prototype') || text.includes('\\u');
}

function rejectPrototypeKeys(this: unknown, key: string, value: unknown): unknown {
  if (key === '__proto__' || (key === 'constructor' && isObjectWith(value, 'prototype'))) {
    throw new MessageDecodeError('forbidden-key', `key "${key}" is not allowed`);
  }
  return value;
}

function isObjectWith(value: unknown, key: string): boolean {
  return typeof value === 'object' && value !== null && Object.hasOwn(value, key);
}

/** Depth of `[`/`{` nesting in valid JSON text, skipping string contents. */
function jsonDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}
