// The policy's knobs, their defaults, and the checks that turn bad input into
// a clear error before anything is decided with it.

import { checkDuration, checkInteger } from '../check';

/** Every policy option, resolved (see {@link resolvePolicyOptions} for defaults). */
export interface PolicyOptions {
  /** An I/O in flight longer than this is late; a probe this slow is slow. */
  readonly timeoutMs: number;
  /** Consecutive late I/Os on a path before it is failed. */
  readonly failAfter: number;
  /** Never fail a path if that leaves fewer usable paths than this (0 allows failing the last). */
  readonly minUsablePaths: number;
  /** Hold-down after the watchdog fails a path: no reinstate before it ends. */
  readonly holdDownMs: number;
  /** Cap of the hold-down as it doubles for a flapping path. */
  readonly maxHoldDownMs: number;
  /** A fail within this long of the path's last reinstate is a flap and doubles its hold-down. */
  readonly flapWindowMs: number;
  /** Interval between probes of a failed path while they are fast. */
  readonly probeIntervalMs: number;
  /** Cap of the probe interval as it doubles with each consecutive slow probe. */
  readonly maxProbeIntervalMs: number;
  /** Consecutive fast probes needed to reinstate a path. */
  readonly reinstateAfter: number;
  /** Also probe and reinstate paths failed by someone else (multipathd, an admin). */
  readonly reinstateExternal: boolean;
  /** Outlier rule: fail a path whose median is at least this many times the best usable path's (null: off). */
  readonly slowFactor: number | null;
  /** Outlier rule: samples a path's window needs before it is judged or used as the best. */
  readonly slowMinSamples: number;
  /** Outlier rule: a median (or probe) under this many ms is never slow. */
  readonly slowMinMs: number;
}

/** What a caller passes: timeoutMs, and any option to override. */
export type PolicyOptionsInput = { readonly timeoutMs: number } & Partial<Omit<PolicyOptions, 'timeoutMs'>>;

/** Fills in defaults and validates; throws RangeError naming the bad option. */
export function resolvePolicyOptions(input: PolicyOptionsInput): PolicyOptions {
  const timeoutMs = checkDuration('timeoutMs', input.timeoutMs);
  const holdDownMs = checkDuration('holdDownMs', input.holdDownMs ?? 2_000);
  const maxHoldDownMs = checkDuration('maxHoldDownMs', input.maxHoldDownMs ?? 300_000);
  if (maxHoldDownMs < holdDownMs) throw new RangeError(`maxHoldDownMs (${maxHoldDownMs}) must be >= holdDownMs (${holdDownMs})`);
  const probeIntervalMs = checkDuration('probeIntervalMs', input.probeIntervalMs ?? 1_000);
  const maxProbeIntervalMs = checkDuration('maxProbeIntervalMs', input.maxProbeIntervalMs ?? 30_000);
  if (maxProbeIntervalMs < probeIntervalMs) {
    throw new RangeError(`maxProbeIntervalMs (${maxProbeIntervalMs}) must be >= probeIntervalMs (${probeIntervalMs})`);
  }
  const slowFactor = input.slowFactor ?? null;
  if (slowFactor !== null && !(slowFactor > 1 && Number.isFinite(slowFactor))) {
    throw new RangeError(`slowFactor must be a finite number > 1 (or null for off), got ${slowFactor}`);
  }
  const slowMinMs = input.slowMinMs ?? 20;
  if (!(slowMinMs >= 0) || !Number.isFinite(slowMinMs)) throw new RangeError(`slowMinMs must be a finite number >= 0, got ${slowMinMs}`);
  return {
    timeoutMs,
    failAfter: checkInteger('failAfter', input.failAfter ?? 1, 1),
    minUsablePaths: checkInteger('minUsablePaths', input.minUsablePaths ?? 1, 0),
    holdDownMs,
    maxHoldDownMs,
    flapWindowMs: checkDuration('flapWindowMs', input.flapWindowMs ?? 60_000),
    probeIntervalMs,
    maxProbeIntervalMs,
    reinstateAfter: checkInteger('reinstateAfter', input.reinstateAfter ?? 3, 1),
    reinstateExternal: input.reinstateExternal ?? false,
    slowFactor,
    slowMinSamples: checkInteger('slowMinSamples', input.slowMinSamples ?? 16, 1),
    slowMinMs,
  };
}
