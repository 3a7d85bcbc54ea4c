import { setTimeout as sleepMs } from 'node:timers/promises';

/** Clock and sleep, injectable so tests run on a fake clock. */
export interface LimiterTimers {
  /** Milliseconds from any fixed origin, like `performance.now`. */
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
}

const REAL_TIMERS: LimiterTimers = {
  now: () => performance.now(),
  sleep: (ms) => sleepMs(ms),
};

/**
 * Limits a loop to `ratePerSecond` operations per second on average. Tokens refill continuously up
 * to `burst`; a caller that finds none sleeps until the next one is due, so a high rate costs one
 * timer per batch rather than one per message (timers cannot sleep less than ~1 ms).
 */
export class TokenBucketLimiter {
  private tokens: number;
  private refilledAt: number;

  /**
   * @param ratePerSecond average operations per second, > 0
   * @param burst tokens the bucket holds; default: 50 ms worth, at least 1
   */
  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number = Math.max(1, Math.ceil(ratePerSecond / 20)),
    private readonly timers: LimiterTimers = REAL_TIMERS,
  ) {
    if (!(ratePerSecond > 0) || !Number.isFinite(ratePerSecond)) {
      throw new RangeError(`rate must be a finite number > 0 (got ${ratePerSecond})`);
    }
    this.tokens = 1;
    this.refilledAt = timers.now();
  }

  /** Takes a token if one is available; otherwise returns how many ms until one is. */
  tryTake(): number {
    this.refill();
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / this.ratePerSecond));
  }

  /** Resolves once a token was taken. */
  async take(): Promise<void> {
    for (let wait = this.tryTake(); wait > 0; wait = this.tryTake()) {
      await this.timers.sleep(wait);
    }
  }

  private refill(): void {
    const now = this.timers.now();
    const earned = ((now - this.refilledAt) * this.ratePerSecond) / 1000;
    this.tokens = Math.min(this.burst, this.tokens + earned);
    this.refilledAt = now;
  }
}
