// The invariant that motivates addon-owned threads: an urgent fail_path must
// not queue behind a DM_DEV_SUSPEND stuck waiting for I/O on a hung path, and
// the event loop must stay responsive meanwhile.
//
// Rig: a bio-mode multipath map over two dm-linear path devices, one priority
// group each, so a read goes to path A. Path A is suspended with noflush, so the
// read is held there. Suspending the multipath map without noflush then waits
// for that read (dm_wait_for_completion() in drivers/md/dm.c): a blocked ioctl.
// multipath_message() refuses only a map that *is* suspended (dm_suspended()),
// not one still suspending, so fail_path must get through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DeviceMapper } from '../../lib/dm';
import { dmsetup, forceCleanup } from './helpers/dm';
import { scsiDebugDisks, sectors } from './helpers/scsi';
import { PENDING, settledWithin } from '../helpers/within';

const dm = new DeviceMapper();

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('fail_path completes while a suspend of the same map is blocked on a hung path', async () => {
  const [a, b] = scsiDebugDisks();
  assert.ok(a && b);
  const size = sectors(a.name);
  const [pa, pb, mp] = ['mpw-hang-pa', 'mpw-hang-pb', 'mpw-hang-mp'];
  const { execa } = await import('execa');
  let suspend: Promise<unknown> | undefined;
  let reader: Promise<{ exitCode?: number | undefined; stderr: unknown }> | undefined;
  let ticker: NodeJS.Timeout | undefined;
  try {
    const ia = await dm.create(pa, { table: `0 ${size} linear ${a.devno} 0` });
    const ib = await dm.create(pb, { table: `0 ${size} linear ${b.devno} 0` });
    const A = `${ia.major}:${ia.minor}`;
    const B = `${ib.major}:${ib.minor}`;
    const im = await dm.create(mp, {
      table: `0 ${size} multipath 2 queue_mode bio 0 2 1 round-robin 0 1 1 ${A} 1 round-robin 0 1 1 ${B} 1`,
    });
    const inflight = () => readFileSync(`/sys/block/dm-${im.minor}/inflight`, 'utf8').trim().split(/\s+/).map(Number);

    // Hang path A: noflush holds new bios in the path device instead of failing them.
    assert.equal((await dm.suspend(pa, { noflush: true })).suspended, true);
    reader = execa('dd', [`if=/dev/dm-${im.minor}`, 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct'], { reject: false });
    await until('the read to be in flight on the map', () => (inflight()[0] ?? 0) >= 1);

    // This suspend waits for the held read: it cannot finish while path A hangs.
    suspend = dm.suspend(mp);
    suspend.catch(() => undefined);
    assert.equal(await settledWithin(suspend, 500), PENDING, 'the suspend should be blocked on the held read');

    let ticks = 0;
    ticker = setInterval(() => ticks++, 10);
    const t0 = process.hrtime.bigint();
    const reply = await settledWithin(dm.message(mp, `fail_path ${A}`), 5_000);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.notEqual(reply, PENDING, 'fail_path must not wait for the blocked suspend');
    assert.equal(await settledWithin(suspend, 0), PENDING, 'the suspend is still blocked after fail_path');
    // The kernel agrees, and other calls also run beside the blocked one.
    assert.match(await dmsetup('status', mp), new RegExp(`${A} F 1 `));
    const status = (await dm.status(mp))[0]?.params ?? '';
    assert.match(status, new RegExp(`${A} F 1 .*${B} A 0`));
    assert.equal((await dm.info(mp)).suspended, false, 'suspending, not yet suspended');

    // The event loop kept running: the 10 ms ticker fired throughout.
    const before = ticks;
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(ticks > before, `ticker fired ${ticks - before} times in 300 ms`);
    assert.equal(await settledWithin(suspend, 0), PENDING);
    console.log(`# fail_path took ${ms.toFixed(1)} ms while DM_DEV_SUSPEND was blocked; ${ticks} ticks`);

    // Release path A: the held read completes, and with it the suspend.
    await dm.resume(pa);
    const suspended = await settledWithin(suspend, 10_000);
    assert.notEqual(suspended, PENDING);
    assert.equal((await dm.info(mp)).suspended, true);
    const dd = await reader;
    assert.ok(dd);
    assert.equal(dd.exitCode, 0, String(dd.stderr));
    await dm.resume(mp);
  } finally {
    clearInterval(ticker);
    // Resume the paths first: resuming the map would wait on its own suspend.
    await dmsetup('resume', pa).catch(() => undefined);
    await dmsetup('resume', pb).catch(() => undefined);
    if (suspend) await settledWithin(suspend, 10_000);
    if (reader) await settledWithin(reader, 10_000);
    await forceCleanup(mp, pa, pb);
  }
});
