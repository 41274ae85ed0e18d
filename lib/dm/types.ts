// Public types of the DeviceMapper client.

/** A device by name (a plain string), or explicitly by name or by uuid. */
export type DmDeviceRef = string | { readonly name: string } | { readonly uuid: string };

/** One line of a table, or of a status: sectors, target type and its string. */
export interface DmTarget {
  /** First sector (512 B) the target covers. */
  start: number;
  /** Sectors it covers. */
  length: number;
  /** Target type ('linear', 'multipath', …). */
  type: string;
  /** Constructor parameters (table) or status string, unparsed. */
  params: string;
}

/** A table as lines ("0 2048 linear 8:0 0", one target a line) or as targets. */
export type DmTableInput = string | readonly DmTarget[];

/** A block device number. */
export interface DmDevno {
  major: number;
  minor: number;
}

/** What the kernel reports about one device (DM_DEV_STATUS). */
export interface DmInfo extends DmDevno {
  name: string;
  /** '' when the device has no uuid. */
  uuid: string;
  /** Openers of the block device. */
  openCount: number;
  /** Increments on every dm event of the device (e.g. a path failing). */
  eventNr: number;
  /** Targets in the live table. */
  targetCount: number;
  /** The live table is read-only. */
  readOnly: boolean;
  /** The device is suspended. */
  suspended: boolean;
  /** A live table is present. */
  activeTable: boolean;
  /** A loaded, not yet resumed table is present. */
  inactiveTable: boolean;
  /** A deferred remove is pending. */
  deferredRemove: boolean;
  /** Suspended internally by the kernel (e.g. by a thin pool). */
  internalSuspend: boolean;
}

/** One device of DM_LIST_DEVICES. */
export interface DmDevice extends DmDevno {
  name: string;
  /** Event counter; undefined on kernels older than ioctl 4.37. */
  eventNr: number | undefined;
  /** '' when none; undefined when the kernel does not report uuids (before 4.45). */
  uuid: string | undefined;
}

/** A target type the kernel knows, with its version. */
export interface DmTargetVersion {
  name: string;
  version: [number, number, number];
}

/** The kernel's dm ioctl interface version. */
export interface DmKernelVersion {
  major: number;
  minor: number;
  patch: number;
}

/** A device whose event counter moved. */
export interface DmEvent {
  name: string;
  /** The counter now; it may have moved by more than one. */
  eventNr: number;
}

/** Options of create(). */
export interface DmCreateOptions {
  table: DmTableInput;
  uuid?: string;
  readOnly?: boolean;
}

/** Options of suspend(). */
export interface DmSuspendOptions {
  /** Keep in-flight I/O queued instead of waiting for it (DM_NOFLUSH_FLAG). */
  noflush?: boolean;
  /** Do not freeze a mounted filesystem (DM_SKIP_LOCKFS_FLAG). */
  nolockfs?: boolean;
}

/** Options of remove(). */
export interface DmRemoveOptions {
  /** Remove when the last opener closes, instead of failing with EBUSY. */
  deferred?: boolean;
}

/** Options that take an AbortSignal. */
export interface DmSignalOptions {
  signal?: AbortSignal;
}
