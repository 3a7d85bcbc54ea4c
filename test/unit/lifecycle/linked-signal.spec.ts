import { describe, it, expect } from 'vitest';
import { linkedSignal } from '../../../src/lifecycle/linked-signal.js';

describe('linkedSignal', () => {
  it('aborts with the reason of whichever source aborts first', () => {
    const a = new AbortController();
    const b = new AbortController();
    const linked = linkedSignal(a.signal, b.signal);
    expect(linked.signal.aborted).toBe(false);
    b.abort(new Error('lock lost'));
    a.abort(new Error('deadline'));
    expect(linked.signal.aborted).toBe(true);
    expect((linked.signal.reason as Error).message).toBe('lock lost');
  });

  it('is aborted at once when a source already is', () => {
    const a = new AbortController();
    a.abort(new Error('deadline'));
    const linked = linkedSignal(a.signal, new AbortController().signal);
    expect((linked.signal.reason as Error).message).toBe('deadline');
  });

  it('no longer follows its sources once disposed', () => {
    const a = new AbortController();
    const b = new AbortController();
    const linked = linkedSignal(a.signal, b.signal);
    linked.dispose();
    a.abort(new Error('deadline'));
    expect(linked.signal.aborted).toBe(false);
  });
});
