// The fault rig of lib/cli/demo-rig.ts, as the demo builds it (lib/cli/demo-rig.ts),
// plus what the tests need beyond the demo: a path slowed by a reload as
// dm-delay, and a heal that always leaves a plain, resumed linear device.
import { DeviceMapper } from '../../../lib/dm';
import { createDemoRig, type DemoPath, type DemoRig } from '../../../lib/cli/demo-rig';

/** One path device of the rig. */
export type RigPath = DemoPath;

/** A running rig. */
export interface Rig extends DemoRig {
  /** Every bio on the path waits `ms` (reload as dm-delay). */
  slow(p: RigPath, ms: number): Promise<void>;
}

/** Builds the rig under `prefix`: round-robin over the two path devices, which alternates paths per bio. */
export async function createRig(prefix: string): Promise<Rig> {
  const dm = new DeviceMapper();
  const base = await createDemoRig(prefix, dm);
  const size = base.sizeSectors;
  const heal = async (p: RigPath): Promise<void> => {
    if (!(await dm.info(p.dmName)).suspended) await dm.suspend(p.dmName, { noflush: true });
    await dm.load(p.dmName, `0 ${size} linear ${p.disk.devno} 0`);
    await dm.resume(p.dmName);
  };
  return {
    ...base,
    heal,
    slow: async (p, ms) => {
      await dm.load(p.dmName, `0 ${size} delay ${p.disk.devno} 0 ${ms}`);
      await dm.suspend(p.dmName, { noflush: true });
      await dm.resume(p.dmName);
    },
    teardown: async () => {
      for (const p of base.paths) await heal(p).catch(() => undefined);
      await base.teardown();
    },
  };
}

/** Resolves when `cond` holds, polling every 20 ms; rejects after `ms`. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
