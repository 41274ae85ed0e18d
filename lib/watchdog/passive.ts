// Passive mode: watches I/O that other processes (a database, fio) send to
// the map, where we hold no submit stamps, only counters.
//
// Every path's counters are sampled `samplesPerTimeout` (>= 4) times per
// timeout. A path with I/O in flight whose completion count has not moved for
// longer than the timeout is stalled, which is the sysfs attribution rule
// itself ("in flight, no completion since"), and is reported as a `late`
// observation for the policy, once per stall. The stall is timed from the
// first sample that saw it, so it is reported between timeout and
// timeout + interval after it began.
//
// The dm fault rigs hold the stuck bio above the path device, so no path
// shows it (measured in the VM, "Where a stuck I/O shows in sysfs"). For them the map
// is watched too: a map with I/O in flight that either completes nothing or
// keeps I/O above the path queues (map in-flight > the paths' sum) at every
// sample for longer than the timeout, while no path has stalled past the
// timeout itself (that one the path rule reports), is handed to attribution
// (probes), and each suspect it names is reported. Busy paths between two
// completions do not count: on a loaded map they always have I/O in flight.
import type { Clock } from './clock';
import { CounterSampler, type CounterReader, type PathRef, type SampleRound, type TimedSnapshot } from './counter-sampler';
import type { Attribution, LateIoContext, SuspectEvidence } from './attribution';
import type { LateObservation } from './policy';
import { inflightTotal as total, type InflightCounts } from './sysfs-counters';
import { checkDuration } from '../check';

/** What the passive monitor saw, carried as a late observation's evidence. */
export type PassiveEvidence =
  | {
      readonly kind: 'passive-stall';
      /** In flight at the last sample. */
      readonly inflight: InflightCounts;
      /** The completion count that did not move. */
      readonly completed: number;
      /** First sample of the stall, clock ms. */
      readonly stallSinceMs: number;
      /** How long it has lasted at this sample, ms. */
      readonly stalledForMs: number;
      /** Samples that saw it. */
      readonly samples: number;
    }
  | {
      readonly kind: 'passive-map-stall';
      /** The map. */
      readonly map: PathRef;
      /** The map's in-flight at the last sample. */
      readonly inflight: InflightCounts;
      readonly stallSinceMs: number;
      readonly stalledForMs: number;
      readonly samples: number;
      /** How attribution found this path. */
      readonly method: Attribution['method'];
      /** Its evidence for this path. */
      readonly suspect: SuspectEvidence;
    };

/** The map side of passive mode: which map, and how to attribute its stalls. */
export interface PassiveMapWatch {
  /** The multipath map device. */
  readonly map: PathRef;
  /** Usually `attributor.attribute`; `submitMs` is the stall's first sample. */
  readonly attribute: (late: LateIoContext) => Promise<Attribution>;
}

/** Options for {@link PassiveMonitor}. */
export interface PassiveOptions {
  /** Timers and stamps. */
  readonly clock: Clock;
  /** No progress for longer than this is a stall, ms. */
  readonly timeoutMs: number;
  /** The map's usable paths (replace with setPaths on a dm status change). */
  readonly paths: readonly PathRef[];
  /** The map's failed paths: sampled only so that I/O still stuck on them counts in the paths' sum. */
  readonly failedPaths?: readonly PathRef[];
  /** Samples per timeout (default and minimum 4). */
  readonly samplesPerTimeout?: number;
  /** Watch the map itself too. */
  readonly mapWatch?: PassiveMapWatch;
  /** The counter reader; defaults to readCounters under `sysfsRoot`. */
  readonly read?: CounterReader;
  /** Where sysfs is, for the default reader. */
  readonly sysfsRoot?: string;
  /** Each stalled path, as a late observation for `decide()`. */
  readonly onObservation: (obs: LateObservation<PassiveEvidence>) => void;
  /** A device that could not be read (vanished, malformed), or a failed attribution. */
  readonly onError: (error: Error, device: PathRef | null) => void;
  /** A map stall that attribution could not pin on a path. */
  readonly onUnattributed?: (attribution: Attribution) => void;
}

