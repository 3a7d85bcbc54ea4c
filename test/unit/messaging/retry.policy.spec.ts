import { describe, it, expect } from 'vitest';
import { HandlerConfigurationError } from '../../../src/messaging/messaging.errors.js';
import {
  DEFAULT_JITTER,
  DEFAULT_MULTIPLIER,
  baseDelay,
  delayTiers,
  jitteredDelay,
  resolveRetryPolicy,
  tierFor,
  tierQueueName,
  type RetryOptions,
  type RetryPolicy,
} from '../../../src/messaging/retry.policy.js';

/** The RETRY_* env defaults of env.schema.ts. */
const ENV_DEFAULTS = { maxAttempts: 5, initialDelayMs: 1_000, maxDelayMs: 60_000 } as const;
const HANDLER = 'LedgerHandler.apply';

function policy(overrides: Partial<RetryPolicy> = {}): RetryPolicy {
  return {
    maxAttempts: 5,
    initialDelayMs: 1_000,
    maxDelayMs: 60_000,
    multiplier: 2,
    jitter: 0.2,
    ...overrides,
  };
}

/** The base delays after failed attempts 1 … maxAttempts − 1. */
function schedule(p: RetryPolicy): number[] {
  return Array.from({ length: p.maxAttempts - 1 }, (_, i) => baseDelay(p, i + 1));
}

describe('resolveRetryPolicy', () => {
  it('takes every unset field from the env defaults, multiplier 2 and jitter 0.2', () => {
    expect(resolveRetryPolicy(HANDLER, undefined, ENV_DEFAULTS)).toEqual({
      maxAttempts: 5,
      initialDelayMs: 1_000,
      maxDelayMs: 60_000,
      multiplier: 2,
      jitter: 0.2,
    });
    expect(DEFAULT_MULTIPLIER).toBe(2);
    expect(DEFAULT_JITTER).toBe(0.2);
  });

  it('treats an empty retry object like no retry options', () => {
    expect(resolveRetryPolicy(HANDLER, {}, ENV_DEFAULTS)).toEqual(
      resolveRetryPolicy(HANDLER, undefined, ENV_DEFAULTS),
    );
  });

  it('uses every field the handler sets over the env defaults', () => {
    const options: RetryOptions = {
      maxAttempts: 3,
      initialDelayMs: 200,
      maxDelayMs: 800,
      multiplier: 3,
      jitter: 0,
    };
    expect(resolveRetryPolicy(HANDLER, options, ENV_DEFAULTS)).toEqual(options);
  });

  it('keeps the other defaults when the handler overrides only some fields', () => {
    expect(resolveRetryPolicy(HANDLER, { maxAttempts: 2, jitter: 0.5 }, ENV_DEFAULTS)).toEqual({
      maxAttempts: 2,
      initialDelayMs: 1_000,
      maxDelayMs: 60_000,
      multiplier: 2,
      jitter: 0.5,
    });
  });

  it('raises the default maxDelayMs to an initialDelayMs above it rather than refusing it', () => {
    const resolved = resolveRetryPolicy(HANDLER, { initialDelayMs: 120_000 }, ENV_DEFAULTS);
    expect(resolved.maxDelayMs).toBe(120_000);
    expect(resolved.initialDelayMs).toBe(120_000);
  });

  it('accepts the edges: one attempt, multiplier 1, jitter 0 and 1, max equal to initial', () => {
    expect(
      resolveRetryPolicy(
        HANDLER,
        { maxAttempts: 1, multiplier: 1, jitter: 1, initialDelayMs: 500, maxDelayMs: 500 },
        ENV_DEFAULTS,
      ),
    ).toEqual({ maxAttempts: 1, initialDelayMs: 500, maxDelayMs: 500, multiplier: 1, jitter: 1 });
    expect(resolveRetryPolicy(HANDLER, { jitter: 0 }, ENV_DEFAULTS).jitter).toBe(0);
  });

  it.each<[string, RetryOptions, string]>([
    ['maxAttempts 0', { maxAttempts: 0 }, 'maxAttempts must be an integer >= 1'],
    ['a fractional maxAttempts', { maxAttempts: 2.5 }, 'maxAttempts must be an integer >= 1'],
    ['initialDelayMs 0', { initialDelayMs: 0 }, 'initialDelayMs must be an integer >= 1'],
    [
      'a fractional initialDelayMs',
      { initialDelayMs: 10.5 },
      'initialDelayMs must be an integer >= 1',
    ],
    [
      'maxDelayMs below initialDelayMs',
      { initialDelayMs: 2_000, maxDelayMs: 1_000 },
      'maxDelayMs must be an integer >= initialDelayMs',
    ],
    [
      'maxDelayMs below the default initialDelayMs',
      { maxDelayMs: 999 },
      'maxDelayMs must be an integer >= initialDelayMs',
    ],
    ['multiplier below 1', { multiplier: 0.5 }, 'multiplier must be >= 1'],
    ['a NaN multiplier', { multiplier: Number.NaN }, 'multiplier must be >= 1'],
    ['a negative jitter', { jitter: -0.1 }, 'jitter must be between 0 and 1'],
    ['jitter above 1', { jitter: 1.5 }, 'jitter must be between 0 and 1'],
    ['a NaN jitter', { jitter: Number.NaN }, 'jitter must be between 0 and 1'],
  ])('refuses %s with a HandlerConfigurationError naming the handler', (_label, options, text) => {
    const resolve = () => resolveRetryPolicy(HANDLER, options, ENV_DEFAULTS);
    expect(resolve).toThrow(HandlerConfigurationError);
    expect(resolve).toThrow(`${HANDLER}: retry ${text}`);
  });

  it('lists every problem of one policy in one error', () => {
    expect(() =>
      resolveRetryPolicy('AuditHandler.record', { maxAttempts: 0, jitter: 2 }, ENV_DEFAULTS),
    ).toThrow(
      'AuditHandler.record: retry maxAttempts must be an integer >= 1; jitter must be between 0 and 1',
    );
  });
});

