// Records every Watchdog event with the time it came, for tests that assert on
// what the watchdog did and when.
import type { Watchdog, WatchdogEvents } from '../../../lib/index';

/** Every event by name, in order, each with performance.now() at emission. */
export type Recorded = { [K in keyof WatchdogEvents]: { at: number; payload: WatchdogEvents[K][0] }[] };

/** Starts recording the watchdog's events. */
export function record(wd: Watchdog): Recorded {
  const r: Recorded = { 'io-late': [], 'path-failed': [], 'path-reinstated': [], 'last-path-kept': [], error: [], stopped: [] };
  for (const name of Object.keys(r) as (keyof WatchdogEvents)[]) {
    (wd as unknown as NodeJS.EventEmitter).on(name, (payload: unknown) => {
      (r[name] as { at: number; payload: unknown }[]).push({ at: performance.now(), payload });
    });
  }
  return r;
}
