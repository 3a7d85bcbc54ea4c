import { randomUUID } from 'node:crypto';

/** The kinds of invalid message the service must dead-letter (docs/architecture.md, The life of a message). */
export const MALFORMED_KINDS = [
  'not-json',
  'wrong-content-type',
  'schema-invalid',
  'missing-message-id',
  'empty-body',
  'oversize',
] as const;
export type MalformedKind = (typeof MALFORMED_KINDS)[number];

/** Oversize bodies are over a megabyte each; a couple prove the limit without flooding the broker. */
export const MAX_OVERSIZE_MESSAGES = 2;
/** Oversize bodies are this factor over `MESSAGE_MAX_BYTES`. */
export const OVERSIZE_FACTOR = 1.1;
export const MIN_AMOUNT_CENTS = -5000;
export const MAX_AMOUNT_CENTS = 10_000;
export const JSON_CONTENT_TYPE = 'application/json';

/** The body the ledger handler accepts (`TransactionDto`). */
export interface LedgerTransaction {
  readonly accountId: string;
  readonly amountCents: number;
}

/** One distinct transaction: its messageId is the transaction id. */
export interface PlannedTransaction extends LedgerTransaction {
  readonly messageId: string;
}

interface PlannedMessageBase {
  /** Absent only for the `missing-message-id` kind. */
  readonly messageId: string | undefined;
  readonly correlationId: string;
  readonly contentType: string;
  readonly body: Buffer;
}

/** A valid transaction, published for the first time (`valid`) or again (`duplicate`). */
export interface PlannedTransactionMessage extends PlannedMessageBase {
  readonly kind: 'valid' | 'duplicate';
  readonly messageId: string;
  readonly transaction: PlannedTransaction;
}

/** A message the service must dead-letter without touching any balance. */
export interface PlannedMalformedMessage extends PlannedMessageBase {
  readonly kind: 'malformed';
  readonly malformedKind: MalformedKind;
}

export type PlannedMessage = PlannedTransactionMessage | PlannedMalformedMessage;

/** What to ask of a plan. */
export interface LedgerTrafficSpec {
  /** Distinct valid transactions. */
  readonly count: number;
  /** Accounts they are spread over (round-robin, so each gets `count / accounts` ± 1). */
  readonly accounts: number;
  /** Transactions published a second time with the same messageId and body. */
  readonly duplicates: number;
  /** Invalid messages, spread over `MALFORMED_KINDS`. */
  readonly malformed: number;
  /** The service's body limit; oversize messages exceed it. */
  readonly messageMaxBytes: number;
}

/** Sources of randomness, injectable so tests are deterministic. */
export interface PlanRandomness {
  /** Uniform in [0, 1), like `Math.random`. */
  readonly random: () => number;
  /** A fresh unique id, like `crypto.randomUUID`. */
  readonly uuid: () => string;
}

export interface LedgerTrafficPlan {
  /** Short random id in every account id, so repeated runs never share an account. */
  readonly runId: string;
  /** `acc-<runId>-0` … `acc-<runId>-<K-1>`. */
  readonly accountIds: readonly string[];
  /** The distinct transactions, each applied exactly once by a correct service. */
  readonly transactions: readonly PlannedTransaction[];
  /** Originals and malformed messages, shuffled together; published first. */
  readonly firstPhase: readonly PlannedMessage[];
  /** Copies of already-published transactions; published only once the first phase is confirmed. */
  readonly duplicatePhase: readonly PlannedTransactionMessage[];
  readonly malformedByKind: Readonly<Record<MalformedKind, number>>;
  /** Every account, including those that received nothing (balance 0). */
  readonly expectedBalances: ReadonlyMap<string, number>;
  readonly expectedTotal: number;
}

const DEFAULT_RANDOMNESS: PlanRandomness = { random: Math.random, uuid: randomUUID };

/**
 * Decides everything a publish run sends, without any I/O: accounts, amounts, which transactions are
 * duplicated, the malformed messages, the order, and the balances a correct service ends with.
 */
export function planLedgerTraffic(
  spec: LedgerTrafficSpec,
  randomness: PlanRandomness = DEFAULT_RANDOMNESS,
): LedgerTrafficPlan {
  const { random, uuid } = randomness;
  const runId = Math.floor(random() * 0x1000000)
    .toString(16)
    .padStart(6, '0');
  const accountIds = Array.from({ length: spec.accounts }, (_, i) => `acc-${runId}-${i}`);
  let sequence = 0;
  const nextCorrelationId = (): string => `publish-${runId}-${sequence++}`;

  const originals: PlannedTransactionMessage[] = [];
  for (let i = 0; i < spec.count; i++) {
    const transaction: PlannedTransaction = {
      messageId: uuid(),
      accountId: accountIds[i % accountIds.length],
      amountCents: randomAmountCents(random),
    };
    originals.push({
      kind: 'valid',
      messageId: transaction.messageId,
      correlationId: nextCorrelationId(),
      contentType: JSON_CONTENT_TYPE,
      body: jsonBody({ accountId: transaction.accountId, amountCents: transaction.amountCents }),
      transaction,
    });
  }

  const malformedByKind = distributeMalformed(spec.malformed);
  const malformed: PlannedMalformedMessage[] = [];
  for (const kind of MALFORMED_KINDS) {
    for (let i = 0; i < malformedByKind[kind]; i++) {
      // Bodies that are valid transactions use the run's real accounts: a service that wrongly
      // applied one would then miss its expected balances, not hide the bug in a spare account.
      const plausible: LedgerTransaction = {
        accountId: accountIds[malformed.length % accountIds.length],
        amountCents: randomAmountCents(random),
      };
      malformed.push(malformedMessage(kind, plausible, uuid, nextCorrelationId(), spec));
    }
  }

  const duplicatePhase = pickDistinct(originals, spec.duplicates, random).map(
    (original): PlannedTransactionMessage => ({ ...original, kind: 'duplicate' }),
  );
  const transactions = originals.map((message) => message.transaction);
  const expectedBalances = balancesOf(accountIds, transactions);

  return {
    runId,
    accountIds,
    transactions,
    firstPhase: shuffle([...originals, ...malformed], random),
    duplicatePhase,
    malformedByKind,
    expectedBalances,
    expectedTotal: transactions.reduce((sum, tx) => sum + tx.amountCents, 0),
  };
}

