import { MALFORMED_KINDS, type MalformedKind } from './ledger-traffic.plan.js';

/** What a publish run did and the balances a correct service must reach. */
export interface PublishReport {
  readonly runId: string;
  /** Already redacted. */
  readonly url: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly durationMs: number;
  /** Messages published (all kinds) per second, first publish to last confirm. */
  readonly messagesPerSecond: number;
  readonly valid: number;
  readonly duplicates: number;
  readonly malformed: number;
  readonly malformedByKind: Readonly<Record<MalformedKind, number>>;
  /** Messages the broker could not route (mandatory returns). */
  readonly unroutable: number;
  /** Messages nacked or lost with their channel. */
  readonly unconfirmed: number;
  /** Every account of the run, from the transactions the broker confirmed. */
  readonly expectedBalances: ReadonlyMap<string, number>;
  readonly expectedTotal: number;
}

/** The `--expect-file` document. */
export interface PublishReportJson {
  readonly runId: string;
  readonly url: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly durationMs: number;
  readonly messagesPerSecond: number;
  readonly published: {
    readonly valid: number;
    readonly duplicates: number;
    readonly malformed: number;
    readonly malformedByKind: Readonly<Record<MalformedKind, number>>;
  };
  readonly unroutable: number;
  readonly unconfirmed: number;
  readonly accounts: number;
  /** Balance in cents per account id, sorted like the text table. */
  readonly expectedBalances: Readonly<Record<string, number>>;
  readonly expectedTotal: number;
}

/** Account ids in natural order: `acc-x-2` before `acc-x-10`. */
export function sortAccountIds(ids: Iterable<string>): string[] {
  return [...ids].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

export function messagesPerSecond(messages: number, durationMs: number): number {
  return durationMs > 0 ? Math.round((messages * 1000) / durationMs) : messages;
}

/** The human-readable report printed on stdout. */
export function formatPublishReport(report: PublishReport): string {
  const total = report.valid + report.duplicates + report.malformed;
  const kinds = MALFORMED_KINDS.filter((kind) => report.malformedByKind[kind] > 0)
    .map((kind) => `${kind} ${report.malformedByKind[kind]}`)
    .join(', ');
  const lines = [
    `run ${report.runId}: published ${total} messages in ${(report.durationMs / 1000).toFixed(2)} s ` +
      `= ${report.messagesPerSecond} msg/s`,
    `  to exchange "${report.exchange}", routing key "${report.routingKey}" at ${report.url}`,
    `  valid ${report.valid}, duplicates ${report.duplicates}, malformed ${report.malformed}` +
      (kinds.length > 0 ? ` (${kinds})` : ''),
    `  unroutable ${report.unroutable}, unconfirmed ${report.unconfirmed}`,
    '',
    `expected balances (${report.expectedBalances.size} accounts, cents):`,
    ...balanceTable(report.expectedBalances, report.expectedTotal),
  ];
  return `${lines.join('\n')}\n`;
}

export function publishReportJson(report: PublishReport): PublishReportJson {
  return {
    runId: report.runId,
    url: report.url,
    exchange: report.exchange,
    routingKey: report.routingKey,
    durationMs: Math.round(report.durationMs),
    messagesPerSecond: report.messagesPerSecond,
    published: {
      valid: report.valid,
      duplicates: report.duplicates,
      malformed: report.malformed,
      malformedByKind: report.malformedByKind,
    },
    unroutable: report.unroutable,
    unconfirmed: report.unconfirmed,
    accounts: report.expectedBalances.size,
    expectedBalances: Object.fromEntries(
      sortAccountIds(report.expectedBalances.keys()).map((id) => [
        id,
        report.expectedBalances.get(id) ?? 0,
      ]),
    ),
    expectedTotal: report.expectedTotal,
  };
}

function balanceTable(balances: ReadonlyMap<string, number>, total: number): string[] {
  const rows = sortAccountIds(balances.keys()).map((id) => [id, String(balances.get(id) ?? 0)]);
  rows.push(['total', String(total)]);
  const idWidth = Math.max('account'.length, ...rows.map(([id]) => id.length));
  const amountWidth = Math.max('balance'.length, ...rows.map(([, amount]) => amount.length));
  const line = ([id, amount]: string[]): string =>
    `  ${id.padEnd(idWidth)}  ${amount.padStart(amountWidth)}`;
  return [
    line(['account', 'balance']),
    ...rows.slice(0, -1).map(line),
    `  ${'-'.repeat(idWidth + 2 + amountWidth)}`,
    line(rows[rows.length - 1]),
  ];
}
