// The fake clock the other watchdog tests rely on, and the real clock's
// agreement with the engine's stamps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../lib/watchdog/fake-clock';
import { SystemClock, msFromNs } from '../../lib/watchdog/clock';

test('FakeClock fires due timers in deadline order, ties in arming order, with now() at each deadline', () => {
  const clock = new FakeClock(10);
  const fired: [string, number][] = [];
  const at = (name: string, ms: number) => clock.setTimer(ms, () => fired.push([name, clock.now()]));
  at('c', 30);
  at('a', 20);
  at('b', 20);
  at('late', 100);
  clock.advance(50);
  assert.deepEqual(fired, [
    ['a', 20],
    ['b', 20],
    ['c', 30],
  ]);
  assert.equal(clock.now(), 60);
  assert.equal(clock.pending, 1);
  assert.equal(clock.armed, 4);
  assert.equal(clock.fired, 3);
});

test('FakeClock fires timers armed by a callback inside the same advance, and honours clearTimer', () => {
  const clock = new FakeClock();
  const fired: number[] = [];
  const doomed = clock.setTimer(15, () => fired.push(-1));
  clock.setTimer(10, () => {
    fired.push(clock.now());
    clock.clearTimer(doomed);
    clock.setTimer(clock.now() + 10, () => fired.push(clock.now()));
  });
  clock.advance(25);
  assert.deepEqual(fired, [10, 20]);
  assert.equal(clock.cleared, 1);
  clock.clearTimer(doomed);
  assert.equal(clock.cleared, 1, 'clearing twice counts once');
});

test('FakeClock fires an overdue timer on advance(0) and rejects bad input', () => {
  const clock = new FakeClock(100);
  let fired = 0;
  clock.setTimer(50, () => fired++);
  clock.advance(0);
  assert.equal(fired, 1);
  assert.equal(clock.now(), 100);
  assert.throws(() => clock.advance(-1), RangeError);
  assert.throws(() => clock.setTimer(NaN, () => {}), RangeError);
});

test('FakeClock refuses a timer that re-arms itself at now forever', () => {
  const clock = new FakeClock();
  const loop = () => void clock.setTimer(clock.now(), loop);
  clock.setTimer(0, loop);
  assert.throws(() => clock.advance(1), /1e6 timers/);
});

test('msFromNs converts engine stamps, and SystemClock reads the same clock as process.hrtime.bigint()', () => {
  assert.equal(msFromNs(1_500_000n), 1.5);
  assert.equal(msFromNs(0n), 0);
  const clock = new SystemClock();
  const before = msFromNs(process.hrtime.bigint());
  const now = clock.now();
  const after = msFromNs(process.hrtime.bigint());
  assert.ok(before <= now && now <= after, `${before} <= ${now} <= ${after}`);
});

test('SystemClock timers fire, and a cleared one does not', async () => {
  const clock = new SystemClock({ unref: false });
  const fired: string[] = [];
  const cleared = clock.setTimer(clock.now() + 1, () => fired.push('cleared'));
  clock.clearTimer(cleared);
  await new Promise<void>((resolve) => clock.setTimer(clock.now() + 5, () => resolve(void fired.push('kept'))));
  assert.deepEqual(fired, ['kept']);
});
