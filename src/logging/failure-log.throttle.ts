/**
 * Whether the `count`-th consecutive failure of a connection is worth a log line: the first, then
 * one in ten, so an outage is reported at once without flooding the logs while it lasts.
 */
export function isFailureWorthLogging(count: number): boolean {
  return count === 1 || count % 10 === 0;
}