interface Stall {
  readonly completed: number;
  readonly stallSinceMs: number | null;
  readonly samples: number;
  readonly reported: boolean;
}


// One sample's effect on a device's stall: `stalling` says there is work the
// device owes; `progressed` says it delivered since the previous sample.
function step(prev: Stall | undefined, atMs: number, completed: number, stalling: boolean, progressed: boolean): Stall {
  if (!stalling) return { completed, stallSinceMs: null, samples: 0, reported: false };
  if (!prev || progressed || prev.stallSinceMs === null) return { completed, stallSinceMs: atMs, samples: 1, reported: false };
  return { completed, stallSinceMs: prev.stallSinceMs, samples: prev.samples + 1, reported: prev.reported };
}

/** The passive watchdog sampler: reports stalled paths of a map it does not submit to. */
export class PassiveMonitor {
  readonly #o: PassiveOptions;
  readonly #sampler: CounterSampler;
  #paths: PathRef[];
  #failed: PathRef[];
  readonly #stalls = new Map<string, Stall>();
  #unsubscribe: (() => void) | null = null;
  readonly #pending = new Set<Promise<void>>();

  constructor(options: PassiveOptions) {
    checkDuration('timeoutMs', options.timeoutMs);
    const perTimeout = options.samplesPerTimeout ?? 4;
    if (!(perTimeout >= 4) || !Number.isFinite(perTimeout)) throw new RangeError(`samplesPerTimeout must be >= 4, got ${perTimeout}`);
    this.#o = options;
    this.#paths = [...options.paths];
    this.#failed = [...(options.failedPaths ?? [])];
    const intervalMs = options.timeoutMs / perTimeout;
    this.#sampler = new CounterSampler({
      clock: options.clock,
      intervalMs,
      // Enough history for a baseline one timeout back, plus slack.
      depth: Math.ceil(perTimeout) + 4,
      devices: this.#devices(),
      onListenerError: (error) => options.onError(error, null),
      ...(options.read ? { read: options.read } : {}),
      ...(options.sysfsRoot !== undefined ? { sysfsRoot: options.sysfsRoot } : {}),
    });
  }

  /** The sampler (its history serves as attribution's baselines). */
  get sampler(): CounterSampler {
    return this.#sampler;
  }

  /** True between start() and stop(). */
  get running(): boolean {
    return this.#unsubscribe !== null;
  }

  /** Starts sampling (first round now). Idempotent. */
  start(): void {
    if (this.#unsubscribe) return;
    this.#unsubscribe = this.#sampler.subscribe((round) => this.#onRound(round));
    this.#sampler.start();
  }

  /** Stops sampling; nothing is reported after this, and no timer stays armed. */
  stop(): void {
    this.#sampler.stop();
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    this.#stalls.clear();
  }

  /** Replaces the usable and failed paths (a dm status change); stalls of paths no longer usable are forgotten. */
  setPaths(paths: readonly PathRef[], failed: readonly PathRef[] = []): void {
    this.#paths = [...paths];
    this.#failed = [...failed];
    const map = this.#o.mapWatch?.map;
    const keep = new Set([...this.#paths, ...(map ? [map] : [])].map((d) => d.devno));
    for (const devno of this.#stalls.keys()) if (!keep.has(devno)) this.#stalls.delete(devno);
    this.#sampler.setDevices(this.#devices());
  }

  /** Resolves once the round under way and any attribution it started are done. */
  async settled(): Promise<void> {
    await this.#sampler.settled();
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }

  #devices(): PathRef[] {
    const map = this.#o.mapWatch?.map;
    return [...this.#paths, ...this.#failed, ...(map ? [map] : [])];
  }

  #onRound(round: SampleRound): void {
    if (!this.running) return;
    for (const { device, error } of round.errors) this.#o.onError(error, device);
    let anyPathStalled = false;
    let pathSum: number | null = 0;
    for (const path of this.#paths) {
      const snap = round.snapshots.get(path.devno);
      if (!snap) {
        pathSum = null;
        continue;
      }
      if (pathSum !== null) pathSum += total(snap.inflight);
      const prev = this.#stalls.get(path.devno);
      const s = step(prev, snap.atMs, snap.completed, total(snap.inflight) > 0, prev !== undefined && snap.completed !== prev.completed);
      this.#stalls.set(path.devno, s);
      // Stalled past the timeout: the path rule reports it, the map rule must
      // not as well. A path merely in flight (every busy path, between two
      // completions) is not: counting it hid a held-above stall on a busy map.
      if (s.stallSinceMs !== null && snap.atMs - s.stallSinceMs > this.#o.timeoutMs) anyPathStalled = true;
      this.#maybeReportPath(path, snap, s);
    }
    // fail_path frees nothing already on the path (drivers/md/dm-mpath.c), so
    // the map still counts that I/O: left out of the sum, it read as held
    // above the paths until it drained, and the map stall it made, reported
    // once, hid every later one.
    for (const path of this.#failed) {
      const snap = round.snapshots.get(path.devno);
      if (pathSum !== null) pathSum = snap ? pathSum + total(snap.inflight) : null;
    }
    const watch = this.#o.mapWatch;
    const mapSnap = watch && round.snapshots.get(watch.map.devno);
    if (watch && mapSnap) this.#onMapSample(watch, mapSnap, pathSum, anyPathStalled);
  }

  #maybeReportPath(path: PathRef, snap: TimedSnapshot, s: Stall): void {
    if (s.stallSinceMs === null || s.reported) return;
    const stalledForMs = snap.atMs - s.stallSinceMs;
    if (!(stalledForMs > this.#o.timeoutMs)) return;
    this.#stalls.set(path.devno, { ...s, reported: true });
    this.#o.onObservation({
      kind: 'late',
      path: path.devno,
      lateByMs: stalledForMs - this.#o.timeoutMs,
      submitMs: s.stallSinceMs,
      evidence: { kind: 'passive-stall', inflight: snap.inflight, completed: snap.completed, stallSinceMs: s.stallSinceMs, stalledForMs, samples: s.samples },
    });
  }

  #onMapSample(watch: PassiveMapWatch, snap: TimedSnapshot, pathSum: number | null, anyPathStalled: boolean): void {
    const key = watch.map.devno;
    const prev = this.#stalls.get(key);
    const heldAbove = pathSum !== null && total(snap.inflight) > pathSum;
    const progressed = prev !== undefined && snap.completed !== prev.completed && !heldAbove;
    const s = step(prev, snap.atMs, snap.completed, total(snap.inflight) > 0, progressed);
    this.#stalls.set(key, s);
    if (s.stallSinceMs === null || s.reported || anyPathStalled) return;
    const stalledForMs = snap.atMs - s.stallSinceMs;
    if (!(stalledForMs > this.#o.timeoutMs)) return;
    this.#stalls.set(key, { ...s, reported: true });
    const stall = { map: watch.map, inflight: snap.inflight, stallSinceMs: s.stallSinceMs, stalledForMs, samples: s.samples };
    // A throwing callback must not become an unhandled rejection.
    const job: Promise<void> = this.#attributeMap(watch, stall)
      .catch(() => undefined)
      .finally(() => this.#pending.delete(job));
    this.#pending.add(job);
  }

  async #attributeMap(watch: PassiveMapWatch, stall: Omit<Extract<PassiveEvidence, { kind: 'passive-map-stall' }>, 'kind' | 'method' | 'suspect'>): Promise<void> {
    let result: Attribution;
    try {
      result = await watch.attribute({ submitMs: stall.stallSinceMs, map: watch.map, paths: this.#paths });
    } catch (err) {
      if (this.running) this.#o.onError(err instanceof Error ? err : new Error(String(err)), watch.map);
      return;
    }
    if (!this.running) return;
    if (result.suspects.length === 0) {
      this.#o.onUnattributed?.(result);
      return;
    }
    for (const s of result.suspects) {
      this.#o.onObservation({
        kind: 'late',
        path: s.path.devno,
        lateByMs: stall.stalledForMs - this.#o.timeoutMs,
        submitMs: stall.stallSinceMs,
        evidence: { kind: 'passive-map-stall', ...stall, method: result.method, suspect: s.evidence },
      });
    }
  }
}
