// Periodic samples of the sysfs counters of a set of block devices (a map
// and its paths), kept in a short ring per device.
//
// Why periodic and not at submit: attribution needs each path's counters as
// they were before the late I/O was submitted, and reading sysfs at every
// submit would cost two file reads per path per I/O. A sample every
// timeout/4 costs the same whatever the IOPS, and the last sample taken
// before the submit is a valid baseline: anything it counts completed before
// the submit. The passive mode reads the same samples.
import type { Clock, TimerHandle } from './clock';
import { readCounters, type CounterSnapshot } from './sysfs-counters';

/** A block device named both ways, as attribution and sampling need it. */
export interface PathRef {
  /** `major:minor`, as dm status and fail_path name it. */
  readonly devno: string;
  /** Kernel name under /sys/block, e.g. `dm-3` or `sdb`. */
  readonly name: string;
}

/** Reads one device's counters (the sysfs reader, or a fake in tests). */
export type CounterReader = (device: PathRef) => Promise<CounterSnapshot>;

/** A snapshot with the clock time its read finished. */
export interface TimedSnapshot extends CounterSnapshot {
  /** Clock ms when both files had been read: everything counted happened by then. */
  readonly atMs: number;
}

/** A device whose counters could not be read in a round. */
export interface SampleError {
  /** The device. */
  readonly device: PathRef;
  /** What went wrong (SyscallError for a vanished device, SysfsFormatError for bad content). */
  readonly error: Error;
}

/** One sampling round over every device. */
export interface SampleRound {
  /** Clock ms when the round started. */
  readonly startedAtMs: number;
  /** The snapshots read, by devno. */
  readonly snapshots: ReadonlyMap<string, TimedSnapshot>;
  /** The devices that failed. */
  readonly errors: readonly SampleError[];
}

/** Options for {@link CounterSampler}. */
export interface CounterSamplerOptions {
  /** Timers and stamps. */
  readonly clock: Clock;
  /** Time between rounds, ms (> 0). */
  readonly intervalMs: number;
  /** The devices to sample (replace later with setDevices). */
  readonly devices?: readonly PathRef[];
  /** Snapshots kept per device (default 16, at least 2). */
  readonly depth?: number;
  /** The reader; defaults to readCounters under `sysfsRoot`. */
  readonly read?: CounterReader;
  /** Where sysfs is, for the default reader. */
  readonly sysfsRoot?: string;
  /** A listener threw; sampling goes on (default: ignored). */
  readonly onListenerError?: (error: Error) => void;
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Samples counters of a device set every `intervalMs` and keeps the last `depth` per device. */
export class CounterSampler {
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #depth: number;
  readonly #read: CounterReader;
  readonly #onListenerError: ((error: Error) => void) | undefined;
  #devices: PathRef[];
  readonly #rings = new Map<string, TimedSnapshot[]>();
  readonly #listeners = new Set<(round: SampleRound) => void>();
  #timer: TimerHandle | null = null;
  #nextAtMs = 0;
  #round: Promise<SampleRound> | null = null;
  /** Rounds skipped because the previous one had not finished. */
  skipped = 0;

  constructor(options: CounterSamplerOptions) {
    if (!(options.intervalMs > 0) || !Number.isFinite(options.intervalMs)) throw new RangeError(`intervalMs must be a finite number > 0, got ${options.intervalMs}`);
    const depth = options.depth ?? 16;
    if (!Number.isInteger(depth) || depth < 2) throw new RangeError(`depth must be an integer >= 2, got ${depth}`);
    this.#clock = options.clock;
    this.#intervalMs = options.intervalMs;
    this.#depth = depth;
    const sysfsRoot = options.sysfsRoot;
    this.#read = options.read ?? ((d) => readCounters(d.name, sysfsRoot === undefined ? {} : { sysfsRoot }));
    this.#devices = [...(options.devices ?? [])];
    this.#onListenerError = options.onListenerError;
  }

  /** Time between rounds, ms. */
  get intervalMs(): number {
    return this.#intervalMs;
  }

