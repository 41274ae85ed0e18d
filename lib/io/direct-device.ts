// DirectDevice: O_DIRECT reads, writes and flushes on a block device or file,
// through the native engine. Holds the policy the native side must not:
// validation, slot allocation, queueing beyond the depth, errors, close.
import { native, type NativeEngineKind, type NativeIoEngine } from '../native';
import { checkIo } from './align';
import {
  CloseAbortedError, DeviceClosedError, EIO, IoArgumentError, IoError, fromNative, type IoOperation,
} from './errors';

/** Which engine to use; 'auto' tries io_uring and falls back to threads when the kernel refuses it. */
export type EngineChoice = 'auto' | NativeEngineKind;

/** Options of DirectDevice.open. */
export interface DirectDeviceOptions {
  /** Most I/Os in the kernel at once (1..4096, default 32); more wait in a FIFO. */
  queueDepth?: number;
  /** Default 'auto'. */
  engine?: EngineChoice;
  /** Open O_RDONLY; writes are refused before submission. Default false. */
  readOnly?: boolean;
}

/**
 * One finished read or write. Stamps are CLOCK_MONOTONIC nanoseconds as bigint
 * (the clock of process.hrtime.bigint()), exact at any uptime, taken natively
 * when the I/O was submitted and when its completion was reaped.
 */
export interface IoResult {
  /** Bytes transferred (always the full length: short transfers reject). */
  bytes: number;
  /** Submit stamp, ns. */
  submitNs: bigint;
  /** Completion stamp, ns. */
  doneNs: bigint;
}

/** Per-I/O options of read, write and flush. */
export interface IoSubmitOptions {
  /** Called once the I/O is handed to the kernel (after any wait for a free slot of the queue); a throw is rethrown asynchronously. */
  onSubmit?: () => void;
  /** Goes ahead of the I/O waiting for a free slot (a hedged re-issue must not wait behind the reads it is to rescue). */
  urgent?: boolean;
}

/** Options of close(). */
export interface CloseOptions {
  /** Stop waiting for in-flight I/O; close() then rejects with CloseAbortedError. */
  signal?: AbortSignal;
}

const OPS = { read: 0, write: 1, flush: 2 } as const;

/** A value's byteLength when it has a numeric one, else 0 (for the error of a non-Uint8Array). */
function byteLength(v: unknown): number {
  const n = (v as { byteLength?: unknown } | null)?.byteLength;
  return typeof n === 'number' ? n : 0;
}
const SYSCALLS: Record<NativeEngineKind, Record<IoOperation, string>> = {
  io_uring: { read: 'IORING_OP_READ', write: 'IORING_OP_WRITE', flush: 'IORING_OP_FSYNC' },
  threads: { read: 'pread', write: 'pwrite', flush: 'fsync' },
};
/** errnos that mean "no io_uring here" (kernel without it, seccomp, io_uring_disabled). */
const NO_URING = new Set(['ENOSYS', 'EPERM', 'EACCES']);
/** Set in a completion's slot word when io_uring_enter refused the I/O (native/io/io_engine.cc: kInfoSubmitFailed). */
const SUBMIT_FAILED = 1 << 30;
const DEFAULT_DEPTH = 32;
const MAX_DEPTH = 4096;

interface Op {
  operation: IoOperation;
  /** What the kernel reads or writes: always memory the engine owns (alloc(), or a bounce copy). */
  buf: Uint8Array | null;
  /** The caller's own buffer when `buf` is a bounce copy of it. */
  user: Uint8Array | null;
  offset: number;
  length: number;
  resolve: (r: IoResult) => void;
  reject: (e: Error) => void;
  onSubmit: (() => void) | undefined;
}

