/** The flushes that run when a metric is collected, per metric object. */
const hooks = new WeakMap<object, Set<() => void>>();

/**
 * Runs `flush` each time prom-client collects `metric` (before each scrape reads it), alongside
 * the flushes of other owners of the same metric (two applications in one process share the
 * registry's metric). Returns the function that removes it.
 */
export function onCollect(metric: object, flush: () => void): () => void {
  let flushes = hooks.get(metric);
  if (!flushes) {
    const all = new Set<() => void>();
    flushes = all;
    hooks.set(metric, all);
    // prom-client calls a metric's `collect` before reading it
    (metric as { collect?: () => void }).collect = () => all.forEach((f) => f());
  }
  flushes.add(flush);
  return () => flushes.delete(flush);
}
