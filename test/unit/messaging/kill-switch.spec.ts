import { describe, it, expect } from 'vitest';
import {
  KillSwitch,
  type KillSwitchPolicy,
  resolveKillSwitch,
} from '../../../src/messaging/kill-switch.js';

const POLICY: KillSwitchPolicy = {
  threshold: 0.5,
  minAttempts: 10,
  windowMs: 10_000,
  restartMs: 1_000,
  trickle: 3,
};

function switchFor(policy: KillSwitchPolicy = POLICY): KillSwitch {
  return new KillSwitch(new Map([['H.apply', policy]]));
}

/** Records `n` outcomes of H.apply at `now`, returning the events. */
function record(ks: KillSwitch, n: number, failed: boolean, now: number): string[] {
  const events: string[] = [];
  for (let i = 0; i < n; i++) {
    const event = ks.record('H.apply', failed, now);
    if (event) events.push(event.kind);
  }
  return events;
}

describe('KillSwitch', () => {
  it('does not trip before the minimum number of attempts, however many fail', () => {
    const ks = switchFor();
    expect(record(ks, 9, true, 0)).toEqual([]);
    expect(ks.state).toBe('closed');
    expect(record(ks, 1, true, 0)).toEqual(['tripped']);
    expect(ks.state).toBe('open');
    expect(ks.reason).toBe(
      'kill switch: H.apply: 10 of the last 10 attempts failed within 10000 ms (threshold 50 %)',
    );
  });

  it('trips at the threshold share, not below it', () => {
    const below = switchFor();
    // 11 successes, 9 failures: 45 %
    expect([...record(below, 11, false, 0), ...record(below, 9, true, 0)]).toEqual([]);
    const at = switchFor();
    expect([...record(at, 10, false, 0), ...record(at, 10, true, 0)]).toEqual(['tripped']);
  });

  it('forgets attempts older than the window', () => {
    const ks = switchFor();
    record(ks, 9, true, 0);
    // the nine failures have left the window: one more is 1 of 1
    expect(record(ks, 1, true, 10_500)).toEqual([]);
    expect(record(ks, 8, true, 11_000)).toEqual([]);
    expect(record(ks, 1, true, 11_000)).toEqual(['tripped']);
  });

  it('takes the share over the last 100 attempts at most: a busy minute of successes does not delay it', () => {
    const ks = switchFor({ ...POLICY, windowMs: 60_000 });
    // a busy queue: 5,000 successes in the window
    expect(record(ks, 5_000, false, 1_000)).toEqual([]);
    // then its downstream fails: half of the last 100 attempts trips it
    expect(record(ks, 49, true, 2_000)).toEqual([]);
    expect(record(ks, 1, true, 2_000)).toEqual(['tripped']);
    expect(ks.reason).toBe(
      'kill switch: H.apply: 50 of the last 100 attempts failed within 60000 ms (threshold 50 %)',
    );
  });

  it('ignores outcomes while open, trickles after restart, and recovers after enough successes', () => {
    const ks = switchFor();
    record(ks, 10, true, 0);
    expect(record(ks, 50, true, 100)).toEqual([]);
    ks.restart();
    expect(ks.state).toBe('trickle');
    expect(record(ks, 2, false, 2_000)).toEqual([]);
    expect(record(ks, 1, false, 2_000)).toEqual(['recovered']);
    expect(ks.state).toBe('closed');
    // a clean slate: the failures before the trip do not count any more
    expect(record(ks, 9, true, 2_000)).toEqual([]);
  });

  it('trips again at the first failure while trickling', () => {
    const ks = switchFor();
    record(ks, 10, true, 0);
    ks.restart();
    expect(record(ks, 1, false, 2_000)).toEqual([]);
    expect(record(ks, 1, true, 2_000)).toEqual(['tripped']);
    expect(ks.reason).toContain('failed again while trying one message at a time');
  });

  it('tracks only the handlers whose policy is on', () => {
    const ks = new KillSwitch(
      new Map([
        ['Off.apply', { ...POLICY, threshold: 0 }],
        ['On.apply', POLICY],
      ]),
    );
    for (let i = 0; i < 100; i++) expect(ks.record('Off.apply', true, 0)).toBeUndefined();
    expect(ks.enabled).toBe(true);
    expect(new KillSwitch(new Map([['Off.apply', { ...POLICY, threshold: 0 }]])).enabled).toBe(
      false,
    );
  });
});

describe('resolveKillSwitch', () => {
  it("takes the handler's options over the defaults, and false as off", () => {
    expect(resolveKillSwitch({ thresholdPercent: 20, trickle: 1 }, POLICY)).toEqual({
      ...POLICY,
      threshold: 0.2,
      trickle: 1,
    });
    expect(resolveKillSwitch(undefined, POLICY)).toEqual(POLICY);
    expect(resolveKillSwitch(false, POLICY)).toMatchObject({ threshold: 0 });
  });

  it('names every option out of range', () => {
    expect(
      resolveKillSwitch({ thresholdPercent: 150, minAttempts: 0, windowMs: 1.5 }, POLICY),
    ).toBe(
      'killSwitch thresholdPercent must be from 0 to 100; minAttempts must be an integer >= 1; windowMs must be an integer >= 1',
    );
    expect(resolveKillSwitch({ minAttempts: 101 }, POLICY)).toBe(
      'killSwitch minAttempts must be at most 100 (the attempts the share is taken over)',
    );
  });
});
