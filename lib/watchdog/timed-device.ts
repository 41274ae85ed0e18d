// TimedDevice: the Watchdog's per-I/O path with no dm map behind it. Every
// read, write and flush on a DirectDevice gets a deadline in one
// InflightTracker, writes hold their block range in a WriteFence until the
// kernel completes them, late reads can be hedged through bounce buffers, and
// every completion's latency lands in one LogHistogram. What to do about a
// late I/O (attribution, policy, failing a path) is the caller's business:
// it only hears about it through `onLate`. A deadline starts when the engine
// hands the I/O to the kernel (DirectDevice's onSubmit), not while it waits
// for a free slot.
//
// The plain read (no hedging, no signal) is the hot path the overhead
// benchmark measures: it is a non-async function with one `then` and no
// object spread, so each I/O costs a deadline record with its onSubmit
// closure, a tracker node, its data and one result object on top of the bare
// device.
import { DeviceClosedError, IoArgumentError, type DirectDevice, type IoResult } from '../io';
import { SystemClock, type Clock } from './clock';
import { WriteFence } from './fence';
import { LogHistogram } from './histogram';
import { InflightTracker, type LateIo, type TrackedIo } from './tracker';

/** What the tracker holds for each I/O of a TimedDevice. */
export interface TimedIoData {
  readonly op: 'read' | 'write' | 'flush';
  /** Byte offset and length (0 and 0 for a flush). */
  readonly offset: number;
  readonly length: number;
  /** Re-issues the read (hedged reads only), through the map or through `via`; null once used, and for every other I/O. */
  hedge: ((via?: HedgeRead) => void) | null;
}

/**
 * Reads `buf.byteLength` bytes at `offset` somewhere other than the map (a path device that just
 * answered a probe fast). `buf` is the hedge's own bounce buffer: it is not reused until this settles.
 */
export type HedgeRead = (buf: Buffer, offset: number) => Promise<IoResult>;

/** One I/O tracked by a TimedDevice. */
export type TimedIo = TrackedIo<TimedIoData>;

/** Called with every I/O found late at one tracker firing, oldest first. */
export type TimedLateHandler = (late: readonly LateIo<TimedIoData>[], nowMs: number) => void;

/** Options of a TimedDevice. */
export interface TimedDeviceOptions {
  /** The open device; close() closes it. */
  device: DirectDevice;
  /** An I/O in flight longer than this is late, ms. */
  timeoutMs: number;
  /** Clock of the deadlines (default: CLOCK_MONOTONIC). */
  clock?: Clock;
  /** Hears about late I/O (default: nobody). */
  onLate?: TimedLateHandler;
  /** Read through bounce buffers so that a late read can be re-issued with hedge(); the first completion wins. */
  hedgeReads?: boolean;
}

/** Per-call options of read and write. */
export interface TimedIoOptions {
  /** Stop waiting. A read's buffer is then never written; a write may still land, and its range stays fenced until it does. */
  signal?: AbortSignal;
}

/** A finished read or write through a TimedDevice. */
export interface TimedIoResult extends IoResult {
  /** doneNs - submitNs, ms. */
  latencyMs: number;
  /** It passed its deadline. */
  late: boolean;
  /** The data came from a hedged re-issue. */
  hedged: boolean;
}

/** What stats() returns: the I/O in flight and the latency of completed reads and writes. */
export interface TimedDeviceStats {
  /** I/Os in flight (handed to the kernel) and, of those, reported late. */
  inflight: number;
  late: number;
  /** I/Os waiting for a free slot of the engine's queue: not timed yet (their deadline starts at submit). */
  queued: number;
  /** Reads and writes completed, and their latency, ms (NaN quantiles when none). */
  completed: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Reads re-issued by hedging. */
  hedged: number;
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new DOMException('The operation was aborted', 'AbortError');
}

function ignoreLate(): void {}

/** Bounce buffers kept per length; more than a queue's worth would only hold memory. */
const POOL_PER_LENGTH = 64;
/** Longer reads get a fresh bounce buffer each time. */
const POOL_MAX_BYTES = 1 << 20;
/** All pooled bounce buffers together, whatever the mix of lengths (256 lengths once held 1 GiB). */
const POOL_TOTAL_BYTES = 16 << 20;

/** Timed, tracked, fenced and optionally hedged I/O on one DirectDevice. */
export class TimedDevice {
  /** The device underneath. */
  readonly device: DirectDevice;
  /** Whether reads go through bounce buffers and can be hedged. */
  readonly hedgeReads: boolean;
  readonly #clock: Clock;
  readonly #tracker: InflightTracker<TimedIoData>;
  readonly #fence = new WriteFence();
  readonly #hist = new LogHistogram();
  // Aligned bounce buffers the kernel is done with, by length. Allocating one
  // per read (a native aligned allocation and an external buffer for the GC)
  // halved the IOPS of hedged reads; a buffer goes back only from its read's
  // completion, so the kernel never writes into one that is handed out again.
  readonly #bounces = new Map<number, Buffer[]>();
  #pooledBytes = 0;
  #completed = 0;
  #hedged = 0;
  #closed: Promise<void> | undefined;

