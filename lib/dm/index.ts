// The device-mapper client: typed ioctls on /dev/mapper/control.
export { DeviceMapper, type DeviceMapperOptions } from './control';
export { DmError, type DmErrorFields } from './errors';
export { ensureMapperNode } from './device-node';
export { DM_MAX_NAME_BYTES, DM_MAX_UUID_BYTES, parseTableText } from './validate';
export type {
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
