// Attribution: which path is a late I/O stuck on?
//
// First the counters (block/genhd.c, Documentation/block/stat.rst): a path
// with I/O in flight now and no completion since the late I/O was submitted
// is a suspect. The baseline is the last periodic snapshot taken before the
// submit (CounterSampler), so attribution costs nothing per I/O.
//
// The counters corroborate; they never decide alone. A healthy path that has
// just taken one I/O reads "in flight, no completion since" too, while a hung
// path can read idle: a bio held by a dm path device is not counted in its
// inflight, and a blocked iSCSI session requeues its requests out of the
// disk's counters. So every usable path gets a direct probe read with its own
// deadline, in parallel, and a path is named only on its own probe: one that
// misses its deadline, fails, or is still hung from an earlier attribution.
// Elimination (every other path answered fast, this one is still silent) may
// cut the wait short only for a path whose counters read stuck; any other
// silent path waits out its deadline, since a healthy but slower path would
// otherwise be named for I/O that is not on it. The map's own counters go
// into the details: map in-flight beyond the paths' sum is I/O held above the
// path queues, which is why empty path counters are not read as "healthy".
import type { Clock, TimerHandle } from './clock';
import type { CounterReader, PathRef } from './counter-sampler';
import { readCounters, inflightTotal as total, type CounterSnapshot, type InflightCounts } from './sysfs-counters';
import { ProbeRunner, describeError, isSuspectVerdict, type ProbeRead, type ProbeVerdict, type OutstandingProbe } from './probes';

/** Where the baselines come from: a CounterSampler, or anything with the same lookup. */
export interface SnapshotHistory {
  /** The last snapshot of `devno` whose read finished at or before `atMs`. */
  before(devno: string, atMs: number): (CounterSnapshot & { readonly atMs: number }) | undefined;
}

/** The late I/O and the map it went to. */
export interface LateIoContext {
  /** Its submit stamp, clock ms. */
  readonly submitMs: number;
  /** The multipath map device, for its own counters (null to skip them). */
  readonly map: PathRef | null;
  /** The map's usable paths, from its dm status. */
  readonly paths: readonly PathRef[];
  /** false: every path waits out its own probe deadline (no naming by elimination); default true. */
  readonly elimination?: boolean;
  /** Told of each path whose probe answers fast, as soon as it does (before the slower ones are in). */
  readonly onFast?: (path: PathRef) => void;
}

/** What a path's counters showed. */
export type SysfsView =
  | {
      readonly kind: 'counters';
      readonly inflight: InflightCounts;
      /** Completions between the baseline and now. */
      readonly completionsSince: number;
      /** Clock ms of the baseline (before the submit). */
      readonly baselineAtMs: number;
      /** Clock ms of the current read. */
      readonly sampledAtMs: number;
      /** stuck: in flight and no completion; progressing: completions; idle: nothing in flight, nothing done. */
      readonly reading: 'stuck' | 'progressing' | 'idle';
    }
  | { readonly kind: 'no-baseline'; readonly inflight: InflightCounts; readonly sampledAtMs: number }
  | { readonly kind: 'error'; readonly error: string; readonly code: string | null };

/** Why a path is a suspect. */
export type SuspectEvidence =
  | {
      readonly kind: 'sysfs';
      readonly inflight: InflightCounts;
      readonly completionsSince: number;
      readonly baselineAtMs: number;
      readonly sampledAtMs: number;
    }
  | { readonly kind: 'probe'; readonly verdict: ProbeVerdict; readonly sysfs: SysfsView };

/** A path the late I/O is probably stuck on. */
export interface Suspect {
  /** The path. */
  readonly path: PathRef;
  /** What was seen. */
  readonly evidence: SuspectEvidence;
}

/** Everything seen on one path. */
export interface PathView {
  /** The path. */
  readonly path: PathRef;
  /** Its counters. */
  readonly sysfs: SysfsView;
  /** Its probe verdict, when probes ran. */
  readonly probe: ProbeVerdict | null;
}

/** The map's own counters. */
export type MapView =
  | {
      readonly kind: 'counters';
      readonly inflight: InflightCounts;
      /** Completions on the map since the baseline, or null without one. */
      readonly completionsSince: number | null;
      /** Map in-flight minus the sum over paths (null if a path could not be read): > 0 is I/O held above the path queues. */
      readonly heldAbovePaths: number | null;
    }
  | { readonly kind: 'error'; readonly error: string; readonly code: string | null };

