import { Presets, SingleBar } from 'cli-progress';

/** Progress of a long run, on stderr so stdout keeps only the report. */
export interface ProgressReporter {
  /** Sets the absolute progress. */
  update(value: number): void;
  increment(by?: number): void;
  /** Ends the display; idempotent. */
  stop(): void;
}

/** For runs too short to need progress. */
export const NO_PROGRESS: ProgressReporter = {
  update: () => undefined,
  increment: () => undefined,
  stop: () => undefined,
};

/** Where progress goes: a TTY gets a live bar, anything else a line every 10 %. */
export interface ProgressStream {
  readonly isTTY?: boolean;
  write(chunk: string): boolean;
}

/** A bar on a terminal, a line per 10 % on a pipe or log file (where a bar is unreadable noise). */
export function createProgressReporter(
  label: string,
  total: number,
  stream: ProgressStream & NodeJS.WritableStream = process.stderr,
): ProgressReporter {
  return stream.isTTY === true
    ? new BarProgressReporter(label, total, stream)
    : new LineProgressReporter(label, total, stream);
}

/** Writes `label: 30% (300/1000)` each time progress crosses a new multiple of 10 %. */
export class LineProgressReporter implements ProgressReporter {
  private value = 0;
  private lastDecile = 0;
  private stopped = false;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly stream: ProgressStream,
  ) {}

  update(value: number): void {
    this.value = value;
    const decile = this.total > 0 ? Math.floor((Math.min(value, this.total) * 10) / this.total) : 0;
    if (this.stopped || decile <= this.lastDecile) return;
    this.lastDecile = decile;
    this.stream.write(`${this.label}: ${decile * 10}% (${value}/${this.total})\n`);
  }

  increment(by = 1): void {
    this.update(this.value + by);
  }

  stop(): void {
    this.stopped = true;
  }
}

class BarProgressReporter implements ProgressReporter {
  private readonly bar: SingleBar;
  private stopped = false;

  constructor(label: string, total: number, stream: NodeJS.WritableStream) {
    this.bar = new SingleBar(
      {
        format: `${label} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted}`,
        stream,
        hideCursor: true,
        etaBuffer: 200,
      },
      Presets.shades_classic,
    );
    this.bar.start(total, 0);
  }

  update(value: number): void {
    if (!this.stopped) this.bar.update(value);
  }

  increment(by = 1): void {
    if (!this.stopped) this.bar.increment(by);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.bar.stop();
  }
}
