// Attribution on a fake sysfs tree with a fake clock and a scripted probe:
// probes decide, the counters only corroborate (they let elimination cut a
// probe short), and a hung probe is never sent twice.
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeSysfs } from './helpers/fake-sysfs';
import { FakeProbe } from './helpers/fake-probe';
import { parseMultipathStatus } from '../../lib/multipath';
import { Attributor, CounterSampler, FakeClock, ProbeTimeoutError, usablePathDevnos, type Attribution, type PathRef, type SuspectEvidence } from '../../lib/watchdog';

const A: PathRef = { devno: '254:1', name: 'dm-1' };
const B: PathRef = { devno: '254:2', name: 'dm-2' };
const MAP: PathRef = { devno: '254:0', name: 'dm-0' };
const TIMEOUT = 500;

let fs: FakeSysfs;
let clock: FakeClock;
let probe: FakeProbe;
let sampler: CounterSampler;
let attributor: Attributor;

beforeEach(async () => {
  fs = await FakeSysfs.create();
  clock = new FakeClock(1000);
  probe = new FakeProbe();
  for (const d of [A, B, MAP]) await fs.set(d.name, { reads: 100 });
  sampler = new CounterSampler({ clock, intervalMs: TIMEOUT / 4, devices: [A, B, MAP], sysfsRoot: fs.root });
  attributor = new Attributor({ clock, probe: probe.read, probeTimeoutMs: TIMEOUT, history: sampler, sysfsRoot: fs.root });
  // The baseline: one round before the late I/O is submitted.
  await sampler.sampleNow();
  clock.advance(10);
});

afterEach(async () => {
  await fs.dispose();
});

// Lets settled probes' callbacks run before the clock jumps, as they would in
// real time: a fast probe completes long before a deadline.
const drain = (): Promise<void> => new Promise((r) => setImmediate(r));

const suspectNames = (r: Attribution): string[] => r.suspects.map((s) => s.path.name);

function probeEvidence(e: SuspectEvidence | undefined): Extract<SuspectEvidence, { kind: 'probe' }> {
  assert.ok(e && e.kind === 'probe', `expected probe evidence, got ${JSON.stringify(e)}`);
  return e;
}

test('one path in flight with no completion since the submit: its counters corroborate, and elimination names it once the other path answered', async () => {
  const submitMs = clock.now();
  await fs.set(A.name, { inflight: [1, 0] });
  await fs.set(B.name, { inflight: [2, 0] });
  await fs.complete(B.name, 7);
  await fs.set(MAP.name, { inflight: [3, 0] });
  clock.advance(TIMEOUT);
  probe.script(B.devno, { latencyMs: 2 });
  const sentA = probe.called(A.devno);
  const pending = attributor.attribute({ submitMs, map: MAP, paths: [A, B] });
  await sentA;
  await drain();
  clock.advance(TIMEOUT / 4);
  const r = await pending;
  assert.equal(r.method, 'probe');
  assert.deepStrictEqual(suspectNames(r), ['dm-1']);
  const e = probeEvidence(r.suspects[0]?.evidence);
  assert.equal(e.verdict.kind, 'outlasted');
  assert.deepStrictEqual(e.sysfs, { kind: 'counters', inflight: { reads: 1, writes: 0 }, completionsSince: 0, baselineAtMs: 1000, sampledAtMs: 1510, reading: 'stuck' });
  const b = r.details.paths[1]!.sysfs;
  assert.ok(b.kind === 'counters' && b.reading === 'progressing' && b.completionsSince === 7, JSON.stringify(b));
  assert.deepStrictEqual(r.details.map, { kind: 'counters', inflight: { reads: 3, writes: 0 }, completionsSince: 0, heldAbovePaths: 0 });
  assert.equal(probe.calls.length, 2, 'both paths were probed: the counters alone decide nothing');
  assert.equal(r.details.submitMs, submitMs);
});

test('a healthy path whose counters read stuck is not named while it answers; the idle silent path is, at its own deadline', async () => {
  // A has just taken one I/O (in flight, no completion since); B is the hung
  // path and reads idle, as a blocked iSCSI session or a dm-held bio does.
  const submitMs = clock.now();
  await fs.set(A.name, { inflight: [1, 0] });
  await fs.set(MAP.name, { inflight: [2, 0] });
  clock.advance(TIMEOUT);
  probe.script(A.devno, { latencyMs: 2 });
  const sentB = probe.called(B.devno);
  let done = false;
  const pending = attributor.attribute({ submitMs, map: MAP, paths: [A, B] }).finally(() => { done = true; });
  await sentB;
  await drain();
  clock.advance(TIMEOUT / 4);
  await drain();
  assert.equal(done, false, 'no elimination for a path its counters do not corroborate');
  clock.advance(TIMEOUT);
  const r = await pending;
  assert.deepStrictEqual(suspectNames(r), ['dm-2'], 'before: dm-1 was named from its counters, with no probe');
  assert.equal(probeEvidence(r.suspects[0]?.evidence).verdict.kind, 'timeout');
});

