// Path naming against a fake sysfs tree built in a temp dir.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, symlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveBlockDevice, readWwid, identifyPath, MultipathValueError } from '../../lib/multipath';
import { SyscallError } from '../../lib/errors';

let sysfsRoot = '';

async function put(rel: string, content: string): Promise<void> {
  const file = join(sysfsRoot, rel);
  await mkdir(join(file, '..'), { recursive: true });
  await writeFile(file, content);
}

async function disk(name: string, devno: string): Promise<void> {
  // As in real sysfs: /sys/class/block/NAME/dev, and /sys/dev/block/M:m a symlink to the device dir.
  await put(`class/block/${name}/dev`, `${devno}\n`);
  await mkdir(join(sysfsRoot, 'dev', 'block'), { recursive: true });
  await symlink(`../../devices/virtual/block/${name}`, join(sysfsRoot, 'dev', 'block', devno));
}

before(async () => {
  sysfsRoot = await mkdtemp(join(tmpdir(), 'mpw-sysfs-'));
  await disk('sdb', '8:16');
  await put('block/sdb/device/wwid', 'naa.60014050e3f5a1b2c3d4e5f600000001\n');
  await disk('nvme0n1', '259:0');
  await put('block/nvme0n1/wwid', 'eui.0025388b91c2a3b4   \n');
  await disk('sdc', '8:32');
  await put('block/sdc/device/wwid', '\n');
  await disk('sdd', '8:48');
  await disk('dm-3', '254:3');
  await put('class/block/dm-3/dm/name', 'mpatha\n');
  await disk('dm-4', '254:4');
  await put('class/block/dm-4/dm/name', 'other\n');
});

after(async () => {
  await rm(sysfsRoot, { recursive: true, force: true });
});

test('8:16, sdb and /dev/sdb name the same device', async () => {
  const want = { name: 'sdb', devno: '8:16', major: 8, minor: 16 };
  for (const spec of ['8:16', 'sdb', '/dev/sdb']) {
    assert.deepStrictEqual(await resolveBlockDevice(spec, { sysfsRoot }), want, spec);
  }
});

test('/dev/mapper/NAME is found through the dm name in sysfs, without udev', async () => {
  assert.deepStrictEqual(await resolveBlockDevice('/dev/mapper/mpatha', { sysfsRoot }), { name: 'dm-3', devno: '254:3', major: 254, minor: 3 });
});

test('the WWID comes from device/wwid, else from wwid, trailing whitespace removed', async () => {
  assert.equal(await readWwid('sdb', { sysfsRoot }), 'naa.60014050e3f5a1b2c3d4e5f600000001');
  assert.equal(await readWwid('nvme0n1', { sysfsRoot }), 'eui.0025388b91c2a3b4');
  assert.equal(await readWwid('sdc', { sysfsRoot }), undefined, 'an empty wwid (LIO) reads as none');
  assert.equal(await readWwid('sdd', { sysfsRoot }), undefined, 'no wwid file at all');
  assert.deepStrictEqual(await identifyPath('8:16', { sysfsRoot }), {
    name: 'sdb',
    devno: '8:16',
    major: 8,
    minor: 16,
    wwid: 'naa.60014050e3f5a1b2c3d4e5f600000001',
  });
});

test('unknown devices give a SyscallError with code and device', async () => {
  const cases: Array<[string, RegExp]> = [
    ['8:99', /no block device 8:99/],
    ['sdz', /no block device named 'sdz'/],
    ['/dev/sdz', /no block device named 'sdz'/],
    ['/dev/mapper/nope', /no device-mapper device named 'nope'/],
    ['/nonexistent/node', /cannot stat/],
  ];
  for (const [spec, message] of cases) {
    await assert.rejects(
      resolveBlockDevice(spec, { sysfsRoot }),
      (err: unknown) => {
        assert.ok(err instanceof SyscallError, `${spec}: ${String(err)}`);
        assert.equal(err.code, 'ENOENT', spec);
        assert.equal(err.device, spec);
        assert.match(err.message, message);
        return true;
      },
    );
  }
});

test('malformed specs give a MultipathValueError before touching sysfs', async () => {
  for (const spec of ['', 'sd b', '8:x', '08:16x', '../etc', 'a\0b', '.', '..']) {
    await assert.rejects(resolveBlockDevice(spec, { sysfsRoot }), MultipathValueError, JSON.stringify(spec));
  }
  await assert.rejects(readWwid('../sdb', { sysfsRoot }), MultipathValueError);
  await assert.rejects(readWwid('', { sysfsRoot }), MultipathValueError);
});

test('a path outside /dev that is not a block device node is refused', async () => {
  const file = join(sysfsRoot, 'class', 'block', 'sdb', 'dev');
  await assert.rejects(resolveBlockDevice(file, { sysfsRoot }), (err: unknown) => err instanceof MultipathValueError && /not a block device/.test(err.message));
});
