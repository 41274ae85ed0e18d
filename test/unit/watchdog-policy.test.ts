// The policy's rules, one edge at a time. Time is a number the test moves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createPolicyState,
  decide,
  type Decision,
  type Observation,
  type PathId,
  type PathStatus,
  type PolicyState,
} from '../../lib/watchdog/policy';
import { resolvePolicyOptions, type PolicyOptions, type PolicyOptionsInput } from '../../lib/watchdog/policy-options';

const A = '8:0';
const B = '8:16';
const C = '8:32';

/** Feeds observations to the policy, keeping state and time. */
class Sim {
  state: PolicyState;
  now = 1000;
  readonly options: PolicyOptions;
  constructor(input: Partial<PolicyOptionsInput> = {}, paths: Record<PathId, PathStatus> = { [A]: 'usable', [B]: 'usable' }) {
    this.options = resolvePolicyOptions({ timeoutMs: 100, ...input });
    this.state = createPolicyState(paths);
  }
  see(obs: Observation<string>): Decision<string>[] {
    const out = decide(this.state, obs, this.now, this.options);
    this.state = out.state;
    return out.decisions;
  }
  late(path: PathId, evidence = 'sysfs'): Decision<string>[] {
    return this.see({ kind: 'late', path, lateByMs: 5, evidence });
  }
  done(path: PathId, latencyMs: number): Decision<string>[] {
    return this.see({ kind: 'completed', path, latencyMs });
  }
  probe(path: PathId, latencyMs: number): Decision<string>[] {
    return this.see({ kind: 'probe', path, result: { latencyMs } });
  }
  kinds(d: Decision<string>[]): string[] {
    return d.map((x) => (x.kind === 'ignore' ? `ignore:${x.why}` : x.kind));
  }
  path(id: PathId) {
    return this.state.paths[id]!;
  }
  /** Probes `path` fast at each scheduled time until reinstated; returns the probes it took. */
  probeUntilReinstated(path: PathId, latencyMs = 1): number {
    for (let n = 1; n < 100; n++) {
      this.now = Math.max(this.now, this.path(path).nextProbeAt!);
      if (this.probe(path, latencyMs).some((d) => d.kind === 'reinstate')) return n;
    }
    throw new Error('never reinstated');
  }
}

test('a late I/O fails its path at once with failAfter 1, passing the evidence through, and schedules a probe', () => {
  const sim = new Sim();
  const d = sim.see({ kind: 'late', path: A, lateByMs: 7, ioId: 42, submitMs: 880, evidence: 'inflight 1 0' });
  assert.deepEqual(sim.kinds(d), ['fail', 'probe']);
  const fail = d[0]!;
  assert.ok(fail.kind === 'fail' && fail.evidence.reason === 'timeout');
  assert.equal(fail.evidence.trigger.evidence, 'inflight 1 0');
  assert.equal(fail.evidence.trigger.ioId, 42);
  assert.equal(fail.faultSeenAt, sim.now);
  assert.equal(fail.holdDownUntil, sim.now + sim.options.holdDownMs);
  assert.deepEqual(d[1], { kind: 'probe', path: A, atMs: sim.now + sim.options.probeIntervalMs });
  assert.equal(sim.path(A).status, 'failed');
  assert.equal(sim.path(A).failedBy, 'watchdog');
});

test('late I/O on a failed path or an unknown path is ignored', () => {
  const sim = new Sim();
  sim.late(A);
  assert.deepEqual(sim.kinds(sim.late(A)), ['ignore:already-failed']);
  assert.deepEqual(sim.kinds(sim.late('9:9')), ['ignore:unknown-path']);
});

test('the last usable path is kept, announced once per streak, and failed only with minUsablePaths 0', () => {
  const sim = new Sim();
  sim.late(A);
  const kept = sim.late(B);
  assert.deepEqual(sim.kinds(kept), ['last-path-kept']);
  assert.ok(kept[0]!.kind === 'last-path-kept' && kept[0]!.usablePaths === 1);
  assert.deepEqual(sim.kinds(sim.late(B)), ['ignore:last-path-already-kept']);
  assert.equal(sim.path(B).status, 'usable');
  sim.done(B, 1);
  assert.deepEqual(sim.kinds(sim.late(B)), ['last-path-kept'], 'a new streak is announced again');

  const bare = new Sim({ minUsablePaths: 0 });
  bare.late(A);
  assert.deepEqual(bare.kinds(bare.late(B)), ['fail', 'probe']);
});

