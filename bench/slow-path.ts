// A slow path over iSCSI, with and without the watchdog, in one run (issue 9,
// section 4). Runs in the VM with `--topology iscsi` (npm run bench:slow-path):
// one LUN over two portals, multipathd managing the map with its defaults
// (service-time selector). The load is 4 KiB random O_DIRECT reads at queue
// depth 16 through the map: a healthy window, a window with one portal's round
// trip delayed by netem (the path stays up: its NOP-Outs and multipathd's TUR
// still answer), and a restored window. Configurations:
//   (a) multipathd alone;
//   (b) multipathd plus the watchdog (timeoutMs 500, hedgeReads, slowFactor),
//       failing through multipathd's `fail path`.
// For each window it prints IOPS, p50/p99/p99.9/max latency and the reads
// slower than 1 s, and when the slow path was failed and reinstated (dm status
// sampled every 100 ms). A configuration that overruns its bound gets its
// partial figures, marked as such.
import { parseArgs } from 'node:util';
import { DeviceMapper } from '../lib/dm';
import { MultipathMap } from '../lib/multipath';
import { dmPathState, startMultipathd, twoLioDisks, waitForMap, type LioDisk } from '../test/vm-iscsi/helpers/iscsi';
import { PortalFaults } from '../test/vm-iscsi/helpers/portal-faults';
import { markdownTable } from './table';
import { openMapReader, type MapReader } from './map-reader';

const BLOCK = 4096;
const SLOW_MS = 1000;

const { values } = parseArgs({
  options: {
    'window-s': { type: 'string', default: '20' },
    'delay-ms': { type: 'string', default: '2000' },
    'timeout-ms': { type: 'string', default: '500' },
    'slow-factor': { type: 'string', default: '3' },
    qd: { type: 'string', default: '16' },
    only: { type: 'string', default: 'a,b' },
  },
});
const WINDOW_MS = Number(values['window-s']) * 1000;
const DELAY_MS = Number(values['delay-ms']);
const TIMEOUT_MS = Number(values['timeout-ms']);
const SLOW_FACTOR = Number(values['slow-factor']);
const QD = Number(values.qd);
for (const [k, v] of [['window-s', WINDOW_MS], ['delay-ms', DELAY_MS], ['timeout-ms', TIMEOUT_MS], ['qd', QD]] as const) {
  if (!(v > 0) || !Number.isFinite(v)) throw new Error(`--${k} must be a positive number`);
}
if (!(SLOW_FACTOR > 1)) throw new Error('--slow-factor must be > 1');
/** Reads still open this long after the last window are given up on (their figures are partial). */
const DRAIN_MS = 30_000;

type Win = 'healthy' | 'fault' | 'restored';
const WINDOWS: readonly Win[] = ['healthy', 'fault', 'restored'];

interface Read { submit: number; done: number | undefined; error: boolean; hedged: boolean }

interface WindowFigures {
  window: Win;
  iops: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  over1s: number;
  errors: number;
  open: number;
}

interface Result {
  id: 'a' | 'b';
  label: string;
  windows: WindowFigures[];
  failedAfterMs: number | undefined;
  reinstatedAfterMs: number | undefined;
  partial: boolean;
  /** Each read of the fault window over SLOW_MS: submitted when, relative to the fail (ms, negative before it), how long it took, hedged. */
  slowReads: { sinceFailMs: number | undefined; sinceDelayMs: number; latencyMs: number; open: boolean; hedged: boolean }[];
}

const now = (): number => performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function quantile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number);
}

function figures(window: Win, reads: Read[], from: number, to: number, end: number): WindowFigures {
  const mine = reads.filter((r) => r.submit >= from && r.submit < to);
  const lat = mine.map((r) => (r.done ?? end) - r.submit).sort((a, b) => a - b);
  return {
    window,
    iops: reads.filter((r) => r.done !== undefined && !r.error && r.done >= from && r.done < to).length / ((to - from) / 1000),
    p50: quantile(lat, 0.5),
    p99: quantile(lat, 0.99),
    p999: quantile(lat, 0.999),
    max: lat.length === 0 ? NaN : (lat[lat.length - 1] as number),
    over1s: lat.filter((ms) => ms > SLOW_MS).length,
    errors: mine.filter((r) => r.error).length,
    open: mine.filter((r) => r.done === undefined).length,
  };
}

