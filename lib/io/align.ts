// Validation of an I/O against the device's geometry, done before a slot is
// taken, so bad input changes nothing.
import type { IoArgumentReason } from './errors';

/** The largest single transfer Linux performs (MAX_RW_COUNT, include/linux/fs.h: INT_MAX & PAGE_MASK). */
export const MAX_IO_BYTES = 0x7ffff000;

/** What validation needs to know about a device. */
export interface IoGeometry {
  /** Offset and length alignment. */
  logicalBlockSize: number;
  /** Bytes. */
  size: number;
}

/** The reason an I/O of `length` bytes at `offset` is invalid, or undefined when it is fine. */
export function checkIo(g: IoGeometry, offset: number, length: number): IoArgumentReason | undefined {
  if (!Number.isSafeInteger(offset) || offset < 0) return 'bad-offset';
  if (length === 0) return 'zero-length';
  if (length > MAX_IO_BYTES) return 'too-long';
  if (offset % g.logicalBlockSize !== 0) return 'unaligned-offset';
  if (length % g.logicalBlockSize !== 0) return 'unaligned-length';
  if (offset + length > g.size) return 'past-end';
  return undefined;
}

/** `n` rounded up to a multiple of `align` (a power of two). */
export function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}
