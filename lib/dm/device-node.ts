// A usable block device node without udev: /dev/dm-N as devtmpfs makes it, or a
// node made under /dev/mapper as libdm does when udev is absent (_add_dev_node()).
import { mkdir, lstat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { native } from '../native';
import { DmError } from './errors';
import type { DmDevno } from './types';

/** The major and minor of a Node `rdev` (glibc's gnu_dev_major/minor encoding). */
export function rdevToDevno(rdev: number): DmDevno {
  const r = BigInt(rdev);
  return {
    major: Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn)),
    minor: Number((r & 0xffn) | ((r >> 12n) & ~0xffn)),
  };
}

/** True when `path` is a block device node for `devno`. */
export async function isNodeFor(path: string, devno: DmDevno): Promise<boolean> {
  try {
    const st = await lstat(path);
    if (!st.isBlockDevice()) return false;
    const d = rdevToDevno(st.rdev);
    return d.major === devno.major && d.minor === devno.minor;
  } catch {
    return false;
  }
}

/** Makes (or replaces a stale) `dir/name` block node for `devno`, mode 0600. */
export async function ensureMapperNode(name: string, devno: DmDevno, dir = '/dev/mapper'): Promise<string> {
  const path = join(dir, name);
  if (await isNodeFor(path, devno)) return path;
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await unlink(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
  try {
    native.mknodBlock(path, devno.major, devno.minor, 0o600);
  } catch (e) {
    const errno = typeof (e as { errno?: unknown }).errno === 'number' ? (e as { errno: number }).errno : 22;
    throw new DmError(`cannot make device node ${path} for '${name}' (${devno.major}:${devno.minor})`, { errno, syscall: 'mknod', device: name }, { cause: e });
  }
  return path;
}

/** /dev/dm-N when devtmpfs made it for this devno, else a node under /dev/mapper. */
export async function devicePathFor(name: string, devno: DmDevno): Promise<string> {
  const dmN = `/dev/dm-${devno.minor}`;
  if (await isNodeFor(dmN, devno)) return dmN;
  const mapper = join('/dev/mapper', name);
  if (await isNodeFor(mapper, devno)) return mapper;
  return ensureMapperNode(name, devno);
}
