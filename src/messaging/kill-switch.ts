/**
 * The kill switch (MassTransit's name; docs/architecture.md, "Kill switch"): when a handler's
 * share of failed attempts over a sliding window (its last 100 attempts at most) passes a
 * threshold (after a minimum number of attempts), its queue's consumer stops taking messages for a restart delay, then takes them one
 * at a time until a few in a row succeed, then resumes fully. Messages wait in the queue instead
 * of spending their retries (and reaching the DLQ) on a downstream that is down.
 */
export interface KillSwitchPolicy {
  /** Failed share of attempts that trips it, 0–1; 0: off. */
  readonly threshold: number;
  /** Attempts in the window before the share counts. */
  readonly minAttempts: number;
  /** The sliding window. */
  readonly windowMs: number;
  /** How long the consumer stays detached once tripped. */
  readonly restartMs: number;
  /** Successes in a row, one message at a time, before the consumer resumes fully. */
  readonly trickle: number;
}

/**
 * Kill switch settings, as a handler (`@MessageHandler({ killSwitch })`) or the module's
 * `processing.killSwitch` gives them; unset fields come from the `KILL_SWITCH_*` variables.
 */
export interface KillSwitchOptions {
  /** Failed share of a handler's attempts, in percent, that trips it (`KILL_SWITCH_THRESHOLD`, 0: off). */
  readonly thresholdPercent?: number;
  /** Attempts within the window before the share counts (`KILL_SWITCH_MIN_ATTEMPTS`, 20; at most 100). */
  readonly minAttempts?: number;
  /** The sliding window (`KILL_SWITCH_WINDOW_MS`, 60 000). */
  readonly windowMs?: number;
  /** How long the consumer stays detached once tripped (`KILL_SWITCH_RESTART_MS`, 30 000). */
  readonly restartMs?: number;
  /** Successes in a row, one message at a time, before it resumes fully (`KILL_SWITCH_TRICKLE`, 5). */
  readonly trickle?: number;
}

/**
 * A handler's policy: its own options over the defaults; `false` turns it off for that handler.
 * Returns an error message when an option is out of range.
 */
export function resolveKillSwitch(
  options: KillSwitchOptions | false | undefined,
  defaults: KillSwitchPolicy,
): KillSwitchPolicy | string {
  if (options === false) return { ...defaults, threshold: 0 };
  const o = options ?? {};
  const policy: KillSwitchPolicy = {
    threshold: o.thresholdPercent === undefined ? defaults.threshold : o.thresholdPercent / 100,
    minAttempts: o.minAttempts ?? defaults.minAttempts,
    windowMs: o.windowMs ?? defaults.windowMs,
    restartMs: o.restartMs ?? defaults.restartMs,
    trickle: o.trickle ?? defaults.trickle,
  };
  const problems: string[] = [];
  if (!(policy.threshold >= 0 && policy.threshold <= 1)) {
    problems.push('thresholdPercent must be from 0 to 100');
  }
  for (const key of ['minAttempts', 'windowMs', 'restartMs', 'trickle'] as const) {
    if (!Number.isInteger(policy[key]) || policy[key] < 1) {
      problems.push(`${key} must be an integer >= 1`);
    }
  }
  if (policy.minAttempts > KILL_SWITCH_SAMPLE) {
    problems.push(
      `minAttempts must be at most ${KILL_SWITCH_SAMPLE} (the attempts the share is taken over)`,
    );
  }
  return problems.length > 0 ? `killSwitch ${problems.join('; ')}` : policy;
}

/** Where the switch is: consuming, detached (tripped), or taking one message at a time. */
export type KillSwitchState = 'closed' | 'open' | 'trickle';

/**
 * The most attempts the share is taken over: the window is bounded by time and by count. With
 * time alone, a busy queue's minute of successes would have to be outweighed before it trips:
 * at 100 msg/s, 6,000 failures (a minute or more of every message spending its retries).
 */
export const KILL_SWITCH_SAMPLE = 100;

/**
 * One handler's last attempts (at most {@link KILL_SWITCH_SAMPLE}, none older than the window):
 * a ring of their times and outcomes, with running counts.
 */
