// Passive mode on a fake sysfs tree and a fake clock: a stalled path is
// reported once it has made no progress for longer than the timeout, a
// progressing one never, at no fewer than 4 samples per timeout.
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeSysfs } from './helpers/fake-sysfs';
import { FakeProbe } from './helpers/fake-probe';
import { SyscallError } from '../../lib/errors';
import {
  Attributor,
  FakeClock,
  PassiveMonitor,
  createPolicyState,
  decide,
  readCounters,
  resolvePolicyOptions,
  type Attribution,
  type LateObservation,
  type PassiveEvidence,
  type PassiveOptions,
  type PathRef,
} from '../../lib/watchdog';

const A: PathRef = { devno: '254:1', name: 'dm-1' };
const B: PathRef = { devno: '254:2', name: 'dm-2' };
const MAP: PathRef = { devno: '254:0', name: 'dm-0' };
const TIMEOUT = 1000;
const STEP = TIMEOUT / 4;

let fs: FakeSysfs;
let clock: FakeClock;
let seen: LateObservation<PassiveEvidence>[];
let errors: { error: Error; device: PathRef | null }[];
let reads: { devno: string; atMs: number }[];

beforeEach(async () => {
  fs = await FakeSysfs.create();
  clock = new FakeClock(0);
  seen = [];
  errors = [];
  reads = [];
  for (const d of [A, B, MAP]) await fs.set(d.name, { reads: 50 });
});

afterEach(async () => {
  await fs.dispose();
});

function monitor(extra: Partial<PassiveOptions> = {}): PassiveMonitor {
  return new PassiveMonitor({
    clock,
    timeoutMs: TIMEOUT,
    paths: [A, B],
    read: (d) => {
      reads.push({ devno: d.devno, atMs: clock.now() });
      return readCounters(d.name, { sysfsRoot: fs.root });
    },
    onObservation: (obs) => seen.push(obs),
    onError: (error, device) => errors.push({ error, device }),
    ...extra,
  });
}

/** A map watch whose attribution names nothing and records each call's submitMs. */
function recordingMapWatch(calls: { submitMs: number }[]): NonNullable<PassiveOptions['mapWatch']> {
  return {
    map: MAP,
    attribute: (late) => {
      calls.push({ submitMs: late.submitMs });
      return Promise.resolve({ method: 'probe', suspects: [], details: { reason: 'test' } } as unknown as Attribution);
    },
  };
}

/** Advances one sample interval at a time, letting each round finish. */
async function run(m: PassiveMonitor, ms: number, between?: () => Promise<void>): Promise<void> {
  for (let t = 0; t < ms; t += STEP) {
    clock.advance(STEP);
    await m.settled();
    if (between) await between();
  }
}

test('a path in flight with no completions is reported after more than the timeout, once, and the policy fails it', async () => {
  await fs.set(A.name, { inflight: [1, 0] });
  const m = monitor();
  m.start();
  await m.settled();
  await run(m, TIMEOUT);
  assert.equal(seen.length, 0, 'exactly one timeout of stall is not more than the timeout');
  await run(m, STEP);
  assert.equal(seen.length, 1);
  const obs = seen[0]!;
  assert.equal(obs.path, A.devno);
  assert.equal(obs.lateByMs, STEP);
  assert.equal(obs.submitMs, 0);
  assert.deepStrictEqual(obs.evidence, { kind: 'passive-stall', inflight: { reads: 1, writes: 0 }, completed: 50, stallSinceMs: 0, stalledForMs: TIMEOUT + STEP, samples: 6 });

  await run(m, 3 * TIMEOUT);
  assert.equal(seen.length, 1, 'one report per stall');

  const out = decide(createPolicyState({ [A.devno]: 'usable', [B.devno]: 'usable' }), obs, clock.now(), resolvePolicyOptions({ timeoutMs: TIMEOUT }));
  const fail = out.decisions.find((d) => d.kind === 'fail');
  assert.ok(fail && fail.kind === 'fail' && fail.path === A.devno, JSON.stringify(out.decisions));
  assert.ok(fail.evidence.reason === 'timeout' && fail.evidence.trigger.evidence?.kind === 'passive-stall');

  // Progress ends the stall; a new stall is reported anew.
  await fs.complete(A.name, 1);
  await run(m, STEP);
  await run(m, TIMEOUT + STEP);
  assert.equal(seen.length, 2);
  m.stop();
  assert.equal(clock.pending, 0, 'no timer left armed');
  assert.deepStrictEqual(errors, []);
});

