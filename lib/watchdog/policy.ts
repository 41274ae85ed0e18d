// The policy: a pure function from (state, observation, now, options) to a
// new state and the decisions to carry out. It does no I/O and reads no clock,
// so every rule is tested by feeding observations; the state is plain JSON
// data, so it can be logged, inspected and compared.
//
// Rules, in short:
// - A late I/O on a usable path adds to its late streak; a completion under
//   the timeout clears it. At `failAfter` the path is failed, unless that
//   leaves fewer than `minUsablePaths` usable paths (then `last-path-kept`,
//   once per streak).
// - The slowFactor outlier rule is judged on `latency-window` observations
//   (the caller's sliding medians, sent on a tick, never per I/O) and fails
//   directly: the window already aggregates many samples, so `failAfter` does
//   not apply again; `minUsablePaths` and flap damping do.
// - A path the watchdog failed is held down (holdDownMs, doubled for each
//   fail within flapWindowMs of its last reinstate, capped) and probed; it is
//   reinstated on a fast probe that completes `reinstateAfter` fast probes in
//   a row, and only once the hold-down is over. Slow probes reset the count and
//   double the probe interval (capped).
// - dm status snapshots are the truth about which paths exist and are usable:
//   external fails and reinstates, added and removed paths update the state.
import type { MedianSample } from './latency';
import type { PolicyOptions } from './policy-options';

/** A path, as "maj:min". */
export type PathId = string;

/** Whether dm routes I/O to a path. */
export type PathStatus = 'usable' | 'failed';

/** The policy's knowledge of one path (plain data). */
export interface PathPolicyState {
  /** Usable or failed, as last seen in dm status or set by our own action. */
  readonly status: PathStatus;
  /** Who failed it, while failed. */
  readonly failedBy: 'watchdog' | 'external' | null;
  /** Consecutive late I/Os since the last completion under the timeout. */
  readonly lateStreak: number;
  /** When the current fault (late streak or slowness) was first seen. */
  readonly faultSeenAt: number | null;
  /** A last-path-kept decision was already given for the current late streak. */
  readonly keptForTimeout: boolean;
  /** A last-path-kept decision was already given while the path stays an outlier. */
  readonly keptForSlow: boolean;
  /** Times the watchdog failed this path. */
  readonly fails: number;
  /** Consecutive flaps: each doubles the hold-down. */
  readonly flapLevel: number;
  /** When the watchdog last failed it. */
  readonly failedAt: number | null;
  /** When it was last reinstated (by us or someone else). */
  readonly reinstatedAt: number | null;
  /** No reinstate before this time. */
  readonly holdDownUntil: number | null;
  /** Consecutive fast probes since the last slow one. */
  readonly fastProbes: number;
  /** Consecutive slow probes since the last fast one. */
  readonly slowProbes: number;
  /** When the next probe is due, while probing. */
  readonly nextProbeAt: number | null;
  /** Sliding median from the last latency window, ms. */
  readonly medianMs: number | null;
  /** Samples behind medianMs. */
  readonly medianSamples: number;
}

/** The policy state for one map (plain data, JSON round-trips). */
export interface PolicyState {
  /** Every path of the map, by "maj:min". */
  readonly paths: Readonly<Record<PathId, PathPolicyState>>;
}

/** An I/O on `path` passed its deadline (after attribution). */
export interface LateObservation<E = unknown> {
  readonly kind: 'late';
  readonly path: PathId;
  /** How far past its deadline, ms. */
  readonly lateByMs: number;
  /** The tracker's id of the I/O. */
  readonly ioId?: number;
  /** Submit stamp of the I/O, clock ms. */
  readonly submitMs?: number;
  /** Attribution evidence, passed through untouched to the decision. */
  readonly evidence?: E;
}

/** An I/O on `path` completed. */
export interface CompletedObservation {
  readonly kind: 'completed';
  readonly path: PathId;
  readonly latencyMs: number;
}

/** Sliding medians per path, sent on a tick for the slowFactor rule. */
export interface LatencyWindowObservation {
  readonly kind: 'latency-window';
  readonly medians: Readonly<Record<PathId, MedianSample>>;
}

/** The result of a direct probe read on a failed path. */
export interface ProbeObservation {
  readonly kind: 'probe';
  readonly path: PathId;
  readonly result: { readonly latencyMs: number } | { readonly error: string };
}