/** An open O_DIRECT device with asynchronous, natively time-stamped I/O. */
export class DirectDevice {
  /** The path it was opened with. */
  readonly path: string;
  /** The engine in use. */
  readonly engine: NativeEngineKind;
  /** Why 'auto' fell back to threads (the io_uring error), if it did. */
  readonly fallbackReason: Error | undefined;
  /** Offset and length alignment in bytes (BLKSSZGET, or the file's direct-I/O alignment). */
  readonly logicalBlockSize: number;
  /** Size in bytes (BLKGETSIZE64, or the file size). */
  readonly size: number;
  /** The queue depth. */
  readonly queueDepth: number;
  /** Opened read-only. */
  readonly readOnly: boolean;

  readonly #native: NativeIoEngine;
  readonly #memAlign: number;
  readonly #info: Int32Array;
  readonly #stamps: BigInt64Array;
  readonly #slots: (Op | undefined)[];
  readonly #free: number[];
  #waiting: Op[] = [];
  #waitHead = 0;
  #inFlight = 0;
  #submitQueued = false;
  #closing = false;
  #closed: Promise<void> | undefined;
  #onDrain: (() => void) | undefined;
  /** The ArrayBuffers alloc() made: native, not detachable, so the kernel may use them directly. */
  readonly #owned = new WeakSet<ArrayBufferLike>();

  private constructor(path: string, choice: EngineChoice, depth: number, readOnly: boolean) {
    this.path = path;
    this.queueDepth = depth;
    this.readOnly = readOnly;
    this.#info = new Int32Array(2 * depth);
    this.#stamps = new BigInt64Array(2 * depth);
    const make = (kind: NativeEngineKind): NativeIoEngine =>
      new native.IoEngine(path, kind, depth, readOnly, this.#complete, this.#info, this.#stamps);
    let engine: NativeIoEngine;
    let fallback: Error | undefined;
    if (choice === 'threads' || (choice === 'auto' && !native.ioUringCompiledIn)) {
      engine = DirectDevice.#try(() => make('threads'), path);
      if (choice === 'auto') fallback = new Error('addon built without liburing');
    } else {
      try {
        engine = DirectDevice.#try(() => make('io_uring'), path);
      } catch (e) {
        if (choice !== 'auto' || !NO_URING.has((e as { code?: string }).code ?? '')) throw e;
        fallback = e as Error;
        engine = DirectDevice.#try(() => make('threads'), path);
      }
    }
    this.#native = engine;
    this.engine = engine.kind;
    this.fallbackReason = fallback;
    this.logicalBlockSize = engine.logicalBlockSize;
    this.size = engine.size;
    this.#memAlign = engine.memoryAlignment;
    this.#slots = new Array<Op | undefined>(depth).fill(undefined);
    this.#free = Array.from({ length: depth }, (_, i) => depth - 1 - i);
  }

  static #try(f: () => NativeIoEngine, path: string): NativeIoEngine {
    try {
      return f();
    } catch (e) {
      return fromNative(e, path);
    }
  }

  /** Opens `path` with O_DIRECT; rejects with SyscallError (errno, syscall, device) when the kernel refuses. */
  static async open(path: string, options: DirectDeviceOptions = {}): Promise<DirectDevice> {
    const depth = options.queueDepth ?? DEFAULT_DEPTH;
    if (!Number.isInteger(depth) || depth < 1 || depth > MAX_DEPTH) {
      throw new RangeError(`queueDepth must be an integer in 1..${MAX_DEPTH}, got ${depth}`);
    }
    return new DirectDevice(path, options.engine ?? 'auto', depth, options.readOnly ?? false);
  }

  /** Whether this build has the io_uring engine. */
  static get ioUringCompiledIn(): boolean {
    return native.ioUringCompiledIn;
  }

  /** The liburing version this build links (pkg-config's at build time), or undefined without io_uring. */
  static get liburingVersion(): string | undefined {
    return native.liburingVersion;
  }

  /** The IORING_SETUP_* flags of this device's ring (diagnostics; 0 on the thread engine). */
  get ringFlags(): number {
    return this.#native.ringFlags;
  }

