// Watching every dm device for events without a thread per device: a control
// fd armed with DM_DEV_ARM_POLL wakes libuv when the global event counter moves;
// then we list devices and report those whose event_nr changed. This is how
// multipathd's dmevents.c works (arm, then list, then compare event_nr), and
// arming before listing means no event can fall between the two.
import type { DmEvent } from './types';

/** What the watcher needs from the client: a device list and a native poller. */
export interface EventSource {
  /** Current devices with their event counters. */
  list(): Promise<ReadonlyArray<{ name: string; eventNr: number | undefined }>>;
  /** Opens an armed poller; `onWake` runs (already re-armed) when the counter moves. */
  open(onWake: (err: Error | null) => void): { close(): void };
}

/** Devices in `now` whose counter differs from `before` (new ones count when non-zero). */
export function changedDevices(before: ReadonlyMap<string, number>, now: ReadonlyArray<{ name: string; eventNr: number | undefined }>): DmEvent[] {
  const out: DmEvent[] = [];
  for (const d of now) {
    if (d.eventNr === undefined) continue;
    const prev = before.get(d.name);
    if (prev === undefined ? d.eventNr !== 0 : prev !== d.eventNr) out.push({ name: d.name, eventNr: d.eventNr });
  }
  return out;
}

function counters(list: ReadonlyArray<{ name: string; eventNr: number | undefined }>): Map<string, number> {
  return new Map(list.flatMap((d) => (d.eventNr === undefined ? [] : [[d.name, d.eventNr] as [string, number]])));
}

/** Yields `{name, eventNr}` for devices whose event counter moves, until `signal` aborts. */
export async function* watchEvents(source: EventSource, signal?: AbortSignal): AsyncGenerator<DmEvent, void, undefined> {
  if (signal?.aborted) return;
  let woken = false;
  let failure: Error | null = null;
  let wake: (() => void) | undefined;
  const poller = source.open((err) => {
    woken = true;
    if (err) failure = err;
    wake?.();
  });
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    poller.close();
    wake?.();
  };
  // Close at once on abort, even while the consumer is not pulling, so the
  // uv handle stops holding the loop open.
  signal?.addEventListener('abort', close, { once: true });
  try {
    let known = counters(await source.list());
    for (;;) {
      if (closed || signal?.aborted) return;
      if (!woken) await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      if (closed || signal?.aborted) return;
      if (failure) throw failure;
      woken = false;
      const now = await source.list();
      const changed = changedDevices(known, now);
      known = counters(now);
      for (const e of changed) {
        if (closed || signal?.aborted) return;
        yield e;
      }
    }
  } finally {
    signal?.removeEventListener('abort', close);
    close();
  }
}