/** How the suspects were found: counters alone, probes, or not at all. */
export type AttributionMethod = 'sysfs' | 'probe' | 'none';

/** All the evidence, for the event log. */
export interface AttributionDetails {
  /** The late I/O's submit stamp. */
  readonly submitMs: number;
  /** Clock ms when attribution started and finished. */
  readonly startedAtMs: number;
  readonly finishedAtMs: number;
  /** One line on how the verdict was reached. */
  readonly reason: string;
  /** Per path. */
  readonly paths: readonly PathView[];
  /** The map, when asked for. */
  readonly map: MapView | null;
}

/** The result of one attribution. */
export interface Attribution {
  /** The suspect paths (empty when method is 'none'). */
  readonly suspects: readonly Suspect[];
  /** What found them. */
  readonly method: AttributionMethod;
  /** What was seen. */
  readonly details: AttributionDetails;
}

/** Options for {@link Attributor}. */
export interface AttributorOptions {
  /** Stamps and probe deadlines. */
  readonly clock: Clock;
  /** The direct read used as a probe. */
  readonly probe: ProbeRead;
  /** Each probe's deadline, ms (the watchdog's timeout is a good choice). */
  readonly probeTimeoutMs: number;
  /** Baselines; without one every attribution goes to probes. */
  readonly history?: SnapshotHistory;
  /** The counter reader; defaults to readCounters under `sysfsRoot`. */
  readonly read?: CounterReader;
  /** Where sysfs is, for the default reader. */
  readonly sysfsRoot?: string;
}


/** Finds the path a late I/O is stuck on; one per map, kept for its record of hung probes. */
export class Attributor {
  readonly #clock: Clock;
  readonly #history: SnapshotHistory | undefined;
  readonly #read: CounterReader;
  readonly #probes: ProbeRunner;
  readonly #probeTimeoutMs: number;

  constructor(options: AttributorOptions) {
    this.#clock = options.clock;
    this.#history = options.history;
    const sysfsRoot = options.sysfsRoot;
    this.#read = options.read ?? ((d) => readCounters(d.name, sysfsRoot === undefined ? {} : { sysfsRoot }));
    this.#probes = new ProbeRunner(options.clock, options.probe, options.probeTimeoutMs);
    this.#probeTimeoutMs = options.probeTimeoutMs;
  }

  /** Probes sent and not settled, hung ones included. */
  outstandingProbes(): OutstandingProbe[] {
    return this.#probes.outstanding();
  }

  /** Probes sent so far. */
  get probesIssued(): number {
    return this.#probes.issued;
  }

  /**
   * Probe verdicts for every path, cut short by elimination: once all paths but
   * one answered fast and that one, whose counters read stuck, is still silent
   * well past them (4x the slowest fast answer, and at least a quarter of the
   * probe deadline), it is named without waiting out the whole deadline. Its
   * probe stays on record, so a later attribution sees it hung.
   */
  #verdicts(paths: readonly PathRef[], corroborated: readonly boolean[], onFast?: (path: PathRef) => void): Promise<ProbeVerdict[]> {
    const pending = paths.map((p) => this.#probes.verdict(p));
    if (onFast) {
      // A listener's throw is its own bug: it must not cut the attribution short.
      pending.forEach((v, i) => void v.then((r) => { if (r.kind === 'fast') onFast(paths[i] as PathRef); }).catch((e: unknown) => queueMicrotask(() => { throw e; })));
    }
    if (paths.length < 2) return Promise.all(pending);
    return new Promise<ProbeVerdict[]>((resolve) => {
      const results: (ProbeVerdict | undefined)[] = paths.map(() => undefined);
      let timer: TimerHandle | null = null;
      let done = false;
      let slowestFastMs = 0;
      let armedAt = 0;
      const finish = (): void => {
        if (done) return;
        done = true;
        if (timer) this.#clock.clearTimer(timer);
        const waitedMs = this.#clock.now() - armedAt;
        resolve(results.map((r) => r ?? { kind: 'outlasted', waitedMs, slowestFastMs }));
      };
      pending.forEach((p, i) => {
        void p.then((v) => {
          results[i] = v;
          const open = results.filter((r) => r === undefined).length;
          if (open === 0) return finish();
          if (open !== 1 || timer !== null || !results.every((r) => r === undefined || r.kind === 'fast')) return;
          // Uncorroborated, the silent path waits out its own deadline.
          if (!corroborated[results.findIndex((r) => r === undefined)]) return;
          slowestFastMs = Math.max(...results.map((r) => (r?.kind === 'fast' ? r.latencyMs : 0)));
          armedAt = this.#clock.now();
          timer = this.#clock.setTimer(armedAt + Math.max(4 * slowestFastMs, this.#probeTimeoutMs / 4), finish);
        });
      });
    });
  }