test('onFast hears of each path whose probe answers fast as soon as it does, while a silent path still holds the attribution', async () => {
  const submitMs = clock.now();
  clock.advance(TIMEOUT);
  probe.script(A.devno, { latencyMs: 2 });
  const sentB = probe.called(B.devno);
  const heard: string[] = [];
  let done = false;
  const pending = attributor.attribute({ submitMs, map: MAP, paths: [A, B], onFast: (p) => heard.push(p.name) }).finally(() => { done = true; });
  await sentB;
  await drain();
  assert.deepStrictEqual(heard, ['dm-1'], 'the fast path is announced before the deadline');
  assert.equal(done, false, 'the silent path still waits out its deadline');
  clock.advance(TIMEOUT);
  const r = await pending;
  assert.deepStrictEqual(suspectNames(r), ['dm-2']);
  assert.deepStrictEqual(heard, ['dm-1'], 'a path that missed its deadline is never announced');
});

test('a healthy path slower than a quarter of the deadline is not named by elimination', async () => {
  // A 300 ms path under a 1 s timeout was named 'outlasted' when the other answered at once.
  const submitMs = clock.now();
  probe.script(B.devno, { latencyMs: 2 });
  const sentA = probe.called(A.devno);
  const pending = attributor.attribute({ submitMs, map: MAP, paths: [A, B] });
  const callA = await sentA;
  await drain();
  clock.advance(TIMEOUT / 4);
  await drain();
  clock.advance(TIMEOUT / 8);
  callA.resolve((3 * TIMEOUT) / 8);
  const r = await pending;
  assert.equal(r.method, 'none');
  assert.deepStrictEqual(r.suspects, []);
  assert.deepStrictEqual(r.details.paths[0]!.probe, { kind: 'fast', latencyMs: (3 * TIMEOUT) / 8, timeoutMs: TIMEOUT });
});

test('the baseline is the last sample before the submit, not a later one', async () => {
  sampler.start(); // samples at 1010, then every 125 ms
  await sampler.settled();
  await fs.set(A.name, { inflight: [1, 0] });
  // A completion after the first sample but before the submit is not "since".
  await fs.complete(A.name, 1);
  clock.advance(125);
  await sampler.settled();
  const submitMs = clock.now() + 1;
  clock.advance(TIMEOUT);
  await sampler.settled();
  sampler.stop();
  probe.script(B.devno, { latencyMs: 1 });
  const sentA = probe.called(A.devno);
  const pending = attributor.attribute({ submitMs, map: null, paths: [A, B] });
  await sentA;
  await drain();
  clock.advance(TIMEOUT / 4);
  const r = await pending;
  assert.equal(r.method, 'probe');
  const e = probeEvidence(r.suspects[0]?.evidence);
  assert.ok(e.sysfs.kind === 'counters' && e.sysfs.reading === 'stuck' && e.sysfs.baselineAtMs === 1135, JSON.stringify(e.sysfs));
});

test('nothing in any path counter (the dm rig): probes decide, and the one still silent is named at its own deadline, not by elimination', async () => {
  const submitMs = clock.now();
  await fs.set(MAP.name, { inflight: [1, 0] });
  probe.script(B.devno, { latencyMs: 2 });
  const sentA = probe.called(A.devno);
  const pending = attributor.attribute({ submitMs, map: MAP, paths: [A, B] });
  const callA = await sentA;
  assert.equal(callA.signal.aborted, false);
  await drain();
  // B answered in 2 ms; A's counters do not corroborate, so it waits out its deadline.
  clock.advance(TIMEOUT);
  const r = await pending;
  assert.equal(r.method, 'probe');
  assert.deepStrictEqual(suspectNames(r), ['dm-1']);
  const e = probeEvidence(r.suspects[0]?.evidence);
  assert.deepStrictEqual(e.verdict, { kind: 'timeout', issuedAtMs: 1010, timeoutMs: TIMEOUT });
  assert.equal(e.sysfs.kind === 'counters' && e.sysfs.reading, 'idle');
  assert.deepStrictEqual(r.details.paths[1]!.probe, { kind: 'fast', latencyMs: 2, timeoutMs: TIMEOUT });
  assert.ok(r.details.map?.kind === 'counters' && r.details.map.heldAbovePaths === 1, JSON.stringify(r.details.map));
  assert.match(r.details.reason, /no path shows stuck I\/O.*map holds 1 I\/O above the path queues.*probes name 1/);
  await drain();
  assert.ok(callA.signal.aborted, 'the timed-out probe is told to give up');
  assert.ok(callA.signal.reason instanceof ProbeTimeoutError);
  assert.equal(attributor.outstandingProbes().length, 1, 'the hung probe stays on record');
});

