/** One line a {@link RecordingLogger} was given. */
export interface LogLine {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly fields: Record<string, unknown>;
  readonly msg: string;
}

/** A pino-style logger (`level(fields, message)`) that keeps every line, for assertions. */
export class RecordingLogger {
  readonly lines: LogLine[] = [];

  debug(fields: object, msg: string): void {
    this.lines.push({ level: 'debug', fields: { ...fields }, msg });
  }

  info(fields: object, msg: string): void {
    this.lines.push({ level: 'info', fields: { ...fields }, msg });
  }

  warn(fields: object, msg: string): void {
    this.lines.push({ level: 'warn', fields: { ...fields }, msg });
  }

  error(fields: object, msg: string): void {
    this.lines.push({ level: 'error', fields: { ...fields }, msg });
  }

  /** The `code` field of every line that has one, in order. */
  codes(): unknown[] {
    return this.lines.map((l) => l.fields.code).filter((c) => c !== undefined);
  }
}
