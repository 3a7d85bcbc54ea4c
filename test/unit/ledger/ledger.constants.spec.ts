import { describe, it, expect } from 'vitest';
import { balanceKey } from '../../../src/ledger/ledger.constants.js';

describe('balanceKey', () => {
  it('is the key the ledger handler writes and the publish CLI verifies', () => {
    expect(balanceKey('acc-42')).toBe('ledger:balance:acc-42');
  });
});
