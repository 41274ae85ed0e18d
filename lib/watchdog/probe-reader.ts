// Direct probe reads on path devices, through the addon's own engine, so a
// probe stuck on a hung path holds an engine slot, never a thread of Node's
// pool. A probe settles only when its read is over in the kernel, as
// ProbeRead asks: the signal cannot pull a bio back.
import { DirectDevice, type EngineChoice } from '../io';
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
}

/** Opens each path device once (read-only, O_DIRECT) and reads one block from it per probe. */
export class PathProbeReader {
  readonly #devices = new Map<string, Promise<DirectDevice>>();
  readonly #o: ProbeReaderOptions;

  constructor(options: ProbeReaderOptions = {}) {
    this.#o = options;
  }

  /** The ProbeRead for Attributor and the recovery probes. */
  readonly read: ProbeRead = async (path: PathRef) => {
    const dev = await this.#open(path);
    const buf = dev.alloc(Math.max(dev.logicalBlockSize, 4096));
    const r = await dev.read(buf, this.#o.offset ?? 0);
    return { latencyMs: Number(r.doneNs - r.submitNs) / 1e6 };
  };

  #open(path: PathRef): Promise<DirectDevice> {
    let dev = this.#devices.get(path.devno);
    if (!dev) {
      dev = DirectDevice.open(`${this.#o.devDir ?? '/dev'}/${path.name}`, { readOnly: true, queueDepth: 4, engine: this.#o.engine ?? 'auto' });
      // A failed open is not cached: the next probe tries again.
      dev.catch(() => this.#devices.delete(path.devno));
      this.#devices.set(path.devno, dev);
    }
    return dev;
  }

  /** Closes the path devices; probes still held by the kernel keep their buffers until it lets go. */
  async close(signal?: AbortSignal): Promise<void> {
    const devs = [...this.#devices.values()];
    this.#devices.clear();
    await Promise.allSettled(devs.map(async (d) => (await d).close(signal ? { signal } : {})));
  }
}
