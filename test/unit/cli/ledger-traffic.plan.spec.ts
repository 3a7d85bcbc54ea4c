import { describe, it, expect } from 'vitest';
import {
  MALFORMED_KINDS,
  MAX_AMOUNT_CENTS,
  MAX_OVERSIZE_MESSAGES,
  MIN_AMOUNT_CENTS,
  balancesOf,
  distributeMalformed,
  planLedgerTraffic,
  randomAmountCents,
  type LedgerTrafficSpec,
  type PlannedMessage,
} from '../../../src/cli/ledger-traffic.plan.js';
import { seededRandom, sequentialIds } from './seeded-random.fixture.js';

const MAX_BYTES = 4096;

function plan(spec: Partial<LedgerTrafficSpec>, seed = 1) {
  return planLedgerTraffic(
    {
      count: 2000,
      accounts: 50,
      duplicates: 50,
      malformed: 20,
      messageMaxBytes: MAX_BYTES,
      ...spec,
    },
    { random: seededRandom(seed), uuid: sequentialIds() },
  );
}

function allMessages(p: ReturnType<typeof plan>): PlannedMessage[] {
  return [...p.firstPhase, ...p.duplicatePhase];
}

function sum(values: Iterable<number>): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

describe('planLedgerTraffic', () => {
  it('plans N valid + D duplicates + M malformed messages', () => {
    const p = plan({ count: 2000, duplicates: 50, malformed: 20 });
    const messages = allMessages(p);
    expect(messages).toHaveLength(2070);
    expect(messages.filter((m) => m.kind === 'valid')).toHaveLength(2000);
    expect(messages.filter((m) => m.kind === 'duplicate')).toHaveLength(50);
    expect(messages.filter((m) => m.kind === 'malformed')).toHaveLength(20);
    expect(p.transactions).toHaveLength(2000);
  });

  it('expects each balance to be the sum of its valid transactions, each counted once', () => {
    const p = plan({});
    const byAccount = new Map<string, number>();
    for (const m of p.firstPhase) {
      if (m.kind !== 'valid') continue;
      const body = JSON.parse(m.body.toString()) as { accountId: string; amountCents: number };
      byAccount.set(body.accountId, (byAccount.get(body.accountId) ?? 0) + body.amountCents);
    }
    for (const id of p.accountIds) expect(p.expectedBalances.get(id)).toBe(byAccount.get(id) ?? 0);
    expect(p.expectedTotal).toBe(sum(byAccount.values()));
    expect(sum(p.expectedBalances.values())).toBe(p.expectedTotal);
  });

  it('spreads transactions over K run-scoped accounts and lists every account', () => {
    const p = plan({ count: 10, accounts: 4, duplicates: 0, malformed: 0 });
    expect(p.runId).toMatch(/^[0-9a-f]{6}$/);
    expect(p.accountIds).toEqual([0, 1, 2, 3].map((i) => `acc-${p.runId}-${i}`));
    const perAccount = p.accountIds.map(
      (id) => p.transactions.filter((tx) => tx.accountId === id).length,
    );
    expect(perAccount).toEqual([3, 3, 2, 2]);
    for (const id of p.accountIds) expect(id).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
  });

  it('keeps accounts with no transaction at an expected balance of 0', () => {
    const p = plan({ count: 2, accounts: 5, duplicates: 0, malformed: 0 });
    expect(p.expectedBalances.size).toBe(5);
    expect(p.expectedBalances.get(p.accountIds[4])).toBe(0);
  });

  it('uses different account ids on different runs', () => {
    expect(plan({}, 1).accountIds[0]).not.toBe(plan({}, 2).accountIds[0]);
  });

  it('publishes valid transactions as the ledger handler expects them', () => {
    for (const m of plan({}).firstPhase) {
      if (m.kind !== 'valid') continue;
      expect(m.contentType).toBe('application/json');
      expect(JSON.parse(m.body.toString())).toEqual({
        accountId: m.transaction.accountId,
        amountCents: m.transaction.amountCents,
      });
      expect(m.messageId).toBe(m.transaction.messageId);
      expect(Number.isInteger(m.transaction.amountCents)).toBe(true);
      expect(m.transaction.amountCents).not.toBe(0);
      expect(m.transaction.amountCents).toBeGreaterThanOrEqual(MIN_AMOUNT_CENTS);
      expect(m.transaction.amountCents).toBeLessThanOrEqual(MAX_AMOUNT_CENTS);
    }
  });

  it('duplicates D distinct transactions with the same messageId and body, after all originals', () => {
    const p = plan({ duplicates: 50 });
    const originals = new Map(
      p.firstPhase.filter((m) => m.kind === 'valid').map((m) => [m.messageId, m]),
    );
    const duplicateIds = p.duplicatePhase.map((m) => m.messageId);
    expect(new Set(duplicateIds).size).toBe(50);
    for (const duplicate of p.duplicatePhase) {
      const original = originals.get(duplicate.messageId);
      expect(original).toBeDefined();
      expect(duplicate.body.equals(original!.body)).toBe(true);
    }
    expect(p.firstPhase.some((m) => m.kind === 'duplicate')).toBe(false);
  });

  it('does not count duplicates in the expected balances', () => {
    const without = plan({ duplicates: 0 }, 7);
    const withDuplicates = plan({ duplicates: 100 }, 7);
    // Same seed, so the same transactions; only the duplicate phase differs.
    expect(withDuplicates.transactions).toEqual(without.transactions);
    expect(withDuplicates.duplicatePhase).toHaveLength(100);
    expect([...withDuplicates.expectedBalances]).toEqual([...without.expectedBalances]);
    expect(withDuplicates.expectedTotal).toBe(balanceTotal(without.transactions));
  });

  it('gives every message a unique messageId except duplicates and the missing-messageId kind', () => {
    const p = plan({ malformed: 60 });
    const ids = p.firstPhase.map((m) => m.messageId);
    const missing = p.firstPhase.filter((m) => m.messageId === undefined);
    expect(missing).toHaveLength(p.malformedByKind['missing-message-id']);
    expect(
      missing.every((m) => m.kind === 'malformed' && m.malformedKind === 'missing-message-id'),
    ).toBe(true);
    const present = ids.filter((id) => id !== undefined);
    expect(new Set(present).size).toBe(present.length);
  });

  it('builds each malformed kind so the service must reject it', () => {
    const p = plan({ malformed: 12 });
    const byKind = new Map<string, PlannedMessage[]>();
    for (const m of p.firstPhase) {
      if (m.kind === 'malformed')
        byKind.set(m.malformedKind, [...(byKind.get(m.malformedKind) ?? []), m]);
    }
    const one = (kind: string): PlannedMessage => byKind.get(kind)![0];
    expect(() => JSON.parse(one('not-json').body.toString()) as unknown).toThrow(SyntaxError);
    expect(one('wrong-content-type').contentType).toBe('text/plain');
    expect(JSON.parse(one('wrong-content-type').body.toString())).toHaveProperty('amountCents');
    expect(JSON.parse(one('schema-invalid').body.toString())).toEqual({
      accountId: 'bad id!',
      amountCents: 1.5,
    });
    expect(one('missing-message-id').messageId).toBeUndefined();
    expect(one('empty-body').body).toHaveLength(0);
    const oversize = one('oversize').body;
    expect(oversize.length).toBeGreaterThan(MAX_BYTES);
    expect(oversize.length).toBeGreaterThanOrEqual(Math.ceil(MAX_BYTES * 1.1));
    expect(JSON.parse(oversize.toString())).toHaveProperty('accountId');
  });

  it('shuffles malformed messages in among the valid ones', () => {
    const kinds = plan({ count: 500, malformed: 50 }).firstPhase.map((m) => m.kind);
    const firstMalformed = kinds.indexOf('malformed');
    expect(firstMalformed).toBeLessThan(kinds.length - 50);
  });

  it('plans a malformed-only run', () => {
    const p = plan({ count: 0, duplicates: 0, malformed: 7 });
    expect(p.firstPhase).toHaveLength(7);
    expect(p.expectedTotal).toBe(0);
  });
});