/** A dm status snapshot: every path of the map and its state. */
export interface DmStatusObservation {
  readonly kind: 'dm-status';
  readonly paths: Readonly<Record<PathId, PathStatus>>;
  /** Paths with a fail of ours still on its way (multipathd's `fail path`): seen failed, they are ours, not someone else's. */
  readonly ours?: readonly PathId[];
}

/** Carrying out a decision failed (the dm message was refused). */
export interface ActionFailedObservation {
  readonly kind: 'action-failed';
  readonly path: PathId;
  readonly action: 'fail' | 'reinstate';
  readonly error: string;
  /** The fail was refused at the last moment as the last path(s) (the status read just before it counted too few others active), for the fault of this kind. */
  readonly lastPath?: { readonly reason: FailEvidence['reason'] };
}

/** Everything the policy can be told. */
export type Observation<E = unknown> =
  | LateObservation<E>
  | CompletedObservation
  | LatencyWindowObservation
  | ProbeObservation
  | DmStatusObservation
  | ActionFailedObservation;

/** Why a path should go: late I/Os, or the outlier rule. */
export type FailEvidence<E = unknown> =
  | { readonly reason: 'timeout'; readonly lateStreak: number; readonly trigger: LateObservation<E> }
  | {
      readonly reason: 'slow';
      readonly medianMs: number;
      readonly samples: number;
      readonly bestPath: PathId;
      readonly bestMedianMs: number;
    };

/** Why an observation led to nothing. */
export type IgnoreReason =
  | 'unknown-path'
  | 'already-failed'
  | 'below-fail-after'
  | 'last-path-already-kept'
  | 'not-failed'
  | 'not-ours';

/** What the caller must do. */
export type Decision<E = unknown> =
  | {
      readonly kind: 'fail';
      readonly path: PathId;
      readonly evidence: FailEvidence<E>;
      readonly faultSeenAt: number;
      readonly holdDownUntil: number;
      readonly flapLevel: number;
      /** A last-path-kept was already given for this fault (a fail refused at the last moment need not report it again). */
      readonly alreadyKept: boolean;
    }
  | { readonly kind: 'reinstate'; readonly path: PathId; readonly fastProbes: number; readonly failedAt: number | null }
  | {
      readonly kind: 'last-path-kept';
      readonly path: PathId;
      readonly evidence: FailEvidence<E>;
      readonly faultSeenAt: number;
      readonly usablePaths: number;
    }
  | { readonly kind: 'probe'; readonly path: PathId; readonly atMs: number }
  | { readonly kind: 'cancel-probe'; readonly path: PathId }
  | { readonly kind: 'forget'; readonly path: PathId }
  | { readonly kind: 'ignore'; readonly path: PathId; readonly why: IgnoreReason };

/** The new state and what to do. */
export interface Outcome<E = unknown> {
  readonly state: PolicyState;
  readonly decisions: Decision<E>[];
}

function freshPath(status: PathStatus): PathPolicyState {
  return {
    status,
    failedBy: status === 'failed' ? 'external' : null,
    lateStreak: 0,
    faultSeenAt: null,
    keptForTimeout: false,
    keptForSlow: false,
    fails: 0,
    flapLevel: 0,
    failedAt: null,
    reinstatedAt: null,
    holdDownUntil: null,
    fastProbes: 0,
    slowProbes: 0,
    nextProbeAt: null,
    medianMs: null,
    medianSamples: 0,
  };
}

/** A state for a map whose paths are as given (failed ones count as failed by someone else). */
export function createPolicyState(paths: Readonly<Record<PathId, PathStatus>> = {}): PolicyState {
  const out: Record<PathId, PathPolicyState> = {};
  for (const [id, status] of Object.entries(paths)) out[id] = freshPath(status);
  return { paths: out };
}

/** Number of usable paths in a state. */
export function usablePaths(state: PolicyState): number {
  let n = 0;
  for (const p of Object.values(state.paths)) if (p.status === 'usable') n++;
  return n;
}

function patch(state: PolicyState, id: PathId, change: Partial<PathPolicyState>): PolicyState {
  return { paths: { ...state.paths, [id]: { ...state.paths[id]!, ...change } } };
}

function ignore<E>(state: PolicyState, path: PathId, why: IgnoreReason): Outcome<E> {
  return { state, decisions: [{ kind: 'ignore', path, why }] };
}

