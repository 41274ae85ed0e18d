// The guest kernel: one of Debian's stock kernels, named by version (6.1,
// 6.12, 7.3), by suite (bookworm, trixie, trixie-backports) or as `newest`,
// resolved in a private apt state per suite (the host's sources are never
// touched, so a Debian 12 host boots Debian 13's kernels and the other way
// round), fetched with apt-get download, unpacked with dpkg-deb -x and indexed
// with the host's kmod depmod, once per version, in the cache.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cacheDir } from './cache';
import { VmError } from './errors';
import { run } from './exec';
import { debianMirror } from './root';

/** A Debian kernel unpacked in the cache, ready to boot. */
export interface GuestKernel {
  /** The kernel release, as `uname -r` prints it in the guest (e.g. 6.1.0-56-amd64). */
  release: string;
  /** The bzImage to pass to qemu's -kernel. */
  vmlinuz: string;
  /** The unpacked modules tree of <release>, with kmod's binary indexes. */
  modulesDir: string;
}

/** The suites a kernel is looked up in, oldest first. */
export const KERNEL_SUITES = ['bookworm', 'trixie', 'trixie-backports'] as const;
/** A suite of KERNEL_SUITES. */
export type KernelSuite = (typeof KERNEL_SUITES)[number];
/** The kernel the runner boots when --kernel is not given. */
export const DEFAULT_KERNEL = '6.1';

const META_PACKAGE = 'linux-image-amd64';
/** Lists older than this are refreshed before a kernel is resolved. */
const LISTS_MAX_AGE_MS = 24 * 3600 * 1000;

/** What `--kernel` asks for: a suite's current kernel, the newest of all, or a major.minor. */
export type KernelSpec = { suite: KernelSuite } | { newest: true } | { version: string };

/** Parses a --kernel value; throws VmError(2) on anything else. */
export function parseKernelSpec(value: string): KernelSpec {
  if ((KERNEL_SUITES as readonly string[]).includes(value)) return { suite: value as KernelSuite };
  if (value === 'newest') return { newest: true };
  if (/^\d+\.\d+$/.test(value)) return { version: value };
  throw new VmError(`--kernel must be a major.minor version (6.1, 6.12, 7.3), a suite (${KERNEL_SUITES.join(', ')}) or 'newest', got '${value}'`, 2);
}

/** The major.minor of a kernel release (6.1.0-57-amd64 → 6.1, 7.3.4+deb13-amd64 → 7.3). */
export function majorMinor(release: string): string {
  const m = /^(\d+\.\d+)/.exec(release);
  if (!m?.[1]) throw new VmError(`kernel release '${release}' has no major.minor`);
  return m[1];
}

/** The apt sources of one suite: the suite, and for a release its updates and security. */
export function suiteSources(suite: KernelSuite, mirror: string): string {
  const keyring = '[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]';
  const lines = [`deb ${keyring} ${mirror} ${suite} main`];
  if (!suite.endsWith('-backports')) {
    lines.push(`deb ${keyring} ${mirror} ${suite}-updates main`);
    lines.push(`deb ${keyring} ${mirror.replace(/\/debian\/?$/, '/debian-security')} ${suite}-security main`);
  }
  return lines.join('\n') + '\n';
}

/** apt's options for the private state of one suite under `dir`. */
function aptOptions(dir: string): string[] {
  return [
    '-o', `Dir::Etc::SourceList=${join(dir, 'sources.list')}`,
    '-o', 'Dir::Etc::SourceParts=/nonexistent',
    '-o', `Dir::State::Lists=${join(dir, 'lists')}`,
    '-o', `Dir::Cache=${join(dir, 'cache')}`,
    '-o', 'Dir::State::status=/dev/null',
    '-o', 'APT::Architecture=amd64',
    // apt-get download into a root-owned temp dir, as root, without the _apt sandbox warning.
    '-o', 'APT::Sandbox::User=root',
  ];
}

/** The private apt state of a suite, its lists refreshed when missing or a day old. */
async function suiteApt(suite: KernelSuite): Promise<string[]> {
  const dir = join(cacheDir(), 'apt', suite);
  for (const d of ['lists/partial', 'cache/archives/partial']) await mkdir(join(dir, d), { recursive: true });
  await writeFile(join(dir, 'sources.list'), suiteSources(suite, debianMirror()));
  const opts = aptOptions(dir);
  const stamp = join(dir, 'lists', '.updated');
  const age = await stat(stamp).then((s) => Date.now() - s.mtimeMs, () => Infinity);
  if (age > LISTS_MAX_AGE_MS) {
    // --error-on=any: apt 2.6 exits 0 when no mirror answers, and empty lists would then stand for a day.
    try {
      await run('apt-get', [...opts, '-q', '--error-on=any', 'update'], { all: true });
    } catch (err) {
      throw new VmError(`apt-get update for ${suite} failed: ${((err as { all?: string }).all ?? (err as Error).message).split('\n').filter(Boolean).slice(-3).join(' | ')}`);
    }
    await writeFile(stamp, '');
  }
  return opts;
}

