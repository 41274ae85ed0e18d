// DeviceMapper: the typed client over native/dm_control.cc. Each method checks
// its input, makes one ioctl (create makes several and undoes them on failure)
// and turns kernel errors into DmError.
import { constants } from 'node:os';
import { native } from '../native';
import { devicePathFor } from './device-node';
import { DmError, toDmError } from './errors';
import { watchEvents } from './events';
import { kernelComplaint, monotonicUsec } from './kmsg';
import type { NativeDmControl, RawDeviceRef, RawDmInfo, RawDmTarget } from './native-types';
import type {
  DmCreateOptions,
  DmDevice,
  DmDeviceRef,
  DmDevno,
  DmEvent,
  DmInfo,
  DmKernelVersion,
  DmRemoveOptions,
  DmSignalOptions,
  DmSuspendOptions,
  DmTableInput,
  DmTarget,
  DmTargetVersion,
} from './types';
import { checkCount, checkEventNr, checkMessage, checkName, checkTable, checkUuid, resolveRef } from './validate';

const E = constants.errno;

function toInfo(raw: RawDmInfo): DmInfo {
  const { name, uuid, major, minor, openCount, eventNr, targetCount, readOnly, suspended, activeTable, inactiveTable, deferredRemove, internalSuspend } = raw;
  return { name, uuid, major, minor, openCount, eventNr, targetCount, readOnly, suspended, activeTable, inactiveTable, deferredRemove, internalSuspend };
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}

/** Options of the DeviceMapper constructor. */
export interface DeviceMapperOptions {
  /** The native calls; the loaded addon unless a test passes a fake. */
  native?: NativeDmControl;
}

/** A typed client for the kernel's device-mapper, straight over /dev/mapper/control. */
export class DeviceMapper {
  readonly #n: NativeDmControl;

  constructor(options: DeviceMapperOptions = {}) {
    this.#n = options.native ?? native;
  }