test('minUsablePaths 2 keeps two of three paths', () => {
  const sim = new Sim({ minUsablePaths: 2 }, { [A]: 'usable', [B]: 'usable', [C]: 'usable' });
  assert.deepEqual(sim.kinds(sim.late(A)), ['fail', 'probe']);
  assert.deepEqual(sim.kinds(sim.late(B)), ['last-path-kept']);
});

test('failAfter 3 counts consecutive late I/Os; a completion under the timeout resets, a slow one does not', () => {
  const sim = new Sim({ failAfter: 3 });
  assert.deepEqual(sim.kinds(sim.late(A)), ['ignore:below-fail-after']);
  assert.deepEqual(sim.kinds(sim.late(A)), ['ignore:below-fail-after']);
  sim.done(A, 99);
  assert.equal(sim.path(A).lateStreak, 0);
  sim.late(A);
  sim.late(A);
  sim.done(A, 100); // at the timeout: late itself, resets nothing
  sim.done(B, 1); // another path's completion says nothing about A
  const d = sim.late(A);
  assert.deepEqual(sim.kinds(d), ['fail', 'probe']);
  assert.ok(d[0]!.kind === 'fail' && d[0]!.evidence.reason === 'timeout' && d[0]!.evidence.lateStreak === 3);
});

test('a completion that changes nothing returns the very same state', () => {
  const sim = new Sim();
  const before = sim.state;
  assert.deepEqual(sim.done(A, 1), []);
  assert.equal(sim.state, before);
});

test('reinstate after reinstateAfter fast probes, not before, and never during hold-down', () => {
  const sim = new Sim({ reinstateAfter: 3, probeIntervalMs: 100, holdDownMs: 1000 });
  sim.late(A);
  const failedAt = sim.now;
  const held = sim.path(A).holdDownUntil!;
  for (let i = 0; i < 3; i++) {
    sim.now = sim.path(A).nextProbeAt!;
    assert.deepEqual(sim.kinds(sim.probe(A, 1)), ['probe'], `probe ${i + 1} during hold-down`);
  }
  assert.equal(sim.path(A).nextProbeAt, held, 'enough fast probes: the next one is at the end of hold-down');
  sim.now = held;
  const d = sim.probe(A, 1);
  assert.deepEqual(sim.kinds(d), ['reinstate']);
  assert.ok(d[0]!.kind === 'reinstate' && d[0]!.fastProbes === 4 && d[0]!.failedAt === failedAt);
  assert.equal(sim.path(A).status, 'usable');
  assert.equal(sim.path(A).nextProbeAt, null);

  const quick = new Sim({ reinstateAfter: 3, probeIntervalMs: 1000, holdDownMs: 100 });
  quick.late(A);
  assert.equal(quick.probeUntilReinstated(A), 3, 'hold-down over first: exactly reinstateAfter probes');
});

test('a slow or failed probe resets the fast count and backs the probe interval off up to its cap', () => {
  const sim = new Sim({ reinstateAfter: 3, probeIntervalMs: 100, maxProbeIntervalMs: 500, holdDownMs: 1 });
  sim.late(A);
  sim.now += 10; // past the hold-down: only the probes decide here
  sim.probe(A, 1);
  sim.probe(A, 1);
  assert.deepEqual(sim.kinds(sim.probe(A, 100)), ['probe'], 'a probe at the timeout is slow');
  assert.equal(sim.path(A).fastProbes, 0);
  sim.probe(A, 1);
  sim.probe(A, 1);
  assert.deepEqual(sim.kinds(sim.see({ kind: 'probe', path: A, result: { error: 'EIO' } })), ['probe']);
  assert.equal(sim.path(A).status, 'failed');
  const gaps: number[] = [];
  for (let i = 0; i < 5; i++) {
    const d = sim.probe(A, 5000);
    gaps.push((d[0] as { atMs: number }).atMs - sim.now);
  }
  assert.deepEqual(gaps, [400, 500, 500, 500, 500], 'the interval doubles with each slow probe in a row, capped');
  sim.probe(A, 1);
  assert.equal(sim.path(A).nextProbeAt! - sim.now, 100, 'a fast probe returns to the base interval');
  sim.probe(A, 1);
  assert.deepEqual(sim.kinds(sim.probe(A, 1)), ['reinstate']);
});

