/** Topology of the ledger example. */
export const LEDGER_EXCHANGE = 'ledger';
export const LEDGER_QUEUE = 'ledger.transactions';
export const LEDGER_ROUTING_KEY = 'transaction.*';

/** Redis key holding an account's balance in cents. */
export const balanceKey = (accountId: string): string => `ledger:balance:${accountId}`;

/** Lock key of an account: every write to one account is serialized across replicas. */
export const accountLockKey = (accountId: string): string => `account:${accountId}`;

/** With `LEDGER_STORE=postgres`: the topic exchange every applied transaction is announced on. */
export const LEDGER_EVENTS_EXCHANGE = 'ledger.events';
/** Routing key of the event of an applied transaction. */
export const LEDGER_APPLIED_ROUTING_KEY = 'transaction.applied';
/** With `LEDGER_STORE=postgres`: the table of balances. */
export const LEDGER_BALANCES_TABLE = 'ledger_balances';
