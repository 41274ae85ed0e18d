// MultipathMap against the real kernel: paths joined with sysfs, path and
// group messages confirmed by dmsetup, and bad input refused before any message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeviceMapper, DmError, LastPathError, MultipathMap, MultipathValueError } from '../../lib/index';
import { scsiDebugDisks, sectors } from './helpers/scsi';
import { dmsetup, forceCleanup } from './helpers/dm';

const dm = new DeviceMapper();
const [a, b] = scsiDebugDisks();
if (!a || !b) throw new Error('two scsi_debug disks expected');
const size = sectors(a.name);

async function withMap(name: string, params: string, fn: (map: MultipathMap) => Promise<void>): Promise<void> {
  await forceCleanup(name);
  await dm.create(name, { table: `0 ${size} multipath ${params}` });
  try {
    await fn(await MultipathMap.open(dm, name));
  } finally {
    await forceCleanup(name);
  }
}

const pathState = async (name: string, devno: string): Promise<string> => {
  const m = new RegExp(`${devno} ([AF]) (\\d+)`).exec(await dmsetup('status', name));
  assert.ok(m, `${devno} in status of ${name}`);
  return `${m[1]} ${m[2]}`;
};

test('paths() names each path and gives its WWID, group and state', async () => {
  await withMap('mpw-map-paths', `2 queue_mode rq 0 1 1 service-time 0 2 2 ${a.devno} 1 1 ${b.devno} 1 1`, async (map) => {
    const paths = await map.paths();
    assert.deepEqual(paths.map((p) => [p.devno, p.name, p.wwid, p.group, p.state, p.failCount]), [
      [a.devno, a.name, a.wwid, 1, 'active', 0],
      [b.devno, b.name, b.wwid, 1, 'active', 0],
    ]);
  });
});

test('failPath and reinstatePath take 8:16, sdb or /dev/sdb and show in dmsetup status', async () => {
  await withMap('mpw-map-fail', `2 queue_mode rq 0 1 1 round-robin 0 2 1 ${a.devno} 1 ${b.devno} 1`, async (map) => {
    await map.failPath(b.name);
    assert.equal(await pathState(map.name, b.devno), 'F 1');
    await map.reinstatePath(`/dev/${b.name}`);
    assert.equal(await pathState(map.name, b.devno), 'A 1');
    await map.failPath(a.devno);
    assert.equal(await pathState(map.name, a.devno), 'F 1');
    const paths = await map.paths();
    assert.deepEqual(paths.map((p) => p.state), ['failed', 'active']);
  });
});

test('failPath refuses, sending nothing, a fail that would leave fewer active paths than keepActive (default 1); bad keepActive is refused', async () => {
  await withMap('mpw-map-last', `2 queue_mode rq 0 1 1 round-robin 0 2 1 ${a.devno} 1 ${b.devno} 1`, async (map) => {
    const refused = (path: string, others: number, keep: number) => (e: unknown): boolean =>
      e instanceof LastPathError && e.code === 'last-path' && e.map === map.name && e.path === path && e.othersActive === others && e.keepActive === keep;
    await assert.rejects(map.failPath(a.devno, { keepActive: 2 }), refused(a.devno, 1, 2));
    // A path with a fail on its way counts as failed whatever its state.
    await assert.rejects(map.failPath(a.devno, { failing: [b.devno] }), refused(a.devno, 0, 1));
    assert.equal(await pathState(map.name, a.devno), 'A 0');
    await map.failPath(b.name);
    await assert.rejects(map.failPath(a.name), refused(a.devno, 0, 1));
    assert.equal(await pathState(map.name, a.devno), 'A 0');
    // A failed path too: it could be reinstated before the message lands.
    await assert.rejects(map.failPath(b.devno, { keepActive: 2 }), refused(b.devno, 1, 2));
    await map.failPath(b.devno);
    await assert.rejects(map.failPath(a.devno, { keepActive: -1 }), MultipathValueError);
    await assert.rejects(map.failPath(a.devno, { keepActive: 1.5 }), MultipathValueError);
    assert.equal(await pathState(map.name, a.devno), 'A 0');
    await map.failPath(a.devno, { keepActive: 0 });
    assert.equal(await pathState(map.name, a.devno), 'F 1');
  });
});

test('group messages: disable, enable, switch', async () => {
  await withMap('mpw-map-groups', `0 0 2 1 round-robin 0 1 1 ${a.devno} 1 round-robin 0 1 1 ${b.devno} 1`, async (map) => {
    await map.disableGroup(2);
    assert.equal((await map.status()).groups[1]?.state, 'disabled');
    await map.enableGroup(2);
    assert.equal((await map.status()).groups[1]?.state, 'enabled');
    await map.switchGroup(2);
    assert.equal((await map.status()).currentGroup, 2);
  });
});

test('setQueueIfNoPath shows in the live table', async () => {
  await withMap('mpw-map-queue', `0 0 1 1 round-robin 0 2 1 ${a.devno} 1 ${b.devno} 1`, async (map) => {
    await map.setQueueIfNoPath(true);
    assert.match(await dmsetup('table', map.name), /multipath 1 queue_if_no_path /);
    assert.ok((await map.table()).features.some((f) => f.kind === 'queue_if_no_path'));
    await map.setQueueIfNoPath(false);
    assert.doesNotMatch(await dmsetup('table', map.name), /queue_if_no_path/);
  });
});

test('bad input is refused before any message and changes nothing', async () => {
  await withMap('mpw-map-bad', `0 0 1 1 round-robin 0 1 1 ${a.devno} 1`, async (map) => {
    const before = await dmsetup('status', map.name);
    await assert.rejects(map.failPath(b.name), (e: unknown) => e instanceof MultipathValueError && /is not a path of multipath map 'mpw-map-bad' \(its paths: /.test(e.message));
    await assert.rejects(map.failPath('sdzz'), (e: unknown) => e instanceof Error && /sdzz/.test(e.message));
    await assert.rejects(map.failPath('8:0 8:16'), MultipathValueError);
    await assert.rejects(map.switchGroup(2), (e: unknown) => e instanceof MultipathValueError && /1 to 1/.test(e.message));
    await assert.rejects(map.enableGroup(0), MultipathValueError);
    assert.equal(await dmsetup('status', map.name), before);
  });
  await assert.rejects(MultipathMap.open(dm, 'mpw-no-such-map'), (e: unknown) => e instanceof DmError && e.code === 'ENXIO');
  await forceCleanup('mpw-map-linear');
  await dm.create('mpw-map-linear', { table: `0 8 linear ${a.devno} 0` });
  try {
    await assert.rejects(MultipathMap.open(dm, 'mpw-map-linear'), (e: unknown) => e instanceof MultipathValueError && /not a single-target multipath map \(table: linear\)/.test(e.message));
  } finally {
    await forceCleanup('mpw-map-linear');
  }
});
