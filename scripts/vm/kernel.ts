// The guest kernel: Debian's stock linux-image, fetched with apt-get download,
// unpacked with dpkg-deb -x and indexed with the host's kmod depmod, once per
// version, in the cache.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir } from './cache';
import { VmError } from './errors';
import { run } from './exec';

/** A Debian kernel unpacked in the cache, ready to boot. */
export interface GuestKernel {
  /** The kernel release, as `uname -r` prints it in the guest (e.g. 6.1.0-56-amd64). */
  release: string;
  /** The bzImage to pass to qemu's -kernel. */
  vmlinuz: string;
  /** The unpacked /lib/modules/<release>, with kmod's binary indexes. */
  modulesDir: string;
}

const META_PACKAGE = 'linux-image-amd64';

function kernelRoot(release: string): string {
  return join(cacheDir(), 'kernel', release);
}

function describe(release: string): GuestKernel {
  const root = kernelRoot(release);
  return {
    release,
    vmlinuz: join(root, 'boot', `vmlinuz-${release}`),
    modulesDir: join(root, 'lib', 'modules', release),
  };
}

function isComplete(release: string): boolean {
  return existsSync(join(kernelRoot(release), '.complete'));
}

/** Names the one current kernel package the metapackage depends on (a glob would fetch every past ABI). */
async function resolvePackage(): Promise<string> {
  const forced = process.env.MPW_KERNEL_PACKAGE;
  if (forced) return forced;
  let stdout = '';
  try {
    ({ stdout } = (await run('apt-cache', ['depends', META_PACKAGE])) as { stdout: string });
  } catch (err) {
    throw new VmError(`cannot resolve the guest kernel: 'apt-cache depends ${META_PACKAGE}' failed (${(err as Error).message.split('\n')[0]}). Is this Debian with apt?`);
  }
  const m = /Depends:\s*(linux-image-\S+)/.exec(stdout);
  if (!m?.[1]) {
    throw new VmError(`cannot resolve the guest kernel: 'apt-cache depends ${META_PACKAGE}' names no linux-image package. Run 'apt-get update' as root first.`);
  }
  return m[1];
}

async function newestCached(): Promise<string | undefined> {
  const dir = join(cacheDir(), 'kernel');
  if (!existsSync(dir)) return undefined;
  const releases = (await readdir(dir)).filter((r) => !r.startsWith('.') && isComplete(r));
  return releases.sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).at(-1);
}

/** Returns the cached guest kernel, downloading and unpacking it first if needed. */
export async function ensureKernel(log: (line: string) => void = () => {}): Promise<GuestKernel> {
  let pkg: string;
  try {
    pkg = await resolvePackage();
  } catch (err) {
    // Offline, or no apt lists: a kernel already in the cache still boots.
    const cached = await newestCached();
    if (cached) return describe(cached);
    throw err;
  }
  const release = pkg.replace(/^linux-image-/, '');
  if (release === pkg || /cloud/.test(release)) {
    throw new VmError(`guest kernel package '${pkg}' is not a linux-image-*-amd64 flavour with 9p (the cloud flavour has none)`);
  }
  if (isComplete(release)) return describe(release);

  const base = join(cacheDir(), 'kernel');
  await mkdir(base, { recursive: true });
  const tmp = await mkdtemp(join(base, '.tmp-'));
  try {
    log(`fetching ${pkg} with apt-get download (about 70 MB, once)`);
    try {
      await run('apt-get', ['download', pkg], { cwd: tmp, all: true });
    } catch (err) {
      throw new VmError(`cannot fetch the guest kernel: 'apt-get download ${pkg}' failed: ${(err as Error).message.split('\n').slice(-3).join(' ')}`);
    }
    const debs = (await readdir(tmp)).filter((f) => f.endsWith('.deb'));
    if (debs.length !== 1 || !debs[0]) throw new VmError(`apt-get download ${pkg} left ${debs.length} .deb files in ${tmp}`);
    const root = join(tmp, 'root');
    await run('dpkg-deb', ['-x', join(tmp, debs[0]), root]);
    // kmod's modprobe in the guest reads only the binary indexes that kmod's depmod writes.
    try {
      await run('depmod', ['-b', root, release]);
    } catch (err) {
      throw new VmError(`depmod -b ${root} ${release} failed (is kmod installed?): ${(err as Error).message.split('\n')[0]}`);
    }
    await writeFile(join(root, '.complete'), `${pkg}\n`);
    await rm(kernelRoot(release), { recursive: true, force: true });
    await rename(root, kernelRoot(release));
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return describe(release);
}