test('elimination waits for the silent path to answer: a late but fast answer clears it', async () => {
  const submitMs = clock.now();
  await fs.set(MAP.name, { inflight: [1, 0] });
  probe.script(B.devno, { latencyMs: 2 });
  const sentA = probe.called(A.devno);
  const pending = attributor.attribute({ submitMs, map: MAP, paths: [A, B] });
  const callA = await sentA;
  await drain();
  clock.advance(TIMEOUT / 8);
  callA.resolve(TIMEOUT / 8);
  const r = await pending;
  assert.equal(r.method, 'none');
  assert.deepStrictEqual(r.suspects, []);
});

test('no elimination when every path is silent: each waits out its own deadline', async () => {
  const submitMs = clock.now();
  await fs.set(MAP.name, { inflight: [1, 0] });
  const sent = [probe.called(A.devno), probe.called(B.devno)];
  const pending = attributor.attribute({ submitMs, map: MAP, paths: [A, B] });
  await Promise.all(sent);
  await drain();
  clock.advance(TIMEOUT / 2);
  await drain();
  clock.advance(TIMEOUT / 2);
  const r = await pending;
  assert.deepStrictEqual(suspectNames(r).sort(), ['dm-1', 'dm-2']);
  for (const s of r.suspects) assert.equal(probeEvidence(s.evidence).verdict.kind, 'timeout');
});

test('a hung probe is not sent again: the path is a suspect at once, the others are probed anew', async () => {
  probe.script(B.devno, { latencyMs: 1 });
  const first = attributor.attribute({ submitMs: clock.now(), map: null, paths: [A, B] });
  await probe.called(A.devno);
  await drain();
  clock.advance(TIMEOUT);
  await first;
  clock.advance(100);
  const second = await attributor.attribute({ submitMs: clock.now(), map: null, paths: [A, B] });
  assert.equal(probe.callsFor(A.devno).length, 1, 'no second probe on the hung path');
  assert.equal(probe.callsFor(B.devno).length, 2);
  assert.deepStrictEqual(suspectNames(second), ['dm-1']);
  assert.deepStrictEqual(probeEvidence(second.suspects[0]?.evidence).verdict, { kind: 'hung', issuedAtMs: 1010, outstandingMs: TIMEOUT + 100 });

  // Once the hung probe finally completes, the next attribution probes again.
  probe.callsFor(A.devno)[0]!.resolve(TIMEOUT + 100);
  await drain();
  assert.equal(attributor.outstandingProbes().length, 0);
  probe.script(A.devno, { latencyMs: 1 });
  const third = await attributor.attribute({ submitMs: clock.now(), map: null, paths: [A, B] });
  assert.equal(probe.callsFor(A.devno).length, 2);
  assert.equal(third.method, 'none');
  assert.deepStrictEqual(third.suspects, []);
});

test('a probe still within its deadline is joined by a second attribution, not doubled', async () => {
  // An in-memory reader, so that one drain() lets both attributions reach their probes.
  const idle = await sampler.sampleNow();
  const mem = new Attributor({ clock, probe: probe.read, probeTimeoutMs: TIMEOUT, read: async (d) => idle.snapshots.get(d.devno)! });
  const sent = probe.called(A.devno);
  probe.script(B.devno, { latencyMs: 1 });
  const first = mem.attribute({ submitMs: clock.now(), map: null, paths: [A, B] });
  const call = await sent;
  const second = mem.attribute({ submitMs: clock.now(), map: null, paths: [A] });
  await drain();
  assert.equal(probe.callsFor(A.devno).length, 1, 'the second attribution waits on the first probe');
  call.resolve(3);
  const [r1, r2] = await Promise.all([first, second]);
  assert.equal(r1.method, 'none');
  assert.deepStrictEqual(r2.details.paths[0]!.probe, { kind: 'fast', latencyMs: 3, timeoutMs: TIMEOUT });
});