  /** The devices sampled. */
  get devices(): readonly PathRef[] {
    return this.#devices;
  }

  /** True between start() and stop(). */
  get running(): boolean {
    return this.#timer !== null;
  }

  /** Replaces the device set (a table reload); history of dropped devices is forgotten. */
  setDevices(devices: readonly PathRef[]): void {
    this.#devices = [...devices];
    const keep = new Set(devices.map((d) => d.devno));
    for (const devno of this.#rings.keys()) if (!keep.has(devno)) this.#rings.delete(devno);
  }

  /** Calls `fn` after every round; returns the unsubscribe function. */
  subscribe(fn: (round: SampleRound) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Samples now, then every intervalMs until stop(). Idempotent. */
  start(): void {
    if (this.#timer !== null) return;
    this.#nextAtMs = this.#clock.now();
    this.#tick();
  }

  /** Stops the timer; a round already reading finishes and is kept. */
  stop(): void {
    if (this.#timer === null) return;
    this.#clock.clearTimer(this.#timer);
    this.#timer = null;
  }

  /** Resolves when the round under way (if any) has finished and its listeners ran. */
  async settled(): Promise<void> {
    while (this.#round !== null) await this.#round;
  }

  /**
   * Reads every device once, records the snapshots and tells the listeners.
   * Never rejects: per-device failures are in the round's `errors`.
   */
  sampleNow(): Promise<SampleRound> {
    if (this.#round !== null) return this.#round;
    const round = this.#sample().finally(() => {
      this.#round = null;
    });
    this.#round = round;
    return round;
  }

  /** The last snapshot of `devno` whose read finished at or before `atMs`. */
  before(devno: string, atMs: number): TimedSnapshot | undefined {
    const ring = this.#rings.get(devno);
    if (!ring) return undefined;
    for (let i = ring.length - 1; i >= 0; i--) if (ring[i]!.atMs <= atMs) return ring[i];
    return undefined;
  }

  /** The newest snapshot of `devno`. */
  latest(devno: string): TimedSnapshot | undefined {
    const ring = this.#rings.get(devno);
    return ring?.[ring.length - 1];
  }

  #tick(): void {
    // A round still reading (a slow sysfs, a loaded box) is not doubled up.
    if (this.#round === null) void this.sampleNow();
    else this.skipped++;
    // Fixed rate from the start, not from each firing, so rounds do not drift
    // later and the rate stays at least 1/intervalMs.
    const now = this.#clock.now();
    do this.#nextAtMs += this.#intervalMs;
    while (this.#nextAtMs <= now);
    this.#timer = this.#clock.setTimer(this.#nextAtMs, () => this.#tick());
  }

  async #sample(): Promise<SampleRound> {
    const startedAtMs = this.#clock.now();
    const devices = this.#devices;
    const results = await Promise.allSettled(
      devices.map(async (d) => {
        const snap = await this.#read(d);
        return { ...snap, atMs: this.#clock.now() };
      }),
    );
    const snapshots = new Map<string, TimedSnapshot>();
    const errors: SampleError[] = [];
    results.forEach((r, i) => {
      const device = devices[i]!;
      if (r.status === 'rejected') {
        errors.push({ device, error: toError(r.reason) });
        return;
      }
      snapshots.set(device.devno, r.value);
      // A device dropped by setDevices while we read is not brought back.
      if (this.#devices.some((d) => d.devno === device.devno)) this.#record(device.devno, r.value);
    });
    const round: SampleRound = { startedAtMs, snapshots, errors };
    for (const fn of [...this.#listeners]) {
      try {
        fn(round);
      } catch (err) {
        // A listener's bug must not stop sampling (or the other listeners).
        this.#onListenerError?.(toError(err));
      }
    }
    return round;
  }

  #record(devno: string, snap: TimedSnapshot): void {
    let ring = this.#rings.get(devno);
    if (!ring) this.#rings.set(devno, (ring = []));
    ring.push(snap);
    if (ring.length > this.#depth) ring.shift();
  }
}
