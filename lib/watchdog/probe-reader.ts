// Direct probe reads on path devices, through the addon's own engine, so a
// probe stuck on a hung path holds an engine slot, never a thread of Node's
// pool. A probe settles only when its read is over in the kernel, as
// ProbeRead asks: the signal cannot pull a bio back.
import { stat } from 'node:fs/promises';
import { rdevToDevno } from '../dm/device-node';
import { SyscallError } from '../errors';
import { DeviceClosedError, DirectDevice, type EngineChoice, type IoResult } from '../io';
import type { PathRef } from './counter-sampler';
import type { ProbeRead } from './probes';

/** Options of PathProbeReader. */
export interface ProbeReaderOptions {
  /** Engine for the path devices (default 'auto'). */
  engine?: EngineChoice;
  /** Byte offset probed (default 0; must be aligned to the device's block size). */
  offset?: number;
  /** Where device nodes are (default /dev). */
  devDir?: string;
  /** Queue depth of each path device (default 4: probes come one at a time per path). */
  queueDepth?: number;
  /** Open a node only when it is the block device of the path's maj:min (default false). */
  verifyDevno?: boolean;
}

const ENODEV = 19;

// A name can be reused by another device (NVMe and dm numbers are handed out
// anew) between the dm status that named the path and our open: reading it
// then would probe, or hand a caller the data of, another disk.
async function checkNode(node: string, devno: string): Promise<void> {
  const st = await stat(node);
  const d = rdevToDevno(st.rdev);
  if (!st.isBlockDevice() || `${d.major}:${d.minor}` !== devno) {
    const what = st.isBlockDevice() ? `block device ${d.major}:${d.minor}` : 'not a block device';
    throw new SyscallError(`${node} is not path ${devno} (${what})`, { errno: ENODEV, syscall: 'stat', device: node });
  }
}

/**
 * Opens each path device once (read-only, O_DIRECT) and reads one block from it per probe.
 * A probe that fails drops the path's device, so the next one opens the node again: a path
 * removed and created anew under the same name is then probed, not its old device.
 */
export class PathProbeReader {
  readonly #devices = new Map<string, Promise<DirectDevice>>();
  /** Dropped devices whose close may still wait for a probe held by the kernel: close() sees to them too. */
  readonly #retired = new Set<Promise<DirectDevice>>();
  readonly #o: ProbeReaderOptions;
  #closed = false;

  constructor(options: ProbeReaderOptions = {}) {
    this.#o = options;
  }

  /** The ProbeRead for Attributor and the recovery probes; rejects with DeviceClosedError after close(). */
  readonly read: ProbeRead = async (path: PathRef) => {
    const r = await this.#on(path, (dev) => dev.read(dev.alloc(Math.max(dev.logicalBlockSize, 4096)), this.#o.offset ?? 0));
    return { latencyMs: Number(r.doneNs - r.submitNs) / 1e6 };
  };

  /**
   * Reads into `buf` at `offset` on `path`'s own device: a hedged read sent straight to a path
   * that just answered fast. `buf` is not this device's memory, so the kernel reads into a copy
   * of its own and never holds `buf`.
   */
  readInto(path: PathRef, buf: Buffer, offset: number): Promise<IoResult> {
    return this.#on(path, (dev) => dev.read(buf, offset));
  }

  async #on(path: PathRef, read: (dev: DirectDevice) => Promise<IoResult>): Promise<IoResult> {
    const opened = this.#open(path);
    const dev = await opened;
    try {
      return await read(dev);
    } catch (err) {
      this.#drop(path, opened);
      throw err;
    }
  }

  #nodePath(path: PathRef): string {
    return `${this.#o.devDir ?? '/dev'}/${path.name}`;
  }

  #open(path: PathRef): Promise<DirectDevice> {
    if (this.#closed) return Promise.reject(new DeviceClosedError(this.#nodePath(path)));
    const key = `${path.devno} ${path.name}`;
    let dev = this.#devices.get(key);
    if (!dev) {
      const node = this.#nodePath(path);
      const options = { readOnly: true, queueDepth: this.#o.queueDepth ?? 4, engine: this.#o.engine ?? 'auto' } as const;
      dev = this.#o.verifyDevno === true ? checkNode(node, path.devno).then(() => DirectDevice.open(node, options)) : DirectDevice.open(node, options);
      // A failed open is not cached: the next probe tries again.
      dev.catch(() => this.#drop(path, dev as Promise<DirectDevice>));
      this.#devices.set(key, dev);
    }
    return dev;
  }

  /** Forgets `opened` for `path` (if it is still the cached one) and closes it once its other probes are over. */
  #drop(path: PathRef, opened: Promise<DirectDevice>): void {
    const key = `${path.devno} ${path.name}`;
    if (this.#devices.get(key) !== opened) return;
    this.#devices.delete(key);
    this.#retired.add(opened);
    opened.then((d) => d.close(), () => undefined).catch(() => undefined).finally(() => this.#retired.delete(opened));
  }

  /** Closes the path devices and refuses later probes; probes still held by the kernel keep their buffers until it lets go. */
  async close(signal?: AbortSignal): Promise<void> {
    this.#closed = true;
    const devs = [...this.#devices.values(), ...this.#retired];
    this.#devices.clear();
    await Promise.allSettled(devs.map(async (d) => (await d).close(signal ? { signal } : {})));
  }
}
