// Direct probe reads on path devices, each with its own deadline, with the
// probes still outstanding remembered per path.
//
// A probe on a hung path may never complete: a read held by a suspended dm
// device or a blocked SCSI device sleeps uninterruptibly, and neither the
// abort signal nor a kill ends it. So the deadline is the verdict: at the
// deadline the path is a suspect and the caller moves on; the probe stays on
// record until it settles, and while it is on record no second probe is sent
// to that path (it would only hang beside the first). A later request for a
// verdict on that path gets "hung" at once.
import type { Clock } from './clock';
import type { PathRef } from './counter-sampler';
import { checkDuration } from '../check';

/**
 * A direct read on one path device. It should settle only when the read is
 * over in the kernel: one that rejects at `signal`'s abort while its read is
 * still held lets the next attribution send a second probe to the hung path.
 * `signal` is the hint to stop what can be stopped (a retry, a queued read).
 */
export type ProbeRead = (path: PathRef, signal: AbortSignal) => Promise<{ readonly latencyMs: number }>;

/** What one probe said about a path. */
export type ProbeVerdict =
  | { readonly kind: 'fast'; readonly latencyMs: number; readonly timeoutMs: number }
  | { readonly kind: 'slow'; readonly latencyMs: number; readonly timeoutMs: number }
  | { readonly kind: 'timeout'; readonly issuedAtMs: number; readonly timeoutMs: number }
  | { readonly kind: 'error'; readonly error: string; readonly code: string | null }
  | { readonly kind: 'hung'; readonly issuedAtMs: number; readonly outstandingMs: number }
  /** Every other path answered fast and this one still had not, well past them (elimination). */
  | { readonly kind: 'outlasted'; readonly waitedMs: number; readonly slowestFastMs: number };

/** A probe sent and not settled yet. */
export interface OutstandingProbe {
  /** The path probed. */
  readonly path: PathRef;
  /** Clock ms when it was sent. */
  readonly issuedAtMs: number;
  /** Clock ms of its deadline. */
  readonly deadlineMs: number;
}

/** The reason a probe's signal is aborted with at its deadline. */
export class ProbeTimeoutError extends Error {
  /** The path. */
  readonly path: PathRef;
  /** The deadline, ms after issue. */
  readonly timeoutMs: number;

  constructor(path: PathRef, timeoutMs: number) {
    super(`probe of ${path.name} (${path.devno}) did not complete within ${timeoutMs} ms`);
    this.name = new.target.name;
    this.path = path;
    this.timeoutMs = timeoutMs;
  }
}

interface Entry extends OutstandingProbe {
  readonly verdict: Promise<ProbeVerdict>;
}

/** An error as plain data for evidence: its message and errno code, if any. */
export function describeError(err: unknown): { error: string; code: string | null } {
  const code = typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : null;
  return { error: err instanceof Error ? err.message : String(err), code };
}

/** Whether a verdict makes the path a suspect. */
export function isSuspectVerdict(v: ProbeVerdict): boolean {
  return v.kind !== 'fast';
}

/** Sends probes with deadlines on a Clock and remembers the ones still outstanding. */
export class ProbeRunner {
  readonly #clock: Clock;
  readonly #probe: ProbeRead;
  readonly #timeoutMs: number;
  readonly #outstanding = new Map<string, Entry>();
  /** Probes sent (for tests and stats). */
  issued = 0;

  constructor(clock: Clock, probe: ProbeRead, timeoutMs: number) {
    checkDuration('probe timeoutMs', timeoutMs);
    this.#clock = clock;
    this.#probe = probe;
    this.#timeoutMs = timeoutMs;
  }

  /** Probes not settled yet, hung ones included. */
  outstanding(): OutstandingProbe[] {
    return [...this.#outstanding.values()].map(({ path, issuedAtMs, deadlineMs }) => ({ path, issuedAtMs, deadlineMs }));
  }

  /**
   * A verdict on `path`: joins a probe still within its deadline, answers
   * "hung" for one past it, else sends a new probe. Never rejects.
   */
  verdict(path: PathRef): Promise<ProbeVerdict> {
    const now = this.#clock.now();
    const prev = this.#outstanding.get(path.devno);
    if (prev) {
      if (now < prev.deadlineMs) return prev.verdict;
      return Promise.resolve({ kind: 'hung', issuedAtMs: prev.issuedAtMs, outstandingMs: now - prev.issuedAtMs });
    }
    return this.#send(path, now);
  }

  #send(path: PathRef, issuedAtMs: number): Promise<ProbeVerdict> {
    const timeoutMs = this.#timeoutMs;
    const deadlineMs = issuedAtMs + timeoutMs;
    const controller = new AbortController();
    this.issued++;
    let entry: Entry | undefined;
    const verdict = new Promise<ProbeVerdict>((resolve) => {
      let decided = false;
      const decide = (v: ProbeVerdict): void => {
        if (decided) return;
        decided = true;
        resolve(v);
      };
      const timer = this.#clock.setTimer(deadlineMs, () => {
        decide({ kind: 'timeout', issuedAtMs, timeoutMs });
        controller.abort(new ProbeTimeoutError(path, timeoutMs));
      });
      const settle = (): void => {
        this.#clock.clearTimer(timer);
        if (this.#outstanding.get(path.devno) === entry) this.#outstanding.delete(path.devno);
      };
      let run: Promise<{ readonly latencyMs: number }>;
      try {
        run = Promise.resolve(this.#probe(path, controller.signal));
      } catch (err) {
        run = Promise.reject(err);
      }
      // Both branches handled: a probe that rejects after its deadline
      // (aborted, or failing once the path resumes) is never unhandled.
      run.then(
        ({ latencyMs }) => {
          settle();
          decide(latencyMs < timeoutMs ? { kind: 'fast', latencyMs, timeoutMs } : { kind: 'slow', latencyMs, timeoutMs });
        },
        (err: unknown) => {
          settle();
          decide({ kind: 'error', ...describeError(err) });
        },
      );
    });
    // The probe's callbacks run as microtasks, after this line, so the entry
    // is on record before anything can settle it.
    entry = { path, issuedAtMs, deadlineMs, verdict };
    this.#outstanding.set(path.devno, entry);
    return verdict;
  }
}
