// Prometheus metrics of running watchdogs, with prom-client on a registry of
// our own (never the global one, so an embedding application's metrics and
// ours do not collide), and a small node:http server for /metrics.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Watchdog } from '../watchdog/watchdog';

/** Options of WatchdogMetrics. */
export interface WatchdogMetricsOptions {
  /** Registry to register in (default: a new one). */
  registry?: Registry;
  /** Metric name prefix (default `mpath_watchdog_`). */
  prefix?: string;
}

/** Latency buckets, seconds: sub-ms healthy I/O up to the SCSI layer's 30 s. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Counters, gauges and a latency histogram fed by Watchdog events and stats(). */
export class WatchdogMetrics {
  /** The registry the metrics live in. */
  readonly registry: Registry;
  readonly #watchdogs = new Set<Watchdog>();
  readonly #failed: Counter<'map' | 'path' | 'device'>;
  readonly #reinstated: Counter<'map' | 'path' | 'device'>;
  readonly #kept: Counter<'map' | 'path' | 'device'>;
  readonly #late: Counter<'map' | 'op'>;
  readonly #errors: Counter<'map' | 'during'>;
  readonly #latency: Histogram<'map' | 'op'>;

  constructor(options: WatchdogMetricsOptions = {}) {
    const registry = options.registry ?? new Registry();
    const p = options.prefix ?? 'mpath_watchdog_';
    const registers = [registry];
    this.registry = registry;
    const pathLabels = ['map', 'path', 'device'] as const;
    this.#failed = new Counter({ name: `${p}paths_failed_total`, help: 'Paths the watchdog failed (or, with --dry-run, would have)', labelNames: pathLabels, registers });
    this.#reinstated = new Counter({ name: `${p}paths_reinstated_total`, help: 'Paths the watchdog reinstated after fast probes', labelNames: pathLabels, registers });
    this.#kept = new Counter({ name: `${p}last_path_kept_total`, help: 'Fails not carried out because too few usable paths would be left', labelNames: pathLabels, registers });
    this.#late = new Counter({ name: `${p}io_late_total`, help: 'I/Os of ours that passed their deadline', labelNames: ['map', 'op'], registers });
    this.#errors = new Counter({ name: `${p}errors_total`, help: 'Errors inside the watchdog and failed I/Os of ours', labelNames: ['map', 'during'], registers });
    this.#latency = new Histogram({ name: `${p}io_latency_seconds`, help: 'Latency of I/Os of ours through the map', labelNames: ['map', 'op'], buckets: LATENCY_BUCKETS, registers });
    const watchdogs = this.#watchdogs;
    // Gauges are read from stats() at scrape time, so they are never stale.
    new Gauge({
      name: `${p}path_usable`, help: 'Path state as the watchdog sees it: 1 usable, 0 failed', labelNames: pathLabels, registers,
      collect() {
        this.reset();
        for (const wd of watchdogs) for (const ps of wd.stats().paths) this.set({ map: wd.map, path: ps.devno, device: ps.name }, ps.state === 'usable' ? 1 : 0);
      },
    });
    new Gauge({
      name: `${p}path_inflight`, help: 'Requests in flight on the path device (sysfs inflight, last sample)', labelNames: pathLabels, registers,
      collect() {
        this.reset();
        for (const wd of watchdogs) for (const ps of wd.stats().paths) if (ps.inflight !== null) this.set({ map: wd.map, path: ps.devno, device: ps.name }, ps.inflight);
      },
    });
    new Gauge({
      name: `${p}inflight`, help: 'I/Os of ours in flight through the map', labelNames: ['map'], registers,
      collect() {
        this.reset();
        for (const wd of watchdogs) this.set({ map: wd.map }, wd.stats().inflight);
      },
    });
    new Gauge({
      name: `${p}queued`, help: 'I/Os of ours waiting for a free slot of the engine queue (not yet timed)', labelNames: ['map'], registers,
      collect() {
        this.reset();
        for (const wd of watchdogs) this.set({ map: wd.map }, wd.stats().queued);
      },
    });
    new Gauge({
      name: `${p}inflight_late`, help: 'I/Os of ours in flight and past their deadline', labelNames: ['map'], registers,
      collect() {
        this.reset();
        for (const wd of watchdogs) this.set({ map: wd.map }, wd.stats().late);
      },
    });
  }