test('a probe that fails, or completes too late, names its path', async () => {
  const eio = Object.assign(new Error('read failed'), { code: 'EIO' });
  probe.script(A.devno, { error: eio }).script(B.devno, { latencyMs: TIMEOUT + 5 });
  const r = await attributor.attribute({ submitMs: clock.now(), map: null, paths: [A, B] });
  assert.equal(r.method, 'probe');
  assert.deepStrictEqual(r.suspects.map((s) => probeEvidence(s.evidence).verdict), [
    { kind: 'error', error: 'read failed', code: 'EIO' },
    { kind: 'slow', latencyMs: TIMEOUT + 5, timeoutMs: TIMEOUT },
  ]);
  assert.equal(attributor.outstandingProbes().length, 0);
});

test('two paths stuck in their counters: probes pick one; if every probe is fast, none is named', async () => {
  const submitMs = clock.now();
  await fs.set(A.name, { inflight: [1, 0] });
  await fs.set(B.name, { inflight: [0, 1] });
  probe.script(A.devno, { latencyMs: 1 });
  const sentB = probe.called(B.devno);
  const pending = attributor.attribute({ submitMs, map: null, paths: [A, B] });
  await sentB;
  await drain();
  clock.advance(TIMEOUT);
  const r = await pending;
  assert.equal(r.method, 'probe');
  assert.deepStrictEqual(suspectNames(r), ['dm-2']);
  assert.match(r.details.reason, /^2 paths show stuck I\/O/);

  probe.callsFor(B.devno)[0]!.reject(new Error('aborted'));
  await drain();
  probe.script(B.devno, { latencyMs: 1 });
  const r2 = await attributor.attribute({ submitMs, map: null, paths: [A, B] });
  assert.equal(r2.method, 'none', 'the counters alone name no path');
  assert.deepStrictEqual(suspectNames(r2), []);
  assert.match(r2.details.reason, /^2 paths show stuck I\/O.*every probe was fast/);
});

test('no baseline, a vanished path, no usable path', async () => {
  const fresh = new Attributor({ clock, probe: probe.read, probeTimeoutMs: TIMEOUT, sysfsRoot: fs.root });
  await fs.set(A.name, { inflight: [1, 0] });
  await fs.remove(B.name);
  probe.script(A.devno, { latencyMs: 1 }).script(B.devno, { error: new Error('ENOENT') });
  const r = await fresh.attribute({ submitMs: clock.now(), map: MAP, paths: [A, B] });
  assert.equal(r.details.paths[0]!.sysfs.kind, 'no-baseline', 'without history the counters cannot conclude');
  const b = r.details.paths[1]!.sysfs;
  assert.ok(b.kind === 'error' && b.code === 'ENOENT', JSON.stringify(b));
  assert.ok(r.details.map?.kind === 'counters' && r.details.map.heldAbovePaths === null);
  assert.deepStrictEqual(suspectNames(r), ['dm-2']);

  const none = await fresh.attribute({ submitMs: clock.now(), map: null, paths: [] });
  assert.equal(none.method, 'none');
  assert.equal(none.details.reason, 'the map has no usable path');
});

test('a probe that rejects after its deadline is handled (no unhandled rejection)', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => {
    unhandled.push(e);
  };
  process.on('unhandledRejection', onUnhandled);
  try {
    probe.script(B.devno, { latencyMs: 1 });
    const sentA = probe.called(A.devno);
    const pending = attributor.attribute({ submitMs: clock.now(), map: null, paths: [A, B] });
    const call = await sentA;
    await drain();
    clock.advance(TIMEOUT);
    await pending;
    call.reject(new Error('late failure'));
    for (let i = 0; i < 5; i++) await drain();
    assert.deepStrictEqual(unhandled, []);
    assert.equal(attributor.outstandingProbes().length, 0);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('the usable paths of a dm status are its A paths, in every group, each once', () => {
  const status = parseMultipathStatus('2 0 0 0 2 1 A 0 2 0 8:0 A 0 8:16 F 1 E 0 1 0 8:32 A 0 ');
  assert.deepStrictEqual(usablePathDevnos(status), ['8:0', '8:32']);
});

test('the sampler keeps `depth` snapshots per device and finds the last one before a time', async () => {
  const small = new CounterSampler({ clock, intervalMs: 100, depth: 3, devices: [A], sysfsRoot: fs.root });
  for (let i = 0; i < 5; i++) {
    await fs.complete(A.name, 1);
    await small.sampleNow();
    clock.advance(100);
  }
  // Rounds at 1010..1410; only the last three are kept.
  assert.equal(small.before(A.devno, 1209), undefined);
  assert.equal(small.before(A.devno, 1310)?.atMs, 1310);
  assert.equal(small.before(A.devno, 1399)?.completed, 104);
  assert.equal(small.latest(A.devno)?.completed, 105);
  small.setDevices([B]);
  assert.equal(small.latest(A.devno), undefined, 'a dropped device is forgotten');
});
