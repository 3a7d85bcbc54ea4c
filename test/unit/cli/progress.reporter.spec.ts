import { describe, it, expect } from 'vitest';
import { LineProgressReporter } from '../../../src/cli/progress.reporter.js';

function recorder(): { write: (chunk: string) => boolean; lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    write: (chunk) => {
      lines.push(chunk.trimEnd());
      return true;
    },
  };
}

describe('LineProgressReporter', () => {
  it('writes one line per 10 % crossed, however the progress arrives', () => {
    const stream = recorder();
    const progress = new LineProgressReporter('publish', 1000, stream);
    for (let i = 0; i < 1000; i++) progress.increment();
    expect(stream.lines).toEqual(
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((d) => `publish: ${d * 10}% (${d * 100}/1000)`),
    );
  });

  it('skips deciles jumped over in one update, and never goes backwards', () => {
    const stream = recorder();
    const progress = new LineProgressReporter('accounts matching', 50, stream);
    progress.update(26);
    progress.update(10);
    progress.update(50);
    expect(stream.lines).toEqual([
      'accounts matching: 50% (26/50)',
      'accounts matching: 100% (50/50)',
    ]);
  });

  it('writes nothing after stop, or for an empty run', () => {
    const stream = recorder();
    const progress = new LineProgressReporter('x', 10, stream);
    progress.stop();
    progress.update(10);
    new LineProgressReporter('y', 0, stream).update(5);
    expect(stream.lines).toEqual([]);
  });
});
