// Active probe mode: the CLI's own small O_DIRECT reads through the map, at a
// steady rate and random aligned offsets, so that the Watchdog has I/O to time
// even when nothing else reads the map.
import type { Watchdog, WatchdogIoResult } from '../watchdog/watchdog';

/** Options of ProbeLoad. */
export interface ProbeLoadOptions {
  /** Reads issued per second (> 0). */
  ratePerSec: number;
  /** Bytes per read (a multiple of the map's logical block size). */
  bytes: number;
  /** The map's size in bytes; offsets stay below size - bytes. */
  sizeBytes: number;
  /**
   * Most reads in flight at once. A read stuck on a hung path is kept (its buffer
   * belongs to the kernel until it completes); past this many, ticks are skipped
   * instead of piling up more stuck reads.
   */
  maxInflight: number;
  /** Each completed read. */
  onRead?: (r: WatchdogIoResult, offset: number) => void;
  /** Each failed read. */
  onError?: (e: unknown, offset: number) => void;
}

/** Issues reads through a running Watchdog at a fixed rate until stopped. */
export class ProbeLoad {
  readonly #wd: Watchdog;
  readonly #o: ProbeLoadOptions;
  #timer: NodeJS.Timeout | undefined;
  #inflight = 0;
  /** Reads issued, completed, failed, and ticks skipped because maxInflight reads were outstanding. */
  readonly counts = { issued: 0, completed: 0, failed: 0, skipped: 0 };

  constructor(wd: Watchdog, options: ProbeLoadOptions) {
    if (!(options.ratePerSec > 0)) throw new RangeError(`ratePerSec must be > 0, got ${options.ratePerSec}`);
    if (options.sizeBytes < options.bytes) throw new RangeError(`the map (${options.sizeBytes} bytes) is smaller than one read (${options.bytes} bytes)`);
    this.#wd = wd;
    this.#o = options;
  }

  /** Reads in flight now. */
  get inflight(): number {
    return this.#inflight;
  }

  /** Starts issuing reads. */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.#tick(), 1000 / this.#o.ratePerSec);
  }

  /** Stops issuing reads; reads in flight are left to the Watchdog's stop(). */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tick(): void {
    if (this.#inflight >= this.#o.maxInflight) {
      this.counts.skipped++;
      return;
    }
    const { bytes, sizeBytes } = this.#o;
    const offset = Math.floor(Math.random() * Math.floor(sizeBytes / bytes)) * bytes;
    let buf: Buffer;
    try {
      buf = this.#wd.alloc(bytes);
    } catch {
      return; // stopping: no new reads
    }
    this.#inflight++;
    this.counts.issued++;
    this.#wd.read(buf, offset).then(
      (r) => {
        this.#inflight--;
        this.counts.completed++;
        this.#o.onRead?.(r, offset);
      },
      (e: unknown) => {
        this.#inflight--;
        this.counts.failed++;
        this.#o.onError?.(e, offset);
      },
    );
  }
}
