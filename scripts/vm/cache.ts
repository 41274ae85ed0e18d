// Where the VM's downloaded kernel and built initramfs live: outside the repo,
// so a clean clone reuses them and `git clean` never costs a 70 MB download.
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The cache root: $MPW_CACHE_DIR, else $XDG_CACHE_HOME/mpath-watchdog, else ~/.cache/mpath-watchdog. */
export function cacheDir(): string {
  if (process.env.MPW_CACHE_DIR) return process.env.MPW_CACHE_DIR;
  const xdg = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(xdg, 'mpath-watchdog');
}
