// The demo's fault rig (also the VM tests' rig): two dm-linear "path" devices
// over the two scsi_debug disks, and a bio-mode multipath map over them. A path
// hangs when its device is suspended with noflush and heals when resumed.
// Teardown resumes before it removes, so nothing is left stuck in D state.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { DeviceMapper } from '../dm/control';
import { DmError } from '../dm/errors';
import { resolveBlockDevice } from '../multipath/paths';
import { CliError } from './output';

/** A scsi_debug disk found through sysfs. */
export interface DemoDisk {
  name: string;
  devno: string;
  wwid: string;
}

/** One path device of the rig. */
export interface DemoPath {
  /** dm name of the path device. */
  dmName: string;
  /** maj:min as the map names it. */
  devno: string;
  /** Kernel name (dm-N). */
  name: string;
  disk: DemoDisk;
}

/** A built rig. */
export interface DemoRig {
  map: string;
  /** Device node of the map. */
  mapPath: string;
  sizeSectors: number;
  paths: [DemoPath, DemoPath];
  /** Suspends the path device with noflush: every bio sent to it waits. */
  hang(p: DemoPath): Promise<void>;
  /** Resumes the path device. */
  heal(p: DemoPath): Promise<void>;
  /** Resumes every path, removes the map, then the paths; never throws. */
  teardown(): Promise<void>;
}

/** The scsi_debug disks (sysfs model `scsi_debug`), sorted by name; CliError unless there are two with one WWID. */
export function scsiDebugDisks(sysBlock = '/sys/block'): DemoDisk[] {
  const disks: DemoDisk[] = [];
  for (const name of readdirSync(sysBlock)) {
    const model = `${sysBlock}/${name}/device/model`;
    if (!existsSync(model) || !readFileSync(model, 'utf8').startsWith('scsi_debug')) continue;
    disks.push({
      name,
      devno: readFileSync(`${sysBlock}/${name}/dev`, 'utf8').trim(),
      wwid: readFileSync(`${sysBlock}/${name}/device/wwid`, 'utf8').trim(),
    });
  }
  disks.sort((a, b) => a.name.localeCompare(b.name));
  if (disks.length < 2) {
    throw new CliError(`the demo needs two scsi_debug disks and found ${disks.length}: run it in the test VM (npm run demo)`);
  }
  return disks;
}

/** Resumes (if suspended) and removes a device; a missing device is fine. */
async function resumeAndRemove(dm: DeviceMapper, name: string): Promise<void> {
  try {
    if ((await dm.info(name)).suspended) await dm.resume(name);
    await dm.remove(name);
  } catch (e) {
    if (!(e instanceof DmError && e.code === 'ENXIO')) throw e;
  }
}

/** Builds the rig under `prefix`, removing leftovers of an earlier run first. */
export async function createDemoRig(prefix: string, dm = new DeviceMapper()): Promise<DemoRig> {
  const disks = scsiDebugDisks();
  const [da, db] = disks as [DemoDisk, DemoDisk];
  const sizeSectors = Number(readFileSync(`/sys/block/${da.name}/size`, 'utf8'));
  const names = [`${prefix}-pa`, `${prefix}-pb`];
  const map = `${prefix}-map`;
  for (const n of [map, ...names]) await resumeAndRemove(dm, n);
  const paths: DemoPath[] = [];
  const teardown = async (): Promise<void> => {
    for (const p of names) await dm.resume(p).catch(() => undefined);
    for (const n of [map, ...names]) await resumeAndRemove(dm, n).catch(() => undefined);
  };
  try {
    for (const [i, disk] of [da, db].entries()) {
      const info = await dm.create(names[i] as string, { table: `0 ${sizeSectors} linear ${disk.devno} 0` });
      const devno = `${info.major}:${info.minor}`;
      paths.push({ dmName: names[i] as string, devno, name: (await resolveBlockDevice(devno)).name, disk });
    }
    const [pa, pb] = paths as [DemoPath, DemoPath];
    await dm.create(map, { table: `0 ${sizeSectors} multipath 2 queue_mode bio 0 1 1 round-robin 0 2 1 ${pa.devno} 1 ${pb.devno} 1` });
    return {
      map,
      mapPath: await dm.devicePath(map),
      sizeSectors,
      paths: [pa, pb],
      hang: async (p) => void (await dm.suspend(p.dmName, { noflush: true })),
      heal: async (p) => {
        if ((await dm.info(p.dmName)).suspended) await dm.resume(p.dmName);
      },
      teardown,
    };
  } catch (e) {
    await teardown();
    throw e;
  }
}
