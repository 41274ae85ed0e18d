// The fault rig of DESIGN.md: two dm-linear "path" devices over the scsi_debug
// disks and a bio-mode multipath map over them. A path hangs when its device
// is suspended with noflush, turns slow when reloaded as dm-delay, and heals
// when reloaded as linear and resumed. Teardown always resumes first, so no
// reader is left in D state.
import { DeviceMapper } from '../../../lib/dm';
import { resolveBlockDevice } from '../../../lib/multipath';
import { scsiDebugDisks, sectors } from './scsi';
import { forceCleanup } from './dm';

/** One path device of the rig. */
export interface RigPath {
  /** dm name of the path device. */
  dmName: string;
  /** maj:min, as the map's table and status name it. */
  devno: string;
  /** Kernel name (dm-N). */
  name: string;
  /** The scsi_debug disk under it. */
  disk: { devno: string; name: string };
}

/** A running rig. */
export interface Rig {
  map: string;
  /** /dev/dm-N of the map. */
  mapPath: string;
  paths: [RigPath, RigPath];
  sizeSectors: number;
  /** Holds every new bio on the path (suspend with noflush). */
  hang(p: RigPath): Promise<void>;
  /** Every bio on the path waits `ms` (reload as dm-delay). */
  slow(p: RigPath, ms: number): Promise<void>;
  /** Back to a plain, resumed linear device. */
  heal(p: RigPath): Promise<void>;
  /** Heals every path and removes everything. */
  teardown(): Promise<void>;
}

/** Builds the rig under `prefix`; `selector` defaults to round-robin, which alternates paths per bio. */
export async function createRig(prefix: string, options: { selector?: string; features?: string } = {}): Promise<Rig> {
  const dm = new DeviceMapper();
  const disks = scsiDebugDisks();
  const size = sectors((disks[0] as { name: string }).name);
  const names = [`${prefix}-pa`, `${prefix}-pb`];
  const map = `${prefix}-map`;
  await forceCleanup(map, ...names);
  const linear = (disk: { devno: string }): string => `0 ${size} linear ${disk.devno} 0`;
  const paths: RigPath[] = [];
  for (const [i, dmName] of names.entries()) {
    const disk = disks[i] as { devno: string; name: string };
    const info = await dm.create(dmName, { table: linear(disk) });
    const devno = `${info.major}:${info.minor}`;
    const d = await resolveBlockDevice(devno);
    paths.push({ dmName, devno, name: d.name, disk: { devno: disk.devno, name: disk.name } });
  }
  const [pa, pb] = paths as [RigPath, RigPath];
  const selector = options.selector ?? 'round-robin 0 2 1';
  const features = options.features ?? '2 queue_mode bio';
  await dm.create(map, { table: `0 ${size} multipath ${features} 0 1 1 ${selector} ${pa.devno} 1 ${pb.devno} 1` });
  const mapPath = await dm.devicePath(map);

  const heal = async (p: RigPath): Promise<void> => {
    const info = await dm.info(p.dmName);
    if (!info.suspended) await dm.suspend(p.dmName, { noflush: true });
    await dm.load(p.dmName, linear(p.disk));
    await dm.resume(p.dmName);
  };
  return {
    map,
    mapPath,
    paths: [pa, pb],
    sizeSectors: size,
    hang: async (p) => {
      await dm.suspend(p.dmName, { noflush: true });
    },
    slow: async (p, ms) => {
      await dm.load(p.dmName, `0 ${size} delay ${p.disk.devno} 0 ${ms}`);
      await dm.suspend(p.dmName, { noflush: true });
      await dm.resume(p.dmName);
    },
    heal,
    teardown: async () => {
      for (const p of paths) await heal(p).catch(() => undefined);
      await forceCleanup(map, ...names);
    },
  };
}

/** Resolves when `cond` holds, polling every 20 ms; rejects after `ms`. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
