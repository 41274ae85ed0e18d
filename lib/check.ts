// Range checks of numeric options, shared by every folder that takes them.

/** `v` if it is an integer >= `min`; throws RangeError naming `name` otherwise. */
export function checkInteger(name: string, v: number, min: number): number {
  if (!Number.isInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${v}`);
  return v;
}

/** The shortest duration option, ms: Node's timers fire no sooner (a smaller one pegged the event loop). */
export const MIN_DURATION_MS = 1;
/** The longest duration option, ms: setTimeout's limit (2^31 - 1); a longer delay fires at once (Node docs, timers). */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** Why `ms` is not a usable duration, or null when it is. */
export function durationProblem(ms: number): string | null {
  if (!Number.isFinite(ms)) return 'must be a finite number of ms';
  if (ms < MIN_DURATION_MS) return `must be at least ${MIN_DURATION_MS} ms`;
  if (ms > MAX_DURATION_MS) return `must be at most ${MAX_DURATION_MS} ms (about 24.8 days, setTimeout's limit)`;
  return null;
}

/** `v` if it is a usable duration; throws RangeError naming `name` otherwise. */
export function checkDuration(name: string, v: number): number {
  const problem = durationProblem(v);
  if (problem) throw new RangeError(`${name} ${problem}, got ${v}`);
  return v;
}