/** The fields that make a path usable again, whoever reinstated it. */
function usableAgain(now: number): Partial<PathPolicyState> {
  return {
    status: 'usable',
    failedBy: null,
    reinstatedAt: now,
    holdDownUntil: null,
    fastProbes: 0,
    slowProbes: 0,
    nextProbeAt: null,
    lateStreak: 0,
    faultSeenAt: null,
    keptForTimeout: false,
    keptForSlow: false,
    // The median from before the fail describes the fault, not the path now.
    medianMs: null,
    medianSamples: 0,
  };
}

/** Fails `id` if minUsablePaths allows, else keeps it once per fault. */
function tryFail<E>(state: PolicyState, id: PathId, evidence: FailEvidence<E>, now: number, o: PolicyOptions): Outcome<E> {
  const p = state.paths[id]!;
  const faultSeenAt = p.faultSeenAt ?? now;
  const usable = usablePaths(state);
  if (usable - 1 < o.minUsablePaths) {
    const flag = evidence.reason === 'timeout' ? 'keptForTimeout' : 'keptForSlow';
    if (p[flag]) return ignore(patch(state, id, { faultSeenAt }), id, 'last-path-already-kept');
    return {
      state: patch(state, id, { faultSeenAt, [flag]: true }),
      decisions: [{ kind: 'last-path-kept', path: id, evidence, faultSeenAt, usablePaths: usable }],
    };
  }
  const flapping = p.reinstatedAt !== null && now - p.reinstatedAt < o.flapWindowMs;
  // Bounded so that 2 ** flapLevel stays finite; the cap applies long before.
  const flapLevel = flapping ? Math.min(p.flapLevel + 1, 64) : 0;
  const holdDownUntil = now + Math.min(o.holdDownMs * 2 ** flapLevel, o.maxHoldDownMs);
  const nextProbeAt = now + o.probeIntervalMs;
  return {
    state: patch(state, id, {
      status: 'failed',
      failedBy: 'watchdog',
      lateStreak: 0,
      faultSeenAt: null,
      keptForTimeout: false,
      keptForSlow: false,
      fails: p.fails + 1,
      flapLevel,
      failedAt: now,
      holdDownUntil,
      fastProbes: 0,
      slowProbes: 0,
      nextProbeAt,
    }),
    decisions: [
      { kind: 'fail', path: id, evidence, faultSeenAt, holdDownUntil, flapLevel, alreadyKept: p[evidence.reason === 'timeout' ? 'keptForTimeout' : 'keptForSlow'] },
      { kind: 'probe', path: id, atMs: nextProbeAt },
    ],
  };
}

function onLate<E>(state: PolicyState, obs: LateObservation<E>, now: number, o: PolicyOptions): Outcome<E> {
  const p = state.paths[obs.path];
  if (!p) return ignore(state, obs.path, 'unknown-path');
  // I/O already stuck on a failed path stays stuck (fail_path does not free
  // it); it says nothing new.
  if (p.status === 'failed') return ignore(state, obs.path, 'already-failed');
  const lateStreak = p.lateStreak + 1;
  const next = patch(state, obs.path, { lateStreak, faultSeenAt: p.faultSeenAt ?? now });
  if (lateStreak < o.failAfter) return ignore(next, obs.path, 'below-fail-after');
  return tryFail(next, obs.path, { reason: 'timeout', lateStreak, trigger: obs }, now, o);
}

function onCompleted<E>(state: PolicyState, obs: CompletedObservation, o: PolicyOptions): Outcome<E> {
  const p = state.paths[obs.path];
  // The common case at high IOPS changes nothing: return the same state,
  // with no allocation beyond the empty decision list.
  if (!p || p.status !== 'usable' || obs.latencyMs >= o.timeoutMs) return { state, decisions: [] };
  if (p.lateStreak === 0 && !p.keptForTimeout) return { state, decisions: [] };
  return {
    state: patch(state, obs.path, { lateStreak: 0, keptForTimeout: false, faultSeenAt: p.keptForSlow ? p.faultSeenAt : null }),
    decisions: [],
  };
}

/** The usable path with the lowest median among those with enough samples. */
function bestUsable(state: PolicyState, o: PolicyOptions): { path: PathId; medianMs: number; judged: PathId[] } | null {
  let best: { path: PathId; medianMs: number } | null = null;
  const judged: PathId[] = [];
  for (const [id, p] of Object.entries(state.paths)) {
    if (p.status !== 'usable' || p.medianMs === null || p.medianSamples < o.slowMinSamples) continue;
    judged.push(id);
    if (best === null || p.medianMs < best.medianMs) best = { path: id, medianMs: p.medianMs };
  }
  return best && { ...best, judged };
}

