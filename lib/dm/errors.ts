// DmError: a failed device-mapper ioctl (or input refused before one), with a
// message a person can act on, built from the ioctl, errno and device.
import { constants } from 'node:os';
import { SyscallError, errnoName, type SyscallErrorFields } from '../errors';

const E = constants.errno;

/** Fields of a DmError beyond SyscallError's. */
export interface DmErrorFields extends SyscallErrorFields {
  /** The kernel's own complaint from its log, when one was found. */
  kernelMessage?: string | undefined;
}

/** A device-mapper ioctl failed, or its input was refused before the ioctl. */
export class DmError extends SyscallError {
  /** The kernel's own complaint from its log (e.g. "multipath: error getting device"), if found. */
  readonly kernelMessage: string | undefined;

  constructor(message: string, fields: DmErrorFields, options?: { cause?: unknown }) {
    super(message, fields, options);
    this.kernelMessage = fields.kernelMessage;
  }
}

/** What the failing call was about, for the message. */
export interface DmErrorContext {
  /** The device as the caller named it. */
  device?: string | undefined;
  /** The message sent, for DM_TARGET_MSG. */
  message?: string | undefined;
  /** The kernel's complaint, if read from its log. */
  kernelMessage?: string | undefined;
  /** The device exists and the kernel refused the table itself. */
  tableFault?: boolean | undefined;
}

/** The sentence for errno `errno` from ioctl `syscall`. */
export function describeDmFailure(syscall: string, errno: number, ctx: DmErrorContext): string {
  const dev = ctx.device === undefined ? '' : ` '${ctx.device}'`;
  const why = ctx.kernelMessage ? `: ${ctx.kernelMessage}` : '';
  if (errno === E.EACCES || errno === E.EPERM) return `device-mapper control needs root (CAP_SYS_ADMIN) for ${syscall}`;
  if (errno === E.ENOENT && syscall.startsWith('DM_')) return `/dev/mapper/control is missing: is device-mapper (dm-mod) loaded?`;
  if (syscall === 'DM_TABLE_LOAD' && ctx.tableFault) return `table rejected by the kernel for${dev}${why}`;
  if (errno === E.ENXIO && ctx.device !== undefined) return `no such device-mapper device${dev}`;
  switch (syscall) {
    case 'DM_DEV_CREATE':
      if (errno === E.EBUSY) return `device-mapper device${dev} already exists`;
      break;
    case 'DM_TARGET_MSG':
      if (errno === E.EINVAL) return `message '${ctx.message ?? ''}' rejected by device-mapper device${dev}${why}`;
      if (errno === E.EBUSY) return `device-mapper device${dev} cannot take message '${ctx.message ?? ''}' now (suspended?)`;
      break;
    case 'DM_DEV_REMOVE':
      if (errno === E.EBUSY) return `device-mapper device${dev} is in use and cannot be removed`;
      break;
    case 'DM_DEV_SUSPEND':
      if (errno === E.EINVAL) return `device-mapper device${dev} could not be resumed or suspended${why}`;
      break;
  }
  return `${syscall} failed for device-mapper device${dev}: ${errnoName(errno)}${why}`;
}

/** True when `e` looks like a native dm error (numeric errno, string syscall). */
export function isNativeErrno(e: unknown): e is Error & { errno: number; syscall: string } {
  return e instanceof Error && typeof (e as { errno?: unknown }).errno === 'number' && typeof (e as { syscall?: unknown }).syscall === 'string';
}

/** Turns a native rejection into a DmError; anything else passes through unchanged. */
export function toDmError(e: unknown, ctx: DmErrorContext): unknown {
  if (!isNativeErrno(e)) return e;
  return new DmError(
    describeDmFailure(e.syscall, e.errno, ctx),
    { errno: e.errno, syscall: e.syscall, device: ctx.device, kernelMessage: ctx.kernelMessage },
    { cause: e },
  );
}

/** A DmError for input refused before any ioctl. */
export function invalidInput(message: string, syscall: string, device: string | undefined, errno: number = E.EINVAL): DmError {
  return new DmError(message, { errno, syscall, device });
}
