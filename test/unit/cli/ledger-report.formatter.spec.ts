import { describe, it, expect } from 'vitest';
import {
  formatPublishReport,
  messagesPerSecond,
  publishReportJson,
  sortAccountIds,
  type PublishReport,
} from '../../../src/cli/ledger-report.formatter.js';
import { distributeMalformed } from '../../../src/cli/ledger-traffic.plan.js';

const REPORT: PublishReport = {
  runId: '7f3a9c',
  url: 'amqp://guest:***@localhost:5672/',
  exchange: 'ledger',
  routingKey: 'transaction.created',
  durationMs: 500,
  messagesPerSecond: 4140,
  valid: 2000,
  duplicates: 50,
  malformed: 20,
  malformedByKind: distributeMalformed(20),
  unroutable: 0,
  unconfirmed: 0,
  expectedBalances: new Map([
    ['acc-7f3a9c-10', -300],
    ['acc-7f3a9c-2', 1250],
    ['acc-7f3a9c-1', 0],
  ]),
  expectedTotal: 950,
};

describe('formatPublishReport', () => {
  const text = formatPublishReport(REPORT);

  it('states the rate and the counts', () => {
    expect(text).toContain('published 2070 messages in 0.50 s = 4140 msg/s');
    expect(text).toContain('valid 2000, duplicates 50, malformed 20 (not-json 4,');
    expect(text).toContain('oversize 2)');
    expect(text).toContain('amqp://guest:***@localhost:5672/');
  });

  it('prints the balances sorted by account id, then the total', () => {
    const rows = text
      .split('\n')
      .filter((line) => /^\s+(acc-|total)/.test(line))
      .map((line) => line.trim().split(/\s+/));
    expect(rows).toEqual([
      ['acc-7f3a9c-1', '0'],
      ['acc-7f3a9c-2', '1250'],
      ['acc-7f3a9c-10', '-300'],
      ['total', '950'],
    ]);
  });
});

describe('publishReportJson', () => {
  it('carries the same figures as the text', () => {
    const json = publishReportJson(REPORT);
    expect(json).toMatchObject({
      runId: '7f3a9c',
      messagesPerSecond: 4140,
      published: { valid: 2000, duplicates: 50, malformed: 20 },
      accounts: 3,
      expectedTotal: 950,
    });
    expect(Object.entries(json.expectedBalances)).toEqual([
      ['acc-7f3a9c-1', 0],
      ['acc-7f3a9c-2', 1250],
      ['acc-7f3a9c-10', -300],
    ]);
  });
});

describe('sortAccountIds', () => {
  it('sorts numbered ids naturally', () => {
    expect(sortAccountIds(['acc-x-10', 'acc-x-9', 'acc-x-0', 'acc-w-5'])).toEqual([
      'acc-w-5',
      'acc-x-0',
      'acc-x-9',
      'acc-x-10',
    ]);
  });
});

describe('messagesPerSecond', () => {
  it('rounds messages per second', () => {
    expect(messagesPerSecond(2070, 500)).toBe(4140);
    expect(messagesPerSecond(10, 3)).toBe(3333);
  });
});
