import { describe, it, expect } from 'vitest';
import { rotate } from '../../../src/messaging/amqp.connection.js';

describe('rotate (where a replica starts in a cluster URL list)', () => {
  const urls = ['amqp://a', 'amqp://b', 'amqp://c'];

  it('starts at the given node and keeps the failover order, wrapping around', () => {
    expect(rotate(urls, 0)).toEqual(['amqp://a', 'amqp://b', 'amqp://c']);
    expect(rotate(urls, 1)).toEqual(['amqp://b', 'amqp://c', 'amqp://a']);
    expect(rotate(urls, 2)).toEqual(['amqp://c', 'amqp://a', 'amqp://b']);
  });

  it('keeps a single URL as it is and does not change its input', () => {
    const one = ['amqp://only'];
    expect(rotate(one, 0)).toEqual(['amqp://only']);
    rotate(urls, 2);
    expect(urls).toEqual(['amqp://a', 'amqp://b', 'amqp://c']);
  });
});
