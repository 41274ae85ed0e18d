// A live dm-multipath map: its parsed table and status joined with sysfs, and
// the target messages of drivers/md/dm-mpath.c (multipath_message).
import type { DeviceMapper } from '../dm/control';
import type { DmTarget } from '../dm/types';
import { resolveBlockDevice, readWwid, type SysfsOptions } from './paths';
import { parseMultipathStatus, type GroupState, type MultipathStatus, type PathState } from './status';
import { parseMultipathTable, type MultipathTable } from './table';
import { MultipathValueError } from './tokens';

/** One path of a map, as the kernel reports it, named through sysfs. */
export interface MultipathPath {
  /** `major:minor`, the form dm messages use. */
  devno: string;
  /** Block device name (`sdb`, `dm-3`), or undefined when sysfs no longer has the device. */
  name: string | undefined;
  /** WWID from sysfs, when the device has one. */
  wwid: string | undefined;
  /** 1-based number of the path's priority group. */
  group: number;
  /** The group's state (active, enabled, disabled). */
  groupState: GroupState;
  /** active (usable) or failed. */
  state: PathState;
  /** Times the path failed since the table was loaded. */
  failCount: number;
  /** The path selector's per-path status args. */
  selectorArgs: readonly string[];
}

// The last fail queued for each map name (see failPath).
const FAIL_QUEUES = new Map<string, Promise<void>>();

/** Options of MultipathMap.open. */
export interface MultipathMapOptions extends SysfsOptions {}

/** Options of MultipathMap#failPath. */
export interface FailPathOptions {
  /** Refuse (LastPathError) when fewer than this many other paths would stay active; default 1, never the last; 0 fails even the last. */
  keepActive?: number;
  /** Paths (maj:min) counted as failed whatever the status says: a fail still on its way to them (multipathd's `fail path` not yet answered). */
  failing?: readonly string[];
}

/** failPath refused, nothing sent: failing the path would leave fewer active paths than `keepActive`. */
export class LastPathError extends Error {
  /** Always 'last-path'. */
  readonly code = 'last-path';
  /** The map. */
  readonly map: string;
  /** The path that was not failed, as maj:min. */
  readonly path: string;
  /** Other paths active in the status read just before (the count that refused). */
  readonly othersActive: number;
  /** What was asked to stay active. */
  readonly keepActive: number;

  constructor(map: string, path: string, othersActive: number, keepActive: number) {
    super(`refusing to fail ${path} of '${map}': ${othersActive} other path${othersActive === 1 ? '' : 's'} active, ${keepActive} must stay`);
    this.name = new.target.name;
    this.map = map;
    this.path = path;
    this.othersActive = othersActive;
    this.keepActive = keepActive;
  }
}

/** The one multipath target of a map; a map of several targets is not something multipathd or this tool makes. */
function multipathTarget(name: string, targets: readonly DmTarget[], what: string): DmTarget {
  const mp = targets.filter((t) => t.type === 'multipath');
  if (targets.length !== 1 || mp.length !== 1 || !mp[0]) {
    const types = targets.map((t) => t.type).join(', ') || 'no table';
    throw new MultipathValueError('map', name, `is not a single-target multipath map (${what}: ${types})`);
  }
  return mp[0];
}

/** A dm-multipath map driven through the DeviceMapper client. */
export class MultipathMap {
  /** The dm name of the map. */
  readonly name: string;
  readonly #dm: DeviceMapper;
  readonly #sysfs: SysfsOptions;

  private constructor(dm: DeviceMapper, name: string, sysfs: SysfsOptions) {
    this.#dm = dm;
    this.name = name;
    this.#sysfs = sysfs;
  }

  /** Opens an existing map; fails with DmError (ENXIO) when it is missing, MultipathValueError when it is not multipath. */
  static async open(dm: DeviceMapper, name: string, options: MultipathMapOptions = {}): Promise<MultipathMap> {
    multipathTarget(name, await dm.table(name), 'table');
    const sysfs: SysfsOptions = options.sysfsRoot === undefined ? {} : { sysfsRoot: options.sysfsRoot };
    return new MultipathMap(dm, name, sysfs);
  }

