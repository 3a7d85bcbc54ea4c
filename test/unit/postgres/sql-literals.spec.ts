import { describe, it, expect } from 'vitest';
import { bindLiterals, sqlLiteral } from '../../../src/postgres/sql-literals.js';

describe('SQL literals for statements sent in one round trip', () => {
  it('writes each kind of value as PostgreSQL reads it back', () => {
    expect(sqlLiteral("O'Brien")).toBe("'O''Brien'");
    expect(sqlLiteral('back\\slash')).toBe(" E'back\\\\slash'");
    expect(sqlLiteral(-42)).toBe('-42');
    expect(sqlLiteral(1.5)).toBe('1.5');
    expect(sqlLiteral(2n ** 70n)).toBe('1180591620717411303424');
    expect(sqlLiteral(true)).toBe('TRUE');
    expect(sqlLiteral(null)).toBe('NULL');
    expect(sqlLiteral(undefined)).toBe('NULL');
    expect(sqlLiteral(Buffer.from('{}'))).toBe("decode('7b7d', 'hex')");
    expect(sqlLiteral(new Date('2026-12-05T06:00:00.000Z'))).toBe("'2026-12-05T06:00:00.000Z'");
    expect(sqlLiteral({ a: "it's" })).toBe(`'{"a":"it''s"}'`);
    expect(() => sqlLiteral(Number.NaN)).toThrow('not a finite number');
  });

  it('binds $n outside quotes, strings, identifiers and comments only', () => {
    expect(bindLiterals('SELECT $1, $2::bigint, $1', ['a', -3])).toBe(
      "SELECT 'a', -3::bigint, 'a'",
    );
    expect(bindLiterals(`SELECT '$1', "col$1", $1 -- $2\n, $2`, ["x'y", 7])).toBe(
      `SELECT '$1', "col$1", 'x''y' -- $2\n, 7`,
    );
    expect(bindLiterals(`SELECT 'it''s $1', $1`, [1])).toBe(`SELECT 'it''s $1', 1`);
    expect(() => bindLiterals('SELECT $2', [1])).toThrow('$2 has no value (1 given)');
    expect(() => bindLiterals('SELECT $$x$$', [])).toThrow('dollar quoting is not supported');
    expect(() => bindLiterals("SELECT 'open", [])).toThrow('unterminated');
  });
});
