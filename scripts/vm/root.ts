// Guest and build roots other than the host's own: a Debian userland made by
// Debian's mmdebstrap from the registry, cached outside the repo (like the
// guest kernel) under a key of its suite and package list, so a change of
// either builds a new one and a clean clone reuses it.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir } from './cache';
import { VmError } from './errors';
import { run } from './exec';

/** A Debian userland the project can build, test and boot in. */
export interface RootSpec {
  /** The Debian suite it is made from. */
  suite: string;
  /** What it holds beyond the apt variant: build tools, the guest's peers and tools. */
  packages: readonly string[];
}

/** The roots by name; `host` (the machine's own /) is not in the table. */
export const ROOTS: Readonly<Record<string, RootSpec>> = {
  trixie: {
    suite: 'trixie',
    packages: [
      // the addon's build and the unit tier (loop devices through losetup)
      'build-essential', 'python3', 'pkg-config', 'liburing-dev', 'nodejs', 'libnode-dev', 'util-linux', 'mount',
      // the guest: the same tools scripts/setup.sh installs on the host
      'kmod', 'busybox-static', 'dmsetup', 'multipath-tools', 'fio', 'valgrind', 'iproute2',
      'open-iscsi', 'nftables', 'udev', 'procps', 'nvme-cli', 'xz-utils',
    ],
  },
};

/** The root names `--root` takes. */
export const ROOT_NAMES = ['host', ...Object.keys(ROOTS)] as const;

/** The Debian mirror roots are made from: $MPW_DEBIAN_MIRROR, else deb.debian.org. */
export function debianMirror(): string {
  return process.env.MPW_DEBIAN_MIRROR || 'http://deb.debian.org/debian';
}

/** The cache directory of one root: its name and a hash of what it is made of. */
export function rootDir(name: string): string {
  const spec = ROOTS[name];
  if (!spec) throw new VmError(`unknown root '${name}' (known: ${ROOT_NAMES.join(', ')})`, 2);
  const key = createHash('sha256').update(spec.suite).update('\0').update([...spec.packages].sort().join(' '))
    .digest('hex').slice(0, 12);
  return join(cacheDir(), 'root', `${name}-${key}`);
}

/** Returns the root's directory, making it with mmdebstrap first if it is not cached. */
export async function ensureRoot(name: string, log: (line: string) => void = () => {}): Promise<string> {
  const dir = rootDir(name);
  if (existsSync(join(dir, '.complete'))) return dir;
  const spec = ROOTS[name] as RootSpec;
  if (process.getuid?.() !== 0) throw new VmError(`making the ${name} root needs root (mmdebstrap --mode=root)`);
  const base = join(cacheDir(), 'root');
  await mkdir(base, { recursive: true });
  // Older keys of this name are stale roots (about 850 MB each), and a
  // .tmp-PID of a process that is gone is a run that died; another live run's is left alone.
  for (const old of await readdir(base)) {
    if (!old.startsWith(`${name}-`)) continue;
    const tmpPid = /\.tmp-(\d+)$/.exec(old)?.[1];
    const stale = tmpPid !== undefined ? !alive(Number(tmpPid)) : join(base, old) !== dir;
    if (stale) await rm(join(base, old), { recursive: true, force: true });
  }
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  log(`making the ${name} root with mmdebstrap (${spec.suite}, about 300 MB to fetch, once)`);
  try {
    // mmdebstrap's root mode mounts proc and sys inside the target: in a
    // private mount namespace, so a killed run leaves no mounts on the host.
    await run('unshare', [
      '--mount', '--propagation', 'private', 'mmdebstrap',
      '--mode=root', '--variant=apt', '--quiet',
      '--keyring=/usr/share/keyrings/debian-archive-keyring.gpg',
      `--include=${spec.packages.join(',')}`,
      spec.suite, tmp, debianMirror(),
    ], { all: true });
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    const e = err as Error & { code?: string; all?: string };
    if (e.code === 'ENOENT') throw new VmError('unshare not found: install util-linux');
    if (/mmdebstrap: (command )?not found|No such file or directory.*mmdebstrap|failed to execute mmdebstrap/i.test(e.all ?? '')) {
      throw new VmError('mmdebstrap not found: install it (apt-get install mmdebstrap)');
    }
    throw new VmError(`mmdebstrap of ${spec.suite} failed: ${(e.all ?? e.message).split('\n').slice(-5).join(' | ')}`);
  }
  await writeFile(join(tmp, '.complete'), `${spec.suite} ${spec.packages.join(' ')}\n`);
  // Another run may have made the same root meanwhile: keep the one already there.
  if (existsSync(join(dir, '.complete'))) await rm(tmp, { recursive: true, force: true });
  else {
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  }
  return dir;
}

/** Whether a process with this pid exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
