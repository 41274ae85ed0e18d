// TimedDevice (the Watchdog's per-I/O path, no dm map) on a loop device over
// /dev/shm. Deadlines run on a FakeClock: time moves only when the test says
// so, so "late" is decided by the test, never by how fast the host is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { DeviceClosedError, DirectDevice, IoArgumentError } from '../../lib/io';
import { FakeClock } from '../../lib/watchdog/fake-clock';
import { TimedDevice, type TimedDeviceOptions, type TimedIo, type TimedIoData } from '../../lib/watchdog/timed-device';
import type { LateIo } from '../../lib/watchdog/tracker';
import { withLoopDevice } from '../helpers/loop-device';
import { collect } from '../helpers/gc';

const MiB = 1 << 20;
const BLOCK = 4096;

/** A TimedDevice on a fresh loop device, closed (and the loop torn down) afterwards. */
async function withTimed(options: Omit<TimedDeviceOptions, 'device'>, fn: (t: TimedDevice) => Promise<void>): Promise<void> {
  await withLoopDevice(MiB, async (loop) => {
    const t = new TimedDevice({ ...options, device: await DirectDevice.open(loop.path) });
    try {
      await fn(t);
    } finally {
      await t.close();
    }
  }, { random: true });
}

function pattern(t: TimedDevice, byte: number): Buffer {
  const b = t.alloc(BLOCK);
  b.fill(byte);
  return b;
}

test('reads and writes round-trip, and each completion is counted with its latency', async () => {
  await withTimed({ timeoutMs: 500 }, async (t) => {
    const data = t.alloc(2 * BLOCK);
    randomBytes(2 * BLOCK).copy(data);
    const w = await t.write(data, 3 * BLOCK);
    assert.equal(w.bytes, 2 * BLOCK);
    assert.equal(w.late, false);
    assert.equal(w.hedged, false);
    assert.ok(w.latencyMs >= 0);
    const back = t.alloc(2 * BLOCK);
    const r = await t.read(back, 3 * BLOCK);
    assert.equal(r.bytes, 2 * BLOCK);
    assert.ok(back.equals(data));
    await t.flush();
    const s = t.stats();
    assert.equal(s.completed, 2, 'a flush is tracked but not counted');
    assert.equal(s.inflight, 0);
    assert.equal(s.late, 0);
    assert.ok(s.p99Ms >= s.p50Ms);
  });
});

test('with hedgeReads on, a plain read goes through a bounce buffer and still round-trips', async () => {
  await withTimed({ timeoutMs: 500, hedgeReads: true }, async (t) => {
    const data = pattern(t, 0x5a);
    await t.write(data, 0);
    const back = t.alloc(BLOCK);
    const r = await t.read(back, 0);
    assert.equal(r.hedged, false);
    assert.ok(back.equals(data));
  });
});

test('the write fence: a second write to an overlapping range starts only after the first completed', async () => {
  await withTimed({ timeoutMs: 500 }, async (t) => {
    const order: string[] = [];
    const a = t.alloc(2 * BLOCK).fill(0xaa);
    const b = pattern(t, 0xbb);
    // Issued in one turn: without the fence both would be in the kernel at once.
    const pa = t.write(a, 0).then((r) => (order.push('a'), r));
    const pb = t.write(b, BLOCK).then((r) => (order.push('b'), r));
    const pr = t.read(t.alloc(BLOCK), BLOCK).then((r) => (order.push('read'), r));
    const [ra, rb] = await Promise.all([pa, pb, pr]);
    assert.deepEqual(order, ['a', 'b', 'read']);
    // The engine's own stamps: b was submitted no earlier than a completed.
    assert.ok(rb.submitNs >= ra.doneNs, `b submitted at ${rb.submitNs}, a done at ${ra.doneNs}`);
    const back = t.alloc(2 * BLOCK);
    await t.read(back, 0);
    assert.ok(back.subarray(0, BLOCK).equals(a.subarray(0, BLOCK)));
    assert.ok(back.subarray(BLOCK).equals(b), 'the later write is the one on disk');
  });
});

test('a read whose signal aborts rejects, and the caller\'s buffer is never written afterwards', async () => {
  await withLoopDevice(MiB, async (loop) => {
    const t = new TimedDevice({ timeoutMs: 500, device: await DirectDevice.open(loop.path) });
    await t.write(pattern(t, 0x11), 0);
    const mine = pattern(t, 0xee);
    const ac = new AbortController();
    const p = t.read(mine, 0, { signal: ac.signal });
    // Aborted in the same turn: no completion can have been delivered yet.
    ac.abort();
    await assert.rejects(p, { name: 'AbortError' });
    // close() resolves once the kernel finished every I/O, the abandoned read included.
    await t.close();
    assert.ok(mine.every((x) => x === 0xee), 'the buffer still holds what the caller put there');
  });
});