  /** Runs one native call; on failure, a DmError with the kernel's complaint when one is logged. */
  async #call<T>(
    run: () => Promise<T>,
    ctx: { device?: string | undefined; message?: string; devno?: DmDevno; explain?: boolean },
  ): Promise<T> {
    const since = monotonicUsec();
    try {
      return await run();
    } catch (e) {
      const errno = (e as { errno?: unknown }).errno;
      const kernelMessage =
        ctx.explain && errno === E.EINVAL ? await kernelComplaint(since, ctx.devno && `${ctx.devno.major}:${ctx.devno.minor}`) : undefined;
      throw toDmError(e, { device: ctx.device, message: ctx.message, kernelMessage });
    }
  }

  /** The kernel's dm ioctl interface version. */
  async version(): Promise<DmKernelVersion> {
    return this.#call(() => this.#n.dmVersion(), {});
  }

  /** The target types the kernel has loaded, with versions. */
  async targets(): Promise<DmTargetVersion[]> {
    const list = await this.#call(() => this.#n.dmListVersions(), {});
    return list.map((t) => ({ name: t.name, version: [t.major, t.minor, t.patch] }));
  }

  /** Every dm device, with event counters and uuids. */
  async list(): Promise<DmDevice[]> {
    const list = await this.#call(() => this.#n.dmListDevices(), {});
    return list.map((d) => ({ name: d.name, major: d.major, minor: d.minor, eventNr: d.eventNr, uuid: d.uuid }));
  }

  /** DM_DEV_STATUS of one device. */
  async info(device: DmDeviceRef): Promise<DmInfo> {
    const { raw, label } = resolveRef(device, 'DM_DEV_STATUS');
    return toInfo(await this.#call(() => this.#n.dmDevStatus(raw), { device: label }));
  }

  /**
   * Creates `name`, loads its table and resumes it. If a step fails, removes the
   * device it made, so no half-made device is left behind.
   */
  async create(name: string, options: DmCreateOptions): Promise<DmInfo> {
    checkName(name, 'DM_DEV_CREATE');
    const uuid = options.uuid === undefined ? '' : checkUuid(options.uuid, 'DM_DEV_CREATE', name);
    const targets = checkTable(options.table, name);
    let made: RawDmInfo;
    try {
      made = await this.#call(() => this.#n.dmDevCreate(name, uuid), { device: name });
    } catch (e) {
      throw await this.#explainCreateBusy(e, name, uuid);
    }
    const raw: RawDeviceRef = { name };
    try {
      await this.#load(raw, name, targets, options.readOnly === true, made);
      return toInfo(await this.#call(() => this.#n.dmDevResume(raw), { device: name, devno: made, explain: true }));
    } catch (e) {
      await this.#n.dmDevRemove(raw, {}).catch(() => undefined);
      throw e;
    }
  }

  /** EBUSY from create means the name or the uuid is taken; say which. */
  async #explainCreateBusy(e: unknown, name: string, uuid: string): Promise<unknown> {
    if (!(e instanceof DmError) || e.errno !== E.EBUSY) return e;
    const devices = await this.list().catch(() => []);
    if (devices.some((d) => d.name === name)) return e;
    const owner = uuid === '' ? undefined : devices.find((d) => d.uuid === uuid);
    if (owner === undefined) return e;
    return new DmError(
      `device-mapper uuid '${uuid}' is already used by '${owner.name}'; '${name}' was not created`,
      { errno: e.errno, syscall: e.syscall, device: name },
      { cause: e },
    );
  }

  /**
   * DM_TABLE_LOAD. ENXIO means either no such dm device or a table naming a
   * missing block device (dm_get_device()); a status call tells them apart.
   */
  async #load(raw: RawDeviceRef, label: string, targets: RawDmTarget[], readOnly: boolean, devno?: DmDevno): Promise<RawDmInfo> {
    const since = monotonicUsec();
    try {
      return await this.#n.dmTableLoad(raw, targets, { readOnly });
    } catch (e) {
      const errno = (e as { errno?: unknown }).errno;
      let own = devno;
      if (errno === E.ENXIO && own === undefined) own = await this.#n.dmDevStatus(raw).catch(() => undefined);
      const tableFault = errno === E.EINVAL || (errno === E.ENXIO && own !== undefined);
      const kernelMessage = tableFault ? await kernelComplaint(since, own && `${own.major}:${own.minor}`) : undefined;
      throw toDmError(e, { device: label, kernelMessage, tableFault });
    }
  }

  /** Loads `table` into the inactive slot; resume() makes it live. */
  async load(device: DmDeviceRef, table: DmTableInput, options: { readOnly?: boolean } = {}): Promise<DmInfo> {
    const { raw, label } = resolveRef(device, 'DM_TABLE_LOAD');
    const targets = checkTable(table, label);
    return toInfo(await this.#load(raw, label, targets, options.readOnly === true));
  }

  /** Drops a loaded, not yet resumed table. */
  async clear(device: DmDeviceRef): Promise<DmInfo> {
    const { raw, label } = resolveRef(device, 'DM_TABLE_CLEAR');
    return toInfo(await this.#call(() => this.#n.dmTableClear(raw), { device: label }));
  }

  /** Suspends; without noflush this waits for in-flight I/O, which may take as long as a hung path. */
  async suspend(device: DmDeviceRef, options: DmSuspendOptions = {}): Promise<DmInfo> {
    const { raw, label } = resolveRef(device, 'DM_DEV_SUSPEND');
    const opts = { noflush: options.noflush === true, nolockfs: options.nolockfs === true };
    return toInfo(await this.#call(() => this.#n.dmDevSuspend(raw, opts), { device: label }));
  }

  /** Resumes, making a loaded table live first. */
  async resume(device: DmDeviceRef): Promise<DmInfo> {
    const { raw, label } = resolveRef(device, 'DM_DEV_SUSPEND');
    return toInfo(await this.#call(() => this.#n.dmDevResume(raw), { device: label, explain: true }));
  }

  /** Removes; with deferred, an open device goes when its last opener closes. */
  async remove(device: DmDeviceRef, options: DmRemoveOptions = {}): Promise<DmInfo> {
    const { raw, label } = resolveRef(device, 'DM_DEV_REMOVE');
    return toInfo(await this.#call(() => this.#n.dmDevRemove(raw, { deferred: options.deferred === true }), { device: label }));
  }

  /** Each target's status string (as `dmsetup status`). */
  async status(device: DmDeviceRef, options: { noflush?: boolean } = {}): Promise<DmTarget[]> {
    const { raw, label } = resolveRef(device, 'DM_TABLE_STATUS');
    const r = await this.#call(() => this.#n.dmTableStatus(raw, { noflush: options.noflush === true }), { device: label });
    return r.targets;
  }

  /** The live table (as `dmsetup table`); with inactive, the loaded one. */
  async table(device: DmDeviceRef, options: { inactive?: boolean } = {}): Promise<DmTarget[]> {
    const { raw, label } = resolveRef(device, 'DM_TABLE_STATUS');
    const r = await this.#call(() => this.#n.dmTableStatus(raw, { table: true, inactive: options.inactive === true }), { device: label });
    return r.targets;
  }

  /** The block devices the live table uses. */
  async deps(device: DmDeviceRef): Promise<DmDevno[]> {
    const { raw, label } = resolveRef(device, 'DM_TABLE_DEPS');
    return (await this.#call(() => this.#n.dmTableDeps(raw, {}), { device: label })).deps;
  }

  /** Sends a target message (e.g. 'fail_path 8:16'); returns the target's reply, if any. */
  async message(device: DmDeviceRef, message: string, sector = 0): Promise<string | undefined> {
    const { raw, label } = resolveRef(device, 'DM_TARGET_MSG');
    checkMessage(message, label);
    checkCount(sector, 'sector', 'DM_TARGET_MSG', label);
    const r = await this.#call(() => this.#n.dmTargetMsg(raw, sector, message), { device: label, message, explain: true });
    return r.reply;
  }

  /**
   * Resolves with the device's info once its event counter differs from
   * `eventNr`. DM_DEV_WAIT blocks in the kernel and only a signal could interrupt
   * it, so on abort the promise rejects at once and the addon's thread stays
   * parked (not holding the process open) until the device's next event or its
   * removal.
   */
  async waitEvent(device: DmDeviceRef, eventNr: number, options: DmSignalOptions = {}): Promise<DmInfo> {
    const { raw, label } = resolveRef(device, 'DM_DEV_WAIT');
    checkEventNr(eventNr, label);
    const { signal } = options;
    if (signal?.aborted) throw abortReason(signal);
    const call = this.#n.dmDevWait(raw, eventNr);
    const pending = this.#call(() => call.promise, { device: label });
    if (!signal) return toInfo(await pending);
    return new Promise<DmInfo>((resolve, reject) => {
      const onAbort = () => {
        call.cancel();
        pending.catch(() => undefined);
        reject(abortReason(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      pending.then(
        (info) => {
          signal.removeEventListener('abort', onAbort);
          resolve(toInfo(info));
        },
        (e: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      );
    });
  }

  /** Devices whose event counter moves, as they move, until `signal` aborts. */
  events(options: DmSignalOptions = {}): AsyncGenerator<DmEvent, void, undefined> {
    const n = this.#n;
    return watchEvents(
      {
        list: () => this.list(),
        open: (onWake) => {
          try {
            return new n.DmEventWatcher(onWake);
          } catch (e) {
            throw toDmError(e, {});
          }
        },
      },
      options.signal,
    );
  }

  /** A block device node for the device that works without udev. */
  async devicePath(device: DmDeviceRef): Promise<string> {
    const info = await this.info(device);
    return devicePathFor(info.name, info);
  }
}