  /** Counts `wd`'s events and reports its stats at each scrape; returns a function that detaches it. */
  attach(wd: Watchdog): () => void {
    this.#watchdogs.add(wd);
    const onFailed = (e: { map: string; path: { devno: string; name: string } }): void => void this.#failed.inc({ map: e.map, path: e.path.devno, device: e.path.name });
    const onReinstated = (e: { map: string; path: { devno: string; name: string } }): void => void this.#reinstated.inc({ map: e.map, path: e.path.devno, device: e.path.name });
    const onKept = (e: { map: string; path: { devno: string; name: string } }): void => void this.#kept.inc({ map: e.map, path: e.path.devno, device: e.path.name });
    const onLate = (e: { map: string; op: string }): void => void this.#late.inc({ map: e.map, op: e.op });
    const onError = (e: { map: string; during: string }): void => void this.#errors.inc({ map: e.map, during: e.during });
    wd.on('path-failed', onFailed);
    wd.on('path-reinstated', onReinstated);
    wd.on('last-path-kept', onKept);
    wd.on('io-late', onLate);
    wd.on('error', onError);
    return () => {
      this.#watchdogs.delete(wd);
      wd.off('path-failed', onFailed);
      wd.off('path-reinstated', onReinstated);
      wd.off('last-path-kept', onKept);
      wd.off('io-late', onLate);
      wd.off('error', onError);
    };
  }

  /** Records the latency of one I/O of ours. */
  observeIo(map: string, op: 'read' | 'write', latencyMs: number): void {
    this.#latency.observe({ map, op }, latencyMs / 1000);
  }

  /** Counts an error outside the watchdog's own events (e.g. a failed probe read of the CLI). */
  countError(map: string, during: string): void {
    this.#errors.inc({ map, during });
  }
}

/** A running /metrics endpoint. */
export interface MetricsServer {
  /** The address actually bound (port 0 picks one). */
  host: string;
  port: number;
  /** `http://host:port/metrics`. */
  url: string;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

/** Limits of the /metrics server: a scraper needs one short request, so anything else is cut off. */
export interface MetricsServerLimits {
  /** Open connections at most; more are refused (default 16). */
  maxConnections?: number;
  /** A request's headers must arrive within this (default 5000 ms). */
  headersTimeoutMs?: number;
  /** A whole request within this (default 10000 ms); also the idle socket timeout. */
  requestTimeoutMs?: number;
}

/** Serves `registry` at GET /metrics on host:port. Rejects when the address cannot be bound. */
export function serveMetrics(registry: Registry, host: string, port: number, limits: MetricsServerLimits = {}): Promise<MetricsServer> {
  const headersTimeout = limits.headersTimeoutMs ?? 5_000;
  const requestTimeout = Math.max(limits.requestTimeoutMs ?? 10_000, headersTimeout);
  const server: Server = createServer({
    headersTimeout,
    requestTimeout,
    keepAliveTimeout: Math.min(5_000, requestTimeout),
    // Node checks the two timeouts above only this often (default 30 s).
    connectionsCheckingInterval: Math.min(1_000, headersTimeout),
  }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('mpath-watchdog: metrics are at /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(e)}\n`),
    );
  });
  server.maxConnections = limits.maxConnections ?? 16;
  // An idle or trickling socket is dropped too (slowloris), not only a slow request.
  server.setTimeout(requestTimeout, (socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = server.address() as AddressInfo;
      const shown = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      resolve({
        host: a.address,
        port: a.port,
        url: `http://${shown}:${a.port}/metrics`,
        close: () => new Promise<void>((done) => {
          server.closeAllConnections();
          server.close(() => done());
        }),
      });
    });
  });
}