/** The one current kernel package of a suite's metapackage (a glob would fetch every past ABI). */
async function suiteKernel(suite: KernelSuite): Promise<{ suite: KernelSuite; pkg: string; release: string }> {
  const opts = await suiteApt(suite);
  let stdout = '';
  try {
    ({ stdout } = (await run('apt-cache', [...opts, 'depends', META_PACKAGE])) as { stdout: string });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new VmError(`cannot resolve the ${suite} kernel: 'apt-cache depends ${META_PACKAGE}' failed: ${(e.stderr || e.message).trim().split('\n').slice(-2).join(' | ')}`);
  }
  const m = /Depends:\s*(linux-image-(\S+-amd64))\s*$/m.exec(stdout);
  if (!m?.[1] || !m[2]) throw new VmError(`cannot resolve the ${suite} kernel: ${META_PACKAGE} names no linux-image-*-amd64 package`);
  return { suite, pkg: m[1], release: m[2] };
}

/** The release a forced linux-image-* package name gives; a Debian package name's characters only (Debian policy 5.6.1). */
export function forcedRelease(pkg: string): string {
  const m = /^linux-image-([a-z0-9][a-z0-9+.-]*)$/.exec(pkg);
  if (!m?.[1]) throw new VmError(`MPW_KERNEL_PACKAGE must name a linux-image-* package, got '${pkg}'`, 2);
  return m[1];
}

/** Resolves a spec to a package in the registry ($MPW_KERNEL_PACKAGE names one outright, from the spec's suite or bookworm). */
async function resolve(spec: KernelSpec): Promise<{ suite: KernelSuite; pkg: string; release: string }> {
  const forced = process.env.MPW_KERNEL_PACKAGE;
  if (forced) return { suite: 'suite' in spec ? spec.suite : 'bookworm', pkg: forced, release: forcedRelease(forced) };
  if ('suite' in spec) return suiteKernel(spec.suite);
  if ('newest' in spec) {
    // Every suite must answer: a missing one could hide the newest kernel.
    const all = [];
    for (const suite of KERNEL_SUITES) all.push(await suiteKernel(suite));
    return all.sort((a, b) => a.release.localeCompare(b.release, 'en', { numeric: true })).at(-1) as (typeof all)[number];
  }
  // A version: the first suite that has it, so 6.1 needs bookworm alone.
  const seen: string[] = [];
  const failed: VmError[] = [];
  for (const suite of KERNEL_SUITES) {
    let k;
    try {
      k = await suiteKernel(suite);
    } catch (err) {
      if (!(err instanceof VmError)) throw err;
      failed.push(err);
      continue;
    }
    if (majorMinor(k.release) === spec.version) return k;
    seen.push(`${majorMinor(k.release)} (${suite}, ${k.release})`);
  }
  if (failed.length > 0) throw new VmError(`no Debian kernel ${spec.version} found; ${failed.map((e) => e.message).join('; ')}`);
  throw new VmError(`no Debian kernel ${spec.version} in ${KERNEL_SUITES.join(', ')}; there are: ${seen.join(', ')}`, 2);
}

function kernelRoot(release: string): string {
  return join(cacheDir(), 'kernel', release);
}

function isComplete(release: string): boolean {
  return existsSync(join(kernelRoot(release), '.complete'));
}

/** Where an unpacked tree keeps kernel and modules: /boot and /lib (up to 6.1), or all under /usr/lib/modules (7.x). */
function describe(release: string): GuestKernel {
  const root = kernelRoot(release);
  const usrModules = join(root, 'usr', 'lib', 'modules', release);
  const modulesDir = existsSync(usrModules) ? usrModules : join(root, 'lib', 'modules', release);
  const boot = join(root, 'boot', `vmlinuz-${release}`);
  return { release, vmlinuz: existsSync(boot) ? boot : join(modulesDir, 'vmlinuz'), modulesDir };
}

