import { describe, it, expect } from 'vitest';
import { compareBalances } from '../../../src/cli/ledger-balance.comparison.js';

describe('compareBalances', () => {
  const expected = new Map([
    ['acc-1', 100],
    ['acc-2', 0],
    ['acc-3', -50],
  ]);

  it('matches when every stored balance equals the expected one, a missing key counting as 0', () => {
    const actual = new Map<string, string | null>([
      ['acc-1', '100'],
      ['acc-2', null],
      ['acc-3', '-50'],
    ]);
    expect(compareBalances(expected, actual)).toEqual([]);
  });

  it('reports each differing account with what was found', () => {
    const actual = new Map<string, string | null>([
      ['acc-1', '90'],
      ['acc-2', '7'],
    ]);
    expect(compareBalances(expected, actual)).toEqual([
      { accountId: 'acc-1', expected: 100, actual: 90 },
      { accountId: 'acc-2', expected: 0, actual: 7 },
      { accountId: 'acc-3', expected: -50, actual: 0 },
    ]);
  });

  it('reports a value that is not an integer as found', () => {
    const actual = new Map<string, string | null>([
      ['acc-1', '100.0'],
      ['acc-2', null],
      ['acc-3', '-50'],
    ]);
    expect(compareBalances(expected, actual)).toEqual([
      { accountId: 'acc-1', expected: 100, actual: '100.0' },
    ]);
  });
});
