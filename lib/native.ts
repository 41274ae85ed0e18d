// The one place that loads the addon; everything native is typed here.
import bindings from 'bindings';

import type { NativeDmControl } from './dm/native-types';


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
  /** A connected, non-blocking fd to the abstract unix socket `name` (exact address length; multipathd's). */
  connectUnixAbstract(name: string): number;
  /** The dm ioctl interface version from the headers the addon was built against. */
  compiledDmVersion(): DmVersion;
}

/** The loaded addon (build/Release/mpath_watchdog.node). */
export const native: NativeAddon = bindings('mpath_watchdog') as NativeAddon;

// ---- I/O engine (native/io/) ----

/** Called on the main thread with the number of completions written to the engine's shared arrays. */
export type IoCompletionCallback = (count: number) => void;

/** Which backend a native engine runs. */
export type NativeEngineKind = 'io_uring' | 'threads';

/** One O_DIRECT file descriptor with its backend (native/io/io_engine.cc). */
export interface NativeIoEngine {
  /** The backend in use. */
  readonly kind: NativeEngineKind;
  /** Offset and length alignment (BLKSSZGET, or statx DIOALIGN for files). */
  readonly logicalBlockSize: number;
  /** Buffer address alignment. */
  readonly memoryAlignment: number;
  /** Bytes (BLKGETSIZE64, or st_size for files). */
  readonly size: number;
  /** True for a block device, false for a regular file. */
  readonly isBlockDevice: boolean;
  /** The IORING_SETUP_* flags the ring was created with; 0 on the thread backend. */
  readonly ringFlags: number;
  /** Queues one I/O (op 0 read, 1 write, 2 flush) in a free slot; 1 means the buffer address is unaligned and nothing was queued. */
  prep(op: 0 | 1 | 2, slot: number, buf: Uint8Array | null, offset: number): 0 | 1;
  /** Submits everything queued since the last call; returns how many. */
  submit(): number;
  /** Frees the fd, ring and threads; throws EBUSY while I/O is in flight. */
  close(): void;
  /** Stops in-flight I/O from keeping the process alive. */
  unref(): void;
}

/** The IoEngine constructor: completions arrive as [slot, res] pairs in `info` and [submitNs, doneNs] pairs in `stamps`. */
export type NativeIoEngineConstructor = new (
  path: string,
  kind: NativeEngineKind,
  depth: number,
  readOnly: boolean,
  onComplete: IoCompletionCallback,
  info: Int32Array,
  stamps: BigInt64Array,
) => NativeIoEngine;

/** The I/O engine's exports, merged into NativeAddon. */
export interface NativeAddon {
  /** The engine class. */
  IoEngine: NativeIoEngineConstructor;
  /** Zeroed native memory aligned to `align`, freed when the Buffer is collected. */
  allocAligned(bytes: number, align: number): Buffer;
  /** Whether the addon was built with liburing. */
  ioUringCompiledIn: boolean;
  /** The liburing version the addon was built against (pkg-config's), when ioUringCompiledIn. */
  liburingVersion?: string;
  /** Bytes of the C heap in use (glibc mallinfo2: arena plus mmapped chunks), for leak tests. */
  mallocInUse(): number;
}