test('a path with I/O always in flight but completing is never reported', async () => {
  await fs.set(A.name, { inflight: [4, 1] });
  await fs.set(B.name, { inflight: [2, 0] });
  const m = monitor();
  m.start();
  await m.settled();
  await run(m, 5 * TIMEOUT, async () => {
    await fs.complete(A.name, 3);
    await fs.complete(B.name, 1);
  });
  m.stop();
  assert.deepStrictEqual(seen, []);
});

test('every device is read at least 4 times in any window of one timeout', async () => {
  const m = monitor();
  m.start();
  await m.settled();
  await run(m, 3 * TIMEOUT);
  m.stop();
  for (const d of [A, B]) {
    const at = reads.filter((r) => r.devno === d.devno).map((r) => r.atMs);
    assert.ok(at.length >= 12, `${d.name}: ${at.length} reads`);
    for (let from = 0; from + TIMEOUT <= 3 * TIMEOUT; from += STEP / 2) {
      const inWindow = at.filter((t) => t > from && t <= from + TIMEOUT).length;
      assert.ok(inWindow >= 4, `${d.name}: ${inWindow} reads in (${from}, ${from + TIMEOUT}]`);
    }
  }
  const readsAtStop = reads.length;
  clock.advance(10 * TIMEOUT);
  await m.settled();
  assert.equal(reads.length, readsAtStop, 'no sampling after stop');
});

test('a vanished path is reported through onError and sampling goes on', async () => {
  const m = monitor();
  m.start();
  await m.settled();
  await fs.remove(B.name);
  await fs.set(A.name, { inflight: [1, 0] });
  // The stall is first seen at 250 and is over the timeout at 1500.
  await run(m, TIMEOUT + 2 * STEP);
  m.stop();
  assert.ok(errors.length >= 4, `${errors.length} errors`);
  for (const { error, device } of errors) {
    assert.ok(error instanceof SyscallError && error.code === 'ENOENT', String(error));
    assert.deepStrictEqual(device, B);
  }
  assert.deepStrictEqual(seen.map((o) => o.path), [A.devno], 'the other path is still watched');
});

test('malformed counters are reported as errors, not thrown', async () => {
  const m = monitor();
  await fs.raw(A.name, 'inflight', 'garbage\n');
  m.start();
  await m.settled();
  m.stop();
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.error.name, 'SysfsFormatError');
});

test('the dm rig: paths read 0 0, the map holds the I/O; the stall goes to attribution and the probed suspect is reported', async () => {
  const probe = new FakeProbe().script(B.devno, { latencyMs: 2 });
  const attributor = new Attributor({ clock, probe: probe.read, probeTimeoutMs: TIMEOUT, sysfsRoot: fs.root });
  const calls: { submitMs: number }[] = [];
  const unattributed: Attribution[] = [];
  const m = monitor({
    mapWatch: {
      map: MAP,
      attribute: (late) => {
        calls.push({ submitMs: late.submitMs });
        return attributor.attribute(late);
      },
    },
    onUnattributed: (a) => unattributed.push(a),
  });
  m.start();
  await m.settled();
  clock.advance(STEP);
  await m.settled();
  await fs.set(MAP.name, { inflight: [1, 0] });
  const sentA = probe.called(A.devno);
  // The map stall starts at the next sample (500) and is over the timeout at 1750.
  for (let i = 0; i < 5; i++) {
    clock.advance(STEP);
    await m.settled();
  }
  assert.equal(calls.length, 0);
  clock.advance(STEP);
  await m.sampler.settled();
  assert.deepStrictEqual(calls, [{ submitMs: 2 * STEP }]);
  await sentA;
  await new Promise<void>((r) => setImmediate(r));
  clock.advance(TIMEOUT);
  await m.settled();
  m.stop();
  assert.deepStrictEqual(unattributed, []);
  assert.equal(seen.length, 1);
  const obs = seen[0]!;
  assert.equal(obs.path, A.devno);
  assert.equal(obs.submitMs, 2 * STEP);
  const e = obs.evidence;
  assert.ok(e?.kind === 'passive-map-stall', JSON.stringify(e));
  assert.equal(e.method, 'probe');
  assert.deepStrictEqual(e.map, MAP);
  // The paths read idle (the dm rig): no elimination, the silent path's own deadline names it.
  assert.ok(e.suspect.kind === 'probe' && e.suspect.verdict.kind === 'timeout', JSON.stringify(e.suspect));
  assert.equal(clock.pending, 0);
});

test('a busy map: one path idle with its I/O held above it, the other in flight and completing; the map stall still goes to attribution', async () => {
  // Found by the whole-loop property: a path merely in flight (every busy path
  // between two completions) counted as a path stall and hid the map's.
  const calls: { submitMs: number }[] = [];
  const m = monitor({ mapWatch: recordingMapWatch(calls) });
  m.start();
  await m.settled();
  let done = 50;
  await run(m, 8 * STEP, async () => {
    done += 4;
    // B completes between samples with one more always in flight; the map holds one more than its paths.
    await fs.set(B.name, { inflight: [1, 0], reads: done });
    await fs.set(MAP.name, { inflight: [2, 0], reads: done });
  });
  m.stop();
  assert.equal(calls.length, 1, 'the held-above stall was handed to attribution once');
  assert.deepStrictEqual(seen, [], 'B, in flight but completing, was never reported');
});