async function runOne(id: 'a' | 'b', disks: [LioDisk, LioDisk], faults: PortalFaults): Promise<Result> {
  const victim = disks[1];
  const label = id === 'a' ? 'multipathd alone (defaults)' : `multipathd + watchdog (${TIMEOUT_MS} ms, hedgeReads, slowFactor ${SLOW_FACTOR})`;
  const mpd = await startMultipathd({}, `/run/mpw-slow-path-${id}.log`);
  const dm = new DeviceMapper();
  const reads: Read[] = [];
  let running = true;
  let reader: MapReader | undefined;
  let workers: Promise<void>[] = [];
  let partial = false;
  let failedAt: number | undefined;
  let reinstatedAt: number | undefined;
  // Each window is [start, end). The fault window runs from the first network
  // change to the end of the restore (the delay holds packets until then);
  // the fail time counts from when the delay is wholly in force.
  const span: Record<Win, [number, number]> = { healthy: [0, 0], fault: [0, 0], restored: [0, 0] };
  let phase = 'healthy' as Win;
  try {
    const mapName = await waitForMap(mpd, disks, 120_000);
    const mp = await MultipathMap.open(dm, mapName);
    const r = await openMapReader(dm, mapName, QD, id === 'b' ? { timeoutMs: TIMEOUT_MS, hedgeReads: true, slowFactor: SLOW_FACTOR } : null);
    reader = r;
    workers = Array.from({ length: QD }, async () => {
      const buf = r.alloc(BLOCK);
      while (running) {
        const rec: Read = { submit: now(), done: undefined, error: false, hedged: false };
        reads.push(rec);
        try {
          rec.hedged = (await r.read(buf, Math.floor(Math.random() * r.blocks) * BLOCK)).hedged;
        } catch {
          rec.error = true;
        }
        rec.done = now();
      }
    });
    // Path state, sampled through the ioctl every 100 ms for the whole run.
    const sampler = (async () => {
      while (running) {
        const s = await dmPathState(mp, victim.devno).catch(() => undefined);
        if (s === 'failed' && failedAt === undefined && phase !== 'healthy') failedAt = now();
        if (s === 'active' && failedAt !== undefined && reinstatedAt === undefined && phase === 'restored') reinstatedAt = now();
        await sleep(100);
      }
    })();
    span.healthy[0] = now();
    await sleep(WINDOW_MS);
    span.healthy[1] = span.fault[0] = now();
    phase = 'fault';
    await faults.delay(victim.portal, DELAY_MS);
    const inForce = now();
    await sleep(WINDOW_MS);
    phase = 'restored';
    const restoreAt = now();
    await faults.restore();
    span.fault[1] = span.restored[0] = now();
    await sleep(WINDOW_MS);
    span.restored[1] = now();
    running = false;
    await Promise.race([Promise.all(workers), sleep(DRAIN_MS)]);
    await sampler;
    partial = reads.some((r) => r.done === undefined);
    const end = now();
    return {
      id,
      label,
      windows: WINDOWS.map((w) => figures(w, reads, span[w][0], span[w][1], end)),
      failedAfterMs: failedAt === undefined ? undefined : failedAt - inForce,
      reinstatedAfterMs: reinstatedAt === undefined ? undefined : reinstatedAt - restoreAt,
      partial,
      slowReads: reads
        .filter((x) => x.submit >= span.fault[0] && x.submit < span.fault[1] && (x.done ?? end) - x.submit > SLOW_MS)
        .map((x) => ({
          sinceFailMs: failedAt === undefined ? undefined : x.submit - failedAt,
          sinceDelayMs: x.submit - inForce,
          latencyMs: (x.done ?? end) - x.submit,
          open: x.done === undefined,
          hedged: x.hedged,
        })),
    };
  } finally {
    running = false;
    try {
      await faults.restore();
    } finally {
      await Promise.race([Promise.all(workers), sleep(DRAIN_MS)]);
      await reader?.close(DRAIN_MS).catch((e: unknown) => console.error(`# (${id}) close: ${String(e)}`));
      for (const d of disks) await mpd.client.reinstatePath(d.name).catch(() => undefined);
      await mpd.stop();
    }
  }
}

