// The base of every error the library raises for a failed system call or ioctl:
// a person reads the message; code reads `code`, `errno`, `syscall`, `device`.
import { getSystemErrorName } from 'node:util';

/** Symbolic name ('ENXIO') for a positive errno; 'E<n>' when Node has no name for it. */
export function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-Math.abs(errno));
  } catch {
    return `E${errno}`;
  }
}

/** Fields every system-call error carries. */
export interface SyscallErrorFields {
  /** Positive errno from the kernel. */
  errno: number;
  /** The syscall or ioctl that failed ('DM_DEV_CREATE', 'pread', 'open'). */
  syscall: string;
  /** The device (or dm name) it was aimed at, when there was one. */
  device?: string | undefined;
}

/** A failed system call or ioctl, with errno code, call name and device. */
export class SyscallError extends Error {
  /** Symbolic errno ('ENXIO', 'EBUSY', …). */
  readonly code: string;
  /** Positive errno. */
  readonly errno: number;
  /** The syscall or ioctl name. */
  readonly syscall: string;
  /** The device or dm name, if any. */
  readonly device: string | undefined;

  constructor(message: string, fields: SyscallErrorFields, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.errno = fields.errno;
    this.code = errnoName(fields.errno);
    this.syscall = fields.syscall;
    this.device = fields.device;
  }
}