test('I/O stuck on a failed path counts in the paths\' sum: it is not a held-above stall, and a later one on a usable path is still handed to attribution', async () => {
  // C was failed with one I/O stuck on it: fail_path frees nothing. Before, C
  // was left out of the sum, the map read held above from the start, its
  // stall was handed to attribution once, and the later hidden stall never was.
  const C: PathRef = { devno: '254:3', name: 'dm-3' };
  await fs.set(C.name, { inflight: [1, 0], reads: 50 });
  const calls: { submitMs: number }[] = [];
  const m = monitor({ failedPaths: [C], mapWatch: recordingMapWatch(calls) });
  m.start();
  await m.settled();
  let done = 50;
  // B completes between samples with one more always in flight; the map holds B's and C's.
  const busy = (held: number) => async (): Promise<void> => {
    done += 4;
    await fs.set(B.name, { inflight: [1, 0], reads: done });
    await fs.set(MAP.name, { inflight: [2 + held, 0], reads: done });
  };
  await run(m, 8 * STEP, busy(0));
  assert.equal(calls.length, 0, 'nothing is held above the paths: the failed path holds it');
  const hiddenFrom = clock.now();
  // Now one more I/O is held above the paths (A reads idle), as a blocked session's would be.
  await run(m, 8 * STEP, busy(1));
  m.stop();
  assert.equal(calls.length, 1, `the hidden stall was handed to attribution once: ${JSON.stringify(calls)}`);
  assert.ok(calls[0]!.submitMs >= hiddenFrom, `from its own start (${calls[0]!.submitMs} >= ${hiddenFrom})`);
  assert.deepStrictEqual(seen, [], 'the failed path itself is never reported');
  assert.ok(reads.some((r) => r.devno === C.devno), 'the failed path is sampled');
});

test('setPaths: a path that was failed is sampled for the sum only, and its stall, if any, is forgotten', async () => {
  await fs.set(A.name, { inflight: [1, 0] });
  const m = monitor();
  m.start();
  await m.settled();
  await run(m, TIMEOUT / 2);
  m.setPaths([B], [A]);
  await run(m, 2 * TIMEOUT);
  assert.deepStrictEqual(seen, [], 'A, failed before its stall passed the timeout, is not reported');
  const atStop = reads.filter((r) => r.devno === A.devno).length;
  assert.ok(atStop > 4, 'A is still sampled after it was failed');
  m.setPaths([B]);
  await run(m, TIMEOUT);
  m.stop();
  assert.equal(reads.filter((r) => r.devno === A.devno).length, atStop, 'a path gone from the map is no longer sampled');
});

test('a map with progress and nothing held above the paths is not a stall', async () => {
  let attributed = 0;
  const m = monitor({
    mapWatch: {
      map: MAP,
      attribute: () => {
        attributed++;
        return Promise.reject(new Error('not expected'));
      },
    },
  });
  await fs.set(MAP.name, { inflight: [1, 0] });
  await fs.set(A.name, { inflight: [1, 0] });
  m.start();
  await m.settled();
  await run(m, 3 * TIMEOUT, async () => {
    await fs.complete(MAP.name, 1);
    await fs.complete(A.name, 1);
  });
  m.stop();
  assert.equal(attributed, 0);
  assert.deepStrictEqual(seen, []);
  assert.deepStrictEqual(errors, []);
});

test('options: fewer than 4 samples per timeout is refused', () => {
  assert.throws(() => monitor({ samplesPerTimeout: 3 }), RangeError);
  assert.throws(() => monitor({ timeoutMs: 0 }), RangeError);
  assert.equal(monitor({ samplesPerTimeout: 8 }).sampler.intervalMs, TIMEOUT / 8);
});

test('an observer that throws is reported through onError, and sampling goes on', async () => {
  await fs.set(A.name, { inflight: [1, 0] });
  const m = monitor({
    onObservation: () => {
      throw new Error('observer bug');
    },
  });
  m.start();
  await m.settled();
  await run(m, TIMEOUT + 2 * STEP);
  const readsBefore = reads.length;
  await run(m, STEP);
  m.stop();
  assert.deepStrictEqual(errors.map((e) => [e.error.message, e.device]), [['observer bug', null]]);
  assert.ok(reads.length > readsBefore, 'still sampling');
});
