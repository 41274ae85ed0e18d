// Time for the watchdog: one monotonic clock, in milliseconds as a float.
//
// Why milliseconds as `number` and not nanoseconds as `bigint`: every consumer
// (deadlines, timers, policy windows, percentiles) thinks in milliseconds, and
// number arithmetic is far cheaper than bigint on the per-I/O path. A float64
// holds CLOCK_MONOTONIC in ms with sub-nanosecond resolution for the first
// ~100 days of uptime and ~16 ns resolution after ~3 years, which is far finer
// than any timeout we act on. The engine's bigint stamps are converted once,
// with `msFromNs`, when they enter TypeScript.
//
// The base is CLOCK_MONOTONIC, the same clock the C++ engine stamps with:
// `process.hrtime.bigint()` reads it on Linux, so engine stamps and `now()`
// can be compared directly.

/** An opaque handle for an armed timer; only the clock that made it can clear it. */
export interface TimerHandle {
  /** Brand: handles are not interchangeable with other objects. */
  readonly __timerHandle: true;
}

/** A monotonic clock in milliseconds with one-shot timers at absolute times. */
export interface Clock {
  /** CLOCK_MONOTONIC now, in milliseconds (fractional). */
  now(): number;
  /** Calls `fire` once, no earlier than `atMs` on this clock. */
  setTimer(atMs: number, fire: () => void): TimerHandle;
  /** Cancels a timer; clearing a fired or cleared timer does nothing. */
  clearTimer(handle: TimerHandle): void;
}

/** Converts an engine stamp (CLOCK_MONOTONIC ns, bigint) to clock milliseconds. */
export function msFromNs(ns: bigint): number {
  // Number() first: a bigint division per I/O would cost more than the
  // precision it saves (see the header comment).
  return Number(ns) / 1e6;
}

interface SystemTimer extends TimerHandle {
  timeout: NodeJS.Timeout;
}

/** Options for {@link SystemClock}. */
export interface SystemClockOptions {
  /** Unref timers so that a watchdog with nothing in flight never holds the process open (default true). */
  unref?: boolean;
}

/** The real clock: process.hrtime.bigint() and Node timers. */
export class SystemClock implements Clock {
  readonly #unref: boolean;

  constructor(options: SystemClockOptions = {}) {
    this.#unref = options.unref ?? true;
  }

  now(): number {
    return msFromNs(process.hrtime.bigint());
  }

  setTimer(atMs: number, fire: () => void): TimerHandle {
    // Node's timers run on libuv's millisecond loop time and may fire up to
    // 1 ms before hrtime reaches atMs; rounding up keeps "no earlier" honest
    // in almost every case, and callers re-check now() anyway.
    const delay = Math.max(0, Math.ceil(atMs - this.now()));
    const timeout = setTimeout(fire, delay);
    if (this.#unref) timeout.unref();
    const handle: SystemTimer = { __timerHandle: true, timeout };
    return handle;
  }

  clearTimer(handle: TimerHandle): void {
    clearTimeout((handle as SystemTimer).timeout);
  }
}
