import { describe, it, expect } from 'vitest';
import { LocalTurns } from '../../../src/lock/local-turns.js';

describe('LocalTurns', () => {
  it('grants a free key at once and queues the next callers first in, first out', async () => {
    const turns = new LocalTurns();
    await expect(turns.enter('k', 1_000)).resolves.toEqual({ granted: true, waited: false });
    const order: number[] = [];
    const second = turns.enter('k', 1_000).then((t) => order.push(2) && t);
    const third = turns.enter('k', 1_000).then((t) => order.push(3) && t);
    turns.leave('k');
    await expect(second).resolves.toEqual({ granted: true, waited: true });
    turns.leave('k');
    await expect(third).resolves.toEqual({ granted: true, waited: true });
    expect(order).toEqual([2, 3]);
    turns.leave('k');
    expect(turns.size).toBe(0);
  });

  it('keeps keys independent', async () => {
    const turns = new LocalTurns();
    await turns.enter('a', 0);
    await expect(turns.enter('b', 0)).resolves.toEqual({ granted: true, waited: false });
  });

  it('refuses at once with no time to wait, and after the timeout otherwise', async () => {
    const turns = new LocalTurns();
    await turns.enter('k', 0);
    await expect(turns.enter('k', 0)).resolves.toEqual({ granted: false, waited: true });
    await expect(turns.enter('k', 20)).resolves.toEqual({ granted: false, waited: true });
    // the waiter that gave up is out of the line: leaving frees the key
    turns.leave('k');
    expect(turns.size).toBe(0);
  });

  it('rejects with the reason of an aborted signal and leaves the line', async () => {
    const turns = new LocalTurns();
    await turns.enter('k', 0);
    const controller = new AbortController();
    const waiting = turns.enter('k', 10_000, controller.signal);
    controller.abort(new Error('consumer stopping'));
    await expect(waiting).rejects.toThrow('consumer stopping');
    turns.leave('k');
    expect(turns.size).toBe(0);
  });
});
