// The initramfs: busybox-static, the few modules needed to reach the host's
// root over 9p and put an overlay on it, and scripts/vm/init.sh as /init.
// Everything else (dm, scsi_debug) is loaded after switch_root by kmod.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { cacheDir } from './cache';
import { VmError } from './errors';
import { run } from './exec';
import type { GuestKernel } from './kernel';

/** Modules the first stage loads itself, before the host's root is reachable. */
export const STAGE1_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'] as const;

const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];
const INIT_SCRIPT = join(__dirname, '..', '..', '..', 'scripts', 'vm', 'init.sh');

const norm = (name: string): string => name.replace(/-/g, '_');

/** Orders `wanted` and everything they depend on so that each module follows its dependencies. */
export function moduleLoadOrder(modulesDep: string, wanted: readonly string[]): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of modulesDep.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon).trim();
    deps.set(path, line.slice(colon + 1).trim().split(/\s+/).filter(Boolean));
    byName.set(norm(basename(path).replace(/\.ko(\.\w+)?$/, '')), path);
  }
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (path: string): void => {
    if (seen.has(path)) return;
    seen.add(path);
    for (const d of deps.get(path) ?? []) visit(d);
    order.push(path);
  };
  for (const name of wanted) {
    const path = byName.get(norm(name));
    // Absent from modules.dep means built into the kernel: nothing to load.
    if (path) visit(path);
  }
  return order;
}

function findBusybox(): string {
  const found = BUSYBOX_CANDIDATES.find((p) => existsSync(p));
  if (!found) throw new VmError('busybox not found: install the busybox-static package (apt-get install busybox-static)');
  return found;
}

/** Returns a cached initramfs for this kernel, building it when the inputs changed. */
export async function ensureInitramfs(kernel: GuestKernel): Promise<string> {
  const busybox = findBusybox();
  const initScript = await readFile(INIT_SCRIPT);
  const modulesDep = await readFile(join(kernel.modulesDir, 'modules.dep'), 'utf8');
  const order = moduleLoadOrder(modulesDep, STAGE1_MODULES);
  const key = createHash('sha256')
    .update(kernel.release).update('\0').update(initScript).update('\0').update(order.join(' '))
    .update('\0').update(await readFile(busybox))
    .digest('hex').slice(0, 16);
  const out = join(cacheDir(), 'initramfs', `${kernel.release}-${key}.cpio.gz`);
  if (existsSync(out)) return out;

  await mkdir(dirname(out), { recursive: true });
  const stage = await mkdtemp(join(dirname(out), '.stage-'));
  try {
    for (const d of ['bin', 'dev', 'proc', 'sys', 'lower', 'rw', 'newroot', 'modules']) await mkdir(join(stage, d));
    await copyFile(busybox, join(stage, 'bin', 'busybox'));
    await chmod(join(stage, 'bin', 'busybox'), 0o755);
    await writeFile(join(stage, 'init'), initScript, { mode: 0o755 });
    const names: string[] = [];
    for (const rel of order) {
      // Debian 13's kernels ship .ko.xz: busybox's insmod is not trusted to
      // unpack them, so stage 1 gets plain .ko files.
      const name = basename(rel).replace(/\.(xz|zst)$/, '');
      const src = join(kernel.modulesDir, rel);
      if (rel.endsWith('.xz') || rel.endsWith('.zst')) {
        const tool = rel.endsWith('.xz') ? 'xz' : 'zstd';
        try {
          const { stdout } = await run(tool, ['-dc', src], { encoding: 'buffer', stripFinalNewline: false });
          await writeFile(join(stage, 'modules', name), stdout as Uint8Array);
        } catch (err) {
          throw new VmError(`cannot unpack ${rel} with ${tool} -dc (apt-get install ${tool === 'xz' ? 'xz-utils' : 'zstd'}): ${(err as Error).message.split('\n')[0]}`);
        }
      } else {
        await copyFile(src, join(stage, 'modules', name));
      }
      names.push(name);
    }
    await writeFile(join(stage, 'modules', 'order'), names.join('\n') + '\n');
    const tmpOut = `${out}.${process.pid}.tmp`;
    // The output path is a positional parameter, never part of the script: any character in the cache dir is safe.
    await run('sh', ['-c', 'find . -print0 | sort -z | cpio --null -o -H newc --quiet | gzip -1 > "$1"', 'mpw-initramfs', tmpOut], { cwd: stage });
    await rename(tmpOut, out);
  } catch (err) {
    if (err instanceof VmError) throw err;
    throw new VmError(`cannot build the initramfs (needs cpio and gzip): ${(err as Error).message.split('\n')[0]}`);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
  return out;
}