/**
 * Splits `total` round-robin over `MALFORMED_KINDS` in their declared order, giving `oversize` at
 * most `MAX_OVERSIZE_MESSAGES`; the counts always add up to `total`.
 */
export function distributeMalformed(total: number): Record<MalformedKind, number> {
  const counts = Object.fromEntries(MALFORMED_KINDS.map((kind) => [kind, 0])) as Record<
    MalformedKind,
    number
  >;
  for (let placed = 0, turn = 0; placed < total; turn++) {
    const kind = MALFORMED_KINDS[turn % MALFORMED_KINDS.length];
    if (kind === 'oversize' && counts.oversize >= MAX_OVERSIZE_MESSAGES) continue;
    counts[kind]++;
    placed++;
  }
  return counts;
}

/** The balance of every account after applying each transaction once (0 for untouched accounts). */
export function balancesOf(
  accountIds: readonly string[],
  transactions: readonly LedgerTransaction[],
): Map<string, number> {
  const balances = new Map<string, number>(accountIds.map((id) => [id, 0]));
  for (const tx of transactions)
    balances.set(tx.accountId, (balances.get(tx.accountId) ?? 0) + tx.amountCents);
  return balances;
}

/** A uniformly random non-zero whole amount in [MIN_AMOUNT_CENTS, MAX_AMOUNT_CENTS]. */
export function randomAmountCents(random: () => number): number {
  const nonZeroValues = MAX_AMOUNT_CENTS - MIN_AMOUNT_CENTS;
  const amount = MIN_AMOUNT_CENTS + Math.floor(random() * nonZeroValues);
  return amount >= 0 ? amount + 1 : amount;
}

function malformedMessage(
  kind: MalformedKind,
  plausible: LedgerTransaction,
  uuid: () => string,
  correlationId: string,
  spec: LedgerTrafficSpec,
): PlannedMalformedMessage {
  const base = { kind: 'malformed' as const, malformedKind: kind, correlationId };
  switch (kind) {
    case 'not-json':
      return {
        ...base,
        messageId: uuid(),
        contentType: JSON_CONTENT_TYPE,
        body: Buffer.from('{oops'),
      };
    case 'wrong-content-type':
      return { ...base, messageId: uuid(), contentType: 'text/plain', body: jsonBody(plausible) };
    case 'schema-invalid':
      return {
        ...base,
        messageId: uuid(),
        contentType: JSON_CONTENT_TYPE,
        body: Buffer.from('{"accountId":"bad id!","amountCents":1.5}'),
      };
    case 'missing-message-id':
      return {
        ...base,
        messageId: undefined,
        contentType: JSON_CONTENT_TYPE,
        body: jsonBody(plausible),
      };
    case 'empty-body':
      return { ...base, messageId: uuid(), contentType: JSON_CONTENT_TYPE, body: Buffer.alloc(0) };
    case 'oversize':
      return {
        ...base,
        messageId: uuid(),
        contentType: JSON_CONTENT_TYPE,
        body: oversizeBody(plausible, Math.ceil(spec.messageMaxBytes * OVERSIZE_FACTOR)),
      };
  }
}

/** A well-formed transaction padded with an extra field to `size` bytes (or just over). */
function oversizeBody(tx: LedgerTransaction, size: number): Buffer {
  const prefix = `{"accountId":${JSON.stringify(tx.accountId)},"amountCents":${tx.amountCents},"padding":"`;
  const suffix = '"}';
  const padding = Math.max(1, size - prefix.length - suffix.length);
  return Buffer.from(prefix + 'x'.repeat(padding) + suffix);
}

function jsonBody(tx: LedgerTransaction): Buffer {
  return Buffer.from(JSON.stringify({ accountId: tx.accountId, amountCents: tx.amountCents }));
}

/** `count` distinct items in random order (partial Fisher–Yates). */
function pickDistinct<T>(items: readonly T[], count: number, random: () => number): T[] {
  const pool = [...items];
  const picked: T[] = [];
  for (let i = 0; i < count && i < pool.length; i++) {
    const j = i + Math.floor(random() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j], pool[i]];
    picked.push(pool[i]);
  }
  return picked;
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}
