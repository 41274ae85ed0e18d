// The paths attribution looks at: the map's usable paths, from its dm status.
// A path in a disabled (bypassed) group is still usable: dm-mpath switches to
// that group when the current one runs out (choose_pgpath in drivers/md/dm-mpath.c).
import type { MultipathStatus } from '../multipath/status';
import { resolveBlockDevice } from '../multipath/paths';
import type { PathRef } from './counter-sampler';

/** The devnos of the paths the status shows active (A), in status order, each once. */
export function usablePathDevnos(status: MultipathStatus): string[] {
  const out: string[] = [];
  for (const g of status.groups) for (const p of g.paths) if (p.state === 'active' && !out.includes(p.device)) out.push(p.device);
  return out;
}

/** The usable paths of a status, each named through sysfs. Throws SyscallError for a devno sysfs does not know. */
export async function resolveUsablePaths(status: MultipathStatus, options: { readonly sysfsRoot?: string } = {}): Promise<PathRef[]> {
  return Promise.all(
    usablePathDevnos(status).map(async (devno) => {
      const d = await resolveBlockDevice(devno, options);
      return { devno: d.devno, name: d.name };
    }),
  );
}