test('an already aborted signal rejects before anything is issued; a write with a signal writes a copy', async () => {
  await withTimed({ timeoutMs: 500 }, async (t) => {
    const ac = new AbortController();
    ac.abort(new Error('gave up'));
    await assert.rejects(t.read(t.alloc(BLOCK), 0, { signal: ac.signal }), /gave up/);
    await assert.rejects(t.write(t.alloc(BLOCK), 0, { signal: ac.signal }), /gave up/);
    assert.equal(t.stats().inflight, 0);
    const live = new AbortController();
    const src = pattern(t, 0x42);
    const p = t.write(src, 0, { signal: live.signal });
    src.fill(0); // the caller reuses its buffer at once: the kernel has a copy
    await p;
    const back = t.alloc(BLOCK);
    await t.read(back, 0);
    assert.ok(back.every((x) => x === 0x42));
  });
});

test('a deadline passing reports the in-flight I/O to onLate once, and its result says late', async () => {
  const clock = new FakeClock(1_000);
  const reports: LateIo<TimedIoData>[][] = [];
  await withTimed({ timeoutMs: 100, clock, onLate: (late) => reports.push([...late]) }, async (t) => {
    const p = t.read(t.alloc(BLOCK), 2 * BLOCK);
    // Still in flight: completions arrive in a later turn than this one.
    assert.equal(t.stats().inflight, 1);
    clock.advance(150);
    assert.equal(reports.length, 1);
    const [late] = reports[0] as [LateIo<TimedIoData>];
    assert.equal(late.io.data.op, 'read');
    assert.equal(late.io.data.offset, 2 * BLOCK);
    assert.equal(late.io.data.length, BLOCK);
    // The fake clock fires the timer at the deadline itself: submitted at 1000, due at 1100.
    assert.equal(late.deadlineMs, 1_100);
    assert.equal(late.lateByMs, 0);
    assert.equal(t.stats().late, 1);
    clock.advance(1_000);
    assert.equal(reports.length, 1, 'reported once');
    const r = await p;
    assert.equal(r.late, true);
    assert.equal(t.stats().late, 0);
    assert.equal(t.stats().inflight, 0);
  });
});

test('the deadline starts when the engine hands the I/O to the kernel, not while it waits for a free slot', async () => {
  for (const hedgeReads of [false, true]) {
    await withLoopDevice(MiB, async (loop) => {
      const clock = new FakeClock(1_000);
      const reports: LateIo<TimedIoData>[] = [];
      const t = new TimedDevice({ device: await DirectDevice.open(loop.path, { queueDepth: 1 }), timeoutMs: 100, clock, hedgeReads, onLate: (late) => reports.push(...late) });
      try {
        const first = t.read(t.alloc(BLOCK), 0);
        // One slot: the second read waits in the engine's queue until the first completes.
        const second = t.read(t.alloc(BLOCK), BLOCK);
        assert.equal(t.stats().inflight, 1, `hedgeReads ${hedgeReads}: only the submitted read is timed`);
        clock.advance(150);
        assert.deepEqual(reports.map((l) => l.io.data.offset), [0], `hedgeReads ${hedgeReads}: the queued read is not late`);
        assert.equal((await first).late, true);
        // The second went to the kernel when the first completed, at 1150: due at 1250.
        clock.advance(50);
        const r = await second;
        assert.equal(r.late, false);
        assert.equal(reports.length, 1);
      } finally {
        await t.close();
      }
    }, { random: true });
  }
});

