// Errors of the direct I/O layer: a failed or short I/O (IoError), input
// rejected before anything reached the kernel (IoArgumentError), use after
// close, and a close that gave up waiting.
import { constants } from 'node:os';
import { SyscallError } from '../errors';

/** The operation an I/O performed. */
export type IoOperation = 'read' | 'write' | 'flush';

/** Fields of an IoError. */
export interface IoErrorFields {
  /** Positive errno; EIO for a short transfer. */
  errno: number;
  /**
   * The call that failed: 'pread', 'pwrite', 'fsync' (threads) or 'IORING_OP_READ', ... (io_uring), or
   * 'io_uring_enter' when the kernel refused to take the I/O at all (it never ran).
   */
  syscall: string;
  /** The device path. */
  device: string;
  /** What the I/O was. */
  operation: IoOperation;
  /** Byte offset (0 for flush). */
  offset: number;
  /** Bytes requested (0 for flush). */
  length: number;
  /** Bytes transferred: less than length for a short transfer, -1 when the call failed. */
  bytes: number;
}

/** A read, write or flush that the kernel failed (errno) or completed short (EIO). */
export class IoError extends SyscallError {
  /** What the I/O was. */
  readonly operation: IoOperation;
  /** Byte offset. */
  readonly offset: number;
  /** Bytes requested. */
  readonly length: number;
  /** Bytes transferred; -1 when the call failed outright. */
  readonly bytes: number;
  /** True when the call succeeded but moved fewer bytes than asked. */
  readonly short: boolean;

  constructor(fields: IoErrorFields) {
    const short = fields.bytes >= 0;
    const what = short
      ? `short ${fields.operation}: ${fields.bytes} of ${fields.length} bytes`
      : `${fields.operation} failed`;
    super(`${what} at offset ${fields.offset} on ${fields.device} (${fields.syscall})`, fields);
    this.operation = fields.operation;
    this.offset = fields.offset;
    this.length = fields.length;
    this.bytes = fields.bytes;
    this.short = short;
  }
}

/** Why an I/O was rejected before submission. */
export type IoArgumentReason =
  | 'bad-offset'
  | 'zero-length'
  | 'too-long'
  | 'unaligned-offset'
  | 'unaligned-length'
  | 'unaligned-buffer'
  | 'past-end'
  | 'read-only'
  /** The buffer is not a Uint8Array (a Buffer is one). */
  | 'not-a-uint8array'
  /** The caller's buffer was detached before a read's data could be copied into it. */
  | 'buffer-detached';

/** Fields of an IoArgumentError. */
export interface IoArgumentErrorFields {
  /** Why. */
  reason: IoArgumentReason;
  /** The device path. */
  device: string;
  /** The requested offset. */
  offset: number;
  /** The requested length. */
  length: number;
  /** The alignment the device needs. */
  alignment: number;
  /** The device size in bytes. */
  size: number;
}

/** An I/O refused before anything was submitted (bad alignment, zero length, past the end, read-only, not a Uint8Array), or a read whose caller's buffer was detached before its data could be delivered. */
export class IoArgumentError extends RangeError {
  /** Always 'ERR_IO_ARGUMENT'. */
  readonly code = 'ERR_IO_ARGUMENT';
  /** Why. */
  readonly reason: IoArgumentReason;
  /** The device path. */
  readonly device: string;
  /** The requested offset. */
  readonly offset: number;
  /** The requested length. */
  readonly length: number;
  /** The alignment the device needs. */
  readonly alignment: number;
  /** The device size in bytes. */
  readonly size: number;

  constructor(f: IoArgumentErrorFields) {
    super(`${f.reason}: offset ${f.offset} length ${f.length} on ${f.device} (alignment ${f.alignment}, size ${f.size})`);
    this.name = 'IoArgumentError';
    this.reason = f.reason;
    this.device = f.device;
    this.offset = f.offset;
    this.length = f.length;
    this.alignment = f.alignment;
    this.size = f.size;
  }
}

/** An I/O requested after close() began; it never reached the kernel. */
export class DeviceClosedError extends Error {
  /** Always 'ERR_DEVICE_CLOSED'. */
  readonly code = 'ERR_DEVICE_CLOSED';
  /** The device path. */
  readonly device: string;

  constructor(device: string) {
    super(`${device} is closed`);
    this.name = 'DeviceClosedError';
    this.device = device;
  }
}

/** close() gave up on its signal with I/O still in the kernel; those buffers stay pinned until it completes. */
export class CloseAbortedError extends Error {
  /** Always 'ABORT_ERR', like Node's AbortError. */
  readonly code = 'ABORT_ERR';
  /** The device path. */
  readonly device: string;
  /** I/Os still in flight when the signal fired. */
  readonly inFlight: number;

  constructor(device: string, inFlight: number, reason: unknown) {
    super(`close of ${device} aborted with ${inFlight} I/O in flight`, { cause: reason });
    this.name = 'CloseAbortedError';
    this.device = device;
    this.inFlight = inFlight;
  }
}

/** The shape of an error thrown by the native layer. */
interface NativeErrnoError {
  errno: number;
  syscall: string;
}

function isNativeErrnoError(e: unknown): e is Error & NativeErrnoError {
  return e instanceof Error && typeof (e as Partial<NativeErrnoError>).errno === 'number' &&
    typeof (e as Partial<NativeErrnoError>).syscall === 'string';
}

/** Wraps a native errno error as a SyscallError on `device`; anything else is rethrown as is. */
export function fromNative(e: unknown, device: string): never {
  if (!isNativeErrnoError(e)) throw e;
  throw new SyscallError(`${e.syscall} ${device}: ${e.message.replace(/^.*: /, '')}`,
    { errno: e.errno, syscall: e.syscall, device }, { cause: e });
}

/** EIO, the errno of a short transfer. */
export const EIO: number = constants.errno.EIO;
