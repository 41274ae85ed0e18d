// The policy's invariants over random option sets and random sequences of
// observations and clock advances. The oracles here are kept apart from the
// policy's own bookkeeping: a set of the paths we failed, and the raw probe
// results per path since its last fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createPolicyState, decide, usablePaths, type Observation, type PathId, type PathStatus } from '../../lib/watchdog/policy';
import { resolvePolicyOptions } from '../../lib/watchdog/policy-options';

const POOL = ['8:0', '8:16', '8:32', '8:48'];
const TIMEOUT = 100;

const pathArb = fc.constantFrom(...POOL);
const statusArb = fc.constantFrom<PathStatus>('usable', 'failed');
// Mostly usable, so that there is something to fail.
const mostlyUsableArb = fc.oneof({ weight: 4, arbitrary: fc.constant<PathStatus>('usable') }, { weight: 1, arbitrary: statusArb });
const statusesArb = fc.dictionary(pathArb, mostlyUsableArb, { minKeys: 2, maxKeys: POOL.length });

const optionsArb = fc.record({
  timeoutMs: fc.constant(TIMEOUT),
  failAfter: fc.integer({ min: 1, max: 3 }),
  minUsablePaths: fc.integer({ min: 0, max: 2 }),
  reinstateAfter: fc.integer({ min: 1, max: 3 }),
  holdDownMs: fc.integer({ min: 1, max: 5000 }),
  probeIntervalMs: fc.integer({ min: 1, max: 500 }),
  flapWindowMs: fc.integer({ min: 1, max: 10_000 }),
  reinstateExternal: fc.boolean(),
  slowFactor: fc.option(fc.double({ min: 1.5, max: 10, noNaN: true }), { nil: null }),
  slowMinSamples: fc.integer({ min: 1, max: 20 }),
  slowMinMs: fc.integer({ min: 0, max: 50 }),
});

// Latencies straddle the timeout so that probes and completions are both
// fast and slow, mostly fast so that runs of fast probes happen.
const latencyArb = fc.oneof(
  { weight: 3, arbitrary: fc.double({ min: 0, max: 60, noNaN: true }) },
  { weight: 1, arbitrary: fc.double({ min: 60, max: 300, noNaN: true }) },
);

const stepArb: fc.Arbitrary<{ advance: number; obs: Observation<number> }> = fc.record({
  advance: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 500 }), fc.integer({ min: 500, max: 5000 })),
  obs: fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('late' as const), path: pathArb, lateByMs: fc.nat(1000), evidence: fc.nat() }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('completed' as const), path: pathArb, latencyMs: latencyArb }) },
    {
      weight: 8,
      arbitrary: fc.record({
        kind: fc.constant('probe' as const),
        path: pathArb,
        result: fc.oneof(fc.record({ latencyMs: latencyArb }), fc.record({ error: fc.constant('EIO') })),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('latency-window' as const),
        medians: fc.dictionary(pathArb, fc.record({ medianMs: latencyArb, samples: fc.nat(40) })),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('dm-status' as const), paths: statusesArb }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('action-failed' as const),
        path: pathArb,
        action: fc.constantFrom<'fail' | 'reinstate'>('fail', 'reinstate'),
        error: fc.constant('EINVAL'),
      }),
    },
  ),
});

test('property: policy invariants hold over random observations and clock advances', () => {
  fc.assert(
    fc.property(optionsArb, statusesArb, fc.array(stepArb, { minLength: 30, maxLength: 150 }), (input, initial, steps) => {
      const o = resolvePolicyOptions(input);
      let state = createPolicyState(initial);
      let now = 0;
      const ours = new Set<PathId>();
      // Probe results (true = slow by the plain timeout oracle) since each path was last taken out.
      const probes = new Map<PathId, boolean[]>();
      for (const [id, s] of Object.entries(initial)) if (s === 'failed') probes.set(id, []);

      for (const { advance, obs } of steps) {
        now += advance;
        const before = JSON.stringify(state);
        const prev = state;
        const out = decide(state, obs, now, o);
        assert.equal(JSON.stringify(prev), before, 'decide does not modify its input');
        state = out.state;
        assert.deepEqual(JSON.parse(JSON.stringify(state)), state, 'state is plain JSON data');

        if (obs.kind === 'probe' && prev.paths[obs.path]?.status === 'failed') {
          const slow = 'error' in obs.result || obs.result.latencyMs >= o.timeoutMs;
          probes.get(obs.path)?.push(slow);
        }

        const failed = out.decisions.filter((d) => d.kind === 'fail');
        for (const d of failed) {
          assert.equal(prev.paths[d.path]?.status, 'usable', `never fail ${d.path}, already failed or unknown`);
          assert.ok(!ours.has(d.path), `${d.path} failed twice without a reinstate`);
          assert.ok(d.holdDownUntil >= now + Math.min(o.holdDownMs, o.maxHoldDownMs));
          ours.add(d.path);
          probes.set(d.path, []);
        }
        if (failed.length > 0) {
          assert.ok(usablePaths(state) >= o.minUsablePaths, `our fails left ${usablePaths(state)} < ${o.minUsablePaths} usable`);
          assert.equal(usablePaths(state), usablePaths(prev) - failed.length);
        }

        for (const d of out.decisions.filter((x) => x.kind === 'reinstate')) {
          assert.ok(obs.kind === 'probe' && obs.path === d.path, 'reinstates come from a probe of that path');
          const p = prev.paths[d.path]!;
          assert.equal(p.status, 'failed');
          assert.ok(p.holdDownUntil === null || now >= p.holdDownUntil, 'not during hold-down');
          const recent = probes.get(d.path)!.slice(-o.reinstateAfter);
          assert.equal(recent.length, o.reinstateAfter, 'at least reinstateAfter probes since it went out');
          assert.ok(recent.every((slow) => !slow), `latest probes fast: ${JSON.stringify(recent)}`);
          assert.ok(p.failedBy === 'watchdog' || o.reinstateExternal);
          ours.delete(d.path);
        }

        if (obs.kind === 'dm-status') {
          for (const id of Object.keys(prev.paths)) {
            const now2 = obs.paths[id];
            if (now2 !== 'failed') ours.delete(id);
            if (now2 === 'failed' && prev.paths[id]!.status === 'usable') probes.set(id, []);
          }
          for (const [id, s] of Object.entries(obs.paths)) if (!(id in prev.paths) && s === 'failed') probes.set(id, []);
        }
        if (obs.kind === 'action-failed' && obs.action === 'fail') ours.delete(obs.path);
        if (obs.kind === 'action-failed' && obs.action === 'reinstate' && prev.paths[obs.path]?.status === 'usable') {
          ours.add(obs.path);
          probes.set(obs.path, []);
        }

        // The state agrees with the oracle on which paths we hold out.
        for (const [id, p] of Object.entries(state.paths)) assert.equal(p.failedBy === 'watchdog', ours.has(id), id);
        for (const id of ours) assert.ok(id in state.paths);
      }
    }),
    { numRuns: 300 },
  );
});
