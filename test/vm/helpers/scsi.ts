// Finds the scsi_debug paths the guest set-up created (sda/sdb under qemu,
// other names under Vagrant, where the VM has its own disk).
import { readdirSync, readFileSync, existsSync } from 'node:fs';

/** One scsi_debug disk as the guest sees it. */
export interface ScsiDebugDisk {
  /** Block device name, e.g. sda. */
  name: string;
  /** major:minor. */
  devno: string;
  /** The WWID from sysfs (device/wwid). */
  wwid: string;
}

/** The scsi_debug disks, sorted by name; throws when there are fewer than two. */
export function scsiDebugDisks(): ScsiDebugDisk[] {
  const disks: ScsiDebugDisk[] = [];
  for (const name of readdirSync('/sys/block')) {
    const model = `/sys/block/${name}/device/model`;
    if (!existsSync(model) || !readFileSync(model, 'utf8').startsWith('scsi_debug')) continue;
    disks.push({
      name,
      devno: readFileSync(`/sys/block/${name}/dev`, 'utf8').trim(),
      wwid: readFileSync(`/sys/block/${name}/device/wwid`, 'utf8').trim(),
    });
  }
  disks.sort((a, b) => a.name.localeCompare(b.name));
  if (disks.length < 2) throw new Error(`expected two scsi_debug disks, found ${disks.length}: is this the test VM?`);
  return disks;
}

/** Sectors (512 B) of a block device, from sysfs. */
export function sectors(name: string): number {
  return Number(readFileSync(`/sys/block/${name}/size`, 'utf8'));
}