  constructor(options: TimedDeviceOptions) {
    this.device = options.device;
    this.hedgeReads = options.hedgeReads === true;
    this.#clock = options.clock ?? new SystemClock();
    this.#tracker = new InflightTracker<TimedIoData>({ clock: this.#clock, timeoutMs: options.timeoutMs, onLate: options.onLate ?? ignoreLate });
  }

  /** The timeout, ms. */
  get timeoutMs(): number {
    return this.#tracker.timeoutMs;
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** An aligned buffer for read and write. */
  alloc(bytes: number): Buffer {
    return this.device.alloc(bytes);
  }

  /** Reads buf.byteLength bytes at offset, timed and tracked; waits for unfinished writes to the range. */
  read(buf: Uint8Array, offset: number, options?: TimedIoOptions): Promise<TimedIoResult> {
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#closed) return Promise.reject(new DeviceClosedError(this.device.path));
    // With no write held there is nothing to wait for: skip the fence's async step.
    if (this.#fence.size > 0) return this.#fence.run(offset, buf.byteLength, false, () => this.#read(buf, offset, signal));
    return this.#read(buf, offset, signal);
  }

  /** Writes buf at offset, timed and tracked; never re-issued, and its range is fenced until the kernel completes it. */
  write(buf: Uint8Array, offset: number, options?: TimedIoOptions): Promise<TimedIoResult> {
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#closed) return Promise.reject(new DeviceClosedError(this.device.path));
    const dev = this.device;
    // A caller that may give up may also reuse its buffer: the kernel must write a copy.
    let src = buf;
    if (signal) {
      src = dev.alloc(buf.byteLength);
      src.set(buf);
    }
    const d = this.#deadline('write', offset, buf.byteLength);
    const p = this.#fence.run(offset, buf.byteLength, true, () => {
      // An I/O the fence held back may start after close().
      if (this.#closed) throw new DeviceClosedError(dev.path);
      return dev.write(src, offset, d);
    });
    const settled = p.then(
      (r) => this.#finish(d, r, false),
      (e: unknown) => {
        this.#untrack(d);
        throw e;
      },
    );
    return signal ? raceAbort(settled, signal) : settled;
  }

  /** Flushes the device (fsync), timed and tracked; its latency is not recorded. */
  flush(): Promise<IoResult> {
    if (this.#closed) return Promise.reject(new DeviceClosedError(this.device.path));
    const d = this.#deadline('flush', 0, 0);
    return this.device.flush(d).then(
      (r) => {
        this.#untrack(d);
        return r;
      },
      (e: unknown) => {
        this.#untrack(d);
        throw e;
      },
    );
  }

  /**
   * Re-issues a late read that is still in flight, through the map or through `via`; false when it
   * cannot be (not a hedgeable read, already hedged, done, or closed). The first to complete wins;
   * the read fails only when every copy failed. A copy through `via` that fails while the original
   * is still out makes the read hedgeable again.
   */
  hedge(io: TimedIo, via?: HedgeRead): boolean {
    const h = io.data.hedge;
    if (h === null || !io.inflight || this.#closed) return false;
    h(via);
    return true;
  }

  /** I/O in flight, late I/O, and the latency of completed reads and writes. */
  stats(): TimedDeviceStats {
    return {
      inflight: this.#tracker.size,
      queued: this.device.queued,
      late: this.#tracker.lateCount,
      completed: this.#completed,
      p50Ms: this.#hist.quantile(0.5),
      p99Ms: this.#hist.quantile(0.99),
      maxMs: this.#hist.max,
      hedged: this.#hedged,
    };
  }

  /**
   * Stops the deadlines and closes the device: resolves when its in-flight I/O
   * drained, or rejects on `signal` (the kernel keeps its buffers). Later I/O
   * rejects with DeviceClosedError.
   */
  close(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.#closed) {
      this.#tracker.stop();
      this.#closed = this.device.close(options.signal ? { signal: options.signal } : {});
      // The pooled buffers are no longer the kernel's (only completed reads give theirs back).
      this.#bounces.clear();
      this.#pooledBytes = 0;
    }
    return this.#closed;
  }

  // The deadline starts when the engine hands the I/O to the kernel: time spent
  // waiting for a free slot of the engine's queue says nothing about the path.
  #deadline(op: TimedIoData['op'], offset: number, length: number, hedge: (() => void) | null = null): Deadline {
    const d: Deadline = {
      io: undefined,
      onSubmit: () => {
        // After close() the tracker is stopped: the I/O goes untimed.
        if (d.io === undefined && !this.#closed) d.io = this.#tracker.track(this.#clock.now(), { op, offset, length, hedge });
      },
    };
    return d;
  }

  #untrack(d: Deadline): void {
    if (d.io !== undefined) this.#tracker.done(d.io);
  }

  #finish(d: Deadline, r: IoResult, hedged: boolean): TimedIoResult {
    const late = d.io?.late ?? false;
    this.#untrack(d);
    const latencyMs = Number(r.doneNs - r.submitNs) / 1e6;
    this.#hist.record(latencyMs);
    this.#completed++;
    return { bytes: r.bytes, submitNs: r.submitNs, doneNs: r.doneNs, latencyMs, late, hedged };
  }

