// The guest itself: two real SCSI paths to one LUN, and dm-multipath that
// drives them. dmsetup and dd are the oracles here, through execa.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { scsiDebugDisks, sectors } from './helpers/scsi';

const exec = async (file: string, args: string[]) => (await import('execa')).execa(file, args);

test('two scsi_debug paths show the same naa. WWID', () => {
  const [a, b] = scsiDebugDisks();
  assert.ok(a && b);
  assert.match(a.wwid, /^naa\./);
  assert.equal(a.wwid, b.wwid);
  assert.notEqual(a.devno, b.devno);
});

test('dmsetup targets lists multipath, delay, flakey and linear', async () => {
  const { stdout } = await exec('dmsetup', ['targets']);
  const names = stdout.split('\n').map((l) => l.split(/\s+/)[0]);
  for (const t of ['multipath', 'delay', 'flakey', 'linear']) assert.ok(names.includes(t), `${t} in ${names.join(',')}`);
});

test('a request-based multipath map over both paths is created, read with O_DIRECT and removed', async () => {
  const [a, b] = scsiDebugDisks();
  assert.ok(a && b);
  const size = sectors(a.name);
  const name = 'mpw-smoke';
  const table = `0 ${size} multipath 2 queue_mode rq 0 1 1 service-time 0 2 2 ${a.devno} 1 1 ${b.devno} 1 1`;
  await exec('dmsetup', ['create', name, '--table', table]);
  try {
    const { stdout: status } = await exec('dmsetup', ['status', name]);
    assert.match(status, new RegExp(`${a.devno} A 0 .*${b.devno} A 0`));
    const { stdout: info } = await exec('dmsetup', ['info', '-c', '--noheadings', '-o', 'major,minor', name]);
    const minor = info.trim().split(':')[1];
    // No udev in the guest: /dev/dm-N comes from devtmpfs, /dev/mapper/NAME does not.
    const { stderr } = await exec('dd', [`if=/dev/dm-${minor}`, 'of=/dev/null', 'bs=4096', 'count=256', 'iflag=direct']);
    assert.match(stderr, /^256\+0 records in/m);
    assert.match(stderr, /1048576 bytes/);
  } finally {
    await exec('dmsetup', ['remove', name]);
  }
  const { stdout: ls } = await exec('dmsetup', ['ls']);
  assert.doesNotMatch(ls, /mpw-smoke/);
});
