// Every native dm call, including its error paths, in one short process, for
// running under valgrind (test/vm/dm-valgrind.test.ts). Runs only with
// MPW_DM_EXERCISE=1, because `node --test dist/test/vm/` also loads helpers.
import assert from 'node:assert/strict';
import { DeviceMapper, DmError, type DmTarget } from '../../../lib/dm';
import { scsiDebugDisks } from './scsi';

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof DmError && e.code === code);
}

export async function exercise(): Promise<void> {
  const dm = new DeviceMapper();
  const [a, b] = scsiDebugDisks();
  assert.ok(a && b);
  const name = 'mpw-vg';
  const mp = 'mpw-vg-mp';
  try {
    assert.equal((await dm.version()).major, 4);
    assert.ok((await dm.targets()).some((t) => t.name === 'multipath'));
    await dm.create(name, { table: `0 2048 linear ${a.devno} 0`, uuid: 'MPW-VG' });
    assert.ok((await dm.list()).some((d) => d.name === name && d.uuid === 'MPW-VG'));
    assert.equal((await dm.info({ uuid: 'MPW-VG' })).name, name);
    // 300 targets: the status and table calls retry with bigger buffers.
    const big: DmTarget[] = Array.from({ length: 300 }, (_, i) => ({ start: i * 8, length: 8, type: 'linear', params: `${a.devno} ${i * 8}` }));
    await dm.load(name, big);
    assert.equal((await dm.table(name, { inactive: true })).length, 300);
    await dm.suspend(name, { noflush: true, nolockfs: true });
    await dm.resume(name);
    assert.equal((await dm.status(name)).length, 300);
    assert.equal((await dm.deps(name)).length, 1);
    await dm.load(name, `0 8 linear ${a.devno} 0`);
    await dm.clear(name);
    await rejectsWith(dm.info('mpw-vg-missing'), 'ENXIO');
    await rejectsWith(dm.message(name, 'fail_path 8:0'), 'EINVAL');
    await rejectsWith(dm.create('mpw-vg-bad', { table: '0 8 linear 8:0' }), 'EINVAL');
    await rejectsWith(dm.create('mpw-vg-dup', { table: '0 8 linear 8:0 0', uuid: 'MPW-VG' }), 'EBUSY');
    assert.ok((await dm.devicePath(name)).startsWith('/dev/'));

    const made = await dm.create(mp, { table: `0 2048 multipath 0 0 1 1 round-robin 0 2 1 ${a.devno} 1 ${b.devno} 1` });
    const ac = new AbortController();
    const events = (async () => {
      for await (const e of dm.events({ signal: ac.signal })) if (e.name === mp) return e;
      return undefined;
    })();
    const wait = dm.waitEvent(mp, made.eventNr);
    await new Promise((r) => setTimeout(r, 200));
    await dm.message(mp, `fail_path ${b.devno}`);
    assert.ok((await wait).eventNr > made.eventNr);
    assert.equal((await events)?.name, mp);
    ac.abort();
    // An aborted wait parks its thread until the removal below raises an event.
    const parkedAbort = new AbortController();
    const parked = dm.waitEvent(mp, (await dm.info(mp)).eventNr, { signal: parkedAbort.signal });
    parkedAbort.abort();
    await assert.rejects(parked);
    await dm.remove(mp);
    await dm.remove(name);
    await rejectsWith(dm.remove(name), 'ENXIO');
  } finally {
    await dm.remove(mp).catch(() => undefined);
    await dm.remove(name).catch(() => undefined);
  }
  // Let the parked DM_DEV_WAIT thread see the removal and settle before exit.
  await new Promise((r) => setTimeout(r, 300));
}

if (process.env['MPW_DM_EXERCISE'] === '1') {
  exercise().then(
    () => console.log('dm exercise: ok'),
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
