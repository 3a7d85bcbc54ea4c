/** An account whose stored balance differs from the expected one. */
export interface BalanceMismatch {
  readonly accountId: string;
  readonly expected: number;
  /** The stored balance (0 when the key is missing), or the raw value when it is not an integer. */
  readonly actual: number | string;
}

/**
 * Compares expected balances with the raw values read from Redis (`null` = missing key = 0).
 * Returns the mismatches in the order of `expected`.
 */
export function compareBalances(
  expected: ReadonlyMap<string, number>,
  actual: ReadonlyMap<string, string | null>,
): BalanceMismatch[] {
  const mismatches: BalanceMismatch[] = [];
  for (const [accountId, want] of expected) {
    const raw = actual.get(accountId) ?? null;
    const got = raw === null ? 0 : /^-?\d+$/.test(raw) ? Number(raw) : raw;
    if (got !== want) mismatches.push({ accountId, expected: want, actual: got });
  }
  return mismatches;
}
