// The shapes native/dm_control.cc hands to and takes from JavaScript. Only the
// DeviceMapper client uses these; callers see lib/dm/types.ts.

/** A device address as the native layer takes it: exactly one of name or uuid. */
export type RawDeviceRef = { name: string; uuid?: undefined } | { uuid: string; name?: undefined };

/** The dm_ioctl header fields the kernel returns with most calls. */
export interface RawDmInfo {
  name: string;
  uuid: string;
  major: number;
  minor: number;
  openCount: number;
  eventNr: number;
  targetCount: number;
  flags: number;
  readOnly: boolean;
  suspended: boolean;
  activeTable: boolean;
  inactiveTable: boolean;
  deferredRemove: boolean;
  internalSuspend: boolean;
  /** The kernel's ioctl interface version, as written back into the header. */
  version: [number, number, number];
}

/** One record of DM_LIST_DEVICES. */
export interface RawDmListEntry {
  name: string;
  major: number;
  minor: number;
  /** Absent on kernels before ioctl 4.37. */
  eventNr?: number;
  /** '' when the device has none; absent when the kernel does not say (before 4.45). */
  uuid?: string;
}

/** One dm_target_spec with its params (or status) string. */
export interface RawDmTarget {
  start: number;
  length: number;
  type: string;
  params: string;
}

/** The exports of native/dm_control.cc; every call runs on an addon-owned thread. */
export interface NativeDmControl {
  /** DM_VERSION. */
  dmVersion(): Promise<{ major: number; minor: number; patch: number }>;
  /** DM_LIST_DEVICES with DM_UUID_FLAG. */
  dmListDevices(): Promise<RawDmListEntry[]>;
  /** DM_LIST_VERSIONS. */
  dmListVersions(): Promise<{ name: string; major: number; minor: number; patch: number }[]>;
  /** DM_DEV_CREATE; uuid '' for none. */
  dmDevCreate(name: string, uuid: string): Promise<RawDmInfo>;
  /** DM_TABLE_LOAD into the inactive slot. */
  dmTableLoad(dev: RawDeviceRef, targets: readonly RawDmTarget[], opts: { readOnly?: boolean }): Promise<RawDmInfo>;
  /** DM_TABLE_CLEAR of the inactive slot. */
  dmTableClear(dev: RawDeviceRef): Promise<RawDmInfo>;
  /** DM_DEV_SUSPEND with DM_SUSPEND_FLAG. */
  dmDevSuspend(dev: RawDeviceRef, opts: { noflush?: boolean; nolockfs?: boolean }): Promise<RawDmInfo>;
  /** DM_DEV_SUSPEND without DM_SUSPEND_FLAG: swaps in a loaded table and resumes. */
  dmDevResume(dev: RawDeviceRef): Promise<RawDmInfo>;
  /** DM_DEV_REMOVE. */
  dmDevRemove(dev: RawDeviceRef, opts: { deferred?: boolean }): Promise<RawDmInfo>;
  /** DM_DEV_STATUS. */
  dmDevStatus(dev: RawDeviceRef): Promise<RawDmInfo>;
  /** DM_TABLE_STATUS (status lines, or the table with `table`). */
  dmTableStatus(
    dev: RawDeviceRef,
    opts: { table?: boolean; noflush?: boolean; inactive?: boolean },
  ): Promise<{ info: RawDmInfo; targets: RawDmTarget[] }>;
  /** DM_TABLE_DEPS. */
  dmTableDeps(dev: RawDeviceRef, opts: { inactive?: boolean }): Promise<{ info: RawDmInfo; deps: { major: number; minor: number }[] }>;
  /** DM_TARGET_MSG to the target at `sector`; `reply` when the kernel set DM_DATA_OUT_FLAG. */
  dmTargetMsg(dev: RawDeviceRef, sector: number, message: string): Promise<{ info: RawDmInfo; reply?: string }>;
  /** DM_DEV_WAIT; cancel() lets the process exit while the kernel call stays blocked. */
  dmDevWait(dev: RawDeviceRef, eventNr: number): { promise: Promise<RawDmInfo>; cancel(): void };
  /** mknod(2) of a block device node (synchronous). */
  mknodBlock(path: string, major: number, minor: number, mode: number): void;
  /** A control fd armed with DM_DEV_ARM_POLL and polled by libuv; re-armed before each callback. */
  DmEventWatcher: new (onEvent: (err: Error | null) => void) => { arm(): void; close(): void };
}
