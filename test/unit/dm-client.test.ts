// The DeviceMapper client over a fake native layer: create's roll-back, input
// checked before any call, waitEvent's abort and the event watcher's life cycle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { DeviceMapper, DmError } from '../../lib/dm';
import { changedDevices, watchEvents } from '../../lib/dm/events';
import type { NativeDmControl, RawDmInfo } from '../../lib/dm/native-types';

const E = constants.errno;

function info(name: string): RawDmInfo {
  return {
    name, uuid: '', major: 254, minor: 0, openCount: 0, eventNr: 0, targetCount: 1, flags: 0, readOnly: false, suspended: false,
    activeTable: true, inactiveTable: false, deferredRemove: false, internalSuspend: false, version: [4, 47, 0],
  };
}

function nativeError(syscall: string, errno: number): Error {
  return Object.assign(new Error(`${syscall}: failed`), { errno, syscall });
}

/** A fake native layer that records calls; `fail` maps a method to the errno it rejects with. */
function fake(fail: Partial<Record<keyof NativeDmControl, [string, number]>> = {}) {
  const calls: string[] = [];
  const handler: ProxyHandler<object> = {
    get(_t, prop: string) {
      return (...args: unknown[]) => {
        calls.push(prop);
        const f = fail[prop as keyof NativeDmControl];
        if (f) return Promise.reject(nativeError(f[0], f[1]));
        if (prop === 'dmListDevices') return Promise.resolve([]);
        const first = args[0];
        const name = typeof first === 'string' ? first : ((first as { name?: string } | undefined)?.name ?? 'x');
        return Promise.resolve(info(name));
      };
    },
  };
  return { native: new Proxy({}, handler) as NativeDmControl, calls };
}

test('create removes the device it made when the table load fails', async () => {
  const f = fake({ dmTableLoad: ['DM_TABLE_LOAD', E.EINVAL] });
  const dm = new DeviceMapper({ native: f.native });
  await assert.rejects(dm.create('m', { table: '0 8 linear 8:0' }), (e: unknown) => e instanceof DmError && e.code === 'EINVAL' && /table rejected/.test(e.message));
  assert.deepEqual(f.calls.filter((c) => c !== 'dmDevStatus'), ['dmDevCreate', 'dmTableLoad', 'dmDevRemove']);
});

test('create removes the device it made when the resume fails', async () => {
  const f = fake({ dmDevResume: ['DM_DEV_SUSPEND', E.EINVAL] });
  const dm = new DeviceMapper({ native: f.native });
  await assert.rejects(dm.create('m', { table: '0 8 linear 8:0 0' }), (e: unknown) => e instanceof DmError && e.syscall === 'DM_DEV_SUSPEND');
  assert.deepEqual(f.calls, ['dmDevCreate', 'dmTableLoad', 'dmDevResume', 'dmDevRemove']);
});

test('create that fails at DM_DEV_CREATE removes nothing (the device is someone else\'s)', async () => {
  const f = fake({ dmDevCreate: ['DM_DEV_CREATE', E.EBUSY] });
  const dm = new DeviceMapper({ native: f.native });
  await assert.rejects(dm.create('m', { table: '0 8 linear 8:0 0' }), (e: unknown) => e instanceof DmError && e.code === 'EBUSY');
  assert.ok(!f.calls.includes('dmDevRemove'));
});

test('bad input never reaches the native layer', async () => {
  const f = fake();
  const dm = new DeviceMapper({ native: f.native });
  await assert.rejects(dm.create('n'.repeat(200), { table: '0 8 linear 8:0 0' }), DmError);
  await assert.rejects(dm.create('m', { table: '8 8 linear 8:0 0' }), DmError);
  await assert.rejects(dm.message('m', '   '), DmError);
  await assert.rejects(dm.message('m', 'fail_path 8:0', -1), DmError);
  await assert.rejects(dm.waitEvent('m', 2 ** 32), DmError);
  await assert.rejects(dm.info('a/b'), DmError);
  assert.deepEqual(f.calls, []);
});

test('waitEvent rejects on abort and cancels the native wait', async () => {
  let cancelled = 0;
  const never = new Promise<RawDmInfo>(() => undefined);
  const native = { dmDevWait: () => ({ promise: never, cancel: () => cancelled++ }) } as unknown as NativeDmControl;
  const dm = new DeviceMapper({ native });
  const ac = new AbortController();
  const p = dm.waitEvent('m', 3, { signal: ac.signal });
  ac.abort(new Error('enough'));
  await assert.rejects(p, /enough/);
  assert.equal(cancelled, 1);
  await assert.rejects(dm.waitEvent('m', 3, { signal: ac.signal }), /enough/);
  assert.equal(cancelled, 1, 'an already aborted signal starts no wait');
});

test('changedDevices reports moved counters and new devices with events', () => {
  const before = new Map([['a', 1], ['b', 5]]);
  assert.deepEqual(
    changedDevices(before, [{ name: 'a', eventNr: 1 }, { name: 'b', eventNr: 7 }, { name: 'c', eventNr: 0 }, { name: 'd', eventNr: 2 }, { name: 'e', eventNr: undefined }]),
    [{ name: 'b', eventNr: 7 }, { name: 'd', eventNr: 2 }],
  );
});

test('watchEvents lists after each wake, yields changes, and closes its poller on abort', async () => {
  let wake: ((err: Error | null) => void) | undefined;
  let closed = 0;
  const lists = [[{ name: 'm', eventNr: 0 }], [{ name: 'm', eventNr: 1 }], [{ name: 'm', eventNr: 1 }], [{ name: 'm', eventNr: 3 }]];
  const source = {
    list: async () => lists.shift() ?? [],
    open: (onWake: (err: Error | null) => void) => {
      wake = onWake;
      return { close: () => closed++ };
    },
  };
  const ac = new AbortController();
  const it = watchEvents(source, ac.signal);
  const first = it.next();
  await new Promise((r) => setImmediate(r));
  wake?.(null);
  assert.deepEqual((await first).value, { name: 'm', eventNr: 1 });
  const second = it.next();
  wake?.(null); // nothing changed: no yield
  await new Promise((r) => setImmediate(r));
  wake?.(null);
  assert.deepEqual((await second).value, { name: 'm', eventNr: 3 });
  const third = it.next();
  ac.abort();
  assert.equal((await third).done, true);
  assert.equal(closed, 1);
});

test('watchEvents surfaces a poll error and still closes', async () => {
  let wake: ((err: Error | null) => void) | undefined;
  let closed = 0;
  const it = watchEvents({ list: async () => [], open: (w) => ((wake = w), { close: () => closed++ }) });
  const n = it.next();
  await new Promise((r) => setImmediate(r));
  wake?.(new Error('poll failed'));
  await assert.rejects(n, /poll failed/);
  assert.equal(closed, 1);
});