describe('distributeMalformed', () => {
  it.each([0, 1, 5, 6, 7, 13, 20, 100, 1001])(
    'splits %i messages into exactly that many',
    (total) => {
      const counts = distributeMalformed(total);
      expect(sum(Object.values(counts))).toBe(total);
      expect(counts.oversize).toBeLessThanOrEqual(MAX_OVERSIZE_MESSAGES);
    },
  );

  it('goes round-robin over the kinds in order', () => {
    expect(distributeMalformed(1)).toMatchObject({ 'not-json': 1, oversize: 0 });
    expect(distributeMalformed(6)).toEqual(Object.fromEntries(MALFORMED_KINDS.map((k) => [k, 1])));
  });

  it('caps oversize at a couple and gives the rest to the other kinds', () => {
    expect(distributeMalformed(20)).toEqual({
      'not-json': 4,
      'wrong-content-type': 4,
      'schema-invalid': 4,
      'missing-message-id': 3,
      'empty-body': 3,
      oversize: 2,
    });
  });
});

describe('randomAmountCents', () => {
  it('never returns 0 and covers both ends of the range', () => {
    expect(randomAmountCents(() => 0)).toBe(MIN_AMOUNT_CENTS);
    expect(randomAmountCents(() => 0.999999999)).toBe(MAX_AMOUNT_CENTS);
    const random = seededRandom(3);
    for (let i = 0; i < 20_000; i++) expect(randomAmountCents(random)).not.toBe(0);
  });

  it('maps the value just below 0 and just above it to -1 and 1', () => {
    const span = MAX_AMOUNT_CENTS - MIN_AMOUNT_CENTS;
    expect(randomAmountCents(() => (-MIN_AMOUNT_CENTS - 1 + 0.5) / span)).toBe(-1);
    expect(randomAmountCents(() => (-MIN_AMOUNT_CENTS + 0.5) / span)).toBe(1);
  });
});

describe('balancesOf', () => {
  it('sums per account and lists untouched accounts as 0', () => {
    const balances = balancesOf(
      ['a', 'b', 'c'],
      [
        { accountId: 'a', amountCents: 100 },
        { accountId: 'a', amountCents: -30 },
        { accountId: 'b', amountCents: 5 },
      ],
    );
    expect([...balances]).toEqual([
      ['a', 70],
      ['b', 5],
      ['c', 0],
    ]);
  });
});

function balanceTotal(transactions: readonly { amountCents: number }[]): number {
  return transactions.reduce((total, tx) => total + tx.amountCents, 0);
}