  /** I/Os waiting for a free slot (not yet handed to the kernel). */
  get queued(): number {
    return this.#waiting.length - this.#waitHead;
  }

  /** I/Os submitted to the kernel and not yet completed. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * A zeroed Buffer of `bytes` whose address suits O_DIRECT on this device (page aligned at
   * least). I/O on it (or on a subarray of it) goes to the kernel with no copy.
   */
  alloc(bytes: number): Buffer {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new RangeError(`alloc: bytes must be a positive integer, got ${bytes}`);
    const buf = this.#nativeAlloc(bytes);
    this.#owned.add(buf.buffer);
    return buf;
  }

  #nativeAlloc(bytes: number): Buffer {
    return native.allocAligned(bytes, Math.max(4096, this.#memAlign));
  }

  /**
   * Reads buf.byteLength bytes at offset into buf. A buffer from alloc() is read into
   * directly; any other Uint8Array through a bounce copy, since its ArrayBuffer could be
   * detached (transferred) while the kernel writes into it.
   */
  read(buf: Uint8Array, offset: number, options?: IoSubmitOptions): Promise<IoResult> {
    return this.#enqueue('read', buf, offset, options);
  }

  /** Writes buf at offset (a buffer not from alloc() is copied when the call is made). */
  write(buf: Uint8Array, offset: number, options?: IoSubmitOptions): Promise<IoResult> {
    if (this.readOnly) return Promise.reject(this.#argError('read-only', offset, byteLength(buf)));
    return this.#enqueue('write', buf, offset, options);
  }

  /** fsync: completes when everything written before it is on stable storage. */
  flush(options?: IoSubmitOptions): Promise<IoResult> {
    return this.#enqueue('flush', null, 0, options);
  }

  /**
   * Stops accepting I/O and resolves once in-flight I/O drained and everything
   * is freed. I/O still waiting for a slot rejects with DeviceClosedError. On
   * `signal` it rejects with CloseAbortedError and stops the in-flight I/O from
   * keeping the process alive; that I/O's buffers stay referenced until the
   * kernel completes it, and its promises still settle then.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      const err = new DeviceClosedError(this.path);
      for (let i = this.#waitHead; i < this.#waiting.length; i++) this.#waiting[i]!.reject(err);
      this.#waiting = [];
      this.#waitHead = 0;
      this.#closed = new Promise<void>((resolve) => {
        if (this.#inFlight === 0) resolve();
        else this.#onDrain = resolve;
      }).then(() => this.#native.close());
    }
    const closed = this.#closed!;
    const { signal } = options;
    if (signal === undefined) return closed;
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#native.unref();
        reject(new CloseAbortedError(this.path, this.#inFlight, signal.reason));
      };
      if (signal.aborted) {
        // Already aborted: still resolve if nothing is in flight.
        if (this.#inFlight === 0) closed.then(resolve, reject);
        else onAbort();
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      closed.then(
        () => { signal.removeEventListener('abort', onAbort); resolve(); },
        (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e as Error); },
      );
    });
  }

  #argError(reason: IoArgumentError['reason'], offset: number, length: number): IoArgumentError {
    return new IoArgumentError({
      reason, device: this.path, offset, length, alignment: this.logicalBlockSize, size: this.size,
    });
  }

  #enqueue(operation: IoOperation, buf: Uint8Array | null, offset: number, options: IoSubmitOptions | undefined): Promise<IoResult> {
    if (this.#closing) return Promise.reject(new DeviceClosedError(this.path));
    // byteLength, not length: a Float64Array of 64 elements is 512 bytes to the kernel.
    if (buf !== null && !(buf instanceof Uint8Array)) return Promise.reject(this.#argError('not-a-uint8array', offset, byteLength(buf)));
    const length = buf === null ? 0 : buf.byteLength;
    let kernelBuf = buf;
    if (buf !== null) {
      const reason = checkIo(this, offset, length);
      if (reason !== undefined) return Promise.reject(this.#argError(reason, offset, length));
      if (!this.#owned.has(buf.buffer)) {
        kernelBuf = this.#nativeAlloc(length);
        if (operation === 'write') kernelBuf.set(buf);
      }
    }
    return new Promise<IoResult>((resolve, reject) => {
      const op: Op = { operation, buf: kernelBuf, user: kernelBuf === buf ? null : buf, offset, length, resolve, reject, onSubmit: options?.onSubmit };
      if (this.#free.length > 0) this.#start(op);
      else if (options?.urgent === true) this.#waiting.splice(this.#waitHead, 0, op);
      else this.#waiting.push(op);
    });
  }

  #start(op: Op): void {
    const slot = this.#free.pop()!;
    let queued: 0 | 1;
    try {
      queued = this.#native.prep(OPS[op.operation], slot, op.buf, op.offset);
    } catch (e) {
      // Misuse the checks above did not catch: the slot goes back, and the
      // caller gets the error (this may run inside the completion callback).
      this.#free.push(slot);
      op.reject(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if (queued === 1) {
      this.#free.push(slot);
      op.reject(this.#argError('unaligned-buffer', op.offset, op.length));
      return;
    }
    this.#slots[slot] = op;
    this.#inFlight++;
    if (!this.#submitQueued) {
      this.#submitQueued = true;
      queueMicrotask(this.#submit);
    }
    if (op.onSubmit !== undefined) {
      // This may run inside the completion loop: a caller's throw must not cut it short.
      try {
        op.onSubmit();
      } catch (e) {
        queueMicrotask(() => { throw e; });
      }
    }
  }

  // One submission for every I/O started in the same turn.
  readonly #submit = (): void => {
    this.#submitQueued = false;
    this.#native.submit();
  };

  readonly #complete = (count: number): void => {
    const info = this.#info;
    const stamps = this.#stamps;
    for (let i = 0; i < count; i++) {
      const word = info[2 * i]!;
      const slot = word & (SUBMIT_FAILED - 1);
      const res = info[2 * i + 1]!;
      const op = this.#slots[slot]!;
      this.#slots[slot] = undefined;
      this.#free.push(slot);
      this.#inFlight--;
      if (res < 0 || res !== op.length) {
        op.reject(new IoError({
          errno: res < 0 ? -res : EIO,
          // Refused before the kernel saw it: by io_uring_enter, or (threads) no worker could be started.
          syscall: (word & SUBMIT_FAILED) !== 0 ? (this.engine === 'io_uring' ? 'io_uring_enter' : 'pthread_create') : SYSCALLS[this.engine][op.operation],
          device: this.path,
          operation: op.operation,
          offset: op.offset,
          length: op.length,
          bytes: res < 0 ? -1 : res,
        }));
      } else if (op.user !== null && op.operation === 'read' && op.user.byteLength !== op.length) {
        // The caller's buffer was detached while the kernel read into the bounce copy.
        op.reject(this.#argError('buffer-detached', op.offset, op.length));
      } else {
        if (op.user !== null && op.operation === 'read') op.user.set(op.buf!.subarray(0, op.length));
        op.resolve({ bytes: res, submitNs: stamps[2 * i]!, doneNs: stamps[2 * i + 1]! });
      }
    }
    while (this.#free.length > 0 && this.#waitHead < this.#waiting.length) {
      const op = this.#waiting[this.#waitHead]!;
      this.#waiting[this.#waitHead++] = undefined as unknown as Op;
      this.#start(op);
    }
    if (this.#waitHead > 1024 && this.#waitHead * 2 > this.#waiting.length) {
      this.#waiting = this.#waiting.slice(this.#waitHead);
      this.#waitHead = 0;
    }
    if (this.#inFlight === 0 && this.#onDrain !== undefined) {
      const drained = this.#onDrain;
      this.#onDrain = undefined;
      drained();
    }
  };
}