test('DirectDevice onSubmit: called once the I/O is handed to the kernel, after a wait for a slot; a throw is rethrown, the I/O unharmed', async () => {
  await withLoopDevice(MiB, async (loop) => {
    const dev = await DirectDevice.open(loop.path, { queueDepth: 1 });
    try {
      const order: string[] = [];
      const a = dev.read(dev.alloc(BLOCK), 0, { onSubmit: () => order.push('a submitted') }).then(() => order.push('a done'));
      const b = dev.read(dev.alloc(BLOCK), BLOCK, { onSubmit: () => order.push('b submitted') }).then(() => order.push('b done'));
      assert.deepEqual(order, ['a submitted']);
      await Promise.all([a, b]);
      assert.deepEqual(order, ['a submitted', 'b submitted', 'a done', 'b done']);
      // A throw from onSubmit is the caller's bug: it surfaces as an uncaught
      // exception (here in a child process), after the engine's bookkeeping.
      const script = [
        `const { DirectDevice } = require(${JSON.stringify(require.resolve('../../lib/io'))});`,
        'process.on("uncaughtException", (e) => { console.log("uncaught:", e.message); });',
        '(async () => {',
        `  const dev = await DirectDevice.open(${JSON.stringify(loop.path)}, { queueDepth: 1 });`,
        '  const r = await dev.read(dev.alloc(4096), 0, { onSubmit: () => { throw new Error("caller bug"); } });',
        '  const again = await dev.read(dev.alloc(4096), 4096);',
        '  console.log("bytes", r.bytes, again.bytes);',
        '  await dev.close();',
        '})();',
      ].join('\n');
      const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(child.status, 0, child.stderr);
      assert.deepEqual(child.stdout.trim().split('\n').sort(), ['bytes 4096 4096', 'uncaught: caller bug']);
    } finally {
      await dev.close();
    }
  }, { random: true });
});

test('hedge() re-issues a late read once; the first completion wins and the data is right', async () => {
  const clock = new FakeClock();
  const late: TimedIo[] = [];
  await withTimed({ timeoutMs: 10, clock, hedgeReads: true, onLate: (l) => late.push(...l.map((x) => x.io)) }, async (t) => {
    const data = pattern(t, 0x77);
    await t.write(data, 5 * BLOCK);
    const back = t.alloc(BLOCK);
    const p = t.read(back, 5 * BLOCK);
    clock.advance(20);
    const io = late[0] as TimedIo;
    assert.ok(io);
    assert.equal(t.hedge(io), true);
    assert.equal(t.hedge(io), false, 'a read is hedged once');
    const r = await p;
    assert.equal(r.late, true);
    assert.ok(back.equals(data));
    assert.equal(t.stats().hedged, 1);
    assert.equal(t.hedge(io), false, 'a finished read is not re-issued');
  });
});

test('hedge(io, via) sends the copy through via: when it wins, its data is the caller\'s and the original, landing later, writes nothing', async () => {
  const clock = new FakeClock();
  const late: TimedIo[] = [];
  await withTimed({ timeoutMs: 10, clock, hedgeReads: true, onLate: (l) => late.push(...l.map((x) => x.io)) }, async (t) => {
    const back = t.alloc(BLOCK);
    const calls: { length: number; offset: number }[] = [];
    // The original is in the kernel; its completion needs an event-loop turn,
    // and the copy settles in microtasks before that: the copy wins for sure.
    const p = t.read(back, 6 * BLOCK);
    clock.advance(20);
    const io = late[0] as TimedIo;
    assert.ok(io);
    assert.equal(t.hedge(io, async (buf, offset) => {
      calls.push({ length: buf.byteLength, offset });
      buf.fill(0xab);
      return { bytes: buf.byteLength, submitNs: 1n, doneNs: 2n };
    }), true);
    assert.equal(t.hedge(io), false, 'a read is hedged once, whichever way');
    const r = await p;
    assert.equal(r.hedged, true);
    assert.equal(r.late, true);
    assert.deepStrictEqual(calls, [{ length: BLOCK, offset: 6 * BLOCK }]);
    assert.ok(back.every((b) => b === 0xab), 'the copy\'s data');
    // Let the original complete: it goes to its own bounce buffer, not to the caller's.
    for (let i = 0; i < 20; i++) await new Promise((res) => setImmediate(res));
    assert.ok(back.every((b) => b === 0xab), 'the loser wrote nothing into the caller\'s buffer');
    assert.equal(t.stats().inflight, 0);
  });
});

test('hedge(io, via): a copy that fails while the original is out gives the read its hedge back, for the map', async () => {
  const clock = new FakeClock();
  const late: TimedIo[] = [];
  await withTimed({ timeoutMs: 10, clock, hedgeReads: true, onLate: (l) => late.push(...l.map((x) => x.io)) }, async (t) => {
    const p = t.read(t.alloc(BLOCK), 8 * BLOCK);
    clock.advance(20);
    const io = late[0] as TimedIo;
    assert.equal(t.hedge(io, () => Promise.reject(new Error('EIO on the other path'))), true);
    assert.equal(t.hedge(io), false, 'while the copy is out, the read is not hedged twice');
    // The copy's rejection settles in microtasks; the original needs an event-loop turn.
    for (let i = 0; i < 10; i++) await Promise.resolve();
    assert.equal(io.inflight, true);
    assert.equal(t.hedge(io), true, 'before: the failed copy had used up the only hedge');
    await p;
  });
});

