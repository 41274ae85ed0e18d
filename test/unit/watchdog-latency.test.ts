// Latency statistics: histogram quantiles against exact ones, the windowed
// histogram's rotation, and the sliding median the slowFactor rule reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LogHistogram } from '../../lib/watchdog/histogram';
import { LatencyBook, PathLatency, SlidingMedian, WindowedHistogram } from '../../lib/watchdog/latency';

function exactQuantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.ceil(q * sorted.length) - 1]!;
}

function exactMedian(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

test('property: histogram quantiles are upper bounds within one bucket (6.25 % + 1 µs), max and count exact', () => {
  const latency = fc.oneof(fc.double({ min: 0, max: 5, noNaN: true }), fc.double({ min: 0, max: 3_000_000, noNaN: true }));
  fc.assert(
    fc.property(fc.array(latency, { minLength: 1, maxLength: 300 }), fc.double({ min: 0.001, max: 1, noNaN: true }), (values, q) => {
      const h = new LogHistogram();
      for (const v of values) h.record(v);
      const exact = exactQuantile(values, q);
      const got = h.quantile(q);
      assert.ok(got >= exact, `q${q}: ${got} >= ${exact}`);
      assert.ok(got <= (exact + 0.001) * (17 / 16), `q${q}: ${got} within a bucket of ${exact}`);
      assert.equal(h.max, Math.max(...values));
      assert.equal(h.count, values.length);
      assert.ok(got <= h.max);
    }),
  );
});

test('histogram merge equals recording everything into one; reset empties it', () => {
  const a = new LogHistogram();
  const b = new LogHistogram();
  const all = new LogHistogram();
  const values = Array.from({ length: 200 }, (_, i) => (i * 37) % 101 + i / 7);
  values.forEach((v, i) => {
    (i % 3 === 0 ? a : b).record(v);
    all.record(v);
  });
  a.merge(b);
  for (const q of [0.01, 0.5, 0.9, 0.99, 1]) assert.equal(a.quantile(q), all.quantile(q));
  assert.equal(a.count, all.count);
  assert.equal(a.mean, all.mean);
  a.reset();
  assert.equal(a.count, 0);
  assert.ok(Number.isNaN(a.quantile(0.5)));
  assert.ok(Number.isNaN(a.mean));
  assert.throws(() => a.quantile(0), RangeError);
});

test('property: the sliding median is the exact median of the last N samples still inside the age window', () => {
  const capacity = 8;
  const maxAgeMs = 100;
  const sample = fc.record({ dt: fc.integer({ min: 0, max: 60 }), ms: fc.double({ min: 0, max: 1000, noNaN: true }) });
  fc.assert(
    fc.property(fc.array(sample, { maxLength: 40 }), fc.integer({ min: 0, max: 150 }), (samples, wait) => {
      const m = new SlidingMedian(capacity, maxAgeMs);
      let now = 0;
      const kept: { at: number; ms: number }[] = [];
      for (const s of samples) {
        now += s.dt;
        m.record(now, s.ms);
        kept.push({ at: now, ms: s.ms });
      }
      now += wait;
      const inWindow = kept.slice(-capacity).filter((k) => k.at >= now - maxAgeMs).map((k) => k.ms);
      const got = m.median(now);
      assert.equal(got.samples, inWindow.length);
      if (inWindow.length === 0) assert.ok(Number.isNaN(got.medianMs));
      else assert.equal(got.medianMs, exactMedian(inWindow));
    }),
  );
});

test('the windowed histogram forgets samples older than two windows and keeps the last one', () => {
  const w = new WindowedHistogram(1000);
  w.record(0, 500);
  w.record(500, 1);
  assert.equal(w.read(900).max, 500);
  w.record(1200, 2); // rotates: [0,1000) becomes the previous half
  assert.equal(w.read(1200).count, 3);
  assert.equal(w.read(2100).count, 1, 'the [0,1000) half has rotated out');
  assert.equal(w.read(2100).max, 2);
  assert.equal(w.read(5000).count, 0, 'idle for two windows: empty');
});

test('PathLatency counts completions and errors and reports window percentiles and the median', () => {
  const p = new PathLatency({ windowMs: 1000, medianSamples: 4 });
  for (let i = 1; i <= 100; i++) p.record(i, i);
  p.recordError();
  const s = p.snapshot(100);
  assert.equal(s.completed, 100);
  assert.equal(s.errors, 1);
  assert.equal(s.windowCount, 100);
  assert.equal(s.maxMs, 100);
  assert.ok(s.p50Ms >= 50 && s.p50Ms <= 50 * (17 / 16), `p50 ${s.p50Ms}`);
  assert.ok(s.p99Ms >= 99 && s.p99Ms <= 100, `p99 ${s.p99Ms}`);
  assert.equal(s.samples, 4);
  assert.equal(s.medianMs, exactMedian([97, 98, 99, 100]));
  p.resetWindow();
  const after = p.snapshot(100);
  assert.equal(after.completed, 100, 'counts survive a window reset');
  assert.equal(after.windowCount, 0);
  assert.ok(Number.isNaN(after.maxMs));
  assert.equal(after.samples, 0);
});

test('LatencyBook gives each path its own figures and the medians for a latency-window observation', () => {
  const book = new LatencyBook({ windowMs: 1000 });
  for (let i = 0; i < 10; i++) {
    book.path('8:0').record(i, 1);
    book.path('8:16').record(i, 30);
  }
  assert.deepEqual(book.medians(10), { '8:0': { medianMs: 1, samples: 10 }, '8:16': { medianMs: 30, samples: 10 } });
  assert.equal(book.snapshot(10)['8:16']!.completed, 10);
  book.delete('8:16');
  assert.deepEqual(Object.keys(book.medians(10)), ['8:0']);
});

test('the histogram reads back values near and past its top bucket (2^31 µs)', () => {
  for (const v of [2_080_374.783, 2_147_483.647, 5_000_000]) {
    const h = new LogHistogram();
    h.record(v);
    assert.equal(h.quantile(0.5), v, `${v} ms`);
  }
});
