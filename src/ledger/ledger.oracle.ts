import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { type ConfigType } from '@nestjs/config';
import Redis from 'ioredis';
import { ledgerConfig } from '../config/app.config';
import { abortableDelay } from '../lifecycle/abortable-delay';
import { createRedisClient } from '../redis/redis.connection';

/** Redis list of the oracle that receives one JSON record per effect the ledger attempted. */
export const ORACLE_EFFECTS_KEY = 'oracle:effects';

/** One attempt to apply a transaction, as the reliability suite's oracle sees it. */
export interface EffectRecord {
  readonly messageId: string;
  readonly accountId: string;
  readonly amountCents: number;
  readonly fencingToken: number | undefined;
  readonly result: 'applied' | 'duplicate' | 'stale';
  /** Wall-clock ms (performance.timeOrigin + now), comparable across processes on one host. */
  readonly start: number;
  /**
   * When the handler sent its effect script: the end of the work the lock serialized. The script
   * commits and (single-Redis mode) releases the lock in one step, so the next holder may start
   * before this process sees the reply: a later instant would show overlaps that are not there.
   * For an effect committed with the lock taken at commit ({@link atCommit}), when its reply came.
   */
  readonly end: number;
  /**
   * The lock was left to the commit script (`lockAtCommit`): it was held only for the script's
   * atomic step, which ran somewhere in [start, end] (the commit's round trip, a wait for a busy
   * key included). Such an effect overlaps a held lock only if that whole window lies inside the
   * held interval.
   */
  readonly atCommit: boolean;
  readonly pid: number;
}

/**
 * Test only: with `LEDGER_ORACLE_URL` set (the reliability suite; production never sets it),
 * the ledger reports each effect it attempted to a Redis that the suite never faults, so the
 * suite can check duplicates and lock overlaps. Without it, nothing is recorded or connected.
 */
@Injectable()
export class LedgerOracle implements OnApplicationShutdown {
  private readonly client: Redis | undefined;
  private readonly delayMs: number;
  private blockMs: number;

  constructor(@Inject(ledgerConfig.KEY) config: ConfigType<typeof ledgerConfig>) {
    this.delayMs = config.oracleDelayMs;
    this.blockMs = config.oracleBlockMs;
    if (config.oracleUrl) {
      this.client = createRedisClient(config.oracleUrl, 'message-processor-oracle');
      this.client.on('error', () => undefined);
    }
  }

  /** Wall-clock ms (performance.timeOrigin + now), comparable across processes on one host. */
  static clock(): number {
    return performance.timeOrigin + performance.now();
  }

  get enabled(): boolean {
    return this.client !== undefined;
  }

  /** Whether {@link simulateWork} will work (or block) under the lock: the handler then holds it. */
  get simulatesWork(): boolean {
    return this.client !== undefined && (this.delayMs > 0 || this.blockMs > 0);
  }

  /**
   * Under the oracle only (`LEDGER_ORACLE_DELAY_MS`): works that long under the lock before the
   * effect, as a slow handler would, so the suite can pause or outlive a lease mid-handler.
   * Rejects with the signal's reason when it aborts. With `LEDGER_ORACLE_BLOCK_MS`, the first
   * run of the process blocks the event loop that long first.
   */
  async simulateWork(signal: AbortSignal): Promise<void> {
    if (!this.client) return;
    if (this.blockMs > 0) {
      // once per process (`LEDGER_ORACLE_BLOCK_MS`): a handler that hogs the event loop
      const until = performance.now() + this.blockMs;
      this.blockMs = 0;
      while (performance.now() < until);
    }
    if (this.delayMs === 0) return;
    await abortableDelay(this.delayMs, signal);
  }

  /** Records an effect of this process. */
  async record(effect: Omit<EffectRecord, 'pid'>): Promise<void> {
    const full: EffectRecord = { ...effect, pid: process.pid };
    await this.client?.rpush(ORACLE_EFFECTS_KEY, JSON.stringify(full)).catch(() => undefined);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.client?.quit().catch(() => undefined);
  }
}
