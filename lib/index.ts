// Public API of mpath-watchdog.
export type { DmVersion } from './native';
import { native, type DmVersion } from './native';
export { SyscallError, errnoName, type SyscallErrorFields } from './errors';
export * from './multipath';
export * from './dm';
export * from './io';
export * from './watchdog';
export * from './multipathd';

/** The dm ioctl interface version this build of the addon was compiled against. */
export function compiledDmVersion(): DmVersion {
  return native.compiledDmVersion();
}
