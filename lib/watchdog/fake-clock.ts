// A clock that moves only when told to. It lives in lib/ rather than test/
// because the Watchdog's own tests, and users testing code built on the
// watchdog, need the same fake; it has no dependency on a test framework.
import type { Clock, TimerHandle } from './clock';

interface FakeTimer extends TimerHandle {
  readonly seq: number;
  readonly atMs: number;
  readonly fire: () => void;
}

/** A manual {@link Clock} for tests: `advance(ms)` fires due timers in deadline order. */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #pending = new Map<number, FakeTimer>();
  /** How many timers were ever armed: the measure of timer churn. */
  armed = 0;
  /** How many timers were cleared before they fired. */
  cleared = 0;
  /** How many timers fired. */
  fired = 0;

  constructor(startMs = 0) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  /** Timers armed and not yet fired or cleared. */
  get pending(): number {
    return this.#pending.size;
  }

  /** The earliest armed deadline, or undefined when no timer is armed. */
  get nextAt(): number | undefined {
    return this.#earliest()?.atMs;
  }

  setTimer(atMs: number, fire: () => void): TimerHandle {
    if (!Number.isFinite(atMs)) throw new RangeError(`timer deadline must be finite, got ${atMs}`);
    const timer: FakeTimer = { __timerHandle: true, seq: this.#seq++, atMs, fire };
    this.#pending.set(timer.seq, timer);
    this.armed++;
    return timer;
  }

  clearTimer(handle: TimerHandle): void {
    if (this.#pending.delete((handle as FakeTimer).seq)) this.cleared++;
  }

  /**
   * Moves time forward by `ms`, firing every timer due by then in deadline
   * order (ties in arming order), with now() set to each timer's deadline as
   * it fires. Timers armed by callbacks fire too if they fall due in the span.
   */
  advance(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`advance takes a finite ms >= 0, got ${ms}`);
    const target = this.#now + ms;
    // A callback that re-arms at or before now forever would hang the test
    // run; fail loudly instead.
    for (let guard = 0; ; guard++) {
      if (guard > 1_000_000) throw new Error('FakeClock.advance: more than 1e6 timers fired in one advance');
      const next = this.#earliest();
      if (next === undefined || next.atMs > target) break;
      this.#pending.delete(next.seq);
      this.#now = Math.max(this.#now, next.atMs);
      this.fired++;
      next.fire();
    }
    this.#now = target;
  }

  /** Advances to an absolute time (no-op if already past it). */
  advanceTo(atMs: number): void {
    this.advance(Math.max(0, atMs - this.#now));
  }

  #earliest(): FakeTimer | undefined {
    let best: FakeTimer | undefined;
    for (const t of this.#pending.values()) {
      if (best === undefined || t.atMs < best.atMs || (t.atMs === best.atMs && t.seq < best.seq)) best = t;
    }
    return best;
  }
}
