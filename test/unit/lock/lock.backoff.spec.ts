import { describe, it, expect } from 'vitest';
import { clockDriftMs, fullJitterDelay } from '../../../src/lock/lock.backoff.js';

describe('fullJitterDelay', () => {
  it('draws uniformly below base·2^attempt', () => {
    const options = { baseMs: 5, capMs: 250 };
    expect(fullJitterDelay(0, options, () => 0.999)).toBe(5);
    expect(fullJitterDelay(3, options, () => 0.5)).toBe(20);
    expect(fullJitterDelay(3, options, () => 0.999)).toBe(40);
  });

  it('never exceeds the cap, however many tries', () => {
    expect(fullJitterDelay(10, { baseMs: 5, capMs: 250 }, () => 0.999)).toBe(250);
    expect(fullJitterDelay(10_000, { baseMs: 5, capMs: 250 }, () => 0.999)).toBe(250);
  });

  it('waits at least 1 ms, so a zero draw cannot spin', () => {
    expect(fullJitterDelay(0, { baseMs: 5, capMs: 250 }, () => 0)).toBe(1);
  });
});

describe('clockDriftMs', () => {
  it('is 1 % of the TTL plus 2 ms', () => {
    expect(clockDriftMs(30_000)).toBe(302);
    expect(clockDriftMs(300)).toBe(5);
  });
});