describe('baseDelay', () => {
  it('doubles from 1000 ms with the defaults: 1000, 2000, 4000, 8000', () => {
    expect(schedule(policy())).toEqual([1_000, 2_000, 4_000, 8_000]);
  });

  it('is min(max, initial × multiplier^(n − 1))', () => {
    const p = policy({ initialDelayMs: 200, multiplier: 3, maxDelayMs: 100_000, maxAttempts: 6 });
    expect(schedule(p)).toEqual([200, 600, 1_800, 5_400, 16_200]);
  });

  it('stays at maxDelayMs once the growth reaches it', () => {
    const p = policy({ maxAttempts: 10, maxDelayMs: 10_000 });
    expect(schedule(p)).toEqual([
      1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000, 10_000, 10_000,
    ]);
  });

  it('stays at the initial delay with multiplier 1', () => {
    expect(schedule(policy({ multiplier: 1 }))).toEqual([1_000, 1_000, 1_000, 1_000]);
  });

  it('rounds a fractional growth to whole milliseconds', () => {
    expect(schedule(policy({ initialDelayMs: 100, multiplier: 1.5 }))).toEqual([
      100, 150, 225, 338,
    ]);
  });

  it('caps an attempt far beyond the schedule at maxDelayMs instead of overflowing', () => {
    expect(baseDelay(policy(), 2_000)).toBe(60_000);
  });
});

describe('delayTiers', () => {
  it('is the schedule of the defaults: one tier per distinct delay, ascending', () => {
    expect(delayTiers(policy())).toEqual([1_000, 2_000, 4_000, 8_000]);
  });

  it('holds a capped delay once', () => {
    expect(delayTiers(policy({ maxAttempts: 10, maxDelayMs: 10_000 }))).toEqual([
      1_000, 2_000, 4_000, 8_000, 10_000,
    ]);
  });

  it('is one tier for multiplier 1', () => {
    expect(delayTiers(policy({ maxAttempts: 6, multiplier: 1 }))).toEqual([1_000]);
  });

  it('is empty for a policy that never retries (maxAttempts 1)', () => {
    expect(delayTiers(policy({ maxAttempts: 1 }))).toEqual([]);
  });

  it('has one tier for two attempts', () => {
    expect(delayTiers(policy({ maxAttempts: 2 }))).toEqual([1_000]);
  });
});

describe('jitteredDelay', () => {
  it('is the base delay when random() is 0', () => {
    expect(jitteredDelay(4_000, 0.2, () => 0)).toBe(4_000);
  });

  it('is base × (1 − jitter) when random() is 1', () => {
    expect(jitteredDelay(4_000, 0.2, () => 1)).toBe(3_200);
    expect(jitteredDelay(1_000, 0.5, () => 1)).toBe(500);
  });

  it('lies in [base × (1 − jitter), base] in between, rounded to whole ms', () => {
    expect(jitteredDelay(1_000, 0.2, () => 0.5)).toBe(900);
    expect(jitteredDelay(1_000, 0.2, () => 0.123)).toBe(975);
    for (const r of [0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999, 1]) {
      const delay = jitteredDelay(8_000, 0.2, () => r);
      expect(delay).toBeGreaterThanOrEqual(6_400);
      expect(delay).toBeLessThanOrEqual(8_000);
      expect(Number.isInteger(delay)).toBe(true);
    }
  });

  it('never jitters with jitter 0', () => {
    expect(jitteredDelay(2_000, 0, () => 1)).toBe(2_000);
  });

  it('never goes below 1 ms, even with full jitter', () => {
    expect(jitteredDelay(1_000, 1, () => 1)).toBe(1);
    expect(jitteredDelay(1, 0.2, () => 1)).toBe(1);
  });

  it('stays within the bounds with Math.random by default', () => {
    for (let i = 0; i < 200; i++) {
      const delay = jitteredDelay(1_000, 0.2);
      expect(delay).toBeGreaterThanOrEqual(800);
      expect(delay).toBeLessThanOrEqual(1_000);
    }
  });
});

describe('tierFor', () => {
  const tiers = [1_000, 2_000, 4_000, 8_000];

  it('picks the tier of a delay equal to its base delay', () => {
    expect(tiers.map((t) => tierFor(tiers, t))).toEqual([0, 1, 2, 3]);
  });

  it('picks the smallest tier at least as long as the delay', () => {
    expect(tierFor(tiers, 1)).toBe(0);
    expect(tierFor(tiers, 500)).toBe(0);
    expect(tierFor(tiers, 1_001)).toBe(1);
    expect(tierFor(tiers, 3_999)).toBe(2);
    expect(tierFor(tiers, 7_000)).toBe(3);
  });

  it('picks the largest tier when no tier is that long', () => {
    expect(tierFor(tiers, 8_001)).toBe(3);
    expect(tierFor(tiers, 3_600_000)).toBe(3);
  });

  it('works with a single tier', () => {
    expect(tierFor([5_000], 10)).toBe(0);
    expect(tierFor([5_000], 50_000)).toBe(0);
  });
});

describe('tierQueueName', () => {
  it('names the delay queues <queue>.retry.<n>, n counted from 1', () => {
    expect(tierQueueName('ledger.transactions', 0)).toBe('ledger.transactions.retry.1');
    expect(tierQueueName('ledger.transactions', 3)).toBe('ledger.transactions.retry.4');
  });
});