  #read(buf: Uint8Array, offset: number, signal: AbortSignal | undefined): Promise<TimedIoResult> {
    if (this.hedgeReads || signal) return this.#bouncedRead(buf, offset, signal);
    if (this.#closed) return Promise.reject(new DeviceClosedError(this.device.path));
    const d = this.#deadline('read', offset, buf.byteLength);
    return this.device.read(buf, offset, d).then(
      (r) => this.#finish(d, r, false),
      (e: unknown) => {
        this.#untrack(d);
        throw e;
      },
    );
  }

  #bounce(length: number): Buffer {
    const pooled = this.#bounces.get(length)?.pop();
    if (pooled === undefined) return this.device.alloc(length);
    this.#pooledBytes -= length;
    return pooled;
  }

  #release(bounce: Buffer): void {
    const length = bounce.byteLength;
    // Closed: nothing more will be read, the buffer goes to the GC.
    if (length > POOL_MAX_BYTES || this.#closed || this.#pooledBytes + length > POOL_TOTAL_BYTES) return;
    let free = this.#bounces.get(length);
    if (!free) this.#bounces.set(length, (free = []));
    if (free.length < POOL_PER_LENGTH) {
      free.push(bounce);
      this.#pooledBytes += length;
    }
  }


  // Reads into engine buffers and copies the winner out, so the caller's buffer
  // is never written after its promise settles, whatever the losers do later.
  #bouncedRead(buf: Uint8Array, offset: number, signal: AbortSignal | undefined): Promise<TimedIoResult> {
    const length = buf.byteLength;
    const dev = this.device;
    if (this.#closed) return Promise.reject(new DeviceClosedError(dev.path));
    return new Promise<TimedIoResult>((resolve, reject) => {
      let settled = false;
      let outstanding = 0;
      let lastError: unknown;
      const onAbort = (): void => {
        if (settled) return;
        settled = true;
        reject(abortError(signal as AbortSignal));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const hedge = (via?: HedgeRead): void => {
        if (d.io !== undefined) d.io.data.hedge = null;
        if (settled || this.#closed) return;
        this.#hedged++;
        issue(true, via);
      };
      const d = this.#deadline('read', offset, length, this.hedgeReads ? hedge : null);
      const issue = (hedged: boolean, via?: HedgeRead): void => {
        const bounce = this.#bounce(length);
        outstanding++;
        // Only the first read starts the deadline; a hedge runs on the same one.
        // A hedge `via` a path device holds no slot of the map's queue, which
        // may be full of reads stuck on the slow path. A `via` that throws
        // instead of rejecting counts as a failed copy.
        const copy = via === undefined ? dev.read(bounce, offset, hedged ? { urgent: true } : d)
          : Promise.resolve().then(() => via(bounce, offset));
        copy.then(
          (r) => {
            outstanding--;
            if (settled) {
              this.#release(bounce);
              this.#untrack(d);
              return;
            }
            settled = true;
            signal?.removeEventListener('abort', onAbort);
            if (buf.byteLength !== length) {
              // The caller's ArrayBuffer was transferred away meanwhile: the data has nowhere to go.
              this.#release(bounce);
              this.#untrack(d);
              reject(new IoArgumentError({
                reason: 'buffer-detached', device: dev.path, offset, length, alignment: dev.logicalBlockSize, size: dev.size,
              }));
              return;
            }
            // Pooled buffers have exactly `length` bytes: no subarray view to allocate.
            buf.set(bounce);
            this.#release(bounce);
            resolve(this.#finish(d, r, hedged));
          },
          (e: unknown) => {
            outstanding--;
            this.#release(bounce);
            lastError = e;
            if (outstanding > 0) {
              // A copy sent to a path that failed it gives the read its hedge
              // back: through the map, once dm has the slow path out, it may
              // still be the only way this read ever completes.
              if (via !== undefined && !settled && d.io !== undefined && d.io.inflight) d.io.data.hedge = hedge;
              return;
            }
            this.#untrack(d);
            if (settled) return;
            settled = true;
            signal?.removeEventListener('abort', onAbort);
            reject(lastError);
          },
        );
      };
      issue(false);
    });
  }
}

/** An I/O's deadline: `io` is set by `onSubmit`, when the engine hands the I/O to the kernel. */
interface Deadline {
  io: TimedIo | undefined;
  readonly onSubmit: () => void;
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
