/** Topology of the ledger example (DESIGN §11). */
export const LEDGER_EXCHANGE = 'ledger';
export const LEDGER_QUEUE = 'ledger.transactions';
export const LEDGER_ROUTING_KEY = 'transaction.*';

/** Redis key holding an account's balance in cents. */
export const balanceKey = (accountId: string): string => `ledger:balance:${accountId}`;
