import type { MessageContext } from '../messaging/index.js';
import type { ApplyResult } from './ledger.service.js';

/** One transaction the ledger committed (or found committed before, or was refused). */
export interface LedgerCommit {
  readonly accountId: string;
  readonly amountCents: number;
  readonly result: ApplyResult;
}

/**
 * Watches the ledger's commits: a seam for tests (the reliability suite's oracle provides one),
 * none in production. Provide it under {@link LEDGER_OBSERVER}, from any global module.
 */
export interface LedgerObserver {
  /** Before the commit; may hold the message's lock (`ctx.lock.hold()`) and work under it. */
  beforeCommit(ctx: MessageContext): Promise<void>;
  /** After the commit answered (not when it threw). */
  afterCommit(ctx: MessageContext, commit: LedgerCommit): Promise<void>;
}

/** The injection token of the {@link LedgerObserver}; nothing is provided under it by default. */
export const LEDGER_OBSERVER = Symbol('LEDGER_OBSERVER');