test('probes on a usable path or on a path failed by someone else are ignored by default', () => {
  const sim = new Sim({}, { [A]: 'usable', [B]: 'failed' });
  assert.deepEqual(sim.kinds(sim.probe(A, 1)), ['ignore:not-failed']);
  assert.deepEqual(sim.kinds(sim.probe(B, 1)), ['ignore:not-ours']);
  assert.deepEqual(sim.kinds(sim.probe(C, 1)), ['ignore:unknown-path']);
  assert.equal(sim.path(B).failedBy, 'external');
});

test('flap damping: a fail soon after reinstate doubles the hold-down, up to a cap; a calm path starts over', () => {
  const sim = new Sim({ holdDownMs: 1000, maxHoldDownMs: 5000, flapWindowMs: 60_000, probeIntervalMs: 100, reinstateAfter: 1 });
  const holds: number[] = [];
  for (let i = 0; i < 5; i++) {
    const d = sim.late(A);
    assert.ok(d[0]!.kind === 'fail');
    holds.push(d[0]!.holdDownUntil - sim.now);
    assert.equal(d[0]!.flapLevel, i);
    sim.probeUntilReinstated(A);
    sim.now += 10;
  }
  assert.deepEqual(holds, [1000, 2000, 4000, 5000, 5000]);
  sim.now += 60_000;
  const calm = sim.late(A);
  assert.ok(calm[0]!.kind === 'fail');
  assert.equal(calm[0]!.holdDownUntil - sim.now, 1000);
  assert.equal(sim.path(A).fails, 6);
});

test('dm status: an external reinstate cancels our probes and counts for flap damping; an external fail is noted', () => {
  const sim = new Sim({ holdDownMs: 1000 });
  sim.late(A);
  sim.now += 50;
  assert.deepEqual(sim.see({ kind: 'dm-status', paths: { [A]: 'usable', [B]: 'usable' } }), [{ kind: 'cancel-probe', path: A }]);
  assert.equal(sim.path(A).status, 'usable');
  assert.equal(sim.path(A).reinstatedAt, sim.now);
  const again = sim.late(A);
  assert.ok(again[0]!.kind === 'fail' && again[0]!.flapLevel === 1, 'failing again soon after is a flap');

  assert.deepEqual(sim.see({ kind: 'dm-status', paths: { [A]: 'failed', [B]: 'failed' } }), []);
  assert.equal(sim.path(B).failedBy, 'external');
  assert.equal(sim.path(A).failedBy, 'watchdog', 'still ours: unchanged');
});

test('dm status with reinstateExternal: a path failed by someone else is probed and reinstated without hold-down', () => {
  const sim = new Sim({ reinstateExternal: true, reinstateAfter: 2, probeIntervalMs: 100 });
  const d = sim.see({ kind: 'dm-status', paths: { [A]: 'usable', [B]: 'failed' } });
  assert.deepEqual(d, [{ kind: 'probe', path: B, atMs: sim.now + 100 }]);
  assert.equal(sim.probeUntilReinstated(B), 2);
});

test('a table reload adds paths as fresh and forgets removed ones', () => {
  const sim = new Sim({ failAfter: 2 });
  sim.late(A);
  const d = sim.see({ kind: 'dm-status', paths: { [B]: 'usable', [C]: 'usable' } });
  assert.deepEqual(d, [{ kind: 'forget', path: A }]);
  assert.deepEqual(Object.keys(sim.state.paths).sort(), [B, C]);
  assert.equal(sim.path(C).lateStreak, 0);
  assert.deepEqual(sim.kinds(sim.late(A)), ['ignore:unknown-path']);
});

test('a refused fail_path puts the path back as usable and cancels its probe', () => {
  const sim = new Sim();
  sim.late(A);
  const d = sim.see({ kind: 'action-failed', path: A, action: 'fail', error: 'EINVAL' });
  assert.deepEqual(d, [{ kind: 'cancel-probe', path: A }]);
  assert.equal(sim.path(A).status, 'usable');
  const r = new Sim({ reinstateAfter: 1, holdDownMs: 1 });
  r.late(A);
  r.now += 1000;
  r.probe(A, 1);
  assert.deepEqual(r.kinds(r.see({ kind: 'action-failed', path: A, action: 'reinstate', error: 'EIO' })), ['probe']);
  assert.equal(r.path(A).status, 'failed');
});

