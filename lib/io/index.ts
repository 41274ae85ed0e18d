// Public surface of the direct I/O layer.
export { DirectDevice } from './direct-device';
export type { CloseOptions, DirectDeviceOptions, EngineChoice, IoResult, IoSubmitOptions } from './direct-device';
export { CloseAbortedError, DeviceClosedError, IoArgumentError, IoError } from './errors';
export type { IoArgumentErrorFields, IoArgumentReason, IoErrorFields, IoOperation } from './errors';
export { MAX_IO_BYTES, checkIo } from './align';
export type { IoGeometry } from './align';
export type { NativeEngineKind } from '../native';
