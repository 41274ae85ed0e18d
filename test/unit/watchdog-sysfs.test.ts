// The sysfs counter readers on a fake tree: kernel formats, missing devices,
// malformed content.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { FakeSysfs } from './helpers/fake-sysfs';
import { SyscallError } from '../../lib/errors';
import { parseInflight, parseBlockStat, readInflight, readBlockStat, readCounters, completedIos, SysfsFormatError } from '../../lib/watchdog';
import { serviceTimeMs } from '../../lib/watchdog/sysfs-counters';

let fs: FakeSysfs;

before(async () => {
  fs = await FakeSysfs.create();
});

after(async () => {
  await fs.dispose();
});

test('inflight: the kernel\'s "%8u %8u" line', () => {
  assert.deepStrictEqual(parseInflight('       1        0\n'), { reads: 1, writes: 0 });
  assert.deepStrictEqual(parseInflight('0 17'), { reads: 0, writes: 17 });
});

test('stat: 11, 15 and 17 fields, by kernel age', () => {
  const f11 = '     100        2      800       40       50        1      400       30        1       60       70\n';
  const s11 = parseBlockStat(f11);
  assert.deepStrictEqual(s11.read, { ios: 100, merges: 2, sectors: 800, ticks: 40 });
  assert.deepStrictEqual(s11.write, { ios: 50, merges: 1, sectors: 400, ticks: 30 });
  assert.equal(s11.inFlight, 1);
  assert.equal(s11.ioTicks, 60);
  assert.equal(s11.timeInQueue, 70);
  assert.equal(s11.discard, null);
  assert.equal(s11.flush, null);
  assert.equal(completedIos(s11), 150);

  const s15 = parseBlockStat(`${f11.trimEnd()} 5 0 40 3\n`);
  assert.deepStrictEqual(s15.discard, { ios: 5, merges: 0, sectors: 40, ticks: 3 });
  assert.equal(s15.flush, null);
  assert.equal(completedIos(s15), 155);

  const s17 = parseBlockStat(`${f11.trimEnd()} 5 0 40 3 7 2\n`);
  assert.deepStrictEqual(s17.flush, { ios: 7, ticks: 2 });
  assert.equal(completedIos(s17), 162);
  // A later kernel's extra fields do not hide the first 17.
  assert.equal(completedIos(parseBlockStat(`${f11.trimEnd()} 5 0 40 3 7 2 99\n`)), 162);
});

test('readCounters reads both files of a device in the tree', async () => {
  await fs.set('dm-1', { inflight: [1, 2], reads: 10, writes: 4 });
  const snap = await readCounters('dm-1', { sysfsRoot: fs.root });
  assert.equal(snap.name, 'dm-1');
  assert.deepStrictEqual(snap.inflight, { reads: 1, writes: 2 });
  assert.equal(snap.stat.read.ios, 10);
  assert.equal(snap.stat.write.ios, 4);
  assert.equal(snap.stat.inFlight, 3);
  assert.equal(snap.completed, 14);
  assert.deepStrictEqual(await readInflight('dm-1', { sysfsRoot: fs.root }), { reads: 1, writes: 2 });
  assert.equal((await readBlockStat('dm-1', { sysfsRoot: fs.root })).read.ios, 10);
});

test('a missing device is a SyscallError naming the device and the file', async () => {
  for (const read of [readInflight, readBlockStat, readCounters]) {
    await assert.rejects(read('sdzz', { sysfsRoot: fs.root }), (err: unknown) => {
      assert.ok(err instanceof SyscallError, String(err));
      assert.equal(err.code, 'ENOENT');
      assert.equal(err.errno, 2);
      assert.equal(err.device, 'sdzz');
      assert.match(err.message, /no block device 'sdzz': .*\/block\/sdzz\/(inflight|stat) is missing/);
      return true;
    });
  }
});

test('malformed inflight and stat are SysfsFormatErrors with the file and the content', async () => {
  const inflightCases = ['', '1\n', '1 2 3\n', 'a b\n', '-1 0\n', '1.5 0\n', '99999999999999999999 0\n'];
  for (const content of inflightCases) {
    await fs.raw('sdx', 'inflight', content);
    await assert.rejects(readInflight('sdx', { sysfsRoot: fs.root }), (err: unknown) => {
      assert.ok(err instanceof SysfsFormatError, `${JSON.stringify(content)}: ${String(err)}`);
      assert.equal(err.device, 'sdx');
      assert.equal(err.content, content);
      assert.match(err.file, /block\/sdx\/inflight$/);
      assert.match(err.message, /expected two unsigned decimals/);
      return true;
    });
  }
  const eleven = '1 2 3 4 5 6 7 8 9 10 11';
  for (const content of ['', '1 2 3', `${eleven} 12`, `${eleven} 12 13 14 15 16`, eleven.replace('5', 'x')]) {
    await fs.raw('sdx', 'stat', content);
    await assert.rejects(readBlockStat('sdx', { sysfsRoot: fs.root }), (err: unknown) => {
      assert.ok(err instanceof SysfsFormatError, `${JSON.stringify(content)}: ${String(err)}`);
      assert.equal(err.content, content);
      assert.match(err.message, /11, 15 or 17 unsigned decimals/);
      return true;
    });
  }
});

test('a name that is not a kernel block device name is refused before any read', async () => {
  for (const name of ['', '..', 'a/b', 'sd a']) {
    await assert.rejects(readInflight(name, { sysfsRoot: fs.root }), TypeError);
  }
});

test('serviceTimeMs: ms per read or write completed between two stats; null with none, or counters gone backwards', () => {
  const stat = (ios: number, ticks: number): ReturnType<typeof parseBlockStat> =>
    parseBlockStat(`${ios} 0 0 ${ticks} ${ios} 0 0 ${ticks} 0 0 0`);
  assert.equal(serviceTimeMs(stat(10, 40), stat(15, 70)), (30 + 30) / 10);
  assert.equal(serviceTimeMs(stat(10, 40), stat(10, 40)), null);
  assert.equal(serviceTimeMs(stat(10, 40), stat(12, 20)), null);
});
