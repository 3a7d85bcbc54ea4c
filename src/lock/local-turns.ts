import { abortReason } from '../lifecycle/abortable-delay.js';

/** The answer of {@link LocalTurns.enter}. */
export interface Turn {
  readonly granted: boolean;
  /** Whether a sibling held the key when we arrived (contention inside this process). */
  readonly waited: boolean;
}

/**
 * Per-key FIFO turns inside one process. Work on one key in one process queues here instead of
 * polling Redis: only the head of each key's line talks to the lock servers, and the next in line
 * starts the moment its sibling releases, without a backoff sleep.
 */
export class LocalTurns {
  /** A key is present while someone has its turn; the array holds the waiters, oldest first. */
  private readonly lines = new Map<string, (() => void)[]>();

  /** Waits (at most `timeoutMs`) for the key's turn. Rejects with the signal's reason on abort. */
  enter(key: string, timeoutMs: number, signal?: AbortSignal): Promise<Turn> {
    signal?.throwIfAborted();
    const line = this.lines.get(key);
    if (!line) {
      this.lines.set(key, []);
      return Promise.resolve({ granted: true, waited: false });
    }
    if (timeoutMs <= 0) return Promise.resolve({ granted: false, waited: true });
    return new Promise<Turn>((resolve, reject) => {
      const leaveLine = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const index = line.indexOf(grant);
        if (index >= 0) line.splice(index, 1);
      };
      const grant = (): void => {
        leaveLine();
        resolve({ granted: true, waited: true });
      };
      const onAbort = (): void => {
        leaveLine();
        reject(abortReason(signal));
      };
      const timer = setTimeout(() => {
        leaveLine();
        resolve({ granted: false, waited: true });
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      line.push(grant);
    });
  }

  /** Ends the current turn on the key and hands it to the next waiter, if any. */
  leave(key: string): void {
    const line = this.lines.get(key);
    if (!line) return;
    const next = line[0];
    if (next) next();
    else this.lines.delete(key);
  }

  /** Keys with a turn taken (for tests and diagnostics). */
  get size(): number {
    return this.lines.size;
  }
}
