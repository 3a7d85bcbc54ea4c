/** Topology of the ledger example. */
export const LEDGER_EXCHANGE = 'ledger';
export const LEDGER_QUEUE = 'ledger.transactions';
export const LEDGER_ROUTING_KEY = 'transaction.*';

/** Redis key holding an account's balance in cents. */
export const balanceKey = (accountId: string): string => `ledger:balance:${accountId}`;

/** Lock key of an account: every write to one account is serialized across replicas. */
export const accountLockKey = (accountId: string): string => `account:${accountId}`;