  /** Attributes one late I/O. Never rejects for a path that cannot be read or probed: that is evidence too. */
  async attribute(late: LateIoContext): Promise<Attribution> {
    const startedAtMs = this.#clock.now();
    const devices = late.map ? [...late.paths, late.map] : [...late.paths];
    const reads = await Promise.allSettled(devices.map(async (d) => ({ snap: await this.#read(d), atMs: this.#clock.now() })));
    const views = late.paths.map((path, i) => this.#sysfsView(path, reads[i]!, late.submitMs));
    const map = late.map ? this.#mapView(late.map, reads[late.paths.length]!, views, late.submitMs) : null;

    const finish = (suspects: Suspect[], method: AttributionMethod, reason: string, paths: readonly PathView[]): Attribution => ({
      suspects,
      method,
      details: { submitMs: late.submitMs, startedAtMs, finishedAtMs: this.#clock.now(), reason, paths, map },
    });

    const isStuck = views.map((v) => v.sysfs.kind === 'counters' && v.sysfs.reading === 'stuck');
    const stuck = isStuck.filter(Boolean).length;
    if (late.paths.length === 0) return finish([], 'none', 'the map has no usable path', views);

    const verdicts = await this.#verdicts(late.paths, late.elimination === false ? isStuck.map(() => false) : isStuck, late.onFast);
    const probed = views.map((v, i) => ({ ...v, probe: verdicts[i]! }));
    const probeSuspects = probed
      .filter((v) => isSuspectVerdict(v.probe))
      .map((v): Suspect => ({ path: v.path, evidence: { kind: 'probe', verdict: v.probe, sysfs: v.sysfs } }));
    const why = stuck === 0 ? 'no path shows stuck I/O in its counters' : `${stuck} path${stuck === 1 ? ' shows' : 's show'} stuck I/O in the counters`;
    const held = map?.kind === 'counters' && map.heldAbovePaths !== null && map.heldAbovePaths > 0 ? ` (map holds ${map.heldAbovePaths} I/O above the path queues)` : '';
    if (probeSuspects.length > 0) return finish(probeSuspects, 'probe', `${why}${held}; probes name ${probeSuspects.length}`, probed);
    // Every probe was fast: the counters alone name no path.
    return finish([], 'none', `${why}${held}; every probe was fast`, probed);
  }

  #sysfsView(path: PathRef, read: PromiseSettledResult<{ snap: CounterSnapshot; atMs: number }>, submitMs: number): PathView {
    if (read.status === 'rejected') return { path, sysfs: { kind: 'error', ...describeError(read.reason) }, probe: null };
    const { snap, atMs: sampledAtMs } = read.value;
    const base = this.#history?.before(path.devno, submitMs);
    if (!base) return { path, sysfs: { kind: 'no-baseline', inflight: snap.inflight, sampledAtMs }, probe: null };
    const completionsSince = snap.completed - base.completed;
    const reading = completionsSince > 0 ? 'progressing' : total(snap.inflight) > 0 ? 'stuck' : 'idle';
    return { path, sysfs: { kind: 'counters', inflight: snap.inflight, completionsSince, baselineAtMs: base.atMs, sampledAtMs, reading }, probe: null };
  }

  #mapView(map: PathRef, read: PromiseSettledResult<{ snap: CounterSnapshot; atMs: number }>, paths: readonly PathView[], submitMs: number): MapView {
    if (read.status === 'rejected') return { kind: 'error', ...describeError(read.reason) };
    const { snap } = read.value;
    const base = this.#history?.before(map.devno, submitMs);
    let sum: number | null = 0;
    for (const v of paths) sum = v.sysfs.kind === 'error' || sum === null ? null : sum + total(v.sysfs.inflight);
    return {
      kind: 'counters',
      inflight: snap.inflight,
      completionsSince: base ? snap.completed - base.completed : null,
      heldAbovePaths: sum === null ? null : total(snap.inflight) - sum,
    };
  }
}
