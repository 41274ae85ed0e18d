// DmError messages and the kernel-log lookup that explains refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { DmError } from '../../lib/dm';
import { describeDmFailure, toDmError } from '../../lib/dm/errors';
import { kernelComplaint, parseKmsgRecord, pickDmComplaint } from '../../lib/dm/kmsg';
import { SyscallError } from '../../lib/errors';

const E = constants.errno;

test('messages say what happened to which device', () => {
  assert.equal(describeDmFailure('DM_DEV_STATUS', E.ENXIO, { device: 'x' }), "no such device-mapper device 'x'");
  assert.equal(describeDmFailure('DM_DEV_CREATE', E.EBUSY, { device: 'x' }), "device-mapper device 'x' already exists");
  assert.equal(
    describeDmFailure('DM_TABLE_LOAD', E.EINVAL, { device: 'x', tableFault: true, kernelMessage: 'table: 254:0: linear: Invalid argument count' }),
    "table rejected by the kernel for 'x': table: 254:0: linear: Invalid argument count",
  );
  assert.equal(describeDmFailure('DM_TABLE_LOAD', E.ENXIO, { device: 'x' }), "no such device-mapper device 'x'");
  assert.equal(describeDmFailure('DM_TARGET_MSG', E.EINVAL, { device: 'x', message: 'hi' }), "message 'hi' rejected by device-mapper device 'x'");
  assert.equal(describeDmFailure('DM_DEV_REMOVE', E.EBUSY, { device: 'x' }), "device-mapper device 'x' is in use and cannot be removed");
  assert.match(describeDmFailure('DM_VERSION', E.EACCES, {}), /needs root/);
  assert.match(describeDmFailure('DM_DEV_SUSPEND', E.EIO, { device: 'x' }), /^DM_DEV_SUSPEND failed for device-mapper device 'x': EIO$/);
});

test('native rejections become DmError with code, errno, syscall and device; others pass through', () => {
  const native = Object.assign(new Error('DM_DEV_STATUS: No such device or address'), { errno: E.ENXIO, syscall: 'DM_DEV_STATUS' });
  const e = toDmError(native, { device: 'x' });
  assert.ok(e instanceof DmError);
  assert.ok(e instanceof SyscallError);
  assert.equal(e.code, 'ENXIO');
  assert.equal(e.errno, E.ENXIO);
  assert.equal(e.syscall, 'DM_DEV_STATUS');
  assert.equal(e.device, 'x');
  assert.equal(e.cause, native);
  const other = new TypeError('nope');
  assert.equal(toDmError(other, {}), other);
});

test('kmsg records parse; the complaint prefers lines naming the device and skips old ones', () => {
  assert.deepEqual(parseKmsgRecord('3,1234,5000000,-;device-mapper: table: 254:3: linear: Invalid argument count\n'), {
    usec: 5_000_000,
    text: 'device-mapper: table: 254:3: linear: Invalid argument count',
  });
  assert.equal(parseKmsgRecord('garbage'), undefined);
  const recs = [
    { usec: 1, text: 'device-mapper: table: 254:3: old complaint' },
    { usec: 10, text: 'device-mapper: table: 254:9: someone else' },
    { usec: 11, text: 'device-mapper: table: 254:3: multipath: error getting device' },
    { usec: 12, text: 'device-mapper: ioctl: error adding target to table' },
    { usec: 13, text: 'sd 0:0:0:0: unrelated' },
  ];
  assert.equal(pickDmComplaint(recs, 5, '254:3'), 'table: 254:3: multipath: error getting device');
  assert.equal(pickDmComplaint(recs, 12), 'ioctl: error adding target to table');
  assert.equal(pickDmComplaint(recs, 100), undefined);
});

test("a device with no line of its own is never given another device's complaint", () => {
  const recs = [
    { usec: 10, text: 'device-mapper: table: 254:9: multipath: error getting device' },
    { usec: 11, text: 'device-mapper: ioctl: error adding target to table' },
  ];
  // 254:3 logged nothing: the line that names no device may be its, 254:9's is not.
  assert.equal(pickDmComplaint(recs, 5, '254:3'), 'ioctl: error adding target to table');
  assert.equal(pickDmComplaint(recs.slice(0, 1), 5, '254:3'), undefined);
});

test('the kernel log is read off the event loop: kernelComplaint is asynchronous', async () => {
  // It was a loop of up to 100,000 readSync calls on the event loop.
  const p = kernelComplaint(0, '254:3');
  assert.ok(p instanceof Promise);
  const r = await p;
  assert.ok(r === undefined || typeof r === 'string');
});
