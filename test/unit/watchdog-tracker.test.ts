// The in-flight tracker under a fake clock: one timer, each late I/O once,
// in order, with lazy re-arming that keeps timer churn independent of IOPS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FakeClock } from '../../lib/watchdog/fake-clock';
import { InflightTracker, type LateIo, type TrackedIo } from '../../lib/watchdog/tracker';

interface Rig {
  clock: FakeClock;
  tracker: InflightTracker<string>;
  reports: { late: LateIo<string>[]; now: number }[];
  lateIds: () => number[];
}

function rig(timeoutMs: number, onLate?: (late: readonly LateIo<string>[]) => void): Rig {
  const clock = new FakeClock(1000);
  const reports: Rig['reports'] = [];
  const tracker = new InflightTracker<string>({
    clock,
    timeoutMs,
    onLate: (late, now) => {
      reports.push({ late: [...late], now });
      onLate?.(late);
    },
  });
  return { clock, tracker, reports, lateIds: () => reports.flatMap((r) => r.late.map((l) => l.io.id)) };
}

test('an I/O removed before its deadline is never reported', () => {
  const { clock, tracker, reports } = rig(100);
  const a = tracker.track(clock.now(), 'p1');
  clock.advance(50);
  const b = tracker.track(clock.now(), 'p2');
  assert.equal(tracker.done(a), true);
  assert.equal(tracker.done(b), true);
  clock.advance(1000);
  assert.deepEqual(reports, []);
  assert.equal(tracker.size, 0);
  assert.equal(clock.pending, 0, 'the lazy timer fired and was not re-armed for an empty tracker');
});

test('each late I/O is reported exactly once, oldest first, with its lateness and data', () => {
  const { clock, tracker, reports, lateIds } = rig(100);
  const start = clock.now();
  const ios = [0, 10, 20].map((dt, i) => tracker.track(start + dt, `path${i}`));
  clock.advance(500);
  assert.deepEqual(lateIds(), ios.map((io) => io.id));
  for (const r of reports) {
    for (const l of r.late) {
      assert.equal(l.deadlineMs, l.io.submitMs + 100);
      assert.equal(l.lateByMs, r.now - l.deadlineMs);
      assert.ok(l.lateByMs >= 0);
      assert.equal(l.io.late, true);
      assert.equal(l.io.inflight, true);
    }
  }
  assert.deepEqual(
    reports.flatMap((r) => r.late.map((l) => l.io.data)),
    ['path0', 'path1', 'path2'],
  );
  clock.advance(10_000);
  assert.equal(lateIds().length, 3, 'no second report');
  assert.equal(tracker.lateCount, 3);
  assert.equal(tracker.done(ios[1]!), true);
  assert.equal(tracker.lateCount, 2);
  assert.equal(tracker.done(ios[1]!), false, 'done twice is a no-op');
  assert.deepEqual([...tracker.lateIos()].map((io) => io.id), [ios[0]!.id, ios[2]!.id]);
});

test('an I/O already past its deadline when tracked is reported with how late it is', () => {
  const { clock, tracker, reports } = rig(100);
  tracker.track(clock.now() - 130, 'p');
  clock.advance(0);
  assert.equal(reports.length, 1);
  assert.equal(reports[0]!.late[0]!.lateByMs, 30);
});

test('I/Os due at the same firing are reported in one batch', () => {
  const { clock, tracker, reports } = rig(100);
  const t = clock.now();
  tracker.track(t, 'a');
  tracker.track(t, 'b');
  tracker.track(t + 1, 'c');
  clock.advance(100);
  assert.equal(reports.length, 1);
  assert.deepEqual(reports[0]!.late.map((l) => l.io.data), ['a', 'b']);
  clock.advance(1);
  assert.deepEqual(reports[1]!.late.map((l) => l.io.data), ['c']);
});

test('removing the head does not touch the timer; the next firing re-arms for the new head', () => {
  const { clock, tracker, lateIds } = rig(100);
  const t = clock.now();
  const a = tracker.track(t, 'a');
  const b = tracker.track(t + 50, 'b');
  const armedBefore = clock.armed;
  tracker.done(a);
  assert.equal(clock.armed, armedBefore);
  assert.equal(clock.cleared, 0);
  assert.equal(clock.nextAt, t + 100, 'still armed for the old head');
  clock.advanceTo(t + 100);
  assert.deepEqual(lateIds(), []);
  assert.equal(clock.nextAt, t + 150, 're-armed for the new head');
  clock.advanceTo(t + 150);
  assert.deepEqual(lateIds(), [b.id]);
});

test('an out-of-order submit stamp is placed by its stamp and re-arms the timer earlier', () => {
  const { clock, tracker, reports } = rig(100);
  const t = clock.now();
  tracker.track(t + 40, 'later');
  tracker.track(t, 'earlier');
  assert.equal(tracker.oldest?.data, 'earlier');
  assert.equal(clock.nextAt, t + 100);
  clock.advanceTo(t + 100);
  assert.deepEqual(reports.map((r) => r.late.map((l) => l.io.data)), [['earlier']]);
  assert.equal(reports[0]!.late[0]!.lateByMs, 0);
});

