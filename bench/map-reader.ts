// What the failover benchmarks read the map through: the bare engine (the
// peer) or the Watchdog, behind one shape, so both configurations run the very
// same load.
import { DeviceMapper } from '../lib/dm';
import { DirectDevice } from '../lib/io';
import { Watchdog, type WatchdogOptions } from '../lib/watchdog';

/** Reads through a map, and how big it is. */
export interface MapReader {
  /** 4 KiB blocks in the map. */
  readonly blocks: number;
  /** Reads; says whether the read was hedged (re-issued by the watchdog). */
  read(buf: Buffer, offset: number): Promise<{ hedged: boolean }>;
  alloc(bytes: number): Buffer;
  /** Stops the watchdog or closes the device, waiting at most `ms` for stuck I/O to drain. */
  close(ms: number): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Opens `map` at `queueDepth`, through a Watchdog with `watchdog` options, or bare when it is null. */
export async function openMapReader(
  dm: DeviceMapper, map: string, queueDepth: number, watchdog: Omit<WatchdogOptions, 'map' | 'queueDepth'> | null,
): Promise<MapReader> {
  const blocks = Math.floor(Number((await dm.table(map))[0]?.length ?? 0) / 8);
  if (watchdog) {
    const w = new Watchdog({ map, queueDepth, dm, ...watchdog });
    await w.start();
    return { blocks, read: async (b, o) => ({ hedged: (await w.read(b, o)).hedged }), alloc: (n) => w.alloc(n), close: (ms) => Promise.race([w.stop(), sleep(ms)]) };
  }
  const d = await DirectDevice.open(await dm.devicePath(map), { queueDepth });
  return { blocks, read: async (b, o) => { await d.read(b, o); return { hedged: false }; }, alloc: (n) => d.alloc(n), close: (ms) => Promise.race([d.close(), sleep(ms)]) };
}