test('hedge(io, via): a copy that throws or rejects does not fail the read while the original can still answer', async () => {
  const clock = new FakeClock();
  const late: TimedIo[] = [];
  await withTimed({ timeoutMs: 10, clock, hedgeReads: true, onLate: (l) => late.push(...l.map((x) => x.io)) }, async (t) => {
    const data = pattern(t, 0x3c);
    await t.write(data, 7 * BLOCK);
    for (const via of [(): Promise<never> => { throw new Error('thrown'); }, (): Promise<never> => Promise.reject(new Error('rejected'))]) {
      late.length = 0;
      const back = t.alloc(BLOCK);
      const p = t.read(back, 7 * BLOCK);
      clock.advance(20);
      assert.equal(t.hedge(late[0] as TimedIo, via), true);
      const r = await p;
      assert.equal(r.hedged, false, 'the original answered');
      assert.ok(back.equals(data));
    }
  });
});

test('hedge() refuses a read of a device without hedgeReads, and I/O after close rejects', async () => {
  const clock = new FakeClock();
  const late: TimedIo[] = [];
  await withLoopDevice(MiB, async (loop) => {
    const t = new TimedDevice({ timeoutMs: 10, clock, onLate: (l) => late.push(...l.map((x) => x.io)), device: await DirectDevice.open(loop.path) });
    const p = t.read(t.alloc(BLOCK), 0);
    clock.advance(20);
    assert.equal(t.hedge(late[0] as TimedIo), false);
    await p;
    await t.close();
    assert.equal(t.closed, true);
    await assert.rejects(t.read(t.alloc(BLOCK), 0), DeviceClosedError);
    await assert.rejects(t.write(t.alloc(BLOCK), 0), DeviceClosedError);
    await assert.rejects(t.flush(), DeviceClosedError);
  });
});

test('a bad timeout is refused when the TimedDevice is made', async () => {
  await withLoopDevice(MiB, async (loop) => {
    const device = await DirectDevice.open(loop.path);
    try {
      assert.throws(() => new TimedDevice({ device, timeoutMs: 0 }), /timeoutMs must be at least 1 ms, got 0/);
      assert.throws(() => new TimedDevice({ device, timeoutMs: Infinity }), RangeError);
    } finally {
      await device.close();
    }
  });
});

test('the hedging bounce pool stays under 16 MiB whatever the mix of read lengths, and close() lets it go', async () => {
  // External buffers are freed by finalizers that run after the GC: give them turns.
  const settle = async (): Promise<number> => {
    for (let i = 0; i < 5; i++) {
      collect();
      await new Promise((r) => setImmediate(r));
    }
    return process.memoryUsage().external;
  };
  const external0 = await settle();
  await withLoopDevice(4 * MiB, async (loop) => {
    const t = new TimedDevice({ timeoutMs: 5000, hedgeReads: true, device: await DirectDevice.open(loop.path, { queueDepth: 8 }) });
    try {
      // 256 distinct lengths, 8 at a time each, so every length's pool fills: 1 GiB before.
      for (let blocks = 1; blocks <= 256; blocks++) {
        const length = blocks * 4096;
        await Promise.all(Array.from({ length: 8 }, () => t.read(t.alloc(length), 0)));
      }
      // What is still held is the pool (the callers' buffers are garbage by now).
      const pooled = (await settle()) - external0;
      assert.ok(pooled <= 20 * MiB, `external memory held by the pool: ${pooled} bytes`);
      assert.ok(pooled > 8 * MiB, `the pool was used: ${pooled} bytes`);
    } finally {
      await t.close();
    }
  });
  const held = (await settle()) - external0;
  assert.ok(held < 4 * MiB, `external memory still held after close and GC: ${held} bytes`);
});

test('a hedged read whose buffer is transferred away in flight rejects with buffer-detached, and its deadline is cleared', { timeout: 10_000 }, async () => {
  const late: TimedIo[] = [];
  const clock = new FakeClock(0);
  await withTimed({ timeoutMs: 50, clock, hedgeReads: true, onLate: (l) => late.push(...l.map((x) => x.io)) }, async (t) => {
    const mine = new Uint8Array(BLOCK);
    const p = t.read(mine, 0).then(() => undefined, (e: unknown) => e);
    structuredClone(mine.buffer, { transfer: [mine.buffer] });
    const err = await p;
    assert.ok(err instanceof IoArgumentError, String(err));
    assert.equal(err.reason, 'buffer-detached');
    // Nothing is left in flight to go late (it did: an entry stayed and fired io-late).
    clock.advance(1000);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(late, []);
    assert.equal(t.stats().inflight, 0);
  });
});
