// The Watchdog: ties the in-flight tracker, attribution, the policy, the path
// actions and recovery probes to one multipath map. It makes no decision of
// its own: every observation goes through decide(), and it carries out what
// comes back.
import { EventEmitter } from 'node:events';
import { DeviceMapper } from '../dm/control';
import { DmError } from '../dm/errors';
import { DirectDevice, type EngineChoice, type IoResult } from '../io';
import { LastPathError, MultipathMap } from '../multipath/map';
import { resolveBlockDevice } from '../multipath/paths';
import type { MultipathStatus } from '../multipath/status';
import { DryRunActions, SupersededError, type PathActions } from './actions';
import { chooseActions, type ActionsPreference } from '../multipathd/actions';
import { Attributor, type Attribution } from './attribution';
import { SystemClock, type Clock, type TimerHandle } from './clock';
import { CounterSampler, type CounterReader, type PathRef, type SampleRound } from './counter-sampler';
import { serviceTimeMs } from './sysfs-counters';
import type { EventPath, LateEvidence, WatchdogEvents } from './events';
import { LatencyBook } from './latency';
import { PassiveMonitor } from './passive';
import { createPolicyState, decide, type Decision, type Observation, type PathId, type PathStatus, type PolicyState } from './policy';
import { resolvePolicyOptions, type PolicyOptions, type PolicyOptionsInput } from './policy-options';
import { PathProbeReader } from './probe-reader';
import { ProbeRunner, type ProbeRead } from './probes';
import { TimedDevice, type TimedDeviceStats, type TimedIoData, type TimedIoOptions, type TimedIoResult } from './timed-device';
import type { LateIo } from './tracker';

// What #act does when a fail is refused at the last moment as the last path.
interface Refusal {
  readonly reason: 'timeout' | 'slow';
  readonly alreadyKept: boolean;
  readonly report: (e: LastPathError) => void;
}

/** active: time our own I/O; passive: watch others' I/O through sysfs; both. */
export type WatchdogMode = 'active' | 'passive' | 'both';

/** Options of a Watchdog: the map, the timeout, and any policy option. */
export interface WatchdogOptions extends Omit<PolicyOptionsInput, 'timeoutMs'> {
  /** dm name of the multipath map. */
  map: string;
  /** An I/O in flight longer than this is late, ms. */
  timeoutMs: number;
  /** Default 'active'. */
  mode?: WatchdogMode;
  /** Re-issue a late read, straight to a path whose probe just answered fast, or through the map once a path is failed; the first completion wins. */
  hedgeReads?: boolean;
  /** Decide and report, change nothing. */
  dryRun?: boolean;
  /** How fails and reinstates are carried out: an implementation, or 'auto' (default: multipathd's `fail path` when it manages the map, else dm messages), 'dm' or 'multipathd'. */
  actions?: PathActions | ActionsPreference;
  /** Queue depth of the map device (default 32). */
  queueDepth?: number;
  /** I/O engine (default 'auto'). */
  engine?: EngineChoice;
  /** The dm client (default: a new one). */
  dm?: DeviceMapper;
  /** Clock (default: CLOCK_MONOTONIC). */
  clock?: Clock;
  /** Where sysfs is (default /sys). */
  sysfsRoot?: string;
  /** Where device nodes are (default /dev). */
  devDir?: string;
}

/** Per-call options of read and write (a signal: see {@link TimedIoOptions}). */
export type WatchdogIoOptions = TimedIoOptions;

/** A finished I/O through the watchdog: latency, late, hedged. */
export type WatchdogIoResult = TimedIoResult;

/** The last action on a path. */
export interface PathAction {
  action: 'fail' | 'reinstate';
  /** Clock ms. */
  atMs: number;
  ok: boolean;
  error?: string;
}

/** One path in stats(). */
export interface PathStats extends EventPath {
  /** usable or failed. */
  state: PathStatus;
  /** Who failed it, while failed. */
  failedBy: 'watchdog' | 'external' | null;
  /** Requests in flight on the path device (sysfs inflight), at the last sample. */
  inflight: number | null;
  /** Latency from sysfs (ticks per completion each sample) and probes, ms. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Samples behind the latency figures. */
  samples: number;
  /** Times the watchdog failed it. */
  failures: number;
  /** The last fail or reinstate sent for it. */
  lastAction: PathAction | null;
}

