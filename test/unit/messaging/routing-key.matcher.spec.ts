import { describe, it, expect } from 'vitest';
import { compileTopicPattern } from '../../../src/messaging/routing-key.matcher.js';

function matches(pattern: string, routingKey: string): boolean {
  return compileTopicPattern(pattern)(routingKey);
}

describe('compileTopicPattern', () => {
  describe('a pattern without wildcards', () => {
    it('matches the identical key only', () => {
      expect(matches('transaction.created', 'transaction.created')).toBe(true);
      expect(matches('transaction.created', 'transaction.updated')).toBe(false);
      expect(matches('transaction.created', 'transaction')).toBe(false);
      expect(matches('transaction.created', 'transaction.created.v2')).toBe(false);
    });

    it('is case-sensitive', () => {
      expect(matches('transaction.created', 'Transaction.Created')).toBe(false);
    });
  });

  describe('*', () => {
    it('matches exactly one word', () => {
      expect(matches('transaction.*', 'transaction.created')).toBe(true);
      expect(matches('*.created', 'transaction.created')).toBe(true);
      expect(matches('a.*.c', 'a.b.c')).toBe(true);
    });

    it('does not match zero words', () => {
      expect(matches('transaction.*', 'transaction')).toBe(false);
      expect(matches('a.*.c', 'a.c')).toBe(false);
    });

    it('does not match two words', () => {
      expect(matches('transaction.*', 'transaction.created.v2')).toBe(false);
      expect(matches('a.*.c', 'a.b.b.c')).toBe(false);
    });

    it('matches an empty word between dots', () => {
      expect(matches('a.*.c', 'a..c')).toBe(true);
    });
  });

  describe('#', () => {
    it.each([
      ['#.created', 'created'],
      ['#.created', 'transaction.created'],
      ['#.created', 'eu.transaction.created'],
    ])('at the start: %p matches %p', (pattern, key) => {
      expect(matches(pattern, key)).toBe(true);
    });

    it.each([
      ['a.#.z', 'a.z'],
      ['a.#.z', 'a.b.z'],
      ['a.#.z', 'a.b.c.d.z'],
    ])('in the middle: %p matches %p', (pattern, key) => {
      expect(matches(pattern, key)).toBe(true);
    });

    it.each([
      ['transaction.#', 'transaction'],
      ['transaction.#', 'transaction.created'],
      ['transaction.#', 'transaction.created.eu.v2'],
    ])('at the end: %p matches %p', (pattern, key) => {
      expect(matches(pattern, key)).toBe(true);
    });

    it('still requires the words around it', () => {
      expect(matches('#.created', 'transaction.updated')).toBe(false);
      expect(matches('a.#.z', 'a.b.c')).toBe(false);
      expect(matches('a.#.z', 'b.z')).toBe(false);
      expect(matches('transaction.#', 'transactions.created')).toBe(false);
    });

    it('alone matches every key, including the empty one', () => {
      const all = compileTopicPattern('#');
      for (const key of ['', 'a', 'a.b', 'transaction.created.eu.v2']) expect(all(key)).toBe(true);
    });
  });

  describe('mixed wildcards a.*.#.z', () => {
    it('needs one word after a, then any number before z', () => {
      expect(matches('a.*.#.z', 'a.b.z')).toBe(true);
      expect(matches('a.*.#.z', 'a.b.c.z')).toBe(true);
      expect(matches('a.*.#.z', 'a.b.c.d.e.z')).toBe(true);
    });

    it('does not match without the word for *', () => {
      expect(matches('a.*.#.z', 'a.z')).toBe(false);
    });

    it('does not match when the last word differs', () => {
      expect(matches('a.*.#.z', 'a.b.c.y')).toBe(false);
      expect(matches('a.*.#.z', 'b.c.d.z')).toBe(false);
    });
  });

  it('compiles once and can be reused for many keys', () => {
    const matcher = compileTopicPattern('ledger.*.created');
    const keys = ['ledger.eu.created', 'ledger.us.created', 'ledger.eu.deleted', 'ledger.created'];
    expect(keys.filter(matcher)).toEqual(['ledger.eu.created', 'ledger.us.created']);
  });
});