function isOutlier(latencyMs: number, bestMedianMs: number, o: PolicyOptions): boolean {
  return o.slowFactor !== null && latencyMs >= o.slowMinMs && latencyMs >= o.slowFactor * bestMedianMs;
}

function onLatencyWindow<E>(state: PolicyState, obs: LatencyWindowObservation, now: number, o: PolicyOptions): Outcome<E> {
  const paths: Record<PathId, PathPolicyState> = { ...state.paths };
  for (const [id, m] of Object.entries(obs.medians)) {
    const p = paths[id];
    if (!p) continue;
    const known = m.samples > 0 && Number.isFinite(m.medianMs);
    paths[id] = { ...p, medianMs: known ? m.medianMs : null, medianSamples: known ? m.samples : 0 };
  }
  let out: Outcome<E> = { state: { paths }, decisions: [] };
  if (o.slowFactor === null) return out;
  const best = bestUsable(out.state, o);
  if (best === null) return out;
  const outliers: PathId[] = [];
  for (const id of best.judged) {
    const p = out.state.paths[id]!;
    if (id !== best.path && isOutlier(p.medianMs!, best.medianMs, o)) outliers.push(id);
    else if (p.keptForSlow) out = { ...out, state: patch(out.state, id, { keptForSlow: false }) };
  }
  // Worst first, so that if minUsablePaths stops us it is the worst that went.
  outliers.sort((a, b) => out.state.paths[b]!.medianMs! - out.state.paths[a]!.medianMs!);
  for (const id of outliers) {
    const p = out.state.paths[id]!;
    const evidence: FailEvidence<E> = {
      reason: 'slow',
      medianMs: p.medianMs!,
      samples: p.medianSamples,
      bestPath: best.path,
      bestMedianMs: best.medianMs,
    };
    const r = tryFail<E>(out.state, id, evidence, now, o);
    out = { state: r.state, decisions: [...out.decisions, ...r.decisions] };
  }
  return out;
}

/** A probe is slow if it failed, took the timeout, or is an outlier against the best usable path. */
function probeIsSlow(state: PolicyState, result: ProbeObservation['result'], o: PolicyOptions): boolean {
  if ('error' in result) return true;
  if (!(result.latencyMs < o.timeoutMs)) return true;
  const best = o.slowFactor === null ? null : bestUsable(state, o);
  return best !== null && isOutlier(result.latencyMs, best.medianMs, o);
}

function onProbe<E>(state: PolicyState, obs: ProbeObservation, now: number, o: PolicyOptions): Outcome<E> {
  const p = state.paths[obs.path];
  if (!p) return ignore(state, obs.path, 'unknown-path');
  if (p.status === 'usable') return ignore(state, obs.path, 'not-failed');
  if (p.failedBy !== 'watchdog' && !o.reinstateExternal) return ignore(state, obs.path, 'not-ours');
  if (probeIsSlow(state, obs.result, o)) {
    const slowProbes = Math.min(p.slowProbes + 1, 64);
    const atMs = now + Math.min(o.probeIntervalMs * 2 ** slowProbes, o.maxProbeIntervalMs);
    return {
      state: patch(state, obs.path, { fastProbes: 0, slowProbes, nextProbeAt: atMs }),
      decisions: [{ kind: 'probe', path: obs.path, atMs }],
    };
  }
  const fastProbes = p.fastProbes + 1;
  const heldUntil = p.holdDownUntil ?? -Infinity;
  if (fastProbes >= o.reinstateAfter && now >= heldUntil) {
    return {
      state: patch(state, obs.path, usableAgain(now)),
      decisions: [{ kind: 'reinstate', path: obs.path, fastProbes, failedAt: p.failedAt }],
    };
  }
  // Enough fast probes but still held down: judge again by a fresh probe
  // when the hold-down ends, not by ones taken before.
  const atMs = Math.max(now + o.probeIntervalMs, fastProbes >= o.reinstateAfter ? heldUntil : -Infinity);
  return {
    state: patch(state, obs.path, { fastProbes, slowProbes: 0, nextProbeAt: atMs }),
    decisions: [{ kind: 'probe', path: obs.path, atMs }],
  };
}

