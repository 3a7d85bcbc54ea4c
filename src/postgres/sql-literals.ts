import pg from 'pg';

/**
 * A value as a PostgreSQL literal, for statements sent in the simple query protocol (several in
 * one round trip, where parameters cannot be bound): strings escaped by node-postgres'
 * `escapeLiteral`, finite numbers and bigints as digits, booleans, NULL, Buffers as bytea,
 * Dates as ISO timestamps, anything else as its JSON text (as node-postgres sends objects).
 */
export function sqlLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'string') return pg.escapeLiteral(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`not a finite number: ${value}`);
    return String(value);
  }
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE';
  if (Buffer.isBuffer(value)) return `decode('${value.toString('hex')}', 'hex')`;
  if (value instanceof Date) return pg.escapeLiteral(value.toISOString());
  return pg.escapeLiteral(JSON.stringify(value));
}

/**
 * `text` with its placeholders `$1` … `$n` replaced by the literals of `values`. Placeholders
 * inside quoted strings or identifiers and comments are left alone; dollar-quoted strings are
 * refused (write those values as parameters). Throws when a placeholder has no value.
 */
export function bindLiterals(text: string, values: readonly unknown[] = []): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "'" || c === '"') {
      // a quoted string or identifier, with doubled quotes inside
      let j = i + 1;
      for (;;) {
        const end = text.indexOf(c, j);
        if (end < 0) throw new SyntaxError(`unterminated ${c} in SQL: ${text}`);
        if (text[end + 1] === c) j = end + 2;
        else {
          j = end + 1;
          break;
        }
      }
      out += text.slice(i, j);
      i = j;
    } else if (c === '-' && text[i + 1] === '-') {
      const end = text.indexOf('\n', i);
      const j = end < 0 ? text.length : end;
      out += text.slice(i, j);
      i = j;
    } else if (c === '$') {
      const digits = /^\$(\d+)/.exec(text.slice(i));
      if (!digits) throw new SyntaxError(`dollar quoting is not supported here: ${text}`);
      const n = Number(digits[1]);
      if (n < 1 || n > values.length) {
        throw new RangeError(`$${n} has no value (${values.length} given)`);
      }
      out += sqlLiteral(values[n - 1]);
      i += digits[0].length;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}
