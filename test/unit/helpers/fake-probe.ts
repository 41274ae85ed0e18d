// A scripted probe function: each call waits on a promise the test settles,
// and every call is recorded with its abort signal.
import type { PathRef, ProbeRead } from '../../../lib/watchdog';

/** One call of the fake probe. */
export interface ProbeCall {
  path: PathRef;
  signal: AbortSignal;
  resolve: (latencyMs: number) => void;
  reject: (err: Error) => void;
}

/** How the fake answers a path: at once with a latency, at once with an error, or only when the test says (held). */
export type ProbeScript = { latencyMs: number } | { error: Error } | 'held';

/** A fake ProbeRead; `called(devno)` resolves at the next call for that path. */
export class FakeProbe {
  readonly calls: ProbeCall[] = [];
  readonly #script = new Map<string, ProbeScript>();
  readonly #waiters: { devno: string; resolve: (c: ProbeCall) => void }[] = [];

  /** Sets how calls for `devno` are answered. */
  script(devno: string, how: ProbeScript): this {
    this.#script.set(devno, how);
    return this;
  }

  /** Calls made for `devno`. */
  callsFor(devno: string): ProbeCall[] {
    return this.calls.filter((c) => c.path.devno === devno);
  }

  /** Resolves with the next call for `devno` (register before the call is made). */
  called(devno: string): Promise<ProbeCall> {
    return new Promise((resolve) => this.#waiters.push({ devno, resolve }));
  }

  readonly read: ProbeRead = (path, signal) =>
    new Promise((resolve, reject) => {
      const call: ProbeCall = { path, signal, resolve: (latencyMs) => resolve({ latencyMs }), reject };
      this.calls.push(call);
      for (let i = this.#waiters.length - 1; i >= 0; i--) {
        if (this.#waiters[i]!.devno === path.devno) this.#waiters.splice(i, 1)[0]!.resolve(call);
      }
      const how = this.#script.get(path.devno) ?? 'held';
      if (how === 'held') return;
      if ('error' in how) reject(how.error);
      else resolve({ latencyMs: how.latencyMs });
    });
}
