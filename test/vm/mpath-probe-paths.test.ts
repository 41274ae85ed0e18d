// DM_MPATH_PROBE_PATHS (Linux 6.16+, drivers/md/dm-mpath.c probe_active_paths):
// an ioctl on the multipath device that reads sector 0 of each active path of
// the current group, one after the other with submit_bio_wait() and no
// deadline, and fails a path whose read ends in a path error. Measured here,
// to decide whether the watchdog should use it: it names an erroring path,
// but under a hung path it blocks for as long as the path hangs, and fails
// nothing. The watchdog's own probes (one per path, each with its deadline,
// on owned threads) are what it keeps. Before 6.16 the ioctl does not exist.
//
// The ioctl is issued by python3 (a client the project did not write), so a
// caller stuck in the kernel is a child process, never the test's event loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { release } from 'node:os';
import { DeviceMapper } from '../../lib/dm';
import { dmsetup, forceCleanup } from './helpers/dm';
import { scsiDebugDisks, sectors } from './helpers/scsi';
import { PENDING, settledWithin } from '../helpers/within';

const dm = new DeviceMapper();
// _IO(DM_IOCTL 0xfd, DM_MPATH_PROBE_PATHS_CMD 18), include/uapi/linux/dm-ioctl.h.
const PROBE = `
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
t = time.monotonic()
try:
    fcntl.ioctl(fd, 0xfd12)
    print("ok %.3f" % (time.monotonic() - t))
except OSError as e:
    print("errno %d %.3f" % (e.errno, time.monotonic() - t))
`;

function kernelAtLeast(major: number, minor: number): boolean {
  const [a = 0, b = 0] = release().split(/[.-]/).map(Number);
  return a > major || (a === major && b >= minor);
}

test('DM_MPATH_PROBE_PATHS: fails an erroring path, blocks on a hung one (6.16+); absent before', { timeout: 120_000 }, async () => {
  const [a, b] = scsiDebugDisks();
  assert.ok(a && b);
  const size = sectors(a.name);
  const [pa, pb, mp] = ['mpw-probe-pa', 'mpw-probe-pb', 'mpw-probe-mp'];
  const { execa } = await import('execa');
  const probe = (dev: string) => execa('python3', ['-c', PROBE, dev], { reject: false });
  let held: ReturnType<typeof probe> | undefined;
  try {
    const ia = await dm.create(pa, { table: `0 ${size} linear ${a.devno} 0` });
    const ib = await dm.create(pb, { table: `0 ${size} linear ${b.devno} 0` });
    const A = `${ia.major}:${ia.minor}`;
    const B = `${ib.major}:${ib.minor}`;
    // One group with both paths: both are active paths of the current group.
    const im = await dm.create(mp, { table: `0 ${size} multipath 2 queue_mode bio 0 1 1 round-robin 0 2 1 ${A} 1 ${B} 1` });
    const dev = `/dev/dm-${im.minor}`;
    // The current group is chosen by the first I/O.
    await execa('dd', [`if=${dev}`, 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct']);

    if (!kernelAtLeast(6, 16)) {
      const r = await probe(dev);
      console.log(`# ${release()}: DM_MPATH_PROBE_PATHS -> ${r.stdout}`);
      // No such ioctl: refused with EINVAL (measured on 6.1), and nothing changes.
      assert.match(r.stdout, /^errno 22 /, `${r.stdout} ${r.stderr}`);
      assert.match(await dmsetup('status', mp), new RegExp(`${A} A 0 .*${B} A 0`));
      return;
    }

    const healthy = await probe(dev);
    assert.match(healthy.stdout, /^ok /, `${healthy.stdout} ${healthy.stderr}`);
    assert.match(await dmsetup('status', mp), new RegExp(`${A} A 0 .*${B} A 0`));

    // An erroring path (every I/O EIO, a path error): the probe fails it.
    await dmsetup('reload', pb, '--table', `0 ${size} error`);
    await dmsetup('resume', pb);
    const erroring = await probe(dev);
    assert.match(erroring.stdout, /^ok /, `${erroring.stdout} ${erroring.stderr}`);
    assert.match(await dmsetup('status', mp), new RegExp(`${A} A 0 .*${B} F 1`));
    console.log(`# ${release()}: probe with an erroring path: ${erroring.stdout.trim()} s, path failed`);
    await dmsetup('reload', pb, '--table', `0 ${size} linear ${b.devno} 0`);
    await dmsetup('resume', pb);
    await dm.message(mp, `reinstate_path ${B}`);
    // The fail count is cumulative: B stays at 1 once reinstated.
    assert.match(await dmsetup('status', mp), new RegExp(`${A} A 0 .*${B} A 1`));

    // A hung path (bios held by a noflush suspend): the ioctl waits in the
    // kernel for that read and fails nothing while it waits.
    await dm.suspend(pa, { noflush: true });
    const t0 = Date.now();
    held = probe(dev);
    assert.equal(await settledWithin(held, 3_000), PENDING, 'the probe returned while its path was hung');
    assert.match(await dmsetup('status', mp), new RegExp(`${A} A 0 .*${B} A 1`), 'nothing failed while the probe waits');
    await dm.resume(pa);
    const done = await settledWithin(held, 30_000);
    assert.notEqual(done, PENDING, 'the probe returned once the path resumed');
    assert.match((done as { stdout: string }).stdout, /^ok /);
    assert.match(await dmsetup('status', mp), new RegExp(`${A} A 0 .*${B} A 1`), 'the late read was a success: nothing failed');
    console.log(`# ${release()}: probe with a hung path returned only when the path resumed, after ${Date.now() - t0} ms`);
  } finally {
    await dmsetup('resume', pa).catch(() => undefined);
    if (held) await settledWithin(held, 10_000);
    await forceCleanup(mp, pa, pb);
  }
});