class Window {
  private readonly times = new Float64Array(KILL_SWITCH_SAMPLE);
  private readonly failed = new Uint8Array(KILL_SWITCH_SAMPLE);
  /** Index of the oldest attempt kept, and how many are kept. */
  private head = 0;
  private size = 0;
  private failures = 0;

  constructor(private readonly windowMs: number) {}

  record(now: number, failed: boolean): { attempts: number; failures: number } {
    // the ones that left the window, then the oldest if the ring is full
    while (this.size > 0 && this.times[this.head] <= now - this.windowMs) this.dropOldest();
    if (this.size === KILL_SWITCH_SAMPLE) this.dropOldest();
    const i = (this.head + this.size) % KILL_SWITCH_SAMPLE;
    this.times[i] = now;
    this.failed[i] = failed ? 1 : 0;
    this.size++;
    if (failed) this.failures++;
    return { attempts: this.size, failures: this.failures };
  }

  reset(): void {
    this.head = 0;
    this.size = 0;
    this.failures = 0;
  }

  private dropOldest(): void {
    this.failures -= this.failed[this.head];
    this.head = (this.head + 1) % KILL_SWITCH_SAMPLE;
    this.size--;
  }
}

/** What a recorded outcome changed. */
export type KillSwitchEvent =
  | { readonly kind: 'tripped'; readonly handler: string; readonly reason: string }
  | { readonly kind: 'recovered' };

/**
 * One queue's switch, tracking each of its handlers with that handler's policy (a handler whose
 * policy is off is not tracked). Pure: the caller records outcomes and moves it on with
 * {@link restart} when the restart delay has passed.
 */
export class KillSwitch {
  private stateNow: KillSwitchState = 'closed';
  private readonly windows = new Map<string, Window>();
  private successesInTrickle = 0;
  private trickleNeeded = 1;
  /** Why it tripped last (the handler and its figures). */
  reason: string | undefined;

  constructor(private readonly policies: ReadonlyMap<string, KillSwitchPolicy>) {
    for (const [handler, policy] of policies) {
      if (policy.threshold > 0) this.windows.set(handler, new Window(policy.windowMs));
    }
  }

  get state(): KillSwitchState {
    return this.stateNow;
  }

  /** Whether any handler of the queue is tracked. */
  get enabled(): boolean {
    return this.windows.size > 0;
  }

  /** The delay before a tripped switch tries again (the tripping handler's). */
  restartDelayMs(handler: string): number {
    return this.policies.get(handler)?.restartMs ?? 0;
  }

  /**
   * Records one attempt of `handler` (`failed`: the handler threw). Returns what changed, if
   * anything. Outcomes of deliveries still finishing while the switch is open are ignored.
   */
  record(handler: string, failed: boolean, now: number): KillSwitchEvent | undefined {
    const window = this.windows.get(handler);
    const policy = this.policies.get(handler);
    if (!window || !policy || this.stateNow === 'open') return undefined;
    if (this.stateNow === 'trickle') {
      if (failed) return this.trip(handler, `failed again while trying one message at a time`);
      if (++this.successesInTrickle < this.trickleNeeded) return undefined;
      this.stateNow = 'closed';
      for (const w of this.windows.values()) w.reset();
      return { kind: 'recovered' };
    }
    const { attempts, failures } = window.record(now, failed);
    if (attempts < policy.minAttempts || failures < policy.threshold * attempts) return undefined;
    return this.trip(
      handler,
      `${failures} of the last ${attempts} attempts failed within ${policy.windowMs} ms ` +
        `(threshold ${Math.round(policy.threshold * 100)} %)`,
    );
  }

  /** The restart delay passed: take one message at a time until enough succeed in a row. */
  restart(): void {
    if (this.stateNow !== 'open') return;
    this.stateNow = 'trickle';
    this.successesInTrickle = 0;
  }

  private trip(handler: string, why: string): KillSwitchEvent {
    this.stateNow = 'open';
    this.trickleNeeded = Math.max(1, this.policies.get(handler)?.trickle ?? 1);
    this.reason = `kill switch: ${handler}: ${why}`;
    return { kind: 'tripped', handler, reason: this.reason };
  }
}