function onDmStatus<E>(state: PolicyState, obs: DmStatusObservation, now: number, o: PolicyOptions): Outcome<E> {
  const paths: Record<PathId, PathPolicyState> = {};
  const decisions: Decision<E>[] = [];
  for (const [id, status] of Object.entries(obs.paths)) {
    const p = state.paths[id];
    if (!p) {
      paths[id] = freshPath(status);
    } else if (p.status === status) {
      paths[id] = p;
    } else if (status === 'usable') {
      // Reinstated by someone else: believe it. If the path is still bad,
      // late I/O will fail it again, with flap damping counting from now.
      paths[id] = { ...p, ...usableAgain(now) };
      if (p.nextProbeAt !== null) decisions.push({ kind: 'cancel-probe', path: id });
    } else if (obs.ours?.includes(id)) {
      // Our own fail landing late, after someone reinstated the path: ours to
      // probe and reinstate (multipathd's `fail path` paused its checker).
      const nextProbeAt = now + o.probeIntervalMs;
      paths[id] = {
        ...p,
        status: 'failed',
        failedBy: 'watchdog',
        lateStreak: 0,
        faultSeenAt: null,
        failedAt: now,
        holdDownUntil: now + o.holdDownMs,
        fastProbes: 0,
        slowProbes: 0,
        nextProbeAt,
      };
      decisions.push({ kind: 'probe', path: id, atMs: nextProbeAt });
    } else {
      const nextProbeAt = o.reinstateExternal ? now + o.probeIntervalMs : null;
      paths[id] = {
        ...p,
        status: 'failed',
        failedBy: 'external',
        lateStreak: 0,
        faultSeenAt: null,
        keptForTimeout: false,
        keptForSlow: false,
        holdDownUntil: null,
        fastProbes: 0,
        slowProbes: 0,
        nextProbeAt,
      };
      if (nextProbeAt !== null) decisions.push({ kind: 'probe', path: id, atMs: nextProbeAt });
    }
  }
  for (const id of Object.keys(state.paths)) if (!(id in obs.paths)) decisions.push({ kind: 'forget', path: id });
  return { state: { paths }, decisions };
}

function onActionFailed<E>(state: PolicyState, obs: ActionFailedObservation, now: number, o: PolicyOptions): Outcome<E> {
  const p = state.paths[obs.path];
  if (!p) return { state, decisions: [] };
  if (obs.action === 'fail' && p.status === 'failed' && p.failedBy === 'watchdog') {
    // dm still routes to it; stop probing a path we never took out.
    const decisions: Decision<E>[] = p.nextProbeAt !== null ? [{ kind: 'cancel-probe', path: obs.path }] : [];
    const back: Partial<PathPolicyState> = { ...usableAgain(now), reinstatedAt: p.reinstatedAt };
    // Kept as the last path: the fail did not happen, and the fault is kept
    // once, as if this state had known the other paths were out.
    const kept: Partial<PathPolicyState> = obs.lastPath === undefined ? {}
      : { fails: Math.max(0, p.fails - 1), [obs.lastPath.reason === 'timeout' ? 'keptForTimeout' : 'keptForSlow']: true };
    return { state: patch(state, obs.path, { ...back, ...kept }), decisions };
  }
  if (obs.action === 'reinstate' && p.status === 'usable') {
    const nextProbeAt = now + o.probeIntervalMs;
    return {
      state: patch(state, obs.path, { status: 'failed', failedBy: 'watchdog', fastProbes: 0, slowProbes: 0, nextProbeAt }),
      decisions: [{ kind: 'probe', path: obs.path, atMs: nextProbeAt }],
    };
  }
  return { state, decisions: [] };
}

/**
 * The policy step: what `obs`, seen at `now` (clock ms), changes and what to
 * do about it. Pure: `state` is not modified, and the same inputs give the
 * same outcome. Apply every decision in order.
 */
export function decide<E = unknown>(state: PolicyState, obs: Observation<E>, now: number, options: PolicyOptions): Outcome<E> {
  switch (obs.kind) {
    case 'late':
      return onLate(state, obs, now, options);
    case 'completed':
      return onCompleted<E>(state, obs, options);
    case 'latency-window':
      return onLatencyWindow<E>(state, obs, now, options);
    case 'probe':
      return onProbe<E>(state, obs, now, options);
    case 'dm-status':
      return onDmStatus<E>(state, obs, now, options);
    case 'action-failed':
      return onActionFailed<E>(state, obs, now, options);
  }
}
