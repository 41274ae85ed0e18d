// Per-path latency statistics: what stats() reports (p50/p99/max over a
// recent window, counts) and what the slowFactor rule reads (a sliding-window
// median). Every sample costs O(1); reads cost one histogram pass or one sort
// of at most `medianSamples` numbers, and happen on a tick, not per I/O.
import { LogHistogram } from './histogram';

/** Median of the recent samples and how many it was taken over. */
export interface MedianSample {
  /** Median latency, ms (NaN when there are no samples). */
  medianMs: number;
  /** Number of samples the median was taken over. */
  samples: number;
}

/** Median of the last `capacity` samples that are at most `maxAgeMs` old. */
export class SlidingMedian {
  readonly #at: Float64Array;
  readonly #ms: Float64Array;
  readonly #scratch: Float64Array;
  readonly #maxAgeMs: number;
  #next = 0;
  #filled = 0;

  constructor(capacity: number, maxAgeMs: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be an integer >= 1, got ${capacity}`);
    if (!(maxAgeMs > 0)) throw new RangeError(`maxAgeMs must be > 0, got ${maxAgeMs}`);
    this.#at = new Float64Array(capacity);
    this.#ms = new Float64Array(capacity);
    this.#scratch = new Float64Array(capacity);
    this.#maxAgeMs = maxAgeMs;
  }

  /** Adds a sample taken at `atMs`, overwriting the oldest when full. */
  record(atMs: number, latencyMs: number): void {
    this.#at[this.#next] = atMs;
    this.#ms[this.#next] = latencyMs;
    this.#next = (this.#next + 1) % this.#at.length;
    if (this.#filled < this.#at.length) this.#filled++;
  }

  /** Median over the samples still inside the window at `nowMs` (mean of the two middles when even). */
  median(nowMs: number): MedianSample {
    const oldest = nowMs - this.#maxAgeMs;
    let n = 0;
    for (let i = 0; i < this.#filled; i++) {
      if (this.#at[i]! >= oldest) this.#scratch[n++] = this.#ms[i]!;
    }
    if (n === 0) return { medianMs: NaN, samples: 0 };
    const sorted = this.#scratch.subarray(0, n).sort();
    const mid = n >> 1;
    const medianMs = n % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
    return { medianMs, samples: n };
  }

  /** Forgets every sample. */
  reset(): void {
    this.#next = 0;
    this.#filled = 0;
  }
}

/**
 * A histogram over a recent window: two halves of `windowMs` each, rotated
 * lazily on record, so reads cover between windowMs and 2 × windowMs of
 * history without a timer.
 */
export class WindowedHistogram {
  readonly #windowMs: number;
  #current = new LogHistogram();
  #previous = new LogHistogram();
  readonly #merged = new LogHistogram();
  #sliceStart: number | null = null;

  constructor(windowMs: number) {
    if (!(windowMs > 0)) throw new RangeError(`windowMs must be > 0, got ${windowMs}`);
    this.#windowMs = windowMs;
  }

  /** Records a latency observed at `nowMs`. */
  record(nowMs: number, latencyMs: number): void {
    this.#rotate(nowMs);
    this.#current.record(latencyMs);
  }

  /** The window's samples merged into one histogram (reused between calls: read it before the next call). */
  read(nowMs: number): LogHistogram {
    this.#rotate(nowMs);
    this.#merged.reset();
    this.#merged.merge(this.#previous);
    this.#merged.merge(this.#current);
    return this.#merged;
  }

  /** Forgets every sample. */
  reset(): void {
    this.#current.reset();
    this.#previous.reset();
    this.#sliceStart = null;
  }

  #rotate(nowMs: number): void {
    if (this.#sliceStart === null) {
      this.#sliceStart = nowMs;
      return;
    }
    const age = nowMs - this.#sliceStart;
    if (age < this.#windowMs) return;
    if (age >= 2 * this.#windowMs) {
      this.#previous.reset();
      this.#current.reset();
      this.#sliceStart = nowMs;
      return;
    }
    const spare = this.#previous;
    this.#previous = this.#current;
    this.#current = spare;
    this.#current.reset();
    this.#sliceStart += this.#windowMs;
  }
}

/** Options for {@link PathLatency} and {@link LatencyBook}. */
export interface LatencyOptions {
  /** Length of the p50/p99/max window, ms (default 10 000). */
  windowMs?: number;
  /** Samples kept for the sliding median (default 64). */
  medianSamples?: number;
  /** Oldest sample the median may use, ms (default windowMs). */
  medianMaxAgeMs?: number;
}

/** One path's latency figures at a moment, as stats() reports them. */
export interface PathLatencySnapshot extends MedianSample {
  /** I/Os completed since creation or reset. */
  completed: number;
  /** I/Os failed since creation or reset. */
  errors: number;
  /** Completions inside the p50/p99/max window. */
  windowCount: number;
  /** p50 over the window, ms (NaN when empty). */
  p50Ms: number;
  /** p99 over the window, ms (NaN when empty). */
  p99Ms: number;
  /** Max over the window, ms (NaN when empty). */
  maxMs: number;
}

/** Latency statistics of one path. */
export class PathLatency {
  readonly #window: WindowedHistogram;
  readonly #median: SlidingMedian;
  #completed = 0;
  #errors = 0;

  constructor(options: LatencyOptions = {}) {
    const windowMs = options.windowMs ?? 10_000;
    this.#window = new WindowedHistogram(windowMs);
    this.#median = new SlidingMedian(options.medianSamples ?? 64, options.medianMaxAgeMs ?? windowMs);
  }

  /** Records a completed I/O's latency. */
  record(nowMs: number, latencyMs: number): void {
    this.#completed++;
    this.#window.record(nowMs, latencyMs);
    this.#median.record(nowMs, latencyMs);
  }

  /** Counts a failed I/O (it has no meaningful latency). */
  recordError(): void {
    this.#errors++;
  }

  /** The sliding median the slowFactor rule judges. */
  median(nowMs: number): MedianSample {
    return this.#median.median(nowMs);
  }

  /** All figures at `nowMs`. */
  snapshot(nowMs: number): PathLatencySnapshot {
    const h = this.#window.read(nowMs);
    const empty = h.count === 0;
    return {
      completed: this.#completed,
      errors: this.#errors,
      windowCount: h.count,
      p50Ms: h.quantile(0.5),
      p99Ms: h.quantile(0.99),
      maxMs: empty ? NaN : h.max,
      ...this.#median.median(nowMs),
    };
  }

  /** Forgets the window and median (counts are kept), e.g. when a path is reinstated. */
  resetWindow(): void {
    this.#window.reset();
    this.#median.reset();
  }
}

/** Latency statistics for every path of a map, keyed by path id ("maj:min"). */
export class LatencyBook {
  readonly #options: LatencyOptions;
  readonly #paths = new Map<string, PathLatency>();

  constructor(options: LatencyOptions = {}) {
    this.#options = options;
  }

  /** The path's statistics, created on first use. */
  path(id: string): PathLatency {
    let p = this.#paths.get(id);
    if (!p) this.#paths.set(id, (p = new PathLatency(this.#options)));
    return p;
  }

  /** Drops a path (removed by a table reload). */
  delete(id: string): void {
    this.#paths.delete(id);
  }

  /** Every path's sliding median: the payload of a `latency-window` observation. */
  medians(nowMs: number): Record<string, MedianSample> {
    const out: Record<string, MedianSample> = {};
    for (const [id, p] of this.#paths) out[id] = p.median(nowMs);
    return out;
  }

  /** Every path's figures, for stats(). */
  snapshot(nowMs: number): Record<string, PathLatencySnapshot> {
    const out: Record<string, PathLatencySnapshot> = {};
    for (const [id, p] of this.#paths) out[id] = p.snapshot(nowMs);
    return out;
  }
}
