// `mpath-watchdog watch MAP`: runs a Watchdog on MAP until SIGINT or SIGTERM,
// one JSON line per decision and event on stdout, Prometheus metrics on
// --metrics. In active mode the CLI issues its own probe reads (ProbeLoad).
import { DeviceMapper } from '../dm/control';
import { WatchdogMetrics, serveMetrics, type MetricsServer } from '../metrics';
import { Watchdog, type WatchdogMode, type WatchdogOptions } from '../watchdog/watchdog';
import type { WatchdogEvents } from '../watchdog/events';
import { EXIT, UsageError, parse, parseChoice, parseCount, parseDuration, parseHostPort, parseNumber, positionals, type HostPort } from './args';
import { COMMON_OPTIONS, type Command } from './command';
import { jsonLine, errorJson, type CliIo } from './output';
import { ProbeLoad } from './probe-load';

const OPTIONS = {
  ...COMMON_OPTIONS,
  timeout: { type: 'string', default: '1s' },
  mode: { type: 'string', default: 'active' },
  'fail-after': { type: 'string' },
  'min-usable-paths': { type: 'string' },
  'reinstate-after': { type: 'string' },
  'hold-down': { type: 'string' },
  'probe-interval': { type: 'string' },
  'slow-factor': { type: 'string' },
  'hedge-reads': { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  'read-rate': { type: 'string', default: '20' },
  'read-size': { type: 'string', default: '4096' },
  metrics: { type: 'string' },
  stats: { type: 'string' },
} as const;

/** Most probe reads in flight at once (reads stuck on a hung path are not piled up beyond it). */
export const PROBE_MAX_INFLIGHT = 16;
/** How long stop() may wait for our reads to drain before the CLI exits anyway. */
const STOP_GRACE_MS = 3_000;

/** Everything `watch` was asked to do, parsed and checked. */
export interface WatchPlan {
  map: string;
  watchdog: WatchdogOptions;
  /** Probe reads per second; 0 in passive mode. */
  readRate: number;
  readSize: number;
  metrics: HostPort | null;
  /** Ms between stats lines, or null for none. */
  statsMs: number | null;
}

/** Parses watch's arguments; UsageError for anything wrong, including options the Watchdog itself refuses. */
export function parseWatch(argv: readonly string[]): WatchPlan {
  const c = 'watch';
  const { values: v, positionals: pos } = parse(c, argv, OPTIONS);
  const [map] = positionals(c, pos, ['MAP']) as [string];
  const mode = parseChoice<WatchdogMode>(v.mode, 'mode', ['active', 'passive', 'both'], c);
  const wd: WatchdogOptions = {
    map,
    timeoutMs: parseDuration(v.timeout, 'timeout', c),
    mode,
    ...(v['fail-after'] === undefined ? {} : { failAfter: parseCount(v['fail-after'], 'fail-after', 1, c) }),
    ...(v['min-usable-paths'] === undefined ? {} : { minUsablePaths: parseCount(v['min-usable-paths'], 'min-usable-paths', 0, c) }),
    ...(v['reinstate-after'] === undefined ? {} : { reinstateAfter: parseCount(v['reinstate-after'], 'reinstate-after', 1, c) }),
    ...(v['hold-down'] === undefined ? {} : { holdDownMs: parseDuration(v['hold-down'], 'hold-down', c) }),
    ...(v['probe-interval'] === undefined ? {} : { probeIntervalMs: parseDuration(v['probe-interval'], 'probe-interval', c) }),
    ...(v['slow-factor'] === undefined ? {} : { slowFactor: parseNumber(v['slow-factor'], 'slow-factor', 1, c) }),
    ...(v['hedge-reads'] ? { hedgeReads: true } : {}),
    ...(v['dry-run'] ? { dryRun: true } : {}),
  };
  const readSize = parseCount(v['read-size'], 'read-size', 512, c);
  if (readSize % 512 !== 0) throw new UsageError(c, `--read-size: expected a multiple of 512, got '${v['read-size']}'`);
  const readRate = mode === 'passive' ? 0 : parseNumber(v['read-rate'], 'read-rate', 0, c);
  try {
    // The Watchdog's own checks (e.g. --hold-down beyond its cap) are usage errors too.
    new Watchdog(wd);
  } catch (e) {
    throw new UsageError(c, (e as Error).message);
  }
  return {
    map, watchdog: wd, readRate, readSize,
    metrics: v.metrics === undefined ? null : parseHostPort(v.metrics, 'metrics', c),
    statsMs: v.stats === undefined ? null : parseDuration(v.stats, 'stats', c),
  };
}

const EVENTS: readonly (keyof WatchdogEvents)[] = ['io-late', 'path-failed', 'path-reinstated', 'last-path-kept', 'error', 'stopped'];

/** Resolves with the name of the first of SIGINT/SIGTERM received, and stops listening for both. */
function nextSignal(): { promise: Promise<NodeJS.Signals>; cancel: () => void } {
  let cancel = (): void => undefined;
  const promise = new Promise<NodeJS.Signals>((resolve) => {
    const on = (s: NodeJS.Signals): void => {
      cancel();
      resolve(s);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
    cancel = () => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
    };
  });
  return { promise, cancel };
}

/** Runs a plan until a signal (exit 0) or the map's removal (exit 1). */
export async function runWatch(plan: WatchPlan, io: CliIo): Promise<number> {
  const log = (event: string, fields: object): void => void io.stdout.write(jsonLine(event, fields));
  const metrics = new WatchdogMetrics();
  const wd = new Watchdog(plan.watchdog);
  const detach = metrics.attach(wd);
  for (const name of EVENTS) {
    (wd as unknown as NodeJS.EventEmitter).on(name, (payload: object) => log(name, payload));
  }
  const signal = nextSignal();
  let server: MetricsServer | undefined;
  let load: ProbeLoad | undefined;
  let statsTimer: NodeJS.Timeout | undefined;
  try {
    if (plan.metrics) server = await serveMetrics(metrics.registry, plan.metrics.host, plan.metrics.port);
    await wd.start();
    if (plan.readRate > 0) {
      const target = (await new DeviceMapper().table(plan.map))[0];
      load = new ProbeLoad(wd, {
        ratePerSec: plan.readRate, bytes: plan.readSize, sizeBytes: (target?.length ?? 0) * 512, maxInflight: PROBE_MAX_INFLIGHT,
        onRead: (r) => metrics.observeIo(plan.map, 'read', r.latencyMs),
        onError: (e, offset) => {
          metrics.countError(plan.map, 'probe-read');
          log('read-error', { map: plan.map, offset, error: errorJson(e) });
        },
      });
      load.start();
    }
    log('started', {
      map: plan.map, mode: wd.mode, dryRun: plan.watchdog.dryRun ?? false, hedgeReads: plan.watchdog.hedgeReads ?? false, policy: wd.options,
      probeReads: load ? { ratePerSec: plan.readRate, bytes: plan.readSize, maxInflight: PROBE_MAX_INFLIGHT } : null, metrics: server?.url ?? null, pid: process.pid,
    });
    if (plan.statsMs !== null) statsTimer = setInterval(() => log('stats', { ...wd.stats(), probeReads: load?.counts ?? null }), plan.statsMs);
    const removed = new Promise<'map-removed'>((resolve) => wd.on('stopped', (e) => e.reason === 'map-removed' && resolve('map-removed')));
    const why = await Promise.race([signal.promise, removed]);
    if (why === 'map-removed') {
      io.stderr.write(`mpath-watchdog watch: map '${plan.map}' was removed; stopping\n`);
      return EXIT.failure;
    }
    log('stopping', { map: plan.map, signal: why });
    return EXIT.ok;
  } finally {
    signal.cancel();
    if (statsTimer) clearInterval(statsTimer);
    load?.stop();
    // Reads stuck on a hung path would hold stop() forever: give them a grace period, then leave them to the kernel.
    await wd.stop({ signal: AbortSignal.timeout(STOP_GRACE_MS) }).catch(() => log('stop-abandoned', { map: plan.map, inflight: wd.stats().inflight }));
    detach();
    await server?.close();
  }
}

/** The watch subcommand. */
export const watchCommand: Command = {
  name: 'watch',
  summary: 'run the watchdog on a map (JSON lines, metrics)',
  help: `usage: mpath-watchdog watch MAP [--timeout 1s] [--mode active|passive|both] [options]

Runs the latency watchdog on multipath map MAP until SIGINT or SIGTERM (then it
stops cleanly and exits 0). Every event is one JSON line on stdout:
started, io-late, path-failed, path-reinstated, last-path-kept, error,
read-error, stats, stopping, stopped.

Modes:
  active   the CLI issues its own probe reads through MAP (--read-rate reads/s
           of --read-size bytes at random offsets, O_DIRECT) and times each one
  passive  watches the I/O other processes send to MAP, through sysfs counters
  both     both at once

options:
  --timeout DUR           an I/O in flight longer than this is late (default 1s);
                          DUR is 500ms, 2s, 1m or plain milliseconds
  --mode MODE             active (default), passive or both
  --fail-after N          consecutive late I/Os on a path before it is failed (1)
  --min-usable-paths N    never leave fewer usable paths than N (1; 0 allows
                          failing the last path)
  --reinstate-after N     consecutive fast probes before a reinstate (3)
  --hold-down DUR         no reinstate sooner than this after a fail (2s)
  --probe-interval DUR    interval of recovery probes of a failed path (1s)
  --slow-factor X         also fail a path whose median latency is X times the
                          best path's (off)
  --hedge-reads           re-issue a late read once its path is failed
  --dry-run               decide and log, change nothing
  --read-rate R           probe reads per second in active and both modes
                          (default 20; at most ${PROBE_MAX_INFLIGHT} in flight at once)
  --read-size BYTES       bytes per probe read (default 4096, multiple of 512)
  --metrics HOST:PORT     serve Prometheus metrics at http://HOST:PORT/metrics
  --stats DUR             also log a stats line every DUR
  -h, --help              this text`,
  async run(argv, io: CliIo) {
    return runWatch(parseWatch(argv), io);
  },
};
