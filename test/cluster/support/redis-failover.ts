import type { ChaosRun, Verdict } from '../../chaos/support/chaos.harness.js';
import { recordVerdict, scenarioPause } from '../../chaos/support/verdicts.js';
import { waitFor } from '../../e2e/support/wait-for.js';
import { readiness } from './failover.js';

/** What a failover of the main Redis under load showed. */
export interface RedisFailover {
  readonly verdict: Verdict;
  /** From the kill to the promotion, as `failOver` saw it. */
  readonly promotedMs: number;
  /** From the kill to effects applied again and every instance ready. */
  readonly recoverMs: number;
  /** Instances whose readiness probe answered anything but 200 at some point after the kill. */
  readonly dipped: number;
}

/**
 * The main Redis failed over under 200 msg/s: once work is under way, `failOver` kills a primary
 * and resolves when a replica took its place; then 200 more effects must be applied and every
 * instance be ready, the load stops, the run settles and every message is classified (and
 * recorded in reports/cluster-results.jsonl as `name`). Readiness is polled every 50 ms from the
 * kill to the recovery.
 */
export async function redisFailoverUnderLoad(
  run: ChaosRun,
  name: string,
  failOver: () => Promise<void>,
): Promise<RedisFailover> {
  const load = run.publishWhile(200);
  await waitFor('work under way', async () => (await run.effects()) >= 300, 30_000);
  const dipped = new Set<number>();
  let watching = true;
  const watch = (async () => {
    while (watching) {
      const statuses = await Promise.all(run.services.map(readiness));
      statuses.forEach((status, i) => status !== 200 && dipped.add(i));
      await scenarioPause(50);
    }
  })();
  const killedAt = performance.now();
  await failOver();
  const promotedMs = performance.now() - killedAt;
  const effectsAtPromotion = await run.effects();
  await waitFor(
    'effects applied after the promotion',
    async () => (await run.effects()) >= effectsAtPromotion + 200,
    60_000,
  );
  await run.waitReady(run.services);
  const recoverMs = performance.now() - killedAt;
  watching = false;
  await watch;
  await scenarioPause(2_000);
  await load.stop();
  await run.settle(120_000);
  const verdict = await run.classify();
  recordVerdict(name, verdict, { detectMs: promotedMs, recoverMs }, 'cluster-results.jsonl');
  return { verdict, promotedMs, recoverMs, dipped: dipped.size };
}