  /** The live table, parsed. */
  async table(): Promise<MultipathTable> {
    return parseMultipathTable(multipathTarget(this.name, await this.#dm.table(this.name), 'table').params);
  }

  /** The status, parsed. */
  async status(): Promise<MultipathStatus> {
    return parseMultipathStatus(multipathTarget(this.name, await this.#dm.status(this.name), 'status').params);
  }

  /** Every path of every group, with state, fail count, block device name and WWID. */
  async paths(): Promise<MultipathPath[]> {
    const status = await this.status();
    const out: MultipathPath[] = [];
    for (const [gi, group] of status.groups.entries()) {
      for (const p of group.paths) {
        const name = await resolveBlockDevice(p.device, this.#sysfs).then((d) => d.name, () => undefined);
        out.push({
          devno: p.device,
          name,
          wwid: name === undefined ? undefined : await readWwid(name, this.#sysfs),
          group: gi + 1,
          groupState: group.state,
          state: p.state,
          failCount: p.failCount,
          selectorArgs: p.selectorArgs,
        });
      }
    }
    return out;
  }

  /** Resolves `8:16`, `sdb` or `/dev/sdb` to the devno of one of this map's paths; refuses anything else before any message is sent. */
  async resolvePath(spec: string): Promise<string> {
    return (await this.#locate(spec)).devno;
  }

  /** The path's devno and the status it was found in. */
  async #locate(spec: string): Promise<{ devno: string; status: MultipathStatus }> {
    const dev = await resolveBlockDevice(spec, this.#sysfs);
    const status = await this.status();
    const devnos = status.groups.flatMap((g) => g.paths.map((p) => p.device));
    if (!devnos.includes(dev.devno)) {
      throw new MultipathValueError('path', spec, `is not a path of multipath map '${this.name}' (its paths: ${devnos.join(', ') || 'none'})`);
    }
    return { devno: dev.devno, status };
  }

  async #groupNumber(group: number): Promise<number> {
    const count = (await this.status()).groups.length;
    if (!Number.isInteger(group) || group < 1 || group > count) {
      throw new MultipathValueError('group', group, `must be a group number of map '${this.name}', 1 to ${count}`);
    }
    return group;
  }

  /**
   * Fails a path (`fail_path`); the kernel stops routing new I/O to it at once.
   * The status read just before the message decides: with fewer than
   * `keepActive` other active paths the fail is refused with LastPathError,
   * whatever the path's own state. Fails of one map name are serialized
   * within this process; another process (a second watchdog, an operator's
   * dmsetup) or multipathd's checker can still fail another path between that
   * read and the message: dm offers no compare-and-fail.
   */
  async failPath(path: string, options: FailPathOptions = {}): Promise<void> {
    const keepActive = options.keepActive ?? 1;
    if (!Number.isSafeInteger(keepActive) || keepActive < 0) throw new MultipathValueError('keepActive', keepActive, 'must be an integer >= 0');
    const failing = new Set(options.failing ?? []);
    // One fail at a time per map name in this process, whichever object sends
    // it: two that each read the status before the other's message would both
    // count the other as active.
    const tail = FAIL_QUEUES.get(this.name) ?? Promise.resolve();
    const run = tail.then(async () => {
      const { devno, status } = await this.#locate(path);
      const paths = status.groups.flatMap((g) => g.paths);
      const othersActive = paths.filter((p) => p.device !== devno && p.state === 'active' && !failing.has(p.device)).length;
      // Whatever this path's own state: a failed one may be reinstated (by the
      // checker, or by us) before the message lands.
      if (othersActive < keepActive) throw new LastPathError(this.name, devno, othersActive, keepActive);
      await this.#dm.message(this.name, `fail_path ${devno}`);
    });
    const next = run.catch(() => undefined);
    FAIL_QUEUES.set(this.name, next);
    void next.then(() => {
      if (FAIL_QUEUES.get(this.name) === next) FAIL_QUEUES.delete(this.name);
    });
    return run;
  }

  /** Reinstates a failed path (`reinstate_path`). */
  async reinstatePath(path: string): Promise<void> {
    await this.#dm.message(this.name, `reinstate_path ${await this.resolvePath(path)}`);
  }

  /** Makes a group (1-based) the next one used (`switch_group`). */
  async switchGroup(group: number): Promise<void> {
    await this.#dm.message(this.name, `switch_group ${await this.#groupNumber(group)}`);
  }

  /** Re-enables a disabled group (`enable_group`). */
  async enableGroup(group: number): Promise<void> {
    await this.#dm.message(this.name, `enable_group ${await this.#groupNumber(group)}`);
  }

  /** Disables a group, so it is tried last (`disable_group`). */
  async disableGroup(group: number): Promise<void> {
    await this.#dm.message(this.name, `disable_group ${await this.#groupNumber(group)}`);
  }

  /** Queues I/O when no path is left (`queue_if_no_path`), or fails it (`fail_if_no_path`). */
  async setQueueIfNoPath(queue: boolean): Promise<void> {
    await this.#dm.message(this.name, queue ? 'queue_if_no_path' : 'fail_if_no_path');
  }
}
