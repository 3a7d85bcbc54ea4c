import { describe, it, expect } from 'vitest';
import type { MessageProperties } from 'amqplib';
import { decodeMessage, type DecodeResult } from '../../../src/messaging/message.decoder.js';
import { MAX_JSON_DEPTH } from '../../../src/messaging/messaging.constants.js';
import { MessageDecodeError } from '../../../src/messaging/messaging.errors.js';

type Props = Pick<MessageProperties, 'contentType' | 'contentEncoding'>;

const JSON_PROPS: Props = { contentType: 'application/json', contentEncoding: undefined };
const MAX_BYTES = 1_024;

function decode(body: string | Buffer, props: Props = JSON_PROPS, maxBytes = MAX_BYTES) {
  return decodeMessage(typeof body === 'string' ? Buffer.from(body) : body, props, maxBytes);
}

function failure(result: DecodeResult): MessageDecodeError {
  if (result.ok)
    throw new Error(`expected a decode failure, got ${JSON.stringify(result.payload)}`);
  return result.error;
}

function nestedArrays(depth: number): string {
  return `${'['.repeat(depth)}${']'.repeat(depth)}`;
}

describe('decodeMessage', () => {
  describe('accepts', () => {
    it('a JSON object and returns it parsed', () => {
      expect(decode('{"accountId":"acc-42","amountCents":1250}')).toEqual({
        ok: true,
        payload: { accountId: 'acc-42', amountCents: 1250 },
      });
    });

    it('a body without a content type (plain JSON from any client)', () => {
      expect(decode('{"a":1}', { contentType: undefined, contentEncoding: undefined })).toEqual({
        ok: true,
        payload: { a: 1 },
      });
    });

    it.each(['application/json; charset=utf-8', 'application/vnd.x+json', 'Application/JSON'])(
      'content type %p',
      (contentType) => {
        expect(decode('[1,2]', { contentType, contentEncoding: undefined })).toEqual({
          ok: true,
          payload: [1, 2],
        });
      },
    );

    it.each(['identity', 'UTF-8', 'utf8'])('content encoding %p', (contentEncoding) => {
      expect(decode('true', { contentType: 'application/json', contentEncoding }).ok).toBe(true);
    });

    it('a body of exactly maxBytes', () => {
      const body = `"${'a'.repeat(MAX_BYTES - 2)}"`;
      expect(Buffer.byteLength(body)).toBe(MAX_BYTES);
      expect(decode(body).ok).toBe(true);
    });

    it('multi-byte UTF-8 text', () => {
      expect(decode('{"name":"Zoë – 東京"}')).toEqual({
        ok: true,
        payload: { name: 'Zoë – 東京' },
      });
    });
  });

  describe('refuses', () => {
    it('a body over maxBytes as too-large before trying to parse it', () => {
      const garbage = Buffer.alloc(MAX_BYTES + 1, 0x7b); // "{{{{…": would be not-json if parsed
      const error = failure(decode(garbage));
      expect(error).toBeInstanceOf(MessageDecodeError);
      expect(error.kind).toBe('too-large');
      expect(error.message).toBe(
        `too-large: body is ${MAX_BYTES + 1} bytes, MESSAGE_MAX_BYTES is ${MAX_BYTES}`,
      );
    });

    it('a non-JSON content type', () => {
      const error = failure(
        decode('{"a":1}', { contentType: 'text/plain', contentEncoding: undefined }),
      );
      expect(error.kind).toBe('content-type');
      expect(error.message).toContain('text/plain');
    });

    it('a compressed body', () => {
      const error = failure(
        decode('{"a":1}', { contentType: 'application/json', contentEncoding: 'gzip' }),
      );
      expect(error.kind).toBe('content-encoding');
      expect(error.message).toContain('gzip');
    });

    it.each<[string, Buffer]>([
      ['an empty body', Buffer.alloc(0)],
      ['a whitespace-only body', Buffer.from(' \n\t\r ')],
    ])('%s as empty-body', (_label, body) => {
      expect(failure(decode(body)).kind).toBe('empty-body');
    });

    it('invalid UTF-8 as not-utf8', () => {
      expect(failure(decode(Buffer.from([0xff, 0xfe, 0x00]))).kind).toBe('not-utf8');
    });

    it.each(['{oops', '{"accountId":"acc-42","amount', 'undefined', "{'a':1}"])(
      '%p as not-json',
      (body) => {
        const error = failure(decode(body));
        expect(error.kind).toBe('not-json');
        expect(error.message).toMatch(/^not-json: /);
      },
    );

    it(`nesting deeper than MAX_JSON_DEPTH (${MAX_JSON_DEPTH}) as too-deep`, () => {
      expect(MAX_JSON_DEPTH).toBe(64);
      expect(failure(decode(nestedArrays(MAX_JSON_DEPTH + 1))).kind).toBe('too-deep');
    });

    it('nesting of mixed objects and arrays deeper than MAX_JSON_DEPTH as too-deep', () => {
      const body = `${'{"a":['.repeat(33)}${']}'.repeat(33)}`; // 66 levels
      expect(failure(decode(body)).kind).toBe('too-deep');
    });

    it('nesting 200,000 levels deep as too-deep, not a stack overflow', () => {
      const body = nestedArrays(200_000);
      expect(failure(decode(body, JSON_PROPS, body.length)).kind).toBe('too-deep');
    });

    it('a forbidden key inside an array of objects as forbidden-key', () => {
      expect(failure(decode('[{"a":1},{"b":[{"__proto__":{}}]}]')).kind).toBe('forbidden-key');
    });

    it('a __proto__ key as forbidden-key', () => {
      const error = failure(decode('{"__proto__":{"x":1}}'));
      expect(error.kind).toBe('forbidden-key');
      expect(error.message).toContain('__proto__');
    });

    it('a nested constructor.prototype as forbidden-key', () => {
      expect(failure(decode('{"a":{"constructor":{"prototype":{}}}}')).kind).toBe('forbidden-key');
    });

    // JSON keys may be written with \u escapes: a check of the raw text alone would miss these.
    it.each(['{"\\u005f_proto__":{"x":1}}', '{"a":{"constructor":{"prot\\u006ftype":{}}}}'])(
      'a forbidden key spelled with \\u escapes (%s) as forbidden-key',
      (body) => {
        expect(failure(decode(body)).kind).toBe('forbidden-key');
      },
    );
  });

  describe('edge cases that are accepted', () => {
    it(`nesting of exactly MAX_JSON_DEPTH (${MAX_JSON_DEPTH})`, () => {
      const result = decode(nestedArrays(MAX_JSON_DEPTH));
      expect(result.ok).toBe(true);
    });

    it('brackets inside strings, which do not count toward the depth', () => {
      const brackets = '[{'.repeat(100);
      const result = decode(`{"note":"${brackets}","quoted":"\\"[[[[\\"","n":[[1]]}`);
      expect(result).toEqual({
        ok: true,
        payload: { note: brackets, quoted: '"[[[["', n: [[1]] },
      });
    });

    it('a "constructor" key whose value is plain text', () => {
      expect(decode('{"constructor":"text"}')).toEqual({
        ok: true,
        payload: { constructor: 'text' },
      });
    });

    it('string values that mention __proto__ and prototype', () => {
      expect(decode('{"note":"__proto__","kind":"prototype"}')).toEqual({
        ok: true,
        payload: { note: '__proto__', kind: 'prototype' },
      });
    });

    it('an empty content type or encoding, as if absent', () => {
      expect(decode('1', { contentType: '', contentEncoding: '' })).toEqual({
        ok: true,
        payload: 1,
      });
    });
  });
});
