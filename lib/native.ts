// The one place that loads the addon; everything native is typed here.
import bindings from 'bindings';
// --- dm control ---
import type { NativeDmControl } from './dm/native-types';
// --- end dm control ---

/** A device-mapper ioctl interface version (major.minor.patch). */
export interface DmVersion {
  /** Incompatible changes bump this. */
  major: number;
  /** Backwards-compatible additions bump this. */
  minor: number;
  /** Fixes bump this. */
  patch: number;
}

/** The raw exports of the native addon. */
export interface NativeAddon extends NativeDmControl {
  /** The dm ioctl interface version from the headers the addon was built against. */
  compiledDmVersion(): DmVersion;
}

/** The loaded addon (build/Release/mpath_watchdog.node). */
export const native: NativeAddon = bindings('mpath_watchdog') as NativeAddon;