const ms = (v: number): string => (Number.isNaN(v) ? '-' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`);
const after = (v: number | undefined, what: string, since: string): string => (v === undefined ? `never ${what}` : `${what} ${(v / 1000).toFixed(2)} s after ${since}`);

async function main(): Promise<void> {
  const faults = new PortalFaults();
  await faults.reset();
  await faults.prepare();
  const disks = twoLioDisks();
  const wanted = new Set(values.only.split(','));
  const results: Result[] = [];
  for (const id of (['a', 'b'] as const).filter((x) => wanted.has(x))) {
    const t0 = now();
    console.error(`# (${id}) start`);
    const r = await runOne(id, disks, faults);
    console.error(`# (${id}) done in ${((now() - t0) / 1000).toFixed(0)} s`);
    results.push(r);
  }
  console.log(`\nSlow path: ${DELAY_MS} ms added to one iSCSI portal's round trip (netem); 4 KiB random O_DIRECT reads at QD ${QD}; windows of ${WINDOW_MS / 1000} s\n`);
  const head = ['config', 'window', 'IOPS', 'p50', 'p99', 'p99.9', 'max', `reads > ${SLOW_MS / 1000} s`, 'errors'];
  const rows: string[][] = [];
  for (const r of results) {
    for (const w of r.windows) {
      rows.push([`(${r.id}) ${r.label}${r.partial ? ' [partial]' : ''}`, w.window, w.iops.toFixed(0), ms(w.p50), ms(w.p99), ms(w.p999), `${w.open > 0 ? '> ' : ''}${ms(w.max)}`, String(w.over1s), String(w.errors)]);
    }
  }
  console.log(markdownTable(head, rows));
  console.log('');
  for (const r of results) {
    console.log(`(${r.id}) slow path ${after(r.failedAfterMs, 'failed', 'the delay began')}; ${after(r.reinstatedAfterMs, 'reinstated', 'the restore')}${r.partial ? '; some reads never finished (partial figures)' : ''}`);
  }
  const fault = (id: 'a' | 'b'): string => {
    const w = results.find((r) => r.id === id)?.windows.find((x) => x.window === 'fault');
    return w === undefined ? 'n/a' : String(w.over1s);
  };
  for (const r of results) {
    if (r.slowReads.length === 0) continue;
    console.log(`\n(${r.id}) the ${r.slowReads.length} reads of the fault window over ${SLOW_MS / 1000} s (the fail is sampled every 100 ms):`);
    for (const x of r.slowReads.slice(0, 40)) {
      const when = x.sinceFailMs === undefined ? 'no fail' : `${x.sinceFailMs >= 0 ? '+' : ''}${x.sinceFailMs.toFixed(0)} ms from the fail`;
      console.log(`  submitted ${x.sinceDelayMs.toFixed(0)} ms after the delay began (${when}), took ${x.open ? '> ' : ''}${ms(x.latencyMs)}, ${x.hedged ? 'hedged' : 'not hedged'}`);
    }
    if (r.slowReads.length > 40) console.log(`  (+${r.slowReads.length - 40} more)`);
  }
  console.log(`slow-path reads over 1 s in the fault window: multipathd alone ${fault('a')}, with watchdog ${fault('b')}`);
}

main().then(() => process.exit(0), (e: unknown) => {
  console.error(e instanceof Error ? e.stack : e);
  process.exit(1);
});