test('a fail refused at the last moment as the last path: usable again, the fail not counted, and the fault kept once', () => {
  const sim = new Sim();
  const first = sim.late(A);
  assert.ok(first[0]?.kind === 'fail' && first[0].alreadyKept === false, JSON.stringify(first));
  const d = sim.see({ kind: 'action-failed', path: A, action: 'fail', error: 'refused', lastPath: { reason: 'timeout' } });
  assert.deepEqual(d, [{ kind: 'cancel-probe', path: A }]);
  assert.equal(sim.path(A).status, 'usable');
  assert.equal(sim.path(A).fails, 0);
  assert.equal(sim.path(A).keptForTimeout, true);
  // The state still counts two usable paths, so the next late I/O tries again:
  // the decision says the fault was already reported as kept.
  const again = sim.late(A);
  assert.ok(again[0]?.kind === 'fail' && again[0].alreadyKept === true, JSON.stringify(again));
  // A completion under the timeout ends the fault: a later refusal is new.
  sim.see({ kind: 'action-failed', path: A, action: 'fail', error: 'refused', lastPath: { reason: 'timeout' } });
  sim.see({ kind: 'completed', path: A, latencyMs: 1 });
  const later = sim.late(A);
  assert.ok(later[0]?.kind === 'fail' && later[0].alreadyKept === false, JSON.stringify(later));
});

test('our fail landing late (multipathd\'s fail path after its checker reinstated the path) is ours: probed and reinstated by us', () => {
  for (const ours of [true, false]) {
    const sim = new Sim();
    sim.late(A);
    sim.see({ kind: 'dm-status', paths: { [A]: 'usable', [B]: 'usable' } });
    assert.equal(sim.path(A).status, 'usable');
    const d = sim.see({ kind: 'dm-status', paths: { [A]: 'failed', [B]: 'usable' }, ...(ours ? { ours: [A] } : {}) });
    assert.equal(sim.path(A).status, 'failed');
    assert.equal(sim.path(A).failedBy, ours ? 'watchdog' : 'external');
    assert.deepEqual(sim.kinds(d), ours ? ['probe'] : []);
  }
});

// ---- slowFactor, the outlier rule (issue 9 §2) ----

function window(medians: Record<PathId, [number, number]>): Observation<string> {
  const m: Record<PathId, { medianMs: number; samples: number }> = {};
  for (const [id, [medianMs, samples]] of Object.entries(medians)) m[id] = { medianMs, samples };
  return { kind: 'latency-window', medians: m };
}

const SLOW = { slowFactor: 5, slowMinSamples: 10, slowMinMs: 20 } as const;

test('slowFactor: a path whose median is slowFactor × the best usable one is failed with its evidence', () => {
  const sim = new Sim(SLOW, { [A]: 'usable', [B]: 'usable', [C]: 'usable' });
  const d = sim.see(window({ [A]: [1, 50], [B]: [100, 50], [C]: [2, 50] }));
  assert.deepEqual(sim.kinds(d), ['fail', 'probe']);
  const fail = d[0]!;
  assert.ok(fail.kind === 'fail' && fail.evidence.reason === 'slow');
  assert.deepEqual(fail.evidence, { reason: 'slow', medianMs: 100, samples: 50, bestPath: A, bestMedianMs: 1 });
  assert.equal(sim.path(B).status, 'failed');
  assert.equal(sim.path(A).medianMs, 1);
});

test('slowFactor: not judged with too few samples, all paths equally slow, one path only, or under the minimum latency', () => {
  const cases: [string, Record<PathId, PathStatus>, Record<PathId, [number, number]>][] = [
    ['too few samples on the slow path', { [A]: 'usable', [B]: 'usable' }, { [A]: [1, 50], [B]: [100, 9] }],
    ['too few samples on the best path', { [A]: 'usable', [B]: 'usable' }, { [A]: [1, 9], [B]: [100, 50] }],
    ['all equally slow', { [A]: 'usable', [B]: 'usable' }, { [A]: [300, 50], [B]: [300, 50] }],
    ['one path only', { [A]: 'usable' }, { [A]: [300, 50] }],
    ['one usable path, the fast one failed', { [A]: 'failed', [B]: 'usable' }, { [A]: [1, 50], [B]: [300, 50] }],
    ['under slowMinMs', { [A]: 'usable', [B]: 'usable' }, { [A]: [0.1, 50], [B]: [19, 50] }],
    ['under slowFactor', { [A]: 'usable', [B]: 'usable' }, { [A]: [10, 50], [B]: [49, 50] }],
  ];
  for (const [name, paths, medians] of cases) {
    const sim = new Sim(SLOW, paths);
    assert.deepEqual(sim.see(window(medians)), [], name);
    assert.deepEqual(Object.values(sim.state.paths).map((p) => p.status), Object.values(paths), name);
  }
  const off = new Sim({}, { [A]: 'usable', [B]: 'usable' });
  assert.deepEqual(off.see(window({ [A]: [1, 50], [B]: [1000, 50] })), [], 'slowFactor off');
});