/** What stats() returns: the map's own I/O figures (all zero in passive mode) and each path's. */
export interface WatchdogStats extends TimedDeviceStats {
  map: string;
  mode: WatchdogMode;
  running: boolean;
  paths: PathStats[];
}

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

/**
 * @internal Stand-ins for the path devices, for tests of the whole decision
 * loop on a fake dm: the probe read and a hedge's direct read of a path
 * (default: O_DIRECT reads of the path devices through the addon's engine),
 * and the counter read (default: sysfs).
 */
export interface WatchdogDevices {
  readonly probe?: ProbeRead;
  readonly hedgeRead?: (path: PathRef, buf: Buffer, offset: number) => Promise<IoResult>;
  readonly read?: CounterReader;
}

/** stats() of a watchdog that does no I/O of its own (passive), or before start. */
const NO_IO: TimedDeviceStats = { inflight: 0, late: 0, queued: 0, completed: 0, p50Ms: NaN, p99Ms: NaN, maxMs: 0, hedged: 0 };

// `p`, or `signal`'s reason once it aborts first; the listener goes with `p`.
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function errorOf(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/** A per-I/O latency watchdog on one dm-multipath map. */
export class Watchdog extends EventEmitter<WatchdogEvents> {
  /** The map's dm name. */
  readonly map: string;
  /** The mode it runs in. */
  readonly mode: WatchdogMode;
  readonly #o: WatchdogOptions;
  readonly #opts: PolicyOptions;
  readonly #clock: Clock;
  readonly #dm: DeviceMapper;
  readonly #sysfs: { sysfsRoot?: string };
  readonly #abort = new AbortController();
  readonly #book = new LatencyBook();
  readonly #probeReader: PathProbeReader;
  readonly #probe: ProbeRead;
  // Hedged reads sent straight to a path: their own devices, so a burst of
  // them never queues a probe behind it.
  readonly #pathReader: PathProbeReader;
  readonly #hedgeRead: NonNullable<WatchdogDevices['hedgeRead']>;
  readonly #counters: { read?: CounterReader };
  readonly #probeTimers = new Map<PathId, TimerHandle>();
  readonly #lastAction = new Map<PathId, PathAction>();
  readonly #tasks = new Set<Promise<unknown>>();
  #state: State = 'new';
  #starting: Promise<void> | undefined;
  #stopped: Promise<void> | undefined;
  #mp: MultipathMap | undefined;
  #mapRef: PathRef | undefined;
  #io: TimedDevice | undefined;
  #actions: PathActions | undefined;
  #policy: PolicyState = createPolicyState();
  #paths = new Map<PathId, PathRef>();
  #attributor: Attributor | undefined;
  #recovery: ProbeRunner | undefined;
  #sampler: CounterSampler | undefined;
  #passive: PassiveMonitor | undefined;
  #windowTimer: TimerHandle | undefined;
  #actionGen = 0;
  // Our actions running, per path, and the #actionGen at each path's latest
  // start: a dm status read around them may predate them, for those paths only.
  readonly #acting = new Map<PathId, number>();
  readonly #actedAt = new Map<PathId, number>();
  // Clock ms when a path last went from usable to failed (our fail, or one
  // seen in dm status); null while none has.
  #lastLossMs: number | null = null;
  // Paths with a stick half (multipathd's `fail path`) of ours on its way; an
  // entry stays until a status read after it ended has been applied, since
  // its landing shows in dm status a moment after the reply.
  readonly #sticking = new Map<PathId, { ended: boolean }>();
  #refreshing = false;
  #refreshAgain = false;

  constructor(options: WatchdogOptions, devices: WatchdogDevices = {}) {
    super();
    const { map, timeoutMs, mode, hedgeReads, dryRun, actions, queueDepth, engine, dm, clock, sysfsRoot, devDir, ...policy } = options;
    if (typeof map !== 'string' || map === '') throw new TypeError('Watchdog: map must be a dm device name');
    if (mode !== undefined && mode !== 'active' && mode !== 'passive' && mode !== 'both') throw new RangeError(`Watchdog: mode must be active, passive or both, got '${String(mode)}'`);
    void hedgeReads; void dryRun; void actions; void queueDepth; void engine; void devDir;
    this.#opts = resolvePolicyOptions({ timeoutMs, ...policy });
    this.#o = options;
    this.map = map;
    this.mode = mode ?? 'active';
    this.#clock = clock ?? new SystemClock();
    this.#dm = dm ?? new DeviceMapper();
    this.#sysfs = sysfsRoot === undefined ? {} : { sysfsRoot };
    this.#probeReader = new PathProbeReader({
      verifyDevno: true,
      ...(engine === undefined ? {} : { engine }),
      ...(devDir === undefined ? {} : { devDir }),
    });
    this.#probe = devices.probe ?? this.#probeReader.read;
    this.#pathReader = new PathProbeReader({
      queueDepth: queueDepth ?? 32,
      verifyDevno: true,
      ...(engine === undefined ? {} : { engine }),
      ...(devDir === undefined ? {} : { devDir }),
    });
    this.#hedgeRead = devices.hedgeRead ?? ((path, buf, offset) => this.#pathReader.readInto(path, buf, offset));
    this.#counters = devices.read ? { read: devices.read } : {};
  }

  /** The resolved policy options. */
  get options(): PolicyOptions {
    return this.#opts;
  }

  /** Opens the map and starts watching. Rejects (and leaves nothing running) when the map is missing or not multipath. */
  start(): Promise<void> {
    if (this.#state !== 'new') return Promise.reject(new Error(`Watchdog for '${this.map}' was already started`));
    this.#state = 'starting';
    this.#starting = this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    // stop() while starting aborts: each step below checks, so start() rejects
    // and unwinds what it opened instead of ending in 'running' after stop() resolved.
    const stillStarting = (): void => {
      if (this.#abort.signal.aborted) throw new Error(`Watchdog for '${this.map}' was stopped while starting`);
    };
    try {
      const info = await this.#dm.info(this.map);
      this.#mapRef = { devno: `${info.major}:${info.minor}`, name: `dm-${info.minor}` };
      stillStarting();
      this.#mp = await MultipathMap.open(this.#dm, this.map, this.#sysfs);
      stillStarting();
      const actions = this.#o.actions;
      this.#actions = this.#o.dryRun ? new DryRunActions()
        : typeof actions === 'object' ? actions
          : await chooseActions(this.#mp, { prefer: actions ?? 'auto', ...this.#sysfs });
      stillStarting();
      await this.#applyStatus(await this.#mp.status(), true);
      stillStarting();
      const timeoutMs = this.#opts.timeoutMs;
      if (this.mode !== 'passive') {
        const device = await DirectDevice.open(await this.#dm.devicePath(this.map), {
          queueDepth: this.#o.queueDepth ?? 32,
          engine: this.#o.engine ?? 'auto',
        });
        this.#io = new TimedDevice({
          device, timeoutMs, clock: this.#clock, hedgeReads: this.#o.hedgeReads === true, onLate: (late) => this.#onLate(late),
        });
        stillStarting();
      }
      this.#recovery = new ProbeRunner(this.#clock, this.#probe, timeoutMs);
      const attributorOptions = { clock: this.#clock, probe: this.#probe, probeTimeoutMs: timeoutMs, ...this.#sysfs, ...this.#counters };
      if (this.mode === 'active') {
        this.#sampler = new CounterSampler({ clock: this.#clock, intervalMs: timeoutMs / 4, devices: this.#sampledDevices(), ...this.#sysfs, ...this.#counters });
        this.#attributor = new Attributor({ ...attributorOptions, history: this.#sampler });
      } else {
        // The passive monitor samples at >= 4 per timeout; attribution reads the same history.
        let attributor: Attributor | undefined;
        this.#passive = new PassiveMonitor({
          clock: this.#clock,
          timeoutMs,
          paths: this.#usableRefs(),
          failedPaths: this.#failedRefs(),
          mapWatch: { map: this.#mapRef, attribute: (late) => (attributor as Attributor).attribute(late) },
          ...this.#sysfs,
          ...this.#counters,
          onObservation: (obs) => {
            const evidence: LateEvidence = { method: 'sysfs', seen: null, reason: `passive: ${JSON.stringify(obs.evidence)}` };
            this.#task(this.#step({ ...obs, evidence }));
          },
          onError: (error, device) => this.#emitError('sampling', error, device ?? undefined),
        });
        this.#sampler = this.#passive.sampler;
        attributor = new Attributor({ ...attributorOptions, history: this.#sampler });
        this.#attributor = attributor;
        this.#sampler.setDevices(this.#sampledDevices());
      }
      this.#sampler.subscribe((round) => this.#onSample(round));
      if (this.#passive) this.#passive.start();
      else this.#sampler.start();
      if (this.#opts.slowFactor !== null) this.#armWindow();
      this.#task(this.#watchEvents());
      stillStarting();
      this.#state = 'running';
    } catch (e) {
      this.#state = 'stopping';
      await this.#teardown();
      this.#state = 'stopped';
      throw e;
    }
  }

  /** Stops watching and closes the devices; resolves when our in-flight I/O drained, or rejects on `signal` (the kernel keeps its buffers). */
  stop(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.#stopped) {
      const wasRunning = this.#state === 'running';
      // start() not settled (running its steps, or unwinding a failure): let it finish, then tear down what is left.
      const starting = this.#starting;
      this.#abort.abort();
      this.#state = 'stopping';
      const settled = starting ? starting.then(() => undefined, () => undefined) : Promise.resolve();
      this.#stopped = settled.then(() => this.#teardown()).then(() => {
        this.#state = 'stopped';
        if (wasRunning) this.emit('stopped', { map: this.map, reason: 'stop' });
      });
      // Observed here: a caller whose signal won the race has stopped listening.
      this.#stopped.catch(() => undefined);
    }
    // Each call's signal bounds its own wait (whoever began the stop: an
    // earlier call, or the map's removal); the teardown runs on until the
    // kernel has let go of every buffer, and a later stop() sees it end.
    return options.signal ? untilAborted(this.#stopped, options.signal) : this.#stopped;
  }

  /** An aligned buffer for read and write. */
  alloc(bytes: number): Buffer {
    return this.#device().alloc(bytes);
  }

  /** Reads through the map, timed and tracked. */
  read(buf: Uint8Array, offset: number, options: WatchdogIoOptions = {}): Promise<WatchdogIoResult> {
    const io = this.#io;
    if (this.#state !== 'running' || !io) return Promise.reject(this.#notReady());
    return io.read(buf, offset, options);
  }

  /** Writes through the map, timed and tracked; never re-issued, and its range is fenced until the kernel completes it. */
  write(buf: Uint8Array, offset: number, options: WatchdogIoOptions = {}): Promise<WatchdogIoResult> {
    const io = this.#io;
    if (this.#state !== 'running' || !io) return Promise.reject(this.#notReady());
    return io.write(buf, offset, options);
  }

  /** Flushes the map's device (fsync), timed and tracked. */
  flush(): Promise<IoResult> {
    const io = this.#io;
    if (this.#state !== 'running' || !io) return Promise.reject(this.#notReady());
    return io.flush();
  }

  /** Per-path state, in-flight I/O, latency, failures and last action, and the map's own figures. */
  stats(): WatchdogStats {
    const now = this.#clock.now();
    const book = this.#book.snapshot(now);
    const io = this.#io?.stats() ?? NO_IO;
    const paths: PathStats[] = [];
    for (const [devno, ref] of this.#paths) {
      const p = this.#policy.paths[devno];
      const lat = book[devno];
      const latest = this.#sampler?.latest(devno);
      paths.push({
        devno,
        name: ref.name,
        state: p?.status ?? 'usable',
        failedBy: p?.failedBy ?? null,
        inflight: latest ? latest.inflight.reads + latest.inflight.writes : null,
        p50Ms: lat?.p50Ms ?? 0,
        p99Ms: lat?.p99Ms ?? 0,
        maxMs: lat?.maxMs ?? 0,
        samples: lat?.windowCount ?? 0,
        failures: p?.fails ?? 0,
        lastAction: this.#lastAction.get(devno) ?? null,
      });
    }
    return {
      map: this.map,
      mode: this.mode,
      running: this.#state === 'running',
      ...io,
      paths,
    };
  }

  // --- I/O -----------------------------------------------------------------

  #device(): TimedDevice {
    if (this.#state !== 'running' || !this.#io) throw this.#notReady();
    return this.#io;
  }

  #notReady(): Error {
    if (this.#state !== 'running') return new Error(`Watchdog for '${this.map}' is not running (${this.#state})`);
    return new Error(`Watchdog for '${this.map}' runs in passive mode: it does no I/O of its own`);
  }

  // --- detection and attribution --------------------------------------------

  #onLate(late: readonly LateIo<TimedIoData>[]): void {
    if (late.length === 0 || this.#state !== 'running') return;
    this.#task(this.#attributeLate(late));
  }

  async #attributeLate(late: readonly LateIo<TimedIoData>[]): Promise<void> {
    // An I/O submitted before a path was lost may be stuck on that path:
    // fail_path frees nothing already queued on it (drivers/md/dm-mpath.c,
    // fail_path only marks the pgpath inactive). Its reads are hedged at once,
    // and it is attributed on the usable paths' own probes alone: no path is
    // named by elimination for it. (Not skipped: when every slot is stuck on
    // the lost path, no I/O submitted since can show that another is bad too.)
    const lossMs = this.#lastLossMs;
    const beforeLoss = lossMs !== null && late.some((l) => l.io.submitMs <= lossMs);
    if (beforeLoss && this.#o.hedgeReads) for (const l of late) if (l.io.submitMs <= (lossMs as number)) this.#io?.hedge(l.io);
    const oldest = late[0] as LateIo<TimedIoData>;
    let attribution: Attribution;
    try {
      attribution = await (this.#attributor as Attributor).attribute({
        submitMs: oldest.io.submitMs,
        map: this.#mapRef ?? null,
        paths: this.#usableRefs(),
        elimination: !beforeLoss,
        ...this.#hedgeOnFast(late),
      });
    } catch (e) {
      this.#emitError('attribution', errorOf(e));
      return;
    }
    if (this.#state !== 'running') return;
    const now = this.#clock.now();
    const suspects = attribution.suspects.map((s) => this.#eventPath(s.path.devno));
    for (const l of late) {
      const d = l.io.data;
      this.emit('io-late', {
        map: this.map, ioId: l.io.id, op: d.op === 'write' ? 'write' : 'read', offset: d.offset, length: d.length,
        lateByMs: l.lateByMs, sinceFaultMs: now - l.io.submitMs, paths: suspects, attribution,
      });
    }
    const steps: Promise<void>[] = [];
    for (const s of attribution.suspects) {
      const evidence: LateEvidence = { method: attribution.method, seen: s.evidence, reason: attribution.details.reason };
      for (const l of late) {
        steps.push(this.#step({ kind: 'late', path: s.path.devno, lateByMs: l.lateByMs, ioId: l.io.id, submitMs: l.io.submitMs, evidence }));
      }
    }
    await Promise.all(steps);
    // A read still late once some path is out is re-issued: the selector now routes it to a usable path.
    if (this.#o.hedgeReads && this.#state === 'running' && this.#anyFailed()) {
      for (const l of late) this.#io?.hedge(l.io);
    }
  }

  // A late read is re-issued as soon as one usable path answers its probe
  // fast, straight on that path's device: waiting for the fail would cost the
  // silent path's whole probe deadline, and a hedge through the map before
  // any fail may be routed to the slow path again. The offset is the same on
  // the path: the map is one multipath target (MultipathMap.open), which
  // starts at sector 0 (drivers/md/dm-table.c, a table's first target
  // starts at 0), and dm-mpath hands a bio or request to the path at its own
  // sector (drivers/md/dm-mpath.c, __multipath_map_bio only sets the device;
  // dm-rq.c clones the request's sector).
  #hedgeOnFast(late: readonly LateIo<TimedIoData>[]): { onFast?: (path: PathRef) => void } {
    if (!this.#o.hedgeReads || !this.#io) return {};
    let sent = false;
    return {
      onFast: (path) => {
        if (sent || this.#state !== 'running') return;
        sent = true;
        try {
          for (const l of late) this.#io?.hedge(l.io, (buf, offset) => this.#hedgeRead(path, buf, offset));
        } catch (e) {
          // A bounce buffer could not be had (ENOMEM): the reads go on unhedged.
          this.#emitError('hedge', errorOf(e), path);
        }
      },
    };
  }

  #anyFailed(): boolean {
    return Object.values(this.#policy.paths).some((p) => p.status === 'failed');
  }

  // --- policy and actions ---------------------------------------------------

  #step(obs: Observation<LateEvidence>): Promise<void> {
    if (this.#state !== 'running' && this.#state !== 'starting') return Promise.resolve();
    const now = this.#clock.now();
    const { state, decisions } = decide<LateEvidence>(this.#policy, obs, now, this.#opts);
    this.#policy = state;
    if (decisions.length === 0) return Promise.resolve();
    return Promise.all(decisions.map((d) => this.#apply(d, now))).then(() => undefined);
  }

  async #apply(d: Decision<LateEvidence>, now: number): Promise<void> {
    switch (d.kind) {
      case 'fail':
        return this.#act('fail', d.path, () =>
          this.emit('path-failed', {
            map: this.map, path: this.#eventPath(d.path), sinceFaultMs: this.#clock.now() - d.faultSeenAt, evidence: d.evidence,
            action: (this.#actions as PathActions).kind, dryRun: this.#o.dryRun === true, holdDownMs: Math.max(0, d.holdDownUntil - now),
          }), {
          reason: d.evidence.reason,
          alreadyKept: d.alreadyKept,
          report: (e) => this.emit('last-path-kept', {
            map: this.map, path: this.#eventPath(d.path), sinceFaultMs: this.#clock.now() - d.faultSeenAt, evidence: d.evidence, usablePaths: e.othersActive + 1,
          }),
        });
      case 'reinstate':
        this.#book.path(d.path).resetWindow();
        return this.#act('reinstate', d.path, () =>
          this.emit('path-reinstated', {
            map: this.map, path: this.#eventPath(d.path), sinceFaultMs: d.failedAt === null ? null : this.#clock.now() - d.failedAt,
            evidence: { fastProbes: d.fastProbes }, action: (this.#actions as PathActions).kind, dryRun: this.#o.dryRun === true,
          }));
      case 'last-path-kept':
        this.emit('last-path-kept', {
          map: this.map, path: this.#eventPath(d.path), sinceFaultMs: now - d.faultSeenAt, evidence: d.evidence, usablePaths: d.usablePaths,
        });
        return;
      case 'probe':
        this.#clearProbe(d.path);
        this.#probeTimers.set(d.path, this.#clock.setTimer(d.atMs, () => {
          this.#probeTimers.delete(d.path);
          this.#task(this.#recoveryProbe(d.path));
        }));
        return;
      case 'cancel-probe':
        this.#clearProbe(d.path);
        return;
      case 'forget':
        this.#clearProbe(d.path);
        this.#book.delete(d.path);
        this.#lastAction.delete(d.path);
        return;
      case 'ignore':
        return;
    }
  }

  async #act(action: 'fail' | 'reinstate', path: PathId, announce: () => void, refusal?: Refusal): Promise<void> {
    const actions = this.#actions as PathActions;
    this.#acting.set(path, (this.#acting.get(path) ?? 0) + 1);
    this.#actedAt.set(path, ++this.#actionGen);
    try {
      if (action === 'fail') {
        // The kernel-facing call counts the active paths in a status it reads
        // right before fail_path: the policy's view may be older than that.
        const done = await actions.fail(path, { keepActive: this.#opts.minUsablePaths, signal: this.#abort.signal });
        if (!this.#o.dryRun) this.#lastLossMs = this.#clock.now();
        // The path is out of dm's routing now; what makes it stick (multipathd's
        // `fail path`) goes on without holding up the hedged reads, and without
        // holding up stop(): a rejection after it is not reported.
        if (done?.rest) {
          const entry = { ended: false };
          this.#sticking.set(path, entry);
          done.rest.catch((e: unknown) => this.#stickFailed(path, errorOf(e))).finally(() => {
            entry.ended = true;
            this.#task(this.#refreshStatus());
          }).catch(() => undefined); // only an 'error' listener's own throw gets here
        }
      } else {
        await actions.reinstate(path);
      }
      this.#lastAction.set(path, { action, atMs: this.#clock.now(), ok: true });
      announce();
    } catch (e) {
      const error = errorOf(e);
      this.#lastAction.set(path, { action, atMs: this.#clock.now(), ok: false, error: error.message });
      // The policy first: a listener that throws must not leave it believing
      // in a fail that did not happen.
      if (action === 'fail' && refusal && error instanceof LastPathError) {
        await this.#step({ kind: 'action-failed', path, action, error: error.message, lastPath: { reason: refusal.reason } });
        if (!refusal.alreadyKept) refusal.report(error);
      } else {
        await this.#step({ kind: 'action-failed', path, action, error: error.message });
        // A reinstate dropped for a newer fail of ours is not a failure to report.
        if (!(error instanceof SupersededError)) this.#emitError(action, error, this.#paths.get(path));
      }
    } finally {
      const left = (this.#acting.get(path) ?? 1) - 1;
      if (left > 0) this.#acting.set(path, left);
      else this.#acting.delete(path);
    }
    // Our own change raised a dm event too; make sure the state is read after it.
    if (!this.#o.dryRun) this.#task(this.#refreshStatus());
  }

  // dm has the path failed; multipathd was not told, so its checker may undo
  // the fail, and dm status will then show the path active again.
  #stickFailed(path: PathId, error: Error): void {
    if (this.#abort.signal.aborted) return;
    this.#emitError('fail', error, this.#paths.get(path));
  }

  #clearProbe(path: PathId): void {
    const t = this.#probeTimers.get(path);
    if (t) {
      this.#clock.clearTimer(t);
      this.#probeTimers.delete(path);
    }
  }

  async #recoveryProbe(path: PathId): Promise<void> {
    const ref = this.#paths.get(path);
    if (!ref || this.#state !== 'running') return;
    const v = await (this.#recovery as ProbeRunner).verdict(ref);
    if (this.#state !== 'running') return;
    if (v.kind === 'fast' || v.kind === 'slow') {
      this.#book.path(path).record(this.#clock.now(), v.latencyMs);
      await this.#step({ kind: 'probe', path, result: { latencyMs: v.latencyMs } });
    } else {
      this.#book.path(path).recordError();
      const error = v.kind === 'error' ? v.error : v.kind;
      await this.#step({ kind: 'probe', path, result: { error } });
    }
  }

  #armWindow(): void {
    const every = Math.max(1, this.#opts.timeoutMs);
    this.#windowTimer = this.#clock.setTimer(this.#clock.now() + every, () => {
      if (this.#state !== 'running') return;
      this.#task(this.#step({ kind: 'latency-window', medians: this.#book.medians(this.#clock.now()) }));
      this.#armWindow();
    });
  }

  // --- the map's state --------------------------------------------------------

  #usableRefs(): PathRef[] {
    const out: PathRef[] = [];
    for (const [devno, ref] of this.#paths) if (this.#policy.paths[devno]?.status !== 'failed') out.push(ref);
    return out;
  }

  #failedRefs(): PathRef[] {
    return [...this.#paths.values()].filter((ref) => this.#policy.paths[ref.devno]?.status === 'failed');
  }

  #sampledDevices(): PathRef[] {
    return this.#mapRef ? [...this.#paths.values(), this.#mapRef] : [...this.#paths.values()];
  }

  #eventPath(devno: PathId): EventPath {
    const ref = this.#paths.get(devno);
    return { devno, name: ref?.name ?? devno };
  }

  async #applyStatus(status: MultipathStatus, initial: boolean, ownActions: ReadonlySet<PathId> = new Set()): Promise<void> {
    const states: Record<PathId, PathStatus> = {};
    for (const g of status.groups) for (const p of g.paths) states[p.device] = p.state === 'failed' ? 'failed' : 'usable';
    for (const path of ownActions) {
      const mine = this.#policy.paths[path]?.status;
      if (mine !== undefined && path in states) states[path] = mine;
    }
    const next = new Map<PathId, PathRef>();
    for (const devno of Object.keys(states)) {
      const known = this.#paths.get(devno);
      if (known) next.set(devno, known);
      else {
        const name = await resolveBlockDevice(devno, this.#sysfs).then((d) => d.name, () => devno);
        next.set(devno, { devno, name });
      }
    }
    this.#paths = next;
    this.#sampler?.setDevices(this.#sampledDevices());
    this.#passive?.setPaths(this.#usableRefs(), this.#failedRefs());
    if (initial) this.#policy = createPolicyState(states);
    else {
      if (Object.entries(states).some(([id, st]) => st === 'failed' && this.#policy.paths[id]?.status === 'usable')) this.#lastLossMs = this.#clock.now();
      const ended = [...this.#sticking].filter(([, e]) => e.ended);
      await this.#step({ kind: 'dm-status', paths: states, ours: [...this.#sticking.keys()] });
      // A newer fail of the same path may have replaced the entry meanwhile.
      for (const [id, e] of ended) if (this.#sticking.get(id) === e) this.#sticking.delete(id);
    }
    this.#passive?.setPaths(this.#usableRefs(), this.#failedRefs());
  }

  async #refreshStatus(): Promise<void> {
    if (this.#refreshing) {
      this.#refreshAgain = true;
      return;
    }
    this.#refreshing = true;
    try {
      do {
        this.#refreshAgain = false;
        if (this.#state !== 'running') return;
        const gen = this.#actionGen;
        const busy = new Set(this.#acting.keys());
        let status: MultipathStatus;
        try {
          status = await (this.#mp as MultipathMap).status();
        } catch (e) {
          if (e instanceof DmError && e.code === 'ENXIO') return void this.#mapRemoved(e);
          this.#emitError('dm-status', errorOf(e));
          return;
        }
        // A snapshot read while an action of ours ran may predate it: that
        // path keeps the policy's view, and the action's end reads again.
        // Every other path's state stands (a reinstate can wait 10 s for a
        // stick; dropping the whole snapshot hid the checker's changes).
        for (const path of this.#acting.keys()) busy.add(path);
        for (const [path, at] of this.#actedAt) if (at > gen) busy.add(path);
        await this.#applyStatus(status, false, busy);
      } while (this.#refreshAgain);
    } finally {
      this.#refreshing = false;
    }
  }

  #mapRemoved(e: Error): void {
    if (this.#state !== 'running') return;
    // State first: a listener (or none: emit('error') with no listener throws)
    // must never leave the watchdog 'running' on a map that is gone. 'stopped'
    // carries the error too, for a host that listens to that alone.
    this.#state = 'stopping';
    this.#stopped = this.#teardown().then(() => {
      this.#state = 'stopped';
      this.emit('stopped', { map: this.map, reason: 'map-removed', error: e });
    });
    this.#stopped.catch(() => undefined);
    if (this.listenerCount('error') > 0) this.emit('error', { map: this.map, during: 'dm-status', error: e, fatal: true });
  }

  async #watchEvents(): Promise<void> {
    try {
      for await (const ev of this.#dm.events({ signal: this.#abort.signal })) {
        if (ev.name === this.map) this.#task(this.#refreshStatus());
      }
    } catch (e) {
      if (!this.#abort.signal.aborted) this.#emitError('events', errorOf(e));
    }
  }

  #onSample(round: SampleRound): void {
    const now = this.#clock.now();
    for (const [devno, snap] of round.snapshots) {
      if (!this.#paths.has(devno)) continue;
      const ring = this.#sampler?.before(devno, snap.atMs - 1);
      if (!ring) continue;
      const ms = serviceTimeMs(ring.stat, snap.stat);
      if (ms !== null) this.#book.path(devno).record(now, ms);
    }
    // The map device vanished from sysfs: it was removed.
    if (this.#mapRef && round.errors.some((e) => e.device.devno === this.#mapRef?.devno)) this.#task(this.#refreshStatus());
  }

  // --- bookkeeping ------------------------------------------------------------

  #task(p: Promise<unknown>): void {
    const t = p.catch((e: unknown) => this.#emitError('internal', errorOf(e)));
    this.#tasks.add(t);
    void t.finally(() => this.#tasks.delete(t));
  }

  #emitError(during: string, error: Error, path?: PathRef): void {
    const payload = { map: this.map, during, error, fatal: false, ...(path ? { path: { devno: path.devno, name: path.name } } : {}) };
    // An 'error' event with no listener would throw: a watchdog must not crash its host for a failed sample.
    if (this.listenerCount('error') > 0) this.emit('error', payload);
  }

  async #teardown(): Promise<void> {
    this.#abort.abort();
    for (const path of [...this.#probeTimers.keys()]) this.#clearProbe(path);
    if (this.#windowTimer) this.#clock.clearTimer(this.#windowTimer);
    this.#passive?.stop();
    this.#sampler?.stop();
    const closing: Promise<unknown>[] = [this.#probeReader.close(), this.#pathReader.close()];
    if (this.#io) closing.push(this.#io.close());
    const results = await Promise.allSettled(closing);
    await Promise.allSettled([...this.#tasks]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
