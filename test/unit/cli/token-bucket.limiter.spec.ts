import { describe, it, expect } from 'vitest';
import { TokenBucketLimiter, type LimiterTimers } from '../../../src/cli/token-bucket.limiter.js';

/** A clock that only moves when the limiter sleeps. */
function fakeTimers(): LimiterTimers & { elapsed: () => number; sleeps: number[] } {
  let now = 0;
  const sleeps: number[] = [];
  return {
    now: () => now,
    sleep: (ms) => {
      sleeps.push(ms);
      now += ms;
      return Promise.resolve();
    },
    elapsed: () => now,
    sleeps,
  };
}

describe('TokenBucketLimiter', () => {
  it('holds a loop to the configured rate on average', async () => {
    const timers = fakeTimers();
    const limiter = new TokenBucketLimiter(200, undefined, timers);
    for (let i = 0; i < 1000; i++) await limiter.take();
    // 1000 tokens at 200/s: the first is free, the other 999 take 4.995 s.
    expect(timers.elapsed()).toBeGreaterThanOrEqual(4995);
    expect(timers.elapsed()).toBeLessThan(5100);
  });

  it('sleeps once per batch at high rates instead of once per message', async () => {
    const timers = fakeTimers();
    const limiter = new TokenBucketLimiter(10_000, undefined, timers);
    for (let i = 0; i < 10_000; i++) await limiter.take();
    expect(timers.elapsed()).toBeGreaterThanOrEqual(999);
    expect(timers.elapsed()).toBeLessThan(1010);
    expect(timers.sleeps.length).toBeLessThan(2000);
  });

  it('grants a burst after idle time, but no more than the bucket holds', () => {
    const timers = fakeTimers();
    const limiter = new TokenBucketLimiter(100, 5, timers);
    expect(limiter.tryTake()).toBe(0);
    void timers.sleep(10_000);
    const granted = Array.from({ length: 10 }, () => limiter.tryTake()).filter(
      (wait) => wait === 0,
    );
    expect(granted).toHaveLength(5);
  });

  it('says how long to wait for the next token', () => {
    const timers = fakeTimers();
    const limiter = new TokenBucketLimiter(4, 1, timers);
    expect(limiter.tryTake()).toBe(0);
    expect(limiter.tryTake()).toBe(250);
    void timers.sleep(100);
    expect(limiter.tryTake()).toBe(150);
  });

  it('supports rates below one per second', async () => {
    const timers = fakeTimers();
    const limiter = new TokenBucketLimiter(0.5, undefined, timers);
    await limiter.take();
    await limiter.take();
    expect(timers.elapsed()).toBe(2000);
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])('rejects a rate of %p', (rate) => {
    expect(() => new TokenBucketLimiter(rate)).toThrow(RangeError);
  });
});