test('slowFactor: the last path is kept (announced once while it stays slow), and several outliers go worst first', () => {
  const sim = new Sim({ ...SLOW, minUsablePaths: 2 });
  assert.deepEqual(sim.kinds(sim.see(window({ [A]: [1, 50], [B]: [100, 50] }))), ['last-path-kept']);
  assert.deepEqual(sim.kinds(sim.see(window({ [A]: [1, 50], [B]: [100, 50] }))), ['ignore:last-path-already-kept']);
  sim.see(window({ [A]: [1, 50], [B]: [2, 50] }));
  assert.deepEqual(sim.kinds(sim.see(window({ [A]: [1, 50], [B]: [100, 50] }))), ['last-path-kept'], 'a new bout is announced');

  const three = new Sim(SLOW, { [A]: 'usable', [B]: 'usable', [C]: 'usable' });
  const d = three.see(window({ [A]: [1, 50], [B]: [100, 50], [C]: [200, 50] }));
  assert.deepEqual(d.map((x) => `${x.kind}:${x.path}`), [`fail:${C}`, `probe:${C}`, `fail:${B}`, `probe:${B}`]);
  const kept = new Sim({ ...SLOW, minUsablePaths: 2 }, { [A]: 'usable', [B]: 'usable', [C]: 'usable' });
  const k = kept.see(window({ [A]: [1, 50], [B]: [100, 50], [C]: [200, 50] }));
  assert.deepEqual(k.map((x) => `${x.kind}:${x.path}`), [`fail:${C}`, `probe:${C}`, `last-path-kept:${B}`]);
});

test('slowFactor: recovery probes are judged by the same rule against the best usable path', () => {
  const sim = new Sim({ ...SLOW, reinstateAfter: 2, holdDownMs: 1, timeoutMs: 500 });
  sim.see(window({ [A]: [2, 50], [B]: [100, 50] }));
  assert.equal(sim.path(B).status, 'failed');
  sim.now += 10;
  for (let i = 0; i < 3; i++) assert.deepEqual(sim.kinds(sim.probe(B, 100)), ['probe'], 'still 50× the best: slow');
  assert.equal(sim.path(B).fastProbes, 0);
  sim.probe(B, 15); // 7.5× the best but under slowMinMs: fast
  assert.deepEqual(sim.kinds(sim.probe(B, 3)), ['reinstate']);
  assert.equal(sim.path(B).medianMs, null, 'the pre-fail median is dropped on reinstate');
});

test('duration options outside what a timer can keep are refused with a RangeError naming the option', () => {
  for (const [input, re] of [
    [{ timeoutMs: 1e-8 }, /^timeoutMs must be at least 1 ms, got 1e-8$/],
    [{ timeoutMs: 3_000_000_000 }, /^timeoutMs must be at most 2147483647 ms/],
    [{ timeoutMs: Number.NaN }, /^timeoutMs must be a finite number of ms/],
    [{ timeoutMs: 100, holdDownMs: 0.5 }, /^holdDownMs must be at least 1 ms/],
    [{ timeoutMs: 100, maxHoldDownMs: 2 ** 31 }, /^maxHoldDownMs must be at most/],
    [{ timeoutMs: 100, probeIntervalMs: Infinity }, /^probeIntervalMs must be a finite number/],
    [{ timeoutMs: 100, flapWindowMs: 0 }, /^flapWindowMs must be at least 1 ms/],
  ] as const) {
    assert.throws(() => resolvePolicyOptions(input as PolicyOptionsInput), (e: unknown) => e instanceof RangeError && re.test(e.message), JSON.stringify(input));
  }
  assert.equal(resolvePolicyOptions({ timeoutMs: 1, maxHoldDownMs: 2 ** 31 - 1 }).maxHoldDownMs, 2 ** 31 - 1);
});
