// Input checks run before any ioctl, so bad input throws a DmError and changes
// nothing in the kernel. Limits from include/uapi/linux/dm-ioctl.h.
import { constants } from 'node:os';
import { invalidInput } from './errors';
import type { RawDeviceRef, RawDmTarget } from './native-types';
import type { DmDeviceRef, DmTableInput } from './types';

const E = constants.errno;
/** DM_NAME_LEN less the NUL. */
export const DM_MAX_NAME_BYTES = 127;
/** DM_UUID_LEN less the NUL. */
export const DM_MAX_UUID_BYTES = 128;
/** DM_MAX_TYPE_NAME less the NUL. */
export const DM_MAX_TYPE_BYTES = 15;
const MAX_U32 = 0xffff_ffff;

/** Refuses a name the kernel would truncate or reject (check_name(): no '/'). */
export function checkName(name: unknown, syscall: string): string {
  if (typeof name !== 'string' || name.length === 0) throw invalidInput(`device-mapper name must be a non-empty string`, syscall, undefined);
  if (Buffer.byteLength(name) > DM_MAX_NAME_BYTES)
    throw invalidInput(`device-mapper name '${name.slice(0, 32)}…' is longer than ${DM_MAX_NAME_BYTES} bytes`, syscall, name, E.ENAMETOOLONG);
  if (name.includes('/') || name.includes('\0') || name === '.' || name === '..')
    throw invalidInput(`device-mapper name '${name}' may not contain '/' or NUL, nor be '.' or '..'`, syscall, name);
  return name;
}

/** Refuses a uuid the kernel would truncate; '' means none. */
export function checkUuid(uuid: unknown, syscall: string, device: string | undefined): string {
  if (typeof uuid !== 'string') throw invalidInput(`device-mapper uuid must be a string`, syscall, device);
  if (Buffer.byteLength(uuid) > DM_MAX_UUID_BYTES)
    throw invalidInput(`device-mapper uuid '${uuid.slice(0, 32)}…' is longer than ${DM_MAX_UUID_BYTES} bytes`, syscall, device, E.ENAMETOOLONG);
  if (uuid.includes('\0')) throw invalidInput(`device-mapper uuid may not contain NUL`, syscall, device);
  return uuid;
}

/** The native address and a label for messages. */
export function resolveRef(ref: DmDeviceRef, syscall: string): { raw: RawDeviceRef; label: string } {
  if (typeof ref === 'string') return { raw: { name: checkName(ref, syscall) }, label: ref };
  if (ref !== null && typeof ref === 'object') {
    if ('name' in ref && !('uuid' in ref)) return { raw: { name: checkName(ref.name, syscall) }, label: ref.name };
    if ('uuid' in ref && !('name' in ref)) {
      const uuid = checkUuid(ref.uuid, syscall, undefined);
      if (uuid === '') throw invalidInput(`device-mapper uuid must not be empty to address a device`, syscall, undefined);
      return { raw: { uuid }, label: `uuid ${uuid}` };
    }
  }
  throw invalidInput(`a device is a name, { name } or { uuid }`, syscall, undefined);
}

/** A safe, non-negative integer (sectors, event numbers). */
export function checkCount(v: unknown, what: string, syscall: string, device: string | undefined, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max)
    throw invalidInput(`${what} must be an integer from 0 to ${max}, not ${String(v)}`, syscall, device);
  return v;
}

/** An event number as DM_DEV_WAIT takes it (u32). */
export function checkEventNr(v: unknown, device: string): number {
  return checkCount(v, 'event number', 'DM_DEV_WAIT', device, MAX_U32);
}

/** Splits dmsetup-style table text: one "start length type params…" a line. */
export function parseTableText(text: string, device: string | undefined): RawDmTarget[] {
  const out: RawDmTarget[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^\s*(\d+)\s+(\d+)\s+(\S+)(?:\s+(.*?))?\s*$/.exec(line);
    if (!m) throw invalidInput(`table line '${line}' is not "start length type params"`, 'DM_TABLE_LOAD', device);
    out.push({ start: Number(m[1]), length: Number(m[2]), type: m[3] as string, params: m[4] ?? '' });
  }
  return out;
}

/**
 * A table the kernel can take: at least one target, the first at sector 0 and
 * each starting where the last ended (dm_table_add_target(): "Gap in table").
 */
export function checkTable(input: DmTableInput, device: string | undefined): RawDmTarget[] {
  const targets = typeof input === 'string' ? parseTableText(input, device) : input;
  if (!Array.isArray(targets) || targets.length === 0) throw invalidInput(`a table needs at least one target`, 'DM_TABLE_LOAD', device);
  let next = 0;
  return targets.map((t: unknown, i) => {
    const bad = (why: string) => invalidInput(`table target ${i}: ${why}`, 'DM_TABLE_LOAD', device);
    if (t === null || typeof t !== 'object') throw bad('not an object');
    const { start, length, type, params } = t as Record<string, unknown>;
    checkCount(start, `table target ${i} start`, 'DM_TABLE_LOAD', device);
    checkCount(length, `table target ${i} length`, 'DM_TABLE_LOAD', device);
    if (start !== next) throw bad(`starts at ${String(start)}, expected ${next} (targets must be contiguous from 0)`);
    if ((length as number) === 0) throw bad('length is 0');
    next += length as number;
    if (!Number.isSafeInteger(next)) throw bad('table is too long');
    if (typeof type !== 'string' || !/^[^\s\0]+$/.test(type) || Buffer.byteLength(type) > DM_MAX_TYPE_BYTES)
      throw bad(`target type '${String(type)}' must be 1-${DM_MAX_TYPE_BYTES} bytes without spaces`);
    if (typeof params !== 'string' || /[\n\0]/.test(params)) throw bad('params must be a string without newline or NUL');
    return { start: start as number, length: length as number, type, params };
  });
}

/** A message dm_split_args() will not refuse as empty. */
export function checkMessage(msg: unknown, device: string): string {
  if (typeof msg !== 'string' || msg.trim() === '' || msg.includes('\0'))
    throw invalidInput(`a device-mapper message must be a non-empty string without NUL`, 'DM_TARGET_MSG', device);
  return msg;
}
