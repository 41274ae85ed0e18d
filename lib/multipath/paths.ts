// Naming a path device: the kernel's messages and tables speak major:minor,
// people and multipathd speak `sdb`; this maps one to the other through sysfs
// (no udev needed) and reads the WWID that ties paths of one LUN together.
// The sysfs root is injectable so that tests can use a fake tree.
import { readFile, readlink, readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { SyscallError } from '../errors';
import { MultipathValueError } from './tokens';

/** A block device named both ways. */
export interface BlockDevice {
  /** Kernel name as in /sys/class/block, e.g. `sdb` or `dm-3`. */
  readonly name: string;
  /** `major:minor`, the form dm tables and messages use. */
  readonly devno: string;
  /** Major number. */
  readonly major: number;
  /** Minor number. */
  readonly minor: number;
}

/** A block device plus its WWID. */
export interface PathIdentity extends BlockDevice {
  /** The WWID from sysfs, or undefined when sysfs has none (or an empty one, as LIO gives). */
  readonly wwid: string | undefined;
}

/** Where sysfs is mounted. */
export interface SysfsOptions {
  /** Defaults to `/sys`. */
  readonly sysfsRoot?: string;
}

const DEVNO = /^(0|[1-9][0-9]*):(0|[1-9][0-9]*)$/;
const KERNEL_NAME = /^[^/\0\s]+$/;

interface NodeFsError {
  code?: string;
  errno?: number;
  syscall?: string;
}

function asFsError(err: unknown): NodeFsError {
  return typeof err === 'object' && err !== null ? (err as NodeFsError) : {};
}

function sysfsError(err: unknown, message: string, device: string): SyscallError {
  const e = asFsError(err);
  if (typeof e.errno !== 'number') return new SyscallError(message, { errno: 5, syscall: 'sysfs', device }, { cause: err });
  return new SyscallError(message, { errno: Math.abs(e.errno), syscall: e.syscall ?? 'sysfs', device }, { cause: err });
}

function isNotFound(err: unknown): boolean {
  const code = asFsError(err).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function parseDevno(text: string, spec: string): BlockDevice & { name: '' } {
  const m = DEVNO.exec(text.trim());
  if (!m) throw new MultipathValueError('path', spec, 'expected major:minor');
  return { name: '', devno: `${m[1]}:${m[2]}`, major: Number(m[1]), minor: Number(m[2]) };
}

async function byDevno(devno: string, spec: string, root: string): Promise<BlockDevice> {
  const d = parseDevno(devno, spec);
  const link = join(root, 'dev', 'block', d.devno);
  try {
    return { ...d, name: basename(await readlink(link)) };
  } catch (err) {
    throw sysfsError(err, `no block device ${d.devno} (${spec}): ${link} is missing`, spec);
  }
}

async function byName(name: string, spec: string, root: string): Promise<BlockDevice> {
  if (!KERNEL_NAME.test(name) || name === '.' || name === '..') throw new MultipathValueError('path', spec, 'is not a block device name');
  const file = join(root, 'class', 'block', name, 'dev');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw sysfsError(err, `no block device named '${name}' (${spec}): ${file} is missing`, spec);
  }
  return { ...parseDevno(text, spec), name };
}

// Without udev there is no /dev/mapper/NAME node to stat, but every dm device
// lists its name in /sys/class/block/dm-N/dm/name.
async function byDmName(dmName: string, spec: string, root: string): Promise<BlockDevice> {
  const dir = join(root, 'class', 'block');
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    throw sysfsError(err, `cannot list ${dir} to find ${spec}`, spec);
  }
  for (const entry of entries.filter((e) => e.startsWith('dm-'))) {
    let name: string;
    try {
      name = (await readFile(join(dir, entry, 'dm', 'name'), 'utf8')).trim();
    } catch (err) {
      if (isNotFound(err)) continue; // removed while we looked
      throw sysfsError(err, `cannot read the dm name of ${entry}`, spec);
    }
    if (name === dmName) return byName(entry, spec, root);
  }
  throw new SyscallError(`no device-mapper device named '${dmName}' (${spec})`, { errno: 2, syscall: 'readdir', device: spec });
}

// Linux's dev_t split (MAJOR/MINOR in include/linux/kdev_t.h, new_decode_dev).
function devnoFromRdev(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

async function byNode(file: string, spec: string, root: string): Promise<BlockDevice> {
  let st;
  try {
    st = await stat(file, { bigint: true });
  } catch (err) {
    throw sysfsError(err, `cannot stat ${file}`, spec);
  }
  if (!st.isBlockDevice()) throw new MultipathValueError('path', spec, 'is not a block device');
  return byDevno(devnoFromRdev(st.rdev), spec, root);
}

/**
 * Resolves a path given as `8:16`, `sdb`, `/dev/sdb`, `/dev/mapper/NAME` or any
 * other block device node (stat'ed for its device number).
 * Throws MultipathValueError for a malformed spec and SyscallError when sysfs has no such device.
 */
export async function resolveBlockDevice(spec: string, options: SysfsOptions = {}): Promise<BlockDevice> {
  const root = options.sysfsRoot ?? '/sys';
  if (typeof spec !== 'string' || spec.length === 0 || spec.includes('\0')) {
    throw new MultipathValueError('path', spec, 'expected major:minor, a device name or a /dev path');
  }
  if (DEVNO.test(spec)) return byDevno(spec, spec, root);
  const mapper = /^\/dev\/mapper\/([^/]+)$/.exec(spec);
  if (mapper) return byDmName(mapper[1] as string, spec, root);
  const dev = /^\/dev\/([^/]+)$/.exec(spec);
  if (dev) return byName(dev[1] as string, spec, root);
  if (spec.startsWith('/')) return byNode(spec, spec, root);
  if (spec.includes(':')) throw new MultipathValueError('path', spec, 'expected major:minor as two unsigned decimals');
  return byName(spec, spec, root);
}

/**
 * The WWID of a block device: `<sysfs>/block/<name>/device/wwid` (SCSI), else
 * `<sysfs>/block/<name>/wwid` (NVMe); trailing whitespace removed; undefined when
 * neither exists or the value is empty.
 */
export async function readWwid(name: string, options: SysfsOptions = {}): Promise<string | undefined> {
  if (typeof name !== 'string' || !KERNEL_NAME.test(name) || name === '.' || name === '..') {
    throw new MultipathValueError('name', name, 'is not a block device name');
  }
  const root = options.sysfsRoot ?? '/sys';
  for (const file of [join(root, 'block', name, 'device', 'wwid'), join(root, 'block', name, 'wwid')]) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (isNotFound(err)) continue;
      throw sysfsError(err, `cannot read ${file}`, name);
    }
    const wwid = text.trimEnd();
    return wwid === '' ? undefined : wwid;
  }
  return undefined;
}

/** resolveBlockDevice plus readWwid. */
export async function identifyPath(spec: string, options: SysfsOptions = {}): Promise<PathIdentity> {
  const dev = await resolveBlockDevice(spec, options);
  return { ...dev, wwid: await readWwid(dev.name, options) };
}
