/**
 * Reconnection delays: full jitter (a uniform draw between zero and an
 * exponentially growing ceiling, capped), so clients cut at the same moment
 * do not come back at the same moment.
 */

/** How reconnection waits grow. */
export interface BackoffOptions {
  /** The first ceiling, ms (default 250). */
  initialMs?: number;
  /** The largest ceiling, ms (default 30 000). */
  maxMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
}

/** The ceiling before attempt `attempt` (0 for the first retry). */
export function backoffCeiling(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initialMs ?? 250;
  const max = options.maxMs ?? 30_000;
  const factor = options.factor ?? 2;
  const ceiling = initial * Math.pow(factor, Math.max(0, attempt));
  return Math.min(max, Number.isFinite(ceiling) ? ceiling : max);
}

/** A full-jitter delay for `attempt`: uniform in `[0, ceiling]`. */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  return Math.floor(random() * backoffCeiling(attempt, options));
}