test('a shorter timeout applies to I/Os in flight; a longer one postpones them', () => {
  const short = rig(1000);
  short.tracker.track(short.clock.now(), 'x');
  short.clock.advance(100);
  short.tracker.setTimeoutMs(100);
  short.clock.advance(0);
  assert.equal(short.lateIds().length, 1);

  const long = rig(100);
  long.tracker.track(long.clock.now(), 'y');
  long.tracker.setTimeoutMs(1000);
  long.clock.advance(999);
  assert.equal(long.lateIds().length, 0);
  long.clock.advance(1);
  assert.equal(long.lateIds().length, 1);
  assert.equal(long.clock.pending, 0);
  assert.throws(() => long.tracker.setTimeoutMs(0), RangeError);
});

test('stop() clears the timer and forgets every I/O', () => {
  const { clock, tracker, reports } = rig(100);
  const a = tracker.track(clock.now(), 'a');
  clock.advance(150);
  const b = tracker.track(clock.now(), 'b');
  assert.equal(clock.pending, 1);
  tracker.stop();
  assert.equal(clock.pending, 0);
  assert.equal(tracker.size, 0);
  assert.equal(tracker.done(a), false);
  assert.equal(tracker.done(b), false);
  assert.equal(a.inflight, false);
  clock.advance(1000);
  assert.equal(reports.length, 1, 'only the report from before stop');
  assert.throws(() => tracker.track(clock.now(), 'c'), /after stop/);
});

test('the late callback may complete and track I/Os', () => {
  const held: TrackedIo<string>[] = [];
  const { clock, tracker, lateIds } = rig(100, (late) => {
    for (const l of late) tracker.done(l.io);
    held.push(tracker.track(clock.now(), 'retry'));
  });
  tracker.track(clock.now(), 'first');
  clock.advance(100);
  assert.equal(tracker.size, 1);
  assert.equal(tracker.oldest, held[0]);
  clock.advance(100);
  assert.equal(lateIds().length, 2);
  assert.equal(tracker.size, 1, 'the second retry is in flight');
});

test('100k I/Os at high IOPS arm the timer about once per timeout, never once per I/O', () => {
  const timeoutMs = 100;
  const latencyMs = 1;
  const intervalMs = 0.01; // 100k IOPS
  const count = 100_000;
  const { clock, tracker, reports } = rig(timeoutMs);
  const queue: TrackedIo<string>[] = [];
  for (let i = 0; i < count; i++) {
    queue.push(tracker.track(clock.now(), 'p'));
    clock.advance(intervalMs);
    while (queue.length > 0 && clock.now() - queue[0]!.submitMs >= latencyMs) assert.ok(tracker.done(queue.shift()!));
    assert.ok(clock.pending <= 1, 'never more than one timer');
  }
  const durationMs = count * intervalMs;
  // Each firing re-arms for an I/O submitted at most latencyMs earlier, so
  // firings are at least (timeout - latency) apart.
  const bound = Math.ceil(durationMs / (timeoutMs - latencyMs)) + 2;
  assert.ok(clock.armed <= bound, `armed ${clock.armed} times, bound ${bound}`);
  assert.equal(clock.cleared, 0, 'completions never clear the timer');
  assert.deepEqual(reports, []);
  assert.equal(tracker.size, queue.length);
});

test('property: with random completions, exactly the I/Os in flight past their deadline are reported, once', () => {
  const timeoutMs = 50;
  const step = fc.oneof(
    fc.record({ op: fc.constant('track' as const), back: fc.integer({ min: 0, max: 5 }) }),
    fc.record({ op: fc.constant('done' as const), pick: fc.nat() }),
    fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 40 }) }),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 200 }), (steps) => {
      const { clock, tracker, reports } = rig(timeoutMs);
      const live: TrackedIo<string>[] = [];
      const reported = new Set<number>();
      const check = () => {
        for (const r of reports.splice(0)) {
          for (const l of r.late) {
            assert.ok(!reported.has(l.io.id), 'reported twice');
            assert.ok(live.includes(l.io), 'reported after done');
            assert.ok(l.lateByMs >= 0);
            reported.add(l.io.id);
          }
        }
        for (const io of live) {
          // Every I/O past its deadline has been found, and none before it.
          assert.equal(reported.has(io.id), clock.now() >= io.submitMs + timeoutMs, `io ${io.id}`);
        }
      };
      for (const s of steps) {
        if (s.op === 'track') live.push(tracker.track(clock.now() - s.back, 'p'));
        else if (s.op === 'done' && live.length > 0) assert.ok(tracker.done(live.splice(s.pick % live.length, 1)[0]!));
        else if (s.op === 'advance') clock.advance(s.ms);
        clock.advance(0);
        check();
        assert.ok(clock.pending <= 1);
        assert.equal(tracker.size, live.length);
      }
    }),
  );
});