/** A cached kernel that satisfies spec, for when the registry cannot be reached. */
async function cachedFor(spec: KernelSpec): Promise<string | undefined> {
  const dir = join(cacheDir(), 'kernel');
  if (!existsSync(dir)) return undefined;
  const releases = (await readdir(dir)).filter((r) => !r.startsWith('.') && isComplete(r))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  if ('version' in spec) return releases.filter((r) => majorMinor(r) === spec.version).at(-1);
  // A suite or `newest` cannot be told from a release offline, but for 6.1.
  if ('suite' in spec && spec.suite === 'bookworm') return releases.filter((r) => majorMinor(r) === '6.1').at(-1);
  return undefined;
}

/**
 * The packages to fetch for a kernel image package: itself and, where Debian
 * splits it (7.x: the image is a shell over linux-binary-, linux-modules- and
 * linux-base-REL), those parts. Never its tools (initramfs-tools, kmod, …).
 */
export function kernelParts(pkg: string, release: string, dependsOutput: string): string[] {
  const parts = new Set([pkg]);
  for (const m of dependsOutput.matchAll(/Depends:\s*(linux-(?:binary|modules|base)-(\S+))\s*$/gm)) {
    if (m[1] && m[2] === release) parts.add(m[1]);
  }
  return [...parts];
}

/** Returns the cached guest kernel for spec, downloading and unpacking it first if needed. */
export async function ensureKernel(spec: KernelSpec = { version: DEFAULT_KERNEL }, log: (line: string) => void = () => {}): Promise<GuestKernel> {
  let found;
  try {
    found = await resolve(spec);
  } catch (err) {
    // Offline: a kernel already in the cache still boots.
    const cached = err instanceof VmError && err.exitCode === 2 ? undefined : await cachedFor(spec);
    if (cached) return describe(cached);
    throw err;
  }
  const { suite, pkg, release } = found;
  if (/cloud/.test(release)) throw new VmError(`guest kernel package '${pkg}' is the cloud flavour, which has no 9p`);
  if (isComplete(release)) return describe(release);

  const opts = await suiteApt(suite);
  const base = join(cacheDir(), 'kernel');
  await mkdir(base, { recursive: true });
  const tmp = await mkdtemp(join(base, '.tmp-'));
  try {
    // A package apt does not know fails at the download below, with apt's own words.
    const depends = await run('apt-cache', [...opts, 'depends', pkg]).then((r) => String(r.stdout), () => '');
    const parts = kernelParts(pkg, release, depends);
    log(`fetching ${parts.join(', ')} from ${suite} with apt-get download (70 to 125 MB, once)`);
    try {
      await run('apt-get', [...opts, 'download', ...parts], { cwd: tmp, all: true });
    } catch (err) {
      throw new VmError(`cannot fetch the guest kernel: 'apt-get download ${parts.join(' ')}' failed: ${(err as Error).message.split('\n').slice(-3).join(' ')}`);
    }
    const debs = (await readdir(tmp)).filter((f) => f.endsWith('.deb'));
    if (debs.length !== parts.length) throw new VmError(`apt-get download of ${parts.length} packages left ${debs.length} .deb files in ${tmp}`);
    const root = join(tmp, 'root');
    for (const deb of debs) await run('dpkg-deb', ['-x', join(tmp, deb), root]);
    // Debian 13's kernels put modules under /usr/lib/modules; bookworm's kmod
    // depmod -b looks only under <base>/lib/modules: give it the merged-/usr link.
    if (existsSync(join(root, 'usr', 'lib', 'modules', release)) && !existsSync(join(root, 'lib'))) {
      await symlink(join('usr', 'lib'), join(root, 'lib'));
    }
    const image = [join(root, 'boot', `vmlinuz-${release}`), join(root, 'usr', 'lib', 'modules', release, 'vmlinuz')];
    if (!image.some((f) => existsSync(f))) {
      throw new VmError(`${parts.join(', ')} hold no kernel image (looked for ${image.join(' and ')}); 'apt-cache depends ${pkg}' named: ${depends.trim() || 'nothing'}`);
    }
    // kmod's modprobe in the guest reads only the binary indexes that kmod's depmod writes.
    try {
      await run('depmod', ['-b', root, release]);
    } catch (err) {
      throw new VmError(`depmod -b ${root} ${release} failed (is kmod installed?): ${(err as Error).message.split('\n')[0]}`);
    }
    await writeFile(join(root, '.complete'), `${parts.join(' ')}\n`);
    // Another run may have finished the same kernel meanwhile, and may be booting it: keep that one.
    if (!isComplete(release)) {
      await rm(kernelRoot(release), { recursive: true, force: true });
      await rename(root, kernelRoot(release));
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return describe(release);
}
